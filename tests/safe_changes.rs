//! Safe changes against a real nginx under a real systemd (a booted container): a config that
//! fails `validate` never goes live, one that passes it but breaks the health check is rolled
//! back (and the agent does not retry that bundle), and a good one is applied and restarted
//! once. Needs root and `scripts/test-deps`.

mod support;

use std::fs;
use std::process::Output;

use support::*;

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

/// The README's pattern: nginx reloaded on a config change, no `validate`, and a health
/// check with the defaults.
const RELOAD_ROLE: &str = r#"
[[file]]
path = "/etc/nginx/nginx.conf"
template = "nginx.conf.hbs"
mode = "0644"
notify = ["service:nginx"]

[[service]]
name = "nginx"
enabled = true
state = "running"
reload_on_notify = true

[[health]]
name = "web"
http = "http://127.0.0.1:8081/healthz"
expect_status = 200
services = ["nginx"]
"#;

/// Writes the source with `conf` as the template and publishes it to /mnt/share/out.
fn publish(ct: &Container, conf: &str) {
    publish_role(ct, ROLE, conf);
}

/// Like [`publish`], with `role` as roles/web.toml.
fn publish_role(ct: &Container, role: &str, conf: &str) {
    let src = ct.share_dir().join("src");
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(src.join("roles")).unwrap();
    fs::create_dir_all(src.join("templates")).unwrap();
    fs::write(src.join("roles/web.toml"), role).unwrap();
    fs::write(src.join("templates/nginx.conf.hbs"), conf).unwrap();
    ct.publish(&src);
}

/// A booted container whose agent config reads /mnt/share/out for role web.
fn agent_host(name: &str) -> Container {
    let ct = Container::boot(name);
    ct.exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /etc/converge && printf 'source = \"file:///mnt/share/out\"\\nroles = [\"web\"]\\n' > /etc/converge/agent.toml",
    ]);
    ct
}

