//! Health checks and rollback on the live host, touching only paths under a temp dir: a
//! failing check undoes the run (files, directories, links, absent paths), history lists it,
//! `converge rollback` undoes a run by hand, and a rolled-back bundle is not applied again.
//! Needs root (backups keep owners).

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_converge");

struct Live {
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Live {
    fn new() -> Live {
        support::require_root();
        let dir = tempfile::tempdir().unwrap();
        for d in ["src/roles", "live/d"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("live/app.conf"), "good v1\n").unwrap();
        std::fs::write(dir.path().join("live/d/keep"), "kept\n").unwrap();
        Live { dir }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }

    /// Role `r`: `{L}` in `text` stands for the live dir.
    fn role(&self, text: &str) {
        std::fs::write(
            self.p("src/roles/r.toml"),
            text.replace("{L}", &self.s("live")),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str]) -> Out {
        let out = Command::new(BIN)
            .args(args)
            .args(["--color", "never"])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn converge(&self, mode: &str, extra: &[&str]) -> Out {
        let (src, state) = (self.s("src"), self.s("state"));
        let mut args = vec![mode, "--source", &src, "--role", "r", "--state-dir", &state];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.p(rel)).ok()
    }
}

const CHANGES: &str = r#"
[[file]]
path = "{L}/app.conf"
content = "broken\n"
mode = "0600"
notify = []

[[file]]
path = "{L}/new.conf"
content = "new\n"

[[absent]]
path = "{L}/d"
force = true

[[symlink]]
path = "{L}/current"
target = "app.conf"

[[health]]
name = "app"
command = "grep -q good {L}/app.conf"
retries = 2
interval = "10ms"
"#;

#[test]
fn a_failing_health_check_rolls_back_every_change_of_the_run() {
    let l = Live::new();
    let before_mode = std::fs::metadata(l.p("live/app.conf")).unwrap().mode() & 0o7777;
    l.role(CHANGES);

    // check probes the host as it is: healthy, 4 pending changes.
    let out = l.converge("check", &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "♥ health:app passed: `grep -q good {}/app.conf` exits 0\n",
            l.s("live")
        )),
        "{}",
        out.stdout
    );

    let out = l.converge("apply", &[]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    let live = l.s("live");
    let expected = format!(
        "! health:app failed after 3 attempts: `grep -q good {live}/app.conf` exits 0\n    exited with status 1\n↺ rolled back run "
    );
    assert!(out.stdout.contains(&expected), "{}", out.stdout);
    for line in [
        format!("    restored symlink:{live}/current\n"),
        format!("    restored absent:{live}/d\n"),
        format!("    restored file:{live}/new.conf\n"),
        format!("    restored file:{live}/app.conf\n"),
        format!("♥ health:app passed: `grep -q good {live}/app.conf` exits 0\n"),
        "apply: 4 resources: 0 in sync, 4 changed, 0 failed, 1 health check failed, rolled back\n"
            .to_owned(),
    ] {
        assert!(
            out.stdout.contains(&line),
            "missing {line:?} in\n{}",
            out.stdout
        );
    }
    // Newest change first.
    let undone = &out.stdout[out.stdout.find("↺").unwrap()..];
    let order: Vec<_> = ["d\n", "current", "new.conf", "app.conf\n"]
        .iter()
        .map(|k| undone.find(&format!("{live}/{k}")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", out.stdout);

    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    assert_eq!(
        std::fs::metadata(l.p("live/app.conf")).unwrap().mode() & 0o7777,
        before_mode
    );
    assert_eq!(l.read("live/d/keep").as_deref(), Some("kept\n"));
    assert!(!l.p("live/new.conf").exists());
    assert!(std::fs::symlink_metadata(l.p("live/current")).is_err());

    let state = l.s("state");
    let hist = l.run(&["history", "--state-dir", &state]);
    assert_eq!(hist.code, 0);
    let row = hist.stdout.lines().nth(1).unwrap();
    assert!(
        row.ends_with(&format!(
            "      4      0  rolled back: health:app failed: `grep -q good {live}/app.conf` exits 0: exited with status 1"
        )),
        "{}",
        hist.stdout
    );

    // JSON says the same, with the failing check and its output.
    let json = l.converge("apply", &["--format", "json"]);
    assert_eq!(json.code, 4);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["health"][0]["status"], "failed");
    assert_eq!(v["health"][0]["detail"], "exited with status 1");
    assert_eq!(v["rollback"]["restored"][3]["status"], "restored");
    assert_eq!(v["rollback"]["health"][0]["status"], "passed");
}

#[test]
fn rollback_by_hand_previews_then_undoes_a_past_run() {
    let l = Live::new();
    l.role(&CHANGES.replace("broken", "good v2"));
    let out = l.converge("apply", &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v2\n"));

    let state = l.s("state");
    let live = l.s("live");
    let preview = l.run(&["rollback", "--check", "--state-dir", &state]);
    assert_eq!(preview.code, 2, "{}{}", preview.stdout, preview.stderr);
    assert!(preview.stdout.contains(&format!(
        "    restore file:{live}/new.conf: remove the file\n    restore file:{live}/app.conf: content, owner, group and mode as before\n"
    )), "{}", preview.stdout);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v2\n"));

    let undo = l.run(&["rollback", "--state-dir", &state]);
    assert_eq!(undo.code, 2, "{}{}", undo.stdout, undo.stderr);
    assert!(undo.stdout.contains(": by hand\n"), "{}", undo.stdout);
    // The run's health checks are probed again afterwards: the host is healthy.
    assert!(
        undo.stdout.ends_with(&format!(
            "♥ health:app passed: `grep -q good {live}/app.conf` exits 0\n    exited 0\nrollback: 4 restored, 0 unchanged, 0 failed, healthy\n"
        )),
        "{}",
        undo.stdout
    );
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    assert_eq!(l.read("live/d/keep").as_deref(), Some("kept\n"));
    assert!(!l.p("live/new.conf").exists());

    // Undoing again finds everything as it was.
    let again = l.run(&["rollback", "--state-dir", &state]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let missing = l.run(&["rollback", "nope", "--state-dir", &state]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("no run 'nope' in the history (see `converge history`)"),
        "{}",
        missing.stderr
    );
}

#[test]
fn sensitive_backups_stay_private_and_out_of_reports() {
    let l = Live::new();
    std::fs::write(l.p("live/secret"), "old-s3cret\n").unwrap();
    l.role(
        r#"
[[file]]
path = "{L}/secret"
content = "new-s3cret\n"
sensitive = true

[[health]]
name = "fails"
command = "false"
retries = 0
"#,
    );
    let out = l.converge("apply", &["--format", "json"]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);
    assert_eq!(l.read("live/secret").as_deref(), Some("old-s3cret\n"));
    let runs = l.p("state/runs");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for entry in std::fs::read_dir(run.join("blobs")).unwrap() {
        let md = entry.unwrap().metadata().unwrap();
        assert_eq!(md.mode() & 0o777, 0o600);
    }
    assert_eq!(std::fs::metadata(&run).unwrap().mode() & 0o777, 0o700);
    let hist = l.run(&["history", "--state-dir", &l.s("state"), "--format", "json"]);
    assert!(!hist.stdout.contains("s3cret"));
}

#[test]
fn health_probes_are_not_run_under_a_root() {
    let l = Live::new();
    let root = l.p("tree");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    l.role(
        r#"
[[file]]
path = "/etc/x"
content = "x\n"

[[health]]
name = "web"
http = "http://127.0.0.1:1/"
"#,
    );
    let root = root.display().to_string();
    for mode in ["check", "apply"] {
        let out = l.converge(mode, &["--root", &root]);
        assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout
                .contains("  health:web not run under --root (nothing runs in a tree)\n"),
            "{}",
            out.stdout
        );
    }
}

/// A published bundle on the live host through the agent path.
fn publish(l: &Live) -> String {
    let out = l.run(&["publish", &l.s("src"), &l.s("out")]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let line = out.stdout.lines().next().unwrap().to_owned();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('…')
        .to_owned()
}

fn agent_apply(l: &Live, extra: &[&str]) -> Out {
    let config = l.p("agent.toml");
    std::fs::write(
        &config,
        format!(
            "source = \"{}\"\nroles = [\"r\"]\nstate_dir = \"{}\"\nkeep_runs = 2\n",
            l.s("out"),
            l.s("state")
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let mut args = vec!["apply", "--config", &config];
    args.extend_from_slice(extra);
    l.run(&args)
}

#[test]
fn a_rolled_back_bundle_is_not_applied_again_until_a_new_one_arrives() {
    let l = Live::new();
    l.role(CHANGES);
    publish(&l);
    let first = agent_apply(&l, &[]);
    assert_eq!(first.code, 4, "{}{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("↺ rolled back run "),
        "{}",
        first.stdout
    );

    // The next tick keeps the host on its last good state.
    let tick = agent_apply(&l, &[]);
    assert_eq!(tick.code, 4, "{}{}", tick.stdout, tick.stderr);
    assert!(
        tick.stdout.contains("was rolled back on this host in run ")
            && tick
                .stdout
                .contains("not applied again: no earlier bundle is kept here to converge instead"),
        "{}",
        tick.stdout
    );
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    let record: serde_json::Value =
        serde_json::from_str(&l.read("state/last-run.json").unwrap()).unwrap();
    assert!(
        record["report"]["held"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("health:app failed"),
        "{record}"
    );
    let metrics = l.read("state/metrics/converge.prom").unwrap();
    assert!(
        metrics
            .lines()
            .any(|m| m == "converge_bundle_held{mode=\"apply\"} 1"),
        "{metrics}"
    );
    let hist = l.run(&["history", "--state-dir", &l.s("state")]);
    assert_eq!(hist.stdout.lines().count(), 2, "{}", hist.stdout);

    // By hand, --force tries it again (and it is rolled back again).
    let forced = agent_apply(&l, &["--force"]);
    assert_eq!(forced.code, 4, "{}{}", forced.stdout, forced.stderr);
    assert!(
        forced.stdout.contains("↺ rolled back run "),
        "{}",
        forced.stdout
    );

    // A new bundle moves on; keep_runs = 2 bounds the history.
    l.role(&CHANGES.replace("broken", "good v3"));
    publish(&l);
    let fixed = agent_apply(&l, &[]);
    assert_eq!(fixed.code, 2, "{}{}", fixed.stdout, fixed.stderr);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v3\n"));
    assert!(!l.p("state/rolled-back.json").exists());
    let metrics = l.read("state/metrics/converge.prom").unwrap();
    assert!(
        metrics
            .lines()
            .any(|m| m == "converge_bundle_held{mode=\"apply\"} 0"),
        "{metrics}"
    );
    let hist = l.run(&["history", "--state-dir", &l.s("state")]);
    assert_eq!(hist.stdout.lines().count(), 3, "{}", hist.stdout);
}

#[test]
fn a_command_that_ran_is_named_as_not_rolled_back() {
    let l = Live::new();
    l.role(
        r#"
[[file]]
path = "{L}/app.conf"
content = "broken\n"

[[exec]]
name = "mark"
command = "touch {L}/marked"
creates = "{L}/marked"

[[health]]
name = "app"
command = "grep -q good {L}/app.conf"
retries = 0
"#,
    );
    let out = l.converge("apply", &[]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("    not rolled back exec:mark: a command that ran cannot be undone\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("    restored file:{}/app.conf\n", l.s("live"))),
        "{}",
        out.stdout
    );
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    assert!(l.p("live/marked").exists(), "what a command did stays");
}

#[test]
fn a_rollback_killed_half_way_is_finished_by_the_next_agent_run() {
    let l = Live::new();
    l.role(&CHANGES.replace("broken", "good v2"));
    publish(&l);
    let applied = agent_apply(&l, &[]);
    assert_eq!(applied.code, 2, "{}{}", applied.stdout, applied.stderr);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v2\n"));
    // As a kill in the middle of its rollback leaves the run: marked, not finished.
    let run_dir = std::fs::read_dir(l.p("state/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = run_dir.join("run.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    summary["status"] = "rolling_back".into();
    summary["rollback_reason"] = "health:app failed: killed mid-way".into();
    std::fs::write(&record, summary.to_string()).unwrap();

    let next = agent_apply(&l, &[]);
    assert_eq!(next.code, 4, "{}{}", next.stdout, next.stderr);
    assert!(
        next.stdout.contains("↺ rolled back run ")
            && next
                .stdout
                .contains(": health:app failed: killed mid-way\n"),
        "{}",
        next.stdout
    );
    assert!(
        next.stdout.contains(&format!(
            "♥ health:app passed: `grep -q good {}/app.conf` exits 0\n",
            l.s("live")
        )),
        "the run's checks are probed after the finished rollback: {}",
        next.stdout
    );
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    assert_eq!(l.read("live/d/keep").as_deref(), Some("kept\n"));
    assert!(!l.p("live/new.conf").exists());
    let hist = l.run(&["history", "--state-dir", &l.s("state")]);
    assert!(
        hist.stdout
            .contains("  rolled back: health:app failed: killed mid-way\n"),
        "{}",
        hist.stdout
    );
    // Its bundle is held from now on.
    let tick = agent_apply(&l, &[]);
    assert_eq!(tick.code, 4);
    assert!(tick.stdout.contains("not applied again"), "{}", tick.stdout);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
}

/// A rollback by hand probes the run's health checks afterwards, as an automatic one does,
/// and exits 4 when the host is not healthy with the old configuration back.
#[test]
fn rollback_by_hand_reports_an_unhealthy_host_and_exits_4() {
    let l = Live::new();
    // Healthy only with the new configuration (say, a client that needs the new endpoint).
    l.role(
        &CHANGES
            .replace("broken", "good v2")
            .replace("grep -q good", "grep -q v2")
            .replace("retries = 2", "retries = 0"),
    );
    let out = l.converge("apply", &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);

    let live = l.s("live");
    let undo = l.run(&["rollback", "--state-dir", &l.s("state")]);
    assert_eq!(undo.code, 4, "{}{}", undo.stdout, undo.stderr);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    assert!(
        undo.stdout.ends_with(&format!(
            "! health:app failed after 1 attempt: `grep -q v2 {live}/app.conf` exits 0\n    exited with status 1\nrollback: 4 restored, 0 unchanged, 0 failed, 1 health check failed\n"
        )),
        "{}",
        undo.stdout
    );
    let json = l.run(&["rollback", "--state-dir", &l.s("state"), "--format", "json"]);
    assert_eq!(json.code, 4, "nothing left to undo, and still unhealthy");
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["health"][0]["id"], "health:app");
    assert_eq!(v["health"][0]["status"], "failed");
    assert_eq!(v["restored"][0]["status"], "unchanged");
}

/// Killed after its rollback, before it remembered its bundle: the next agent run remembers
/// it and does not apply the same bundle once more.
#[test]
fn a_run_killed_before_it_remembered_its_rolled_back_bundle_is_held_by_the_next() {
    let l = Live::new();
    l.role(CHANGES);
    publish(&l);
    agent_apply(&l, &[]); // writes agent.toml
    std::fs::remove_dir_all(l.p("state")).unwrap();
    let killed = Command::new(BIN)
        .args(["apply", "--config", &l.s("agent.toml"), "--color", "never"])
        .env("CONVERGE_CRASH_AT", "rolled-back:1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        killed.status.signal(),
        Some(9),
        "the crash point was reached"
    );
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    assert!(!l.p("state/rolled-back.json").exists());

    let tick = agent_apply(&l, &[]);
    assert_eq!(tick.code, 4, "{}{}", tick.stdout, tick.stderr);
    assert!(
        tick.stdout
            .contains("not applied again: no earlier bundle is kept here to converge instead"),
        "{}",
        tick.stdout
    );
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    let hist = l.run(&["history", "--state-dir", &l.s("state")]);
    assert_eq!(hist.stdout.lines().count(), 2, "one run: {}", hist.stdout);
}
