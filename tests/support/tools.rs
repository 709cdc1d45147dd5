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

/// `converge MODE --color never --role ROLE --source SRC --root ROOT EXTRA...` with the
/// binary under test: (exit code, stdout followed by stderr).
pub fn converge_tree(
    mode: &str,
    role: &str,
    src: &Path,
    root: &Path,
    extra: &[&str],
) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_converge"))
        .args([mode, "--color", "never", "--role", role, "--source"])
        .arg(src)
        .arg("--root")
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
