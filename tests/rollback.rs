//! Health checks and rollback on the live host, touching only paths under a temp dir: a
//! failing check undoes the run (files, directories, links, absent paths), history lists it,
//! `converge rollback` undoes a run by hand, and a rolled-back bundle is not applied again.
//! Needs root (backups keep owners).

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use support::{converge, converge_via, Run};

struct Live {
    dir: tempfile::TempDir,
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

    fn run(&self, args: &[&str]) -> Run {
        converge(args).args(["--color", "never"]).run()
    }

    fn converge(&self, mode: &str, extra: &[&str]) -> Run {
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
#[ignore = "needs root (container tier, scripts/test)"]
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
#[ignore = "needs root (container tier, scripts/test)"]
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
        "    restore file:{live}/new.conf: remove the file\n    --- {live}/new.conf (live)\n    +++ {live}/new.conf (before the run)\n    @@ -1 +0,0 @@\n    -new\n    restore file:{live}/app.conf: content, owner, group and mode as before\n    --- {live}/app.conf (live)\n"
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

/// A live `secret` holding `old-s3cret`, and role `r` replacing it with `new-s3cret` as a
/// sensitive file, followed by `more` (further declarations).
fn sensitive_scene(more: &str) -> Live {
    let l = Live::new();
    std::fs::write(l.p("live/secret"), "old-s3cret\n").unwrap();
    l.role(&format!(
        "[[file]]\npath = \"{{L}}/secret\"\ncontent = \"new-s3cret\\n\"\nsensitive = true\n\n{more}"
    ));
    l
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn sensitive_backups_stay_private_and_out_of_reports() {
    let l = sensitive_scene("[[health]]\nname = \"fails\"\ncommand = \"false\"\nretries = 0\n");
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
#[ignore = "needs root (container tier, scripts/test)"]
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

fn agent_apply(l: &Live, extra: &[&str]) -> Run {
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
#[ignore = "needs root (container tier, scripts/test)"]
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
#[ignore = "needs root (container tier, scripts/test)"]
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
#[ignore = "needs root (container tier, scripts/test)"]
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
#[ignore = "needs root (container tier, scripts/test)"]
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
#[ignore = "needs root (container tier, scripts/test)"]
fn a_run_killed_before_it_remembered_its_rolled_back_bundle_is_held_by_the_next() {
    let l = Live::new();
    l.role(CHANGES);
    publish(&l);
    agent_apply(&l, &[]); // writes agent.toml
    std::fs::remove_dir_all(l.p("state")).unwrap();
    let killed = converge(&["apply", "--config", &l.s("agent.toml"), "--color", "never"])
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

/// In a container or an image build converge runs with the same low pid every time: two
/// runs started in one second must still each get a history of their own, so undoing the
/// second leaves the first one's change alone.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn runs_in_fresh_pid_namespaces_get_runs_of_their_own() {
    let l = Live::new();
    let state = l.s("state");
    let in_pid_namespace = |file: &str| {
        l.role(&format!(
            "[[file]]\npath = \"{{L}}/{file}\"\ncontent = \"{file}\\n\"\n"
        ));
        let out = converge_via(
            &["unshare", "-p", "--fork"],
            &["apply", "--source", &l.s("src"), "--role", "r"],
        )
        .args(["--state-dir", &state, "--color", "never"])
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
    };
    in_pid_namespace("first.conf");
    in_pid_namespace("second.conf");
    let hist = l.run(&["history", "--state-dir", &state, "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&hist.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{}", hist.stdout);
    assert_ne!(runs[0]["id"], runs[1]["id"]);
    assert!(runs.iter().all(|r| r["changed"] == 1), "{}", hist.stdout);

    let undo = l.run(&["rollback", "--state-dir", &state]);
    assert_eq!(undo.code, 2, "{}{}", undo.stdout, undo.stderr);
    assert!(!l.p("live/second.conf").exists());
    assert_eq!(l.read("live/first.conf").as_deref(), Some("first.conf\n"));
}

/// Asserts that `text` holds `part`, showing `text` when it does not.
fn assert_has(text: &str, part: &str) {
    assert!(text.contains(part), "missing {part:?} in\n{text}");
}

/// The directory of the newest run in the history.
fn newest_run_dir(l: &Live) -> PathBuf {
    let hist = l.run(&["history", "--state-dir", &l.s("state"), "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&hist.stdout).unwrap();
    let id = runs.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    l.p("state/runs").join(id)
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn one_unreadable_run_is_flagged_and_the_others_are_listed() {
    let l = Live::new();
    l.role("[[file]]\npath = \"{L}/one.conf\"\ncontent = \"1\\n\"\n");
    assert_eq!(l.converge("apply", &[]).code, 2);
    let broken = newest_run_dir(&l);
    l.role("[[file]]\npath = \"{L}/two.conf\"\ncontent = \"2\\n\"\n");
    assert_eq!(l.converge("apply", &[]).code, 2);
    let good = newest_run_dir(&l);
    std::fs::write(broken.join("run.json"), "{\"id\": \"torn").unwrap();

    let state = l.s("state");
    let hist = l.run(&["history", "--state-dir", &state]);
    assert_eq!(hist.code, 0, "{}{}", hist.stdout, hist.stderr);
    let broken_id = broken.file_name().unwrap().to_str().unwrap();
    let good_id = good.file_name().unwrap().to_str().unwrap();
    let lines: Vec<_> = hist.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", hist.stdout);
    assert!(
        lines[1].starts_with(broken_id)
            && lines[1].contains(&format!(
                "  unreadable: {}/run.json:1: not a run record: EOF while parsing a string",
                broken.display()
            )),
        "{}",
        hist.stdout
    );
    assert!(
        lines[2].starts_with(good_id) && lines[2].ends_with("  finished"),
        "{}",
        hist.stdout
    );
    let json = l.run(&["history", "--state-dir", &state, "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let runs: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["id"], good_id);
    assert!(
        json.stderr.contains(&format!("run {broken_id} skipped: ")),
        "{}",
        json.stderr
    );
    // The readable runs are still the ones rollback finds.
    let undo = l.run(&["rollback", "--state-dir", &state]);
    assert_eq!(undo.code, 2, "{}{}", undo.stdout, undo.stderr);
    assert!(!l.p("live/two.conf").exists());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn history_and_rollback_refuse_a_state_dir_someone_else_could_have_written() {
    use std::os::unix::fs::PermissionsExt;
    let l = Live::new();
    l.role("[[file]]\npath = \"{L}/one.conf\"\ncontent = \"1\\n\"\n");
    assert_eq!(l.converge("apply", &[]).code, 2);
    let run = newest_run_dir(&l);
    let state = l.s("state");
    let refused = |path: &PathBuf, why: &str| {
        // rollback, which restores what a record names, refuses the same way.
        for args in [
            &["history", "--format", "human"][..],
            &["history", "--format", "json"],
            &["rollback", "--check"],
            &["rollback"],
        ] {
            let hist = l.run(&[args, &["--state-dir", &state]].concat());
            let format = args.join(" ");
            assert_eq!(hist.code, 1, "{hist:?}");
            assert_eq!(hist.stdout, "", "{format}");
            assert_eq!(
                hist.stderr,
                format!(
                    "converge: error: state dir {state}: {}: {why}; converge uses a state dir only when it and everything in it belong to uid 0 and are not writable by group or others (fix the owner or mode, or remove it)\n",
                    path.display()
                ),
                "{format}"
            );
        }
    };
    // A run record another user owns could say anything about what ran.
    let record = run.join("run.json");
    std::os::unix::fs::chown(&record, Some(65534), None).unwrap();
    refused(&record, "belongs to uid 65534");
    std::os::unix::fs::chown(&record, Some(0), None).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(&run, "is writable by its group (mode 0777)");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(l.read("live/one.conf").as_deref(), Some("1\n"));
    let hist = l.run(&["history", "--state-dir", &state]);
    assert_eq!(hist.code, 0, "{hist:?}");
    assert_eq!(hist.stdout.lines().count(), 2, "{}", hist.stdout);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn history_files_that_are_not_regular_files_are_refused_not_read() {
    let l = Live::new();
    l.role("[[file]]\npath = \"{L}/one.conf\"\ncontent = \"1\\n\"\n");
    assert_eq!(l.converge("apply", &[]).code, 2);
    let run = newest_run_dir(&l);
    let backup = run.join("backup.jsonl");
    let state = l.s("state");
    // Refused with the file named, before a byte is read. `timeout` only keeps a hang from
    // stalling the suite; no outcome depends on time.
    let refused_as = |expected: String| {
        let out = converge_via(
            &["timeout", "60"],
            &["rollback", "--check", "--state-dir", &state],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&expected), "{stderr}");
    };
    let not_read =
        |what: &str| format!("{}: {what}, not a regular file: not read", backup.display());

    std::fs::remove_file(&backup).unwrap();
    nix::unistd::mkfifo(&backup, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The state dir's own check refuses a FIFO anywhere in it before the history is opened.
    refused_as(format!(
        "state dir {state}: {}: is a FIFO, socket or device, not a file or directory",
        backup.display()
    ));

    std::fs::remove_file(&backup).unwrap();
    std::fs::write(l.p("elsewhere"), "{}\n").unwrap();
    std::os::unix::fs::symlink(l.p("elsewhere"), &backup).unwrap();
    refused_as(not_read("a symbolic link"));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_kept_copy_that_no_longer_matches_its_hash_is_refused_not_restored() {
    let l = Live::new();
    l.role("[[file]]\npath = \"{L}/app.conf\"\ncontent = \"good v2\\n\"\n");
    assert_eq!(l.converge("apply", &[]).code, 2);
    let run = newest_run_dir(&l);
    let blobs: Vec<_> = std::fs::read_dir(run.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    // Same length, other bytes: a flipped bit on disk.
    std::fs::write(&blobs[0], "evil v1\n").unwrap();

    let state = l.s("state");
    let live = l.s("live");
    let undo = l.run(&["rollback", "--state-dir", &state]);
    assert_eq!(undo.code, 4, "{}{}", undo.stdout, undo.stderr);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v2\n"));
    assert!(
        undo.stdout.contains(&format!(
            "    failed to restore file:{live}/app.conf: not restored: {}: the kept copy does not match its recorded sha256 (it hashes to ",
            blobs[0].display()
        )),
        "{}",
        undo.stdout
    );
    assert!(
        undo.stdout
            .ends_with("rollback: 0 restored, 0 unchanged, 1 failed\n"),
        "{}",
        undo.stdout
    );
    let hist = l.run(&["history", "--state-dir", &state]);
    assert!(
        hist.stdout.contains("  rollback incomplete: by hand\n"),
        "{}",
        hist.stdout
    );
    let json = l.run(&[
        "rollback",
        "--check",
        "--state-dir",
        &state,
        "--format",
        "json",
    ]);
    assert_eq!(json.code, 4, "{}{}", json.stdout, json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["restored"][0]["status"], "failed");
    assert_eq!(v["restored"][0]["error_kind"], "corrupt_backup");
}

/// A rollback never destroys content it did not write: a path edited since the run stops
/// it (nothing changes) until `--force`, which keeps the edit in the history first.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_path_edited_since_the_run_is_refused_then_kept_before_it_is_restored() {
    let l = Live::new();
    l.role(
        "[[file]]\npath = \"{L}/motd\"\ncontent = \"welcome\\n\"\n\n\
         [[file]]\npath = \"{L}/app.conf\"\ncontent = \"good v2\\n\"\n",
    );
    assert_eq!(l.converge("apply", &[]).code, 2);
    let run = newest_run_dir(&l);
    let id = run.file_name().unwrap().to_str().unwrap().to_owned();
    let motd = l.p("live/motd");
    std::fs::write(&motd, "welcome\nhand edit\n").unwrap();
    let (state, live) = (l.s("state"), l.s("live"));

    // --check shows each restore's diff, the refused one too.
    let check = l.run(&["rollback", "--check", "--state-dir", &state]);
    assert_eq!(check.code, 4, "{}{}", check.stdout, check.stderr);
    assert_eq!(
        check.stdout,
        format!(
            "↺ rollback of run {id} would:\n\
             \x20   restore file:{live}/app.conf: content, owner, group and mode as before\n\
             \x20   --- {live}/app.conf (live)\n\
             \x20   +++ {live}/app.conf (before the run)\n\
             \x20   @@ -1 +1 @@\n\
             \x20   -good v2\n\
             \x20   +good v1\n\
             \x20   refused file:{live}/motd: changed since the run (its content is not what the run left); --force restores it and keeps what is there now in the run's history\n\
             \x20   --- {live}/motd (live)\n\
             \x20   +++ {live}/motd (before the run)\n\
             \x20   @@ -1,2 +0,0 @@\n\
             \x20   -welcome\n\
             \x20   -hand edit\n"
        )
    );

    // Without --force: refused, naming the path, and nothing changes.
    let refused = l.run(&["rollback", "--state-dir", &state]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert_has(&refused.stderr, &format!("rollback of run {id} refused: 1 resource changed since the run (listed above); nothing was changed. `converge rollback --force` restores it"));
    assert_has(
        &refused.stdout,
        &format!("    refused file:{live}/motd: changed since the run"),
    );
    assert_eq!(l.read("live/motd").as_deref(), Some("welcome\nhand edit\n"));
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v2\n"));
    let hist = l.run(&["history", "--state-dir", &state]);
    assert!(hist.stdout.ends_with("  finished\n"), "{}", hist.stdout);

    // --force keeps the edit in the run's history, says where, then restores.
    let forced = l.run(&["rollback", "--force", "--state-dir", &state]);
    assert_eq!(forced.code, 2, "{}{}", forced.stdout, forced.stderr);
    assert!(!motd.exists());
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    let kept_at = forced
        .stdout
        .split(&format!(
            "    restored file:{live}/motd: changed since the run (its content is not what the run left): what was there is kept in "
        ))
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("{}", forced.stdout))
        .to_owned();
    assert!(
        kept_at.starts_with(&run.join("blobs").display().to_string()),
        "{kept_at}"
    );
    assert_eq!(
        std::fs::read_to_string(&kept_at).unwrap(),
        "welcome\nhand edit\n"
    );
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("kept.jsonl")).unwrap()).unwrap();
    assert_eq!(kept["resource"], format!("file:{live}/motd"));
    assert_eq!(kept["state"]["type"], "file");

    // Once more: it says the run is already rolled back.
    let again = l.run(&["rollback", "--state-dir", &state]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(
        again.stdout,
        format!(
            "↺ run {id} was already rolled back: nothing left to undo\n\
             rollback: already rolled back, nothing to undo\n"
        )
    );
}

/// A run recorded before converge noted what each change left: a rollback cannot tell a
/// hand edit from the run's content, so it keeps what it restores over, and still undoes.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_run_without_a_record_of_what_it_left_keeps_what_it_restores_over() {
    let l = Live::new();
    l.role("[[file]]\npath = \"{L}/app.conf\"\ncontent = \"good v2\\n\"\n");
    assert_eq!(l.converge("apply", &[]).code, 2);
    let run = newest_run_dir(&l);
    std::fs::remove_file(run.join("left.jsonl")).unwrap();
    std::fs::write(l.p("live/app.conf"), "good v2\nhand edit\n").unwrap();
    let undo = l.run(&["rollback", "--state-dir", &l.s("state")]);
    assert_eq!(undo.code, 2, "{}{}", undo.stdout, undo.stderr);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    assert!(
        undo.stdout.contains(&format!(
            "    restored file:{}/app.conf: the run's record does not say what it left there: what was there is kept in {}/blobs/",
            l.s("live"),
            run.display()
        )),
        "{}",
        undo.stdout
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_rollback_preview_never_shows_sensitive_content() {
    let l = sensitive_scene("");
    assert_eq!(l.converge("apply", &[]).code, 2);
    for format in ["human", "json"] {
        let check = l.run(&[
            "rollback",
            "--check",
            "--state-dir",
            &l.s("state"),
            "--format",
            format,
        ]);
        assert_eq!(check.code, 2, "{}{}", check.stdout, check.stderr);
        assert!(!check.stdout.contains("s3cret"), "{}", check.stdout);
    }
    let check = l.run(&["rollback", "--check", "--state-dir", &l.s("state")]);
    assert!(
        check
            .stdout
            .contains("    content (sensitive, not shown): 11 bytes, sha256 "),
        "{}",
        check.stdout
    );
}

/// A directory the run created holds a file someone put there since: undoing the run would
/// remove it with the directory, so the rollback is refused; `--force` keeps the file first.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_file_put_into_a_directory_the_run_made_is_kept_before_the_directory_goes() {
    let l = Live::new();
    l.role(
        "[[directory]]\npath = \"{L}/made\"\n\n\
         [[file]]\npath = \"{L}/made/by-run\"\ncontent = \"run\\n\"\n",
    );
    assert_eq!(l.converge("apply", &[]).code, 2);
    let run = newest_run_dir(&l);
    std::fs::write(l.p("live/made/mine"), "mine\n").unwrap();
    let (state, live) = (l.s("state"), l.s("live"));

    let refused = l.run(&["rollback", "--state-dir", &state]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert_has(&refused.stdout, &format!("    refused directory:{live}/made: changed since the run (it holds entries made since: mine)"));
    assert_eq!(l.read("live/made/by-run").as_deref(), Some("run\n"));

    let forced = l.run(&["rollback", "--force", "--state-dir", &state]);
    assert_eq!(forced.code, 2, "{}{}", forced.stdout, forced.stderr);
    assert!(!l.p("live/made").exists());
    assert!(
        forced.stdout.contains(&format!(
            "    restored directory:{live}/made: changed since the run (it holds entries made since: mine): what was there is kept in {}\n",
            run.join("kept.jsonl").display()
        )),
        "{}",
        forced.stdout
    );
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("kept.jsonl")).unwrap()).unwrap();
    let mine = &kept["state"]["entries"]["mine"];
    assert_eq!(mine["type"], "file", "{kept}");
    let blob = run.join("blobs").join(mine["sha256"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(blob).unwrap(), "mine\n");
}

/// An automatic rollback cannot ask: a path changed after the change (here by the health
/// check itself, the first time it runs) is kept in the history, then restored.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn an_automatic_rollback_keeps_what_changed_since_and_restores_it() {
    let l = Live::new();
    l.role(
        r#"
[[file]]
path = "{L}/app.conf"
content = "broken\n"

[[health]]
name = "app"
command = "sh -c 'test -e {L}/once || { touch {L}/once; echo edited >> {L}/app.conf; }; false'"
retries = 0
"#,
    );
    let out = l.converge("apply", &[]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert_eq!(l.read("live/app.conf").as_deref(), Some("good v1\n"));
    let run = newest_run_dir(&l);
    let line = format!(
        "    restored file:{}/app.conf: changed since the run (its content is not what the run left): what was there is kept in {}/blobs/",
        l.s("live"),
        run.display()
    );
    let kept_at = out
        .stdout
        .split(&line)
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let kept = run.join("blobs").join(kept_at);
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "broken\nedited\n");
}