/// `converge ARGS` inside the container: (exit code, stdout).
fn run(ct: &Container, args: &[&str]) -> (i32, String) {
    reported(ct.run_converge(args))
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

/// Waits until nginx answers `want`: a reload returns before the new workers serve, and a
/// run without health checks does not wait for them (its successor runs minutes later).
fn await_serving(ct: &Container, want: &str, old_workers: &[String]) {
    wait_until(
        &format!("nginx answers {want:?}"),
        std::time::Duration::from_secs(20),
        || serves(ct) == want,
    );
    // New workers answer while the old ones still accept on the same socket until they
    // have shut down: only once those are gone does every answer come from the new config.
    wait_until(
        "nginx's old workers exit",
        std::time::Duration::from_secs(60),
        || {
            let now = workers(ct);
            old_workers.iter().all(|w| !now.contains(w))
        },
    );
}

/// The pids of nginx's worker processes.
fn workers(ct: &Container) -> Vec<String> {
    let out = ct.exec(&["pgrep", "-P", &main_pid(ct)]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn validate_health_and_rollback_keep_a_real_nginx_serving() {
    let ct = agent_host("safe");
    let apply = || run(&ct, &["apply", "--color", "never"]);
    let check = || run(&ct, &["check", "--color", "never"]);

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
    let (code, _) = run(&ct, &["agent", "--once"]);
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
    let (_, hist) = run(&ct, &["history"]);
    assert!(hist.contains("rolled back: health:web failed"), "{hist}");

    // A fixed bundle moves on.
    publish(&ct, &nginx_conf(200, "ok v3", ""));
    let (code, out) = apply();
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches("↻ restarted service:nginx").count(), 1, "{out}");
    assert_eq!(serves(&ct), "ok v3\n");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_rollback_stops_and_disables_a_service_the_run_started_and_removes_its_unit() {
    let ct = Container::boot("undo-svc");
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
    let (code, out) = reported(ct.converge("apply", "web", &[]));
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

/// A host on the reload role serving "ok v1" after its first `apply`.
fn reloading_host(name: &str) -> Container {
    let ct = agent_host(name);
    publish_role(&ct, RELOAD_ROLE, &nginx_conf(200, "ok v1", ""));
    let (code, out) = run(&ct, &["apply", "--color", "never"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches("↻ reloaded service:nginx").count(), 1, "{out}");
    assert!(out.contains("♥ health:web passed"), "{out}");
    assert_eq!(serves(&ct), "ok v1\n");
    ct
}

/// The run was rolled back to the reload role's first config, which serves again.
fn assert_back_on_v1(ct: &Container, out: &str) {
    for line in [
        "    restored file:/etc/nginx/nginx.conf\n",
        "↻ reloaded nginx.service (rollback)\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert_eq!(serves(ct), "ok v1\n", "healthy again");
    assert_eq!(
        fs::read_to_string(ct.root().join("etc/nginx/nginx.conf")).unwrap(),
        nginx_conf(200, "ok v1", "")
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_health_check_after_a_reload_sees_the_new_config() {
    let ct = reloading_host("reload");
    let apply = || run(&ct, &["apply", "--color", "never"]);

    // The reload returns before nginx swapped its workers: a probe right after it is still
    // answered by the old config. The check must see the new one, and roll it back. A large
    // map makes nginx take a while to read the new config, as a real site's config does, so
    // that window is always there.
    let map: String = (0..100_000).map(|i| format!("    /p{i} {i};\n")).collect();
    let slow = format!("map $uri $page {{\n    default 0;\n{map}  }}");
    publish_role(&ct, RELOAD_ROLE, &nginx_conf(404, "gone", &slow));
    let (code, out) = apply();
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("! health:web failed after 4 attempts: GET http://127.0.0.1:8081/healthz → 200\n    HTTP 404, expected 200: gone\n"),
        "{out}"
    );
    assert_back_on_v1(&ct, &out);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_rejected_reload_rolls_the_run_back() {
    let ct = reloading_host("rejected");
    let apply = || run(&ct, &["apply", "--color", "never"]);
    let pid = main_pid(&ct);

    // A config nginx rejects on reload (no validate on the file): the old config keeps
    // serving from memory, so the health check passes; the failed reload alone must undo
    // the file, or the next restart takes the site down.
    publish_role(
        &ct,
        RELOAD_ROLE,
        &nginx_conf(200, "ok v2", "bogus_directive on;"),
    );
    let (code, out) = apply();
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("! reload service:nginx failed"), "{out}");
    assert!(
        out.contains("↺ rolled back run ") && out.contains(": service:nginx reload failed: "),
        "{out}"
    );
    assert_back_on_v1(&ct, &out);
    assert_eq!(main_pid(&ct), pid, "nginx was never down");
    ct.exec_ok(&["systemctl", "restart", "nginx"]);
    assert_eq!(serves(&ct), "ok v1\n", "the next restart still serves");
}

/// The run ids in the container's history, oldest first.
fn run_ids(ct: &Container) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(ct.root().join("var/lib/converge/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_failure_seen_by_a_run_that_changed_nothing_rolls_back_the_run_that_did() {
    let ct = reloading_host("blame");
    let apply = || run(&ct, &["apply", "--color", "never"]);
    let before = run_ids(&ct);
    let old_workers = workers(&ct);
    assert!(!old_workers.is_empty(), "nginx runs workers");

    // A bundle without the health check breaks /healthz: nothing sees it.
    let unchecked = RELOAD_ROLE.split("[[health]]").next().unwrap();
    publish_role(&ct, unchecked, &nginx_conf(404, "gone", ""));
    let (code, out) = apply();
    assert_eq!(code, 2, "{out}");
    let culprit: Vec<String> = run_ids(&ct)
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(culprit.len(), 1, "{culprit:?}");
    let culprit = &culprit[0];
    await_serving(&ct, "gone\n", &old_workers);

    // The next bundle brings the check back and changes nothing on the host: the failure it
    // sees is the earlier run's, which is undone.
    publish_role(&ct, RELOAD_ROLE, &nginx_conf(404, "gone", ""));
    let (code, out) = apply();
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("! health:web failed after 4 attempts"),
        "{out}"
    );
    assert!(
        out.contains(&format!("↺ rolled back run {culprit}: health:web failed: ")),
        "{out}"
    );
    assert_back_on_v1(&ct, &out);
    let (_, hist) = run(&ct, &["history"]);
    assert!(hist.contains("rolled back: health:web failed"), "{hist}");
    assert_eq!(run_ids(&ct).len(), before.len() + 1, "no run of its own");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_held_host_keeps_converging_its_last_good_bundle() {
    let ct = reloading_host("held");
    // Restarted rather than reloaded, so the failure is seen without waiting for it.
    let restarting = RELOAD_ROLE.replace("reload_on_notify = true", "reload_on_notify = false");
    publish_role(&ct, &restarting, &nginx_conf(404, "gone", ""));
    let (code, out) = run(&ct, &["apply", "--color", "never"]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("↻ restarted nginx.service (rollback)\n"),
        "{out}"
    );
    assert_eq!(serves(&ct), "ok v1\n", "healthy again");

    // Drift made by hand while the bad bundle is held is repaired from the last good one.
    ct.exec_ok(&["chmod", "0666", "/etc/nginx/nginx.conf"]);
    let (code, out) = run(&ct, &["apply", "--color", "never"]);
    assert_eq!(code, 4, "held, so not the newest bundle: {out}");
    assert!(out.contains("~ update file:/etc/nginx/nginx.conf"), "{out}");
    assert!(
        out.contains("not applied again: the host keeps converging its last good bundle "),
        "{out}"
    );
    let mode = ct.exec_ok(&["stat", "-c", "%a", "/etc/nginx/nginx.conf"]);
    assert_eq!(mode.trim(), "644");
    assert_eq!(serves(&ct), "ok v1\n");
    let record = ct.exec_ok(&["cat", "/var/lib/converge/last-run.json"]);
    assert!(record.contains("\"freshness\": \"held\""), "{record}");
}

/// A site file ahead of an nginx.conf with a `validate`: `site` is the site file's content.
fn refusing_role(site: &str) -> String {
    format!(
        r#"
[[file]]
path = "/etc/nginx/conf.d/site.conf"
content = "{site}\n"
notify = ["service:nginx"]

[[file]]
path = "/etc/nginx/nginx.conf"
template = "nginx.conf.hbs"
validate = "nginx -t -q -c {{path}}"
notify = ["service:nginx"]

[[service]]
name = "nginx"
enabled = true
state = "running"
"#
    )
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_file_refused_by_validate_refuses_the_whole_run() {
    let ct = agent_host("refuse");
    let apply = || run(&ct, &["apply", "--color", "never"]);
    let current = || fs::read_link(ct.root().join("var/lib/converge/current")).unwrap();
    publish_role(
        &ct,
        &refusing_role("# site v1"),
        &nginx_conf(200, "ok v1", ""),
    );
    let (code, out) = apply();
    assert_eq!(code, 2, "{out}");
    let good = current();
    let pid = main_pid(&ct);

    publish_role(
        &ct,
        &refusing_role("# site v2"),
        &nginx_conf(200, "ok v2", "bogus_directive on;"),
    );
    let (code, out) = apply();
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("validation failed (the old file was kept)"),
        "{out}"
    );
    assert!(
        out.contains("! run refused: file:/etc/nginx/nginx.conf failed validation; nothing of this run is applied\n"),
        "{out}"
    );
    assert!(!out.contains("restarted"), "{out}");
    assert_eq!(
        fs::read_to_string(ct.root().join("etc/nginx/conf.d/site.conf")).unwrap(),
        "# site v1\n",
        "the site file of the refused run was written"
    );
    assert_eq!(current(), good, "the refused bundle became current");
    assert_eq!(main_pid(&ct), pid);
    assert_eq!(serves(&ct), "ok v1\n");
    let metrics = ct.exec_ok(&["cat", "/var/lib/converge/metrics/converge.prom"]);
    assert!(
        metrics.contains("\nconverge_drift_detected{mode=\"apply\"} 1\n"),
        "{metrics}"
    );
    let record = ct.exec_ok(&["cat", "/var/lib/converge/last-run.json"]);
    assert!(record.contains("\"freshness\": \"refused\""), "{record}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_file_refused_in_the_run_undoes_what_the_run_wrote_before_it() {
    let ct = Container::boot("refuse-late");
    // main.conf's validate reads base.conf, which the run writes first: it can only be
    // checked in the run, after that write.
    let role = |v: &str| {
        format!(
            r#"
[[directory]]
path = "/etc/app"

[[file]]
path = "/etc/app/base.conf"
content = "base {v}\n"

[[file]]
path = "/etc/app/main.conf"
content = "main {v}\n"
validate = "grep -q 'base v1' /etc/app/base.conf && test -s {{path}}"
after = ["file:/etc/app/base.conf"]
"#
        )
    };
    let src = ct.share_dir().join("src");
    fs::create_dir_all(src.join("roles")).unwrap();
    let apply = || reported(ct.converge("apply", "app", &["--state-dir", "/var/lib/converge-app"]));
    fs::write(src.join("roles/app.toml"), role("v1")).unwrap();
    let (code, out) = apply();
    assert_eq!(code, 2, "{out}");

    fs::write(src.join("roles/app.toml"), role("v2")).unwrap();
    let (code, out) = apply();
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("! run refused: file:/etc/app/main.conf failed validation; nothing of this run is applied\n"),
        "{out}"
    );
    assert!(
        out.contains("    restored file:/etc/app/base.conf\n"),
        "{out}"
    );
    for (file, content) in [("base.conf", "base v1\n"), ("main.conf", "main v1\n")] {
        assert_eq!(
            fs::read_to_string(ct.root().join("etc/app").join(file)).unwrap(),
            content
        );
    }
}

/// A role whose main.conf is checked against base.conf, declared after it: `fixed` adds the
/// `after` that orders them.
fn ordered_role(fixed: bool) -> String {
    let after = if fixed {
        "after = [\"file:/etc/app/base.conf\"]\n"
    } else {
        ""
    };
    format!(
        r#"[[directory]]
path = "/etc/app"

[[file]]
path = "/etc/app/main.conf"
content = "main\n"
validate = "grep -q base /etc/app/base.conf && test -s {{path}}"
{after}
[[file]]
path = "/etc/app/base.conf"
content = "base\n"
"#
    )
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn validate_commands_run_against_a_fresh_tree_before_publishing() {
    let image = Chroot::new();
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("roles")).unwrap();
    fs::write(src.path().join("roles/app.toml"), ordered_role(false)).unwrap();
    let validate =
        || support::tools::converge_tree("validate", "app", src.path(), image.path(), &[]);

    // The ordering mistake passes on a host that has base.conf, and fails on a fresh one.
    let (code, out) = validate();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("roles/app.toml:4:1: file:/etc/app/main.conf would fail validation: `grep -q base /etc/app/base.conf && test -s {path}` exited with status 2: grep: /etc/app/base.conf: No such file or directory\n"),
        "{out}"
    );
    assert!(
        out.contains("validate: 1 file would fail validation in "),
        "{out}"
    );
    let (code, out) = support::tools::converge_tree("check", "app", src.path(), image.path(), &[]);
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains("would fail validation: `grep -q base /etc/app/base.conf"),
        "{out}"
    );
    assert!(
        !image.path().join("etc/app").exists(),
        "the tree was changed"
    );
    let leftovers: Vec<_> = fs::read_dir(image.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Ordered, it is checked after base.conf is written, and a first apply converges.
    fs::write(src.path().join("roles/app.toml"), ordered_role(true)).unwrap();
    let (code, out) = validate();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("note: roles/app.toml:4:1: file:/etc/app/main.conf is checked by apply in its place, after the changes it comes after\n"),
        "{out}"
    );
    let (code, out) = support::tools::converge_tree("apply", "app", src.path(), image.path(), &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        fs::read_to_string(image.path().join("etc/app/main.conf")).unwrap(),
        "main\n"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_run_refused_in_a_tree_without_backups_says_what_stays() {
    let tree = Chroot::new();
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("roles")).unwrap();
    let role = |v: &str| {
        format!(
            "[[directory]]\npath = \"/etc/app\"\n\n[[file]]\npath = \"/etc/app/base.conf\"\ncontent = \"base {v}\\n\"\n\n\
             [[file]]\npath = \"/etc/app/main.conf\"\ncontent = \"main {v}\\n\"\n\
             validate = \"grep -q 'base v1' /etc/app/base.conf && test -s {{path}}\"\n\
             after = [\"file:/etc/app/base.conf\"]\n"
        )
    };
    let apply = || support::tools::converge_tree("apply", "app", src.path(), tree.path(), &[]);
    fs::write(src.path().join("roles/app.toml"), role("v1")).unwrap();
    assert_eq!(apply().0, 2);
    fs::write(src.path().join("roles/app.toml"), role("v2")).unwrap();
    let (code, out) = apply();
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains("! run refused: file:/etc/app/main.conf failed validation; what it changed before that file stays (no backups to undo it)\n"),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(tree.path().join("etc/app/main.conf")).unwrap(),
        "main v1\n"
    );
}
