//! `service` and `notify` against a real systemd: the converge binary runs inside booted
//! containers, and offline with `--root` against a chroot tree.
//! Needs root and `scripts/test-deps`.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::*;

/// `converge MODE --source /mnt/share/src --role svc EXTRA...` inside the container.
fn converge_in(ct: &Container, mode: &str, extra: &[&str]) -> Output {
    ct.converge(mode, "svc", extra)
}

/// How long a reload or a started command may take to show: a bound on a hang.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(20);

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts the exit code; returns stdout (also echoed, for `--nocapture` readers).
fn expect(out: &Output, want: i32) -> String {
    assert_eq!(
        code(out),
        want,
        "unexpected exit code\n{}",
        output_text(out)
    );
    let text = stdout(out);
    eprintln!("{text}");
    text
}

fn main_pid(ct: &Container, unit: &str) -> String {
    ct.exec_ok(&["systemctl", "show", "-p", "MainPID", "--value", unit])
        .trim()
        .to_owned()
}

fn active(ct: &Container, unit: &str) -> String {
    let out = ct.exec(&["systemctl", "is-active", unit]);
    stdout(&out).trim().to_owned()
}

fn enabled(ct: &Container, unit: &str) -> String {
    let out = ct.exec(&["systemctl", "is-enabled", unit]);
    stdout(&out).trim().to_owned()
}

const HELLO_UNIT: &str = "\
[Unit]
Description={{vars.description}}

[Service]
ExecStartPre=/bin/cp /etc/hello.conf /run/hello.seen
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
";

const HELLO_ROLE: &str = r#"
[vars]
description = "converge test service"
greeting = "hello"

[[file]]
path = "/etc/hello.conf"
template = "hello.conf.hbs"
notify = ["service:hello"]

[[service]]
name = "hello"
enabled = true
state = "running"
unit = { template = "hello.service.hbs" }
"#;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn service_from_template_starts_and_restarts_only_when_its_config_changes() {
    let ct = Container::boot("svc");
    ct.write_source(&[
        ("roles/svc.toml", HELLO_ROLE),
        ("templates/hello.service.hbs", HELLO_UNIT),
        ("templates/hello.conf.hbs", "greeting={{vars.greeting}}\n"),
    ]);

    // Check on a fresh host: everything pending, nothing touched.
    let out = expect(&converge_in(&ct, "check", &[]), 2);
    assert!(out.contains("enabled: disabled → enabled"), "{out}");
    assert!(out.contains("state: inactive → running"), "{out}");
    assert!(
        out.contains("no restart of service:hello: would be started in this run"),
        "{out}"
    );
    assert!(!ct.root().join("etc/systemd/system/hello.service").exists());
    assert_eq!(active(&ct, "hello"), "inactive");

    // First apply: unit written, daemon-reload, enabled, started; no restart on top.
    let out = expect(&converge_in(&ct, "apply", &[]), 2);
    assert!(
        out.contains("no restart of service:hello: started in this run"),
        "{out}"
    );
    assert_eq!(active(&ct, "hello"), "active");
    assert_eq!(enabled(&ct, "hello"), "enabled");
    assert_eq!(
        ct.exec_ok(&["systemctl", "show", "-p", "Description", "--value", "hello"])
            .trim(),
        "converge test service"
    );
    assert_eq!(ct.exec_ok(&["cat", "/run/hello.seen"]), "greeting=hello\n");
    let first = main_pid(&ct, "hello");
    assert_ne!(first, "0");

    // In sync: check reports nothing, apply changes nothing and restarts nothing.
    let out = expect(&converge_in(&ct, "check", &[]), 0);
    assert!(out.contains("0 would change, 0 failed"), "{out}");
    let out = expect(&converge_in(&ct, "apply", &[]), 0);
    assert!(!out.contains("restart"), "{out}");
    assert_eq!(main_pid(&ct, "hello"), first);

    // The config changes: check announces the restart and does not do it.
    let bye = ["--var", "greeting=bye"];
    let out = expect(&converge_in(&ct, "check", &bye), 2);
    assert!(
        out.contains("would restart service:hello (notified by file:/etc/hello.conf)"),
        "{out}"
    );
    insta::assert_snapshot!("restart_pending_check", out);
    assert_eq!(main_pid(&ct, "hello"), first);

    let out = expect(&converge_in(&ct, "apply", &bye), 2);
    assert!(
        out.contains("restarted service:hello (notified by file:/etc/hello.conf)"),
        "{out}"
    );
    let second = main_pid(&ct, "hello");
    assert_ne!(second, first, "the notified service was not restarted");
    assert_eq!(ct.exec_ok(&["cat", "/run/hello.seen"]), "greeting=bye\n");

    let out = expect(&converge_in(&ct, "apply", &bye), 0);
    assert!(!out.contains("restart"), "{out}");
    assert_eq!(main_pid(&ct, "hello"), second, "a no-op run restarted");

    // Stop and disable.
    ct.write_source(&[(
        "roles/svc.toml",
        "[[service]]\nname = \"hello\"\nenabled = false\nstate = \"stopped\"\n",
    )]);
    let out = expect(&converge_in(&ct, "apply", &[]), 2);
    assert!(out.contains("state: active → stopped"), "{out}");
    assert_eq!(active(&ct, "hello"), "inactive");
    assert_eq!(enabled(&ct, "hello"), "disabled");
    expect(&converge_in(&ct, "check", &[]), 0);

    // Mask a packaged unit: stopped, and its name linked to /dev/null.
    ct.write_source(&[(
        "roles/svc.toml",
        "[[service]]\nname = \"nginx\"\nmasked = true\nstate = \"stopped\"\n",
    )]);
    assert_eq!(active(&ct, "nginx"), "active");
    let out = expect(&converge_in(&ct, "apply", &[]), 2);
    assert!(out.contains("masked: false → true"), "{out}");
    assert_eq!(active(&ct, "nginx"), "inactive");
    assert_eq!(enabled(&ct, "nginx"), "masked");
    assert_eq!(
        fs::read_link(ct.root().join("etc/systemd/system/nginx.service")).unwrap(),
        Path::new("/dev/null")
    );
    expect(&converge_in(&ct, "check", &[]), 0);

    // A unit that cannot start: a located failure with systemd's words, exit 4.
    ct.write_source(
        &[(
            "roles/svc.toml",
            "[[service]]\nname = \"broken\"\nstate = \"running\"\nunit = { content = \"[Service]\\nType=oneshot\\nExecStart=/bin/false\\n\" }\n",
        )],
    );
    let out = expect(&converge_in(&ct, "apply", &[]), 6);
    assert!(out.contains("! service:broken"), "{out}");
    assert!(
        out.contains("start -- broken.service: exit status: 1: Job for broken.service failed"),
        "{out}"
    );
}

