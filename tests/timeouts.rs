//! Every external command has a deadline: a `systemctl` that hangs (a shim first in PATH) is
//! killed with everything it started, fails its own service, skips only what goes after
//! that service, and the rest of the run converges.

use std::path::Path;
use std::process::Command;

/// Gone, or a zombie waiting for whoever reaps orphans: either way no longer running.
fn dead(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(") ").next().unwrap_or("").starts_with('Z')
    })
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_hung_systemctl_is_killed_and_fails_only_its_own_service() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Answers `is-enabled` at once, except for slow.service, where it starts a child and
    // waits for it, as a systemctl stuck on a hung job would.
    let shim = d.join("bin/systemctl");
    write(
        &shim,
        &format!(
            "#!/bin/sh\n\
             for a in \"$@\"; do last=$a; done\n\
             if [ \"$last\" = slow.service ]; then\n\
             \x20 sleep 60 & echo $$ $! > {pids}\n\
             \x20 wait\n\
             fi\n\
             echo enabled\n",
            pids = d.join("pids").display()
        ),
    );
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write(
        &d.join("src/roles/t.toml"),
        r#"
[[service]]
name = "slow"
enabled = true

[[service]]
name = "fast"
enabled = true

[[file]]
path = "/etc/after-slow.conf"
content = "x"
after = ["service:slow"]

[[file]]
path = "/etc/other.conf"
content = "y"
"#,
    );
    std::fs::create_dir_all(d.join("root/etc")).unwrap();
    std::fs::create_dir_all(d.join("src/templates")).unwrap();
    let config = d.join("agent.toml");
    write(
        &config,
        &format!(
            "source = \"{}\"\nroles = [\"t\"]\nstate_dir = \"{}\"\n\n[timeouts]\nquery = \"1s\"\n",
            d.join("src").display(),
            d.join("state").display()
        ),
    );
    let path = format!(
        "{}:{}",
        d.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_converge"))
        .args(["apply", "--color", "never", "--config"])
        .arg(&config)
        .arg("--root")
        .arg(d.join("root"))
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    let root = d.join("root").canonicalize().unwrap();
    let timed_out = format!(
        "systemctl --root={} --no-ask-password is-enabled -- slow.service: timed out after 1s and was killed",
        root.display()
    );
    assert!(stdout.contains(&timed_out), "{stdout}");
    assert!(
        stdout.contains("skipped: service:slow did not converge"),
        "{stdout}"
    );
    assert!(!root.join("etc/after-slow.conf").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/other.conf")).unwrap(),
        "y"
    );
    // The shim and the child it started were killed together.
    let pids = std::fs::read_to_string(d.join("pids")).unwrap();
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    for _ in 0..100 {
        if pids.iter().all(|p| dead(p)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(pids.iter().all(|p| dead(p)), "{pids:?}");
}
