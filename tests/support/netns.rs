//! Running commands in a throwaway network namespace, where every per-netns
//! sysctl (net.*) can be written without touching the host.

use std::process::{Command, Output};

use super::tools::{require_root, require_tool};

/// Runs `cmd` in a fresh network namespace with loopback up; the namespace
/// disappears when the command exits.
pub fn in_netns(cmd: &[&str]) -> Output {
    assert!(!cmd.is_empty(), "in_netns needs a command");
    require_root();
    let unshare = require_tool("unshare");
    require_tool("ip");
    // lo starts down in a new namespace; tests binding 127.0.0.1 need it.
    Command::new(unshare)
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$@""#,
            "sh",
        ])
        .args(cmd)
        .output()
        .unwrap_or_else(|e| panic!("failed to spawn unshare -n {cmd:?}: {e}"))
}

/// Runs a shell script in a fresh network namespace with loopback up.
pub fn in_netns_sh(script: &str) -> Output {
    in_netns(&["sh", "-c", script])
}

/// A named network namespace (`ip netns add`) that outlives single commands, so several
/// steps of a test see the same kernel settings; deleted on Drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `converge-NAME-PID-N` with loopback up: N apart, tests running at once in one
    /// process never share (or delete) each other's namespace, whatever names they pass.
    pub fn new(name: &str) -> NetNs {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        require_root();
        let ip = require_tool("ip");
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("converge-{name}-{}-{n}", std::process::id());
        let _ = Command::new(&ip).args(["netns", "del", &name]).output();
        let out = Command::new(&ip)
            .args(["netns", "add", &name])
            .output()
            .expect("spawn ip netns add");
        assert!(out.status.success(), "ip netns add {name} failed: {out:?}");
        let ns = NetNs { name };
        let out = ns.run(&["ip", "link", "set", "lo", "up"]);
        assert!(out.status.success(), "lo up in {} failed: {out:?}", ns.name);
        ns
    }

    /// Runs `cmd` inside the namespace.
    pub fn run(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .unwrap_or_else(|e| panic!("failed to spawn ip netns exec {cmd:?}: {e}"))
    }

    /// Runs a shell script inside the namespace.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["sh", "-c", script])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