const PROBE_ROLE: &str = r#"
[vars]
body = "one"

[[file]]
path = "/etc/nginx/conf.d/probe.conf"
template = "probe.conf.hbs"
notify = ["service:nginx"]

[[service]]
name = "nginx"
enabled = true
state = "running"
reload_on_notify = true
"#;

const DROPIN: &str = r#"
[[directory]]
path = "/etc/systemd/system/nginx.service.d"

[[file]]
path = "/etc/systemd/system/nginx.service.d/converge.conf"
content = "[Service]\nEnvironment=CONVERGE_PROBE=1\n"
notify = ["service:nginx"]
"#;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn reload_on_notify_keeps_the_main_pid_and_a_unit_change_forces_a_restart() {
    let ct = Container::boot("reload");
    let src = ct.share_dir().join("src");
    let probe = "server {\n  listen 127.0.0.1:8081;\n  location / { return 200 \"{{vars.body}}\\n\"; }\n}\n";
    write_tree(
        &src,
        &[
            ("roles/svc.toml", PROBE_ROLE),
            ("templates/probe.conf.hbs", probe),
        ],
    );
    // nginx reloads asynchronously: old workers answer until the new ones take over.
    let curl_until = |want: &str| {
        wait_until(&format!("nginx serves {want:?}"), SETTLE, || {
            stdout(&ct.exec(&["curl", "-sS", "http://127.0.0.1:8081/"])) == want
        })
    };
    let before = main_pid(&ct, "nginx");

    let out = expect(&converge_in(&ct, "apply", &[]), 2);
    assert!(
        out.contains("reloaded service:nginx (notified by file:/etc/nginx/conf.d/probe.conf)"),
        "{out}"
    );
    curl_until("one\n");
    assert_eq!(main_pid(&ct, "nginx"), before, "reload must not restart");

    let two = ["--var", "body=two"];
    let out = expect(&converge_in(&ct, "check", &two), 2);
    assert!(out.contains("would reload service:nginx"), "{out}");
    curl_until("one\n");
    expect(&converge_in(&ct, "apply", &two), 2);
    curl_until("two\n");
    assert_eq!(main_pid(&ct, "nginx"), before, "reload must not restart");
    expect(&converge_in(&ct, "apply", &two), 0);

    // A drop-in changes too: it needs daemon-reload and a restart, which beats the reload.
    write_tree(
        &src,
        &[
            ("roles/svc.toml", &format!("{PROBE_ROLE}{DROPIN}")),
            ("templates/probe.conf.hbs", probe),
        ],
    );
    let three = ["--var", "body=three"];
    let out = expect(&converge_in(&ct, "apply", &three), 2);
    assert!(
        out.contains("restarted service:nginx (notified by "),
        "{out}"
    );
    assert!(!out.contains("reloaded"), "{out}");
    assert_ne!(main_pid(&ct, "nginx"), before, "unit change must restart");
    curl_until("three\n");
    let env = ct.exec_ok(&["systemctl", "show", "-p", "Environment", "--value", "nginx"]);
    assert!(
        env.contains("CONVERGE_PROBE=1"),
        "daemon-reload missing: {env}"
    );
    expect(&converge_in(&ct, "check", &three), 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn offline_root_enables_and_masks_with_symlinks_and_leaves_state_alone() {
    let ch = Chroot::new();
    let src = tempfile::tempdir().unwrap();
    write_tree(
        src.path(),
        &[(
            "roles/svc.toml",
            r#"
[[file]]
path = "/etc/hello.conf"
content = "x\n"
notify = ["service:hello"]

[[service]]
name = "hello"
enabled = true
state = "running"
unit = { content = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n" }

[[service]]
name = "nginx"
masked = true
"#,
        )],
    );
    let run = |mode: &str, format: &str| {
        converge(&[
            mode, "--color", "never", "--role", "svc", "--format", format,
        ])
        .arg("--source")
        .arg(src.path())
        .arg("--root")
        .arg(ch.path())
        .output()
        .unwrap()
    };
    let json = |out: Output, want: i32| -> serde_json::Value {
        serde_json::from_str(&expect(&out, want)).unwrap()
    };
    insta::assert_snapshot!("offline_fresh_check", expect(&run("check", "human"), 2));
    let check = json(run("check", "json"), 2);
    assert!(!ch.path().join("etc/systemd/system/hello.service").exists());
    let apply = json(run("apply", "json"), 2);
    // The promise: apply makes exactly the changes check printed, record for record.
    let changes = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| serde_json::json!([o["id"], o["change"]]))
            .collect()
    };
    assert_eq!(changes(&check), changes(&apply));
    assert_eq!(apply["notifications"][0]["status"], "not_needed");

    let out = expect(&run("check", "human"), 0);
    assert!(out.contains("0 would change, 0 failed"), "{out}");
    assert!(
        out.contains(r#"note: service:hello: state = "running" is not managed under --root"#),
        "{out}"
    );
    let etc = ch.path().join("etc/systemd/system");
    assert_eq!(
        fs::read_link(etc.join("multi-user.target.wants/hello.service")).unwrap(),
        Path::new("/etc/systemd/system/hello.service")
    );
    assert_eq!(
        fs::read_link(etc.join("nginx.service")).unwrap(),
        Path::new("/dev/null")
    );
}

#[test]
fn notify_naming_a_missing_service_is_a_located_plan_error() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    write_tree(
        src.path(),
        &[(
            "roles/svc.toml",
            "[[file]]\npath = \"/etc/x.conf\"\ncontent = \"x\"\nnotify = [\"service:nope\"]\n\n[[service]]\nname = \"web\"\nenabeld = true\n",
        )],
    );
    let run = |role: &str| {
        converge(&["check", "--role", role, "--source"])
            .arg(src.path())
            .arg("--root")
            .arg(root.path())
            .output()
            .unwrap()
    };
    let out = run("svc");
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("roles/svc.toml:8:1"), "{err}");
    assert!(err.contains("enabeld"), "{err}");

    fs::write(
        src.path().join("roles/svc.toml"),
        "[[file]]\npath = \"/etc/x.conf\"\ncontent = \"x\"\nnotify = [\"service:nope\"]\n",
    )
    .unwrap();
    let out = run("svc");
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("roles/svc.toml:4:11: notify: no resource 'service:nope' in this run"),
        "{err}"
    );
    assert!(!root.path().join("etc/x.conf").exists());
}

