//! `[[exec]]` in a real Debian tree (an overlay chroot) with `--root`: commands and guards run
//! chrooted into it. Needs root and `scripts/test-deps`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::Chroot;

/// A chroot and a source tree whose role `e` is `role`.
fn setup(role: &str) -> (Chroot, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("roles")).unwrap();
    std::fs::write(src.path().join("roles/e.toml"), role).unwrap();
    (Chroot::new(), src)
}

/// `converge MODE` of role `e` on the chroot: (exit code, stdout + stderr).
fn converge(mode: &str, src: &Path, root: &Path, extra: &[&str]) -> (i32, String) {
    support::tools::converge_tree(mode, "e", src, root, extra)
}

fn read(ch: &Chroot, path: &str) -> Option<String> {
    std::fs::read_to_string(ch.path().join(path)).ok()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_reports_without_running_apply_runs_and_creates_stops_it() {
    let (ch, src) = setup(
        r#"
[[exec]]
name = "init"
command = "echo ran >> /var/tmp/marker; touch /var/tmp/done"
creates = "/var/tmp/done"
"#,
    );
    let (rc, out) = converge("check", src.path(), ch.path(), &[]);
    assert_eq!(rc, 2, "{out}");
    assert!(
        out.contains(
            "» run exec:init  (role e)\n    command: echo ran >> /var/tmp/marker; touch /var/tmp/done\n    \
             because: /var/tmp/done does not exist\n"
        ),
        "{out}"
    );
    assert_eq!(read(&ch, "var/tmp/marker"), None, "check must not run it");

    let (rc, out) = converge("apply", src.path(), ch.path(), &[]);
    assert_eq!(rc, 2, "{out}");
    assert_eq!(read(&ch, "var/tmp/marker").as_deref(), Some("ran\n"));
    for mode in ["apply", "check"] {
        let (rc, out) = converge(mode, src.path(), ch.path(), &[]);
        assert_eq!(rc, 0, "{out}");
    }
    assert_eq!(read(&ch, "var/tmp/marker").as_deref(), Some("ran\n"));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn unless_and_onlyif_guards_run_in_check_too() {
    let (ch, src) = setup(
        r#"
[[exec]]
name = "u"
command = "echo u >> /var/tmp/log"
unless = "test -e /var/tmp/flag"

[[exec]]
name = "o"
command = "echo o >> /var/tmp/log"
onlyif = "echo guard >> /var/tmp/guards; test -e /var/tmp/flag"
"#,
    );
    let (rc, out) = converge("check", src.path(), ch.path(), &[]);
    assert_eq!(rc, 2, "{out}");
    insta::assert_snapshot!("guards_check", out);
    assert!(
        out.contains("because: unless 'test -e /var/tmp/flag' failed\n"),
        "{out}"
    );
    assert!(
        out.contains("2 resources: 1 in sync, 1 would change"),
        "{out}"
    );
    // The guard ran even in check mode: that is why guards must be read-only.
    assert_eq!(read(&ch, "var/tmp/guards").as_deref(), Some("guard\n"));

    assert_eq!(converge("apply", src.path(), ch.path(), &[]).0, 2);
    assert_eq!(read(&ch, "var/tmp/log").as_deref(), Some("u\n"));

    std::fs::write(ch.path().join("var/tmp/flag"), "").unwrap();
    let (rc, out) = converge("check", src.path(), ch.path(), &[]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("» run exec:o"), "{out}");
    assert!(!out.contains("» run exec:u"), "{out}");
    assert_eq!(converge("apply", src.path(), ch.path(), &[]).0, 2);
    assert_eq!(read(&ch, "var/tmp/log").as_deref(), Some("u\no\n"));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_failing_command_is_a_failure_with_its_stderr() {
    let (ch, src) = setup(
        r#"
[[exec]]
name = "fail"
command = "echo doing; echo 'boom: disk on fire' >&2; exit 3"
"#,
    );
    let (rc, out) = converge("check", src.path(), ch.path(), &[]);
    assert_eq!(rc, 2, "{out}");
    assert!(
        out.contains("because: no guard: it runs on every apply"),
        "{out}"
    );
    let (rc, out) = converge("apply", src.path(), ch.path(), &[]);
    assert_eq!(rc, 4, "{out}");
    insta::assert_snapshot!("failure_apply", out);
    assert!(
        out.contains(
            "! exec:fail  (role e)\n    command exited with status 3: boom: disk on fire\n"
        ),
        "{out}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn user_cwd_and_environment_apply_inside_the_root() {
    let (ch, src) = setup(
        r#"
[[exec]]
name = "who"
command = 'echo "$(id -un) $(id -gn) $(pwd) $GREETING $HOME" > /tmp/who'
creates = "/tmp/who"
user = "nobody"
cwd = "/var/tmp"
environment = { GREETING = "hi" }
"#,
    );
    let (rc, out) = converge("apply", src.path(), ch.path(), &[]);
    assert_eq!(rc, 2, "{out}");
    assert_eq!(
        read(&ch, "tmp/who").as_deref(),
        Some("nobody nogroup /var/tmp hi /nonexistent\n")
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_command_past_its_timeout_is_killed_and_fails() {
    let (ch, src) = setup(
        r#"
[[exec]]
name = "slow"
command = "sleep 30; touch /var/tmp/late"
timeout = "1s"
"#,
    );
    let t = Instant::now();
    let (rc, out) = converge("apply", src.path(), ch.path(), &[]);
    // Well short of the 30 s the command would take, with room for a loaded machine.
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    assert_eq!(rc, 4, "{out}");
    assert!(
        out.contains("exec:slow: timed out after 1s and was killed"),
        "{out}"
    );
    assert_eq!(read(&ch, "var/tmp/late"), None);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn sensitive_commands_and_their_output_stay_out_of_reports() {
    let (ch, src) = setup(
        r#"
[[exec]]
name = "set-password"
command = "echo 's3cret' >&2; exit 1"
unless = "test s3cret = nope"
environment = { TOKEN = "s3cret" }
sensitive = true
"#,
    );
    for (mode, extra, want) in [
        ("check", &[][..], 2),
        ("check", &["--format", "json"][..], 2),
        ("apply", &[][..], 4),
        ("apply", &["--format", "json", "-vv"][..], 4),
    ] {
        let (rc, out) = converge(mode, src.path(), ch.path(), extra);
        assert_eq!(rc, want, "{out}");
        assert!(!out.contains("s3cret"), "{mode} {extra:?} leaked: {out}");
        assert!(out.contains("set-password"), "{out}");
    }
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn bad_declarations_are_located_errors() {
    let (ch, src) = setup(
        "[[exec]]\ncommand = \"true\"\nsensitive = true\n\n[[exec]]\ncommand = \"true\"\ntimeout = \"soon\"\n\n[[exec]]\ncomand = \"x\"\n",
    );
    let (rc, out) = converge("check", src.path(), ch.path(), &[]);
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("roles/e.toml:10:1: unknown field `comand`"),
        "{out}"
    );
    std::fs::write(
        src.path().join("roles/e.toml"),
        "[[exec]]\ncommand = \"true\"\nsensitive = true\n\n[[exec]]\ncommand = \"true\"\ntimeout = \"soon\"\n",
    )
    .unwrap();
    let (rc, out) = converge("check", src.path(), ch.path(), &[]);
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("roles/e.toml:1:1: a sensitive exec needs a name"),
        "{out}"
    );
    assert!(
        out.contains("roles/e.toml:7:11: invalid timeout 'soon'"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn other_resources_can_go_after_an_exec() {
    let (ch, src) = setup(
        r#"
[[file]]
path = "/opt/made-by-exec/app.conf"
content = "x\n"
after = ["exec:mkdir"]

[[exec]]
name = "mkdir"
command = "mkdir -p /opt/made-by-exec"
creates = "/opt/made-by-exec"
"#,
    );
    let (rc, out) = converge("apply", src.path(), ch.path(), &[]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.find("» run exec:mkdir").unwrap() < out.find("+ create file:").unwrap());
    assert_eq!(
        read(&ch, "opt/made-by-exec/app.conf").as_deref(),
        Some("x\n")
    );
}
