//! Safe changes against a real nginx under a real systemd (a booted container): a config that
//! fails `validate` never goes live, one that passes it but breaks the health check is rolled
//! back (and the agent does not retry that bundle), and a good one is applied and restarted
//! once. Needs root and `scripts/test-deps`.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_converge");

const ROLE: &str = r#"
[[file]]
path = "/etc/nginx/nginx.conf"
template = "nginx.conf.hbs"
validate = "nginx -t -q -c {path}"
notify = ["service:nginx"]

[[service]]
name = "nginx"
enabled = true
state = "running"

[[health]]
name = "web"
http = "http://127.0.0.1:8081/"
expect_status = 200
expect_body = "ok"
retries = 3
interval = "200ms"
services = ["nginx"]
"#;

/// A whole nginx.conf: `status` and `body` are what 127.0.0.1:8081 answers, `extra` goes
/// into the http block.
fn nginx_conf(status: u16, body: &str, extra: &str) -> String {
    format!(
        "user www-data;\npid /run/nginx.pid;\nevents {{}}\nhttp {{\n  access_log off;\n  {extra}\n  server {{\n    listen 127.0.0.1:8081;\n    location / {{ return {status} \"{body}\\n\"; }}\n  }}\n}}\n"
    )
}

/// Writes the source with `conf` as the template and publishes it to /mnt/share/out.
fn publish(ct: &Container, conf: &str) {
    let src = ct.share_dir().join("src");
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(src.join("roles")).unwrap();
    fs::create_dir_all(src.join("templates")).unwrap();
    fs::write(src.join("roles/web.toml"), ROLE).unwrap();
    fs::write(src.join("templates/nginx.conf.hbs"), conf).unwrap();
    ct.publish(&src);
}

fn run(ct: &Container, args: &[&str]) -> (i32, String) {
    reported(ct.exec(args))
}

/// The exit code and stdout of a finished command, echoing both streams for `--nocapture`.
fn reported(out: Output) -> (i32, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn main_pid(ct: &Container) -> String {
    ct.exec_ok(&["systemctl", "show", "-p", "MainPID", "--value", "nginx"])
        .trim()
        .to_owned()
}

fn serves(ct: &Container) -> String {
    let out = ct.exec(&["curl", "-sS", "http://127.0.0.1:8081/"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn validate_health_and_rollback_keep_a_real_nginx_serving() {
    let ct = Container::boot("safe");
    let bin = ct.share(Path::new(BIN));
    ct.exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /etc/converge && printf 'source = \"file:///mnt/share/out\"\\nroles = [\"web\"]\\n' > /etc/converge/agent.toml",
    ]);
    let apply = || run(&ct, &[&bin, "apply", "--color", "never"]);
    let check = || run(&ct, &[&bin, "check", "--color", "never"]);

    // A good change: applied, restarted once, healthy.
    publish(&ct, &nginx_conf(200, "ok v1", ""));
    let before = main_pid(&ct);
    let (code, out) = apply();
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches("↻ restarted service:nginx").count(), 1, "{out}");
    assert!(out.contains("♥ health:web passed: GET http://127.0.0.1:8081/ → 200 with \"ok\" in the body\n    HTTP 200\n"), "{out}");
    assert_eq!(serves(&ct), "ok v1\n");
    let good_pid = main_pid(&ct);
    assert_ne!(good_pid, before);
    assert_eq!(apply().0, 0);

    // A config nginx rejects: check says so, apply keeps the old file, nothing restarts.
    publish(&ct, &nginx_conf(200, "ok v2", "bogus_directive on;"));
    let (code, out) = check();
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("would fail validation: `nginx -t -q -c {path}` exited with status 1"),
        "{out}"
    );
    assert!(
        out.contains("unknown directive \"bogus_directive\" in /etc/nginx/nginx.conf:6"),
        "{out}"
    );
    let (code, out) = apply();
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("validation failed (the old file was kept)"),
        "{out}"
    );
    assert!(!out.contains("restarted"), "{out}");
    assert_eq!(main_pid(&ct), good_pid, "nothing restarted");
    assert_eq!(serves(&ct), "ok v1\n");

    // Valid, but the site breaks: the health check fails and the run is rolled back.
    publish(&ct, &nginx_conf(503, "down", ""));
    let (code, out) = apply();
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("! health:web failed after 4 attempts: GET http://127.0.0.1:8081/ → 200 with \"ok\" in the body\n    HTTP 503, expected 200: down\n"),
        "{out}"
    );
    assert!(out.contains("↺ rolled back run "), "{out}");
    assert!(
        out.contains("    restored file:/etc/nginx/nginx.conf\n"),
        "{out}"
    );
    assert!(
        out.contains("↻ restarted nginx.service (rollback)\n"),
        "{out}"
    );
    assert!(out.ends_with("apply: 2 resources: 1 in sync, 1 changed, 0 failed, 1 health check failed, rolled back\n"), "{out}");
    assert_eq!(serves(&ct), "ok v1\n", "healthy again");
    assert_eq!(
        ct.exec_ok(&["cat", "/etc/nginx/nginx.conf"]),
        nginx_conf(200, "ok v1", "")
    );

    // The agent's next tick does not apply that bundle again.
    let pid = main_pid(&ct);
    let (code, _) = run(&ct, &[&bin, "agent", "--once"]);
    assert_eq!(code, 4);
    assert_eq!(main_pid(&ct), pid, "nothing restarted");
    assert_eq!(serves(&ct), "ok v1\n");
    let record = ct.exec_ok(&["cat", "/var/lib/converge/last-run.json"]);
    assert!(record.contains("\"held\""), "{record}");
    let metrics = ct.exec_ok(&["cat", "/var/lib/converge/metrics/converge.prom"]);
    assert!(
        metrics.contains("\nconverge_bundle_held{mode=\"apply\"} 1\n"),
        "{metrics}"
    );
    let (_, hist) = run(&ct, &[&bin, "history"]);
    assert!(hist.contains("rolled back: health:web failed"), "{hist}");

    // A fixed bundle moves on.
    publish(&ct, &nginx_conf(200, "ok v3", ""));
    let (code, out) = apply();
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches("↻ restarted service:nginx").count(), 1, "{out}");
    assert_eq!(serves(&ct), "ok v3\n");
}

#[test]
fn a_rollback_stops_and_disables_a_service_the_run_started_and_removes_its_unit() {
    let ct = Container::boot("undo-svc");
    let bin = ct.share(Path::new(BIN));
    let src = ct.share_dir().join("src");
    fs::create_dir_all(src.join("roles")).unwrap();
    fs::write(
        src.join("roles/web.toml"),
        r#"
[[service]]
name = "hello"
enabled = true
state = "running"
unit = { content = "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n" }

[[health]]
name = "never"
command = "false"
retries = 0
services = ["hello"]
"#,
    )
    .unwrap();
    let (code, out) = reported(ct.converge(&bin, "apply", "web", &[]));
    assert_eq!(code, 4, "{out}");
    for line in [
        "    restored service:hello\n",
        "    restored file:/etc/systemd/system/hello.service\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    let state = |verb: &str| {
        String::from_utf8_lossy(&ct.exec(&["systemctl", verb, "hello"]).stdout)
            .trim()
            .to_owned()
    };
    assert_eq!(state("is-active"), "inactive");
    assert!(!ct.root().join("etc/systemd/system/hello.service").exists());
    assert!(!ct
        .root()
        .join("etc/systemd/system/multi-user.target.wants/hello.service")
        .exists());
}