#[test]
fn a_service_goes_after_its_package_its_unit_and_whatever_notifies_it() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    // Declared in the worst order on purpose.
    write_tree(
        src.path(),
        &[(
            "roles/svc.toml",
            r#"
[[service]]
name = "web"
enabled = true
unit = { content = "[Service]\nExecStart=/bin/true\n" }

[[file]]
path = "/etc/web.conf"
content = "x\n"
notify = ["service:web"]

[[package]]
name = "web"
"#,
        )],
    );
    let out = converge(&["check", "--format", "json", "--role", "svc", "--source"])
        .arg(src.path())
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}\n{}", output_text(&out)));
    let order: Vec<&str> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let pos = |id: &str| order.iter().position(|o| *o == id).unwrap();
    assert!(pos("package:web") < pos("service:web"), "{order:?}");
    assert!(
        pos("file:/etc/systemd/system/web.service") < pos("service:web"),
        "{order:?}"
    );
    assert!(pos("file:/etc/web.conf") < pos("service:web"), "{order:?}");
}

#[test]
fn a_file_declared_in_two_roles_keeps_the_notify_of_either() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    let file = "[[file]]\npath = \"/etc/x.conf\"\ncontent = \"x\\n\"\n";
    write_tree(
        src.path(),
        &[
            ("roles/base.toml", file),
            (
                "roles/svc.toml",
                &format!(
                    "include = [\"base\"]\n{file}notify = [\"service:web\"]\n\n[[service]]\nname = \"web\"\nstate = \"running\"\n"
                ),
            ),
        ],
    );
    let out = converge(&["check", "--format", "json", "--role", "svc", "--source"])
        .arg(src.path())
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = &report["notifications"][0];
    assert_eq!(n["service"], "service:web", "{report:#}");
    assert_eq!(n["notified_by"][0], "file:/etc/x.conf", "{report:#}");
    assert_eq!(n["status"], "not_needed", "{report:#}");
}

