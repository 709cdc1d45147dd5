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
