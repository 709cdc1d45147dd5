//! A debootstrapped Debian bookworm rootfs, built once per machine and
//! shared read-only (as an overlay lower layer) by every test.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use super::tools::{require_root, require_tool};

/// Where cached rootfs trees live; survives between test runs on one machine.
pub const CACHE_DIR: &str = "/var/cache/converge-tests";

/// Debian release the rootfs is built from.
pub const SUITE: &str = "bookworm";

/// Packages on top of minbase: enough to boot systemd, manage users, run apt
/// and serve a real unit (nginx) inside a container.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "procps",
    "iproute2",
    "passwd",
    "apt",
    "nginx-light",
    "curl",
];

/// Bumped whenever post-processing changes, so old caches are not reused.
const LAYOUT_VERSION: &str = "1";

/// Returns the cached rootfs, building it first if this machine has none.
///
/// Never mutate it: Chroot and Container put an overlay on top.
pub fn debian_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(ensure_rootfs)
}

/// Stable across Rust releases (unlike DefaultHasher), so the cache key
/// does not change when the toolchain does.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn cache_key() -> String {
    let spec = format!("{SUITE}|minbase|{LAYOUT_VERSION}|{}", PACKAGES.join(","));
    format!("{:016x}", fnv1a(spec.as_bytes()))
}

fn ensure_rootfs() -> PathBuf {
    require_root();
    let cache = Path::new(CACHE_DIR);
    fs::create_dir_all(cache).unwrap_or_else(|e| panic!("cannot create {CACHE_DIR}: {e}"));
    let key = cache_key();
    let final_dir = cache.join(format!("rootfs-{key}"));
    // Fast path without the lock: the tree only ever appears by rename,
    // so if it exists it is complete.
    if final_dir.join("usr/lib/systemd/systemd").exists() {
        return final_dir;
    }

    // Test binaries run in parallel; only one may debootstrap.
    let lock_path = cache.join(format!("rootfs-{key}.lock"));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot flock {}: {e}", lock_path.display()));

    if final_dir.exists() {
        return final_dir;
    }
    remove_leftovers(cache, &key);
    let tmp = cache.join(format!("rootfs-{key}.tmp-{}", std::process::id()));
    build_into(&tmp, &cache.join(format!("rootfs-{key}.log")));
    fs::rename(&tmp, &final_dir).unwrap_or_else(|e| {
        panic!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            final_dir.display()
        )
    });
    final_dir
}

/// Cleans trees from builds that were killed; safe because we hold the lock.
fn remove_leftovers(cache: &Path, key: &str) {
    let prefix = format!("rootfs-{key}.tmp-");
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            // A killed debootstrap leaves /proc and /sys mounted in the target.
            unmount_below(&path);
            let _ = Command::new("rm")
                .arg("-rf")
                .arg("--one-file-system")
                .arg(&path)
                .status();
        }
    }
}

/// Unmounts every mount point at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let mut points = mounts_below(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(&p).status();
    }
}

/// Lists mount points at or below `dir` from /proc/self/mountinfo.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn build_into(tmp: &Path, log_path: &Path) {
    let debootstrap = require_tool("debootstrap");
    let mirror = debian_mirror();
    let log = File::create(log_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
    let started = Instant::now();
    eprintln!(
        "support: building Debian {SUITE} rootfs from {mirror} into {} (one-time, ~1-2 min)",
        tmp.display()
    );
    let mut cmd = Command::new(debootstrap);
    // If the test process dies mid-build, stop debootstrap too instead of
    // letting it write into a tree the next run deletes.
    // SAFETY: prctl is async-signal-safe and touches no parent state.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    let status = cmd
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(tmp)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log fd"))
        .stderr(log)
        .status()
        .expect("spawn debootstrap");
    if !status.success() {
        unmount_below(tmp);
        let tail = fs::read_to_string(log_path).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "debootstrap failed ({status}); full log in {}; last lines:\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    post_process(tmp);
    eprintln!(
        "support: rootfs built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn post_process(root: &Path) {
    // Maintainer scripts must not start daemons in a chroot; a booted
    // container starts its units through systemd, which ignores this.
    let policy = root.join("usr/sbin/policy-rc.d");
    let mut f = File::create(&policy).expect("create policy-rc.d");
    f.write_all(b"#!/bin/sh\nexit 101\n")
        .expect("write policy-rc.d");
    drop(f);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755)).expect("chmod policy-rc.d");
    let _ = Command::new("chroot")
        .arg(root)
        .args(["apt-get", "clean"])
        .status();
    let leaked = mounts_below(root);
    assert!(
        leaked.is_empty(),
        "debootstrap left mounts behind: {leaked:?}"
    );
}

/// Reads the host's Debian mirror so the build uses whatever this machine
/// is allowed to reach.
pub fn debian_mirror() -> String {
    let deb822 = Path::new("/etc/apt/sources.list.d/debian.sources");
    if let Ok(text) = fs::read_to_string(deb822) {
        if let Some(uri) = mirror_from_deb822(&text) {
            return uri;
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"deb") {
                if let Some(uri) = words.iter().skip(1).find(|w| !w.starts_with('[')) {
                    if !uri.contains("security") {
                        return uri.to_string();
                    }
                }
            }
        }
    }
    panic!(
        "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    );
}

/// Picks the URI of the stanza that carries the plain suite, not -security.
pub fn mirror_from_deb822(text: &str) -> Option<String> {
    let mut fallback = None;
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let Some(uri) = field("URIs").and_then(|u| u.split_whitespace().next()) else {
            continue;
        };
        let suites = field("Suites").unwrap_or("");
        if suites.split_whitespace().any(|s| s == SUITE) {
            return Some(uri.to_string());
        }
        if fallback.is_none() && !uri.contains("security") {
            fallback = Some(uri.to_string());
        }
    }
    fallback
}