#[test]
fn a_unit_nothing_provides_fails_in_check_as_in_apply() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    write_tree(
        src.path(),
        &[(
            "roles/svc.toml",
            "[[service]]\nname = \"nope\"\nenabled = true\n\n[[service]]\nname = \"premasked\"\nmasked = true\n",
        )],
    );
    for mode in ["check", "apply"] {
        let out = converge(&[mode, "--color", "never", "--role", "svc", "--source"])
            .arg(src.path())
            .arg("--root")
            .arg(root.path())
            .output()
            .unwrap();
        let text = expect(&out, 6);
        assert!(
            text.contains(
                "unit nope.service not found: no unit file, and nothing in this run provides one"
            ),
            "{text}"
        );
        // Masking a unit before its package arrives is fine: nothing needs it to exist.
        assert!(text.contains("masked: false → true"), "{text}");
    }
    assert_eq!(
        fs::read_link(root.path().join("etc/systemd/system/premasked.service")).unwrap(),
        Path::new("/dev/null")
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn an_exec_that_runs_notifies_like_any_change() {
    let ch = Chroot::new();
    let src = tempfile::tempdir().unwrap();
    write_tree(
        src.path(),
        &[(
            "roles/svc.toml",
            "[[exec]]\nname = \"mark\"\ncommand = \"touch /root/marked\"\ncreates = \"/root/marked\"\nnotify = [\"service:web\"]\n\n[[service]]\nname = \"web\"\nstate = \"running\"\n",
        )],
    );
    let run = |mode: &str| -> serde_json::Value {
        let out = converge(&[mode, "--format", "json", "--role", "svc", "--source"])
            .arg(src.path())
            .arg("--root")
            .arg(ch.path())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", output_text(&out)))
    };
    let check = run("check");
    assert_eq!(
        check["notifications"][0]["notified_by"][0], "exec:mark",
        "{check:#}"
    );
    let apply = run("apply");
    assert_eq!(
        apply["notifications"][0]["notified_by"][0], "exec:mark",
        "{apply:#}"
    );
    assert!(ch.path().join("root/marked").exists());
    // The guard holds now: nothing runs, nothing is notified.
    let again = run("apply");
    assert!(again.get("notifications").is_none(), "{again:#}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_restart_left_open_by_a_killed_run_is_done_by_the_next_run() {
    let ct = Container::boot("resume");
    let src = ct.share_dir().join("src");
    // After the config file, a slow command: the run can be killed between the file change
    // and the restart at the end of the run.
    let role = format!(
        "{HELLO_ROLE}\n[[exec]]\nname = \"slow\"\ncommand = \"touch /run/slow-started; sleep 60\"\nunless = \"test -e /run/no-slow\"\nafter = [\"file:/etc/hello.conf\"]\n"
    );
    write_tree(
        &src,
        &[
            ("roles/svc.toml", &role),
            ("templates/hello.service.hbs", HELLO_UNIT),
            ("templates/hello.conf.hbs", "greeting={{vars.greeting}}\n"),
        ],
    );
    ct.publish(&src);
    let apply = |extra: &[&str]| {
        let mut args = vec![
            ct.bin(),
            "apply",
            "--color",
            "never",
            "--source",
            "file:///mnt/share/out",
            "--role",
            "svc",
        ];
        args.extend_from_slice(extra);
        ct.exec(&args)
    };
    ct.exec_ok(&["touch", "/run/no-slow"]);
    expect(&apply(&[]), 2);
    let first = main_pid(&ct, "hello");

    // The config changes; the run is killed while the slow command runs.
    ct.exec_ok(&["rm", "/run/no-slow"]);
    let mut killed = ct
        .command(&[
            ct.bin(),
            "apply",
            "--source",
            "file:///mnt/share/out",
            "--role",
            "svc",
            "--var",
            "greeting=bye",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // /run is the container's own tmpfs: only a look from inside sees the marker.
    wait_until("the slow command started", SETTLE, || {
        ct.exec(&["test", "-e", "/run/slow-started"])
            .status
            .success()
    });
    ct.exec_ok(&["pkill", "-KILL", "-f", "mnt/share/converge apply"]);
    let _ = killed.wait();
    assert_eq!(ct.exec_ok(&["cat", "/etc/hello.conf"]), "greeting=bye\n");
    assert_eq!(
        main_pid(&ct, "hello"),
        first,
        "the killed run never restarted"
    );
    let journal = ct.exec_ok(&["cat", "/var/lib/converge/pending-notify.json"]);
    assert!(
        journal.contains("\"service\": \"service:hello\""),
        "{journal}"
    );

    // Next run: every resource is in sync, and the open restart is carried out.
    ct.exec_ok(&["touch", "/run/no-slow"]);
    let out = expect(&apply(&["--var", "greeting=bye"]), 2);
    assert!(
        out.contains("restarted service:hello (notified by pending:earlier-run)"),
        "{out}"
    );
    assert!(out.contains("0 changed, 0 failed"), "{out}");
    assert_ne!(main_pid(&ct, "hello"), first);
    assert_eq!(ct.exec_ok(&["cat", "/run/hello.seen"]), "greeting=bye\n");
    assert!(!ct
        .root()
        .join("var/lib/converge/pending-notify.json")
        .exists());
    // And then nothing is left to do.
    let out = expect(&apply(&["--var", "greeting=bye"]), 0);
    assert!(!out.contains("restart"), "{out}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_failed_reload_reports_the_units_own_error_from_its_journal() {
    let ct = Container::boot("reload-fail");
    let src = ct.share_dir().join("src");
    let probe = "server {\n  listen 127.0.0.1:8081;\n  {{vars.extra}}\n  location / { return 200 \"ok\\n\"; }\n}\n";
    write_tree(
        &src,
        &[
            ("roles/svc.toml", PROBE_ROLE),
            ("templates/probe.conf.hbs", probe),
        ],
    );
    expect(&converge_in(&ct, "apply", &["--var", "extra=# fine"]), 2);
    // nginx refuses the new configuration: `systemctl reload` only says to look elsewhere;
    // the error says what nginx said.
    let out = converge_in(
        &ct,
        "apply",
        &["--var", "extra=bogus_directive on;", "--format", "json"],
    );
    // A failed reload after changes rolls the run back, which is a failure of the run: 4.
    let report: serde_json::Value = serde_json::from_str(&expect(&out, 4)).unwrap();
    assert!(report["rollback"].is_object(), "{report}");
    let n = &report["notifications"][0];
    assert_eq!(n["status"], "failed", "{n}");
    let error = n["error"].as_str().unwrap();
    assert!(
        error.contains("unknown directive \"bogus_directive\" in /etc/nginx/conf.d/probe.conf:3"),
        "{error}"
    );
    assert!(
        error.contains("nginx.service's journal since the reload:"),
        "{error}"
    );
}
