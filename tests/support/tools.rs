//! Preconditions and small process helpers shared by the other modules.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Panics unless running as root; every environment here mounts or chroots.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("integration-test environments need root (mounts, chroot, nspawn); run the tests as root after scripts/test-deps");
    }
}

/// Returns the absolute path of `tool`, panicking with install advice if absent.
pub fn require_tool(tool: &str) -> PathBuf {
    // cargo may run us with a PATH lacking the sbin directories where
    // debootstrap and nginx live, so always look there as well.
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(tool);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!("required tool `{tool}` not found: run scripts/test-deps (as root) to install the test dependencies");
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Formats an Output's status, stdout and stderr for panic messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to spawn {cmd:?}: {e}"));
    if !out.status.success() {
        panic!("command failed: {cmd:?}\n{}", output_text(&out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts an Output succeeded, with the full output in the panic message.
pub fn assert_success(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed\n{}", output_text(out));
}

/// An agent config of its own, for a check or apply a test starts itself
/// (`--config own.config()`): it names a state dir in a temp dir of its own that, as on a
/// fresh host, does not exist until a run needs it. Without it a run as root reads the
/// machine's /etc/converge/agent.toml and keeps its plan cache, lock and bundles in the
/// machine's /var/lib/converge.
pub struct OwnState(tempfile::TempDir);

impl OwnState {
    pub fn new() -> OwnState {
        let dir = tempfile::tempdir().expect("temp dir for a state dir");
        let text = format!(
            "source = {:?}\nstate_dir = {:?}\n",
            dir.path().display().to_string(),
            dir.path().join("state").display().to_string()
        );
        std::fs::write(dir.path().join("agent.toml"), text).expect("write agent.toml");
        OwnState(dir)
    }

    /// The agent config to pass as `--config`.
    pub fn config(&self) -> PathBuf {
        self.0.path().join("agent.toml")
    }

    /// The state dir the config names.
    pub fn state_dir(&self) -> PathBuf {
        self.0.path().join("state")
    }
}

/// `converge MODE --color never --role ROLE --source SRC --root ROOT EXTRA...` with the
/// binary under test and a state dir of its own: (exit code, stdout followed by stderr).
pub fn converge_tree(
    mode: &str,
    role: &str,
    src: &Path,
    root: &Path,
    extra: &[&str],
) -> (i32, String) {
    let run = super::cli::converge(&[mode, "--color", "never", "--role", role])
        .arg("--source")
        .arg(src)
        .arg("--root")
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    (run.status.code().unwrap_or(-1), text)
}

/// Copies `src` to `dst` (mode included) so that `dst` can be executed at once.
///
/// The copy is written by a `cp` child process, never by this one: a descriptor this
/// process held open for writing would be inherited by whatever another test thread forks
/// meanwhile, and exec of `dst` fails with "Text file busy" until that child execs. A
/// rename would not help alone (the inode stays the same); writing elsewhere does. The
/// temp name in the same directory makes the replacement of an older `dst` atomic, so a
/// copy over a binary that is running works too.
pub fn copy_file(src: &Path, dst: &Path) {
    let name = dst.file_name().expect("copy_file needs a file path");
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let partial = dst.with_file_name(format!(
        ".{}.partial-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    run_ok(
        Command::new(require_tool("cp"))
            .arg("--preserve=mode")
            .arg(src)
            .arg(&partial),
    );
    std::fs::rename(&partial, dst).unwrap_or_else(|e| {
        panic!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            dst.display()
        )
    });
}

/// Each resource of a JSON report with its change record: what check's and apply's reports
/// are compared by (apply makes the very changes check printed).
pub fn json_changes(report: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    report["resources"]
        .as_array()
        .expect("a JSON report lists its resources")
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_owned(), o["change"].clone()))
        .collect()
}

/// Polls `ready` every few milliseconds until it holds, panicking after `limit` with `what`:
/// for a state a test cannot be told about (a reload taking effect, a child taking a lock),
/// read from the real thing, never a guessed sleep. The limit bounds a hang, it measures
/// nothing.
pub fn wait_until(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up after {limit:?} waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Writes `files` (relative path, text) as the tree `dir`, replacing what was there.
pub fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    let _ = std::fs::remove_dir_all(dir);
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file of the tree"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// Stops a server the harness started: SIGTERM, up to `grace` to exit cleanly, then
/// SIGKILL; reaped either way.
pub fn stop_child(child: &mut std::process::Child, grace: std::time::Duration) {
    use nix::sys::signal::{kill, Signal};
    let _ = kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Asks the kernel for a currently free port on 127.0.0.1; the caller retries if it is
/// taken before its server binds it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
