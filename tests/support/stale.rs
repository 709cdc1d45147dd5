//! Cleans up after test processes that died without running Drop (SIGKILL,
//! a hard Ctrl-C): booted containers live in their own session and would
//! otherwise keep running, holding mounts and cgroups forever.
//!
//! Every resource name embeds the owning test process id; a resource is
//! reaped only when that process no longer exists.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::rootfs::unmount_below;

/// Prefix of overlay scratch dirs in the temp dir: `converge-ovl-PID-…`.
pub const OVERLAY_PREFIX: &str = "converge-ovl-";
/// Prefix of nginx dirs in the temp dir: `converge-nginx-PID-…`.
pub const NGINX_PREFIX: &str = "converge-nginx-";
/// Prefix of Prometheus dirs in the temp dir: `converge-prom-PID-…`.
pub const PROMETHEUS_PREFIX: &str = "converge-prom-";
/// Prefix of container cgroups: `ct-NAME-PID-N`.
pub const CGROUP_PREFIX: &str = "ct-";

/// Reaps leftovers of dead test processes, at most once per process.
pub fn reap_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(reap);
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `converge-ovl-1234-abcd` → 1234.
fn pid_after_prefix(name: &str, prefix: &str) -> Option<i32> {
    name.strip_prefix(prefix)?.split('-').next()?.parse().ok()
}

/// `ct-smoke-1234-0` → 1234.
fn pid_of_cgroup(name: &str) -> Option<i32> {
    let mut parts = name.strip_prefix(CGROUP_PREFIX)?.rsplit('-');
    parts.next()?.parse::<u32>().ok()?;
    parts.next()?.parse().ok()
}

fn reap() {
    // Processes first: they keep the overlays busy.
    for root in super::container::cgroup_roots() {
        for dir in entries(&root) {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if pid_of_cgroup(&name).is_some_and(|p| !alive(p)) {
                eprintln!("support: reaping stale container cgroup {}", dir.display());
                for pid in super::container::cgroup_pids(&dir) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = super::container::remove_cgroup(&dir);
            }
        }
    }
    let tmp = std::env::temp_dir();
    for dir in entries(&tmp) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if pid_after_prefix(&name, NGINX_PREFIX).is_some_and(|p| !alive(p)) {
            kill_in(&dir, "nginx");
            let _ = fs::remove_dir_all(&dir);
        }
        if pid_after_prefix(&name, PROMETHEUS_PREFIX).is_some_and(|p| !alive(p)) {
            kill_in(&dir, "prometheus");
            let _ = fs::remove_dir_all(&dir);
        }
        if pid_after_prefix(&name, OVERLAY_PREFIX).is_some_and(|p| !alive(p)) {
            eprintln!("support: reaping stale overlay {}", dir.display());
            unmount_below(&dir);
            // --one-file-system: never descend into a mount we failed to
            // remove (it could be the shared rootfs).
            let _ = Command::new("rm")
                .args(["-rf", "--one-file-system"])
                .arg(&dir)
                .status();
        }
    }
}

/// Kills the `program` whose pid file is in `dir`, if that pid is still `program` started
/// with this dir in its command line (pids get reused).
fn kill_in(dir: &Path, program: &str) {
    let Ok(pid) = fs::read_to_string(dir.join(format!("{program}.pid"))) else {
        return;
    };
    let Ok(pid) = pid.trim().parse::<i32>() else {
        return;
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if cmdline.contains(program) && cmdline.contains(&*dir.to_string_lossy()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
