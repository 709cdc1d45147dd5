//! Every external command has a deadline: a `systemctl` that hangs (a shim first in PATH) is
//! killed with everything it started, fails its own service, skips only what goes after
//! that service, and the rest of the run converges. The deadline is agent.toml's
//! `[timeouts]`, for agent runs and `--source` runs alike, or a resource's own `timeout`.

mod support;

use std::path::Path;

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

/// Puts `script` first in PATH as `systemctl`; returns that PATH.
fn systemctl_shim(d: &Path, script: &str) -> String {
    let shim = d.join("bin/systemctl");
    write(&shim, script);
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        d.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_hung_systemctl_is_killed_and_fails_only_its_own_service() {
    hung_query_is_killed(false);
}

#[test]
fn agent_toml_timeouts_hold_for_a_run_of_a_source_tree_too() {
    hung_query_is_killed(true);
}

/// Runs apply from agent.toml (its source), or with `--source` naming the tree and
/// agent.toml only giving settings; `[timeouts] query = "1s"` holds either way.
fn hung_query_is_killed(with_source: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Answers `is-enabled` at once, except for slow.service, where it starts a child and
    // waits for it, as a systemctl stuck on a hung job would.
    let path = systemctl_shim(
        d,
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
    let mut cmd = support::converge(&["apply", "--color", "never", "--config"]);
    cmd.arg(&config);
    if with_source {
        cmd.arg("--source").arg(d.join("src"));
    }
    let out = cmd
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
    support::wait_until(
        &format!("{pids:?} are gone"),
        std::time::Duration::from_secs(10),
        || pids.iter().all(|p| dead(p)),
    );
}

#[test]
fn a_service_with_its_own_timeout_is_killed_at_it_without_any_agent_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Every unit is disabled; enabling slow.service hangs as a stuck job would.
    let path = systemctl_shim(
        d,
        "#!/bin/sh\n\
         case \"$*\" in *\" enable -- slow.service\") sleep 60 ;; esac\n\
         case \"$*\" in *is-enabled*) echo disabled ;; esac\n",
    );
    write(
        &d.join("src/roles/t.toml"),
        r#"
[[service]]
name = "slow"
enabled = true
timeout = "1s"

[[service]]
name = "fast"
enabled = true
"#,
    );
    std::fs::create_dir_all(d.join("root/etc")).unwrap();
    std::fs::create_dir_all(d.join("src/templates")).unwrap();
    let out = support::converge(&["apply", "--format", "json", "--role", "t", "--config"])
        .arg(d.join("no-agent.toml"))
        .arg("--state-dir")
        .arg(d.join("state"))
        .arg("--source")
        .arg(d.join("src"))
        .arg("--root")
        .arg(d.join("root"))
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let resources = report["resources"].as_array().unwrap();
    let of = |id: &str| resources.iter().find(|r| r["id"] == id).unwrap().clone();
    let slow = of("service:slow");
    assert_eq!(slow["status"], "failed", "{slow}");
    assert_eq!(slow["error_kind"], "timeout", "{slow}");
    let root = d.join("root").canonicalize().unwrap();
    assert_eq!(
        slow["error"],
        format!(
            "systemctl --root={} --no-ask-password enable -- slow.service: timed out after 1s and was killed",
            root.display()
        )
    );
    assert_eq!(of("service:fast")["status"], "changed");
}

#[test]
fn snapshot_compare_and_capture_keep_agent_toml_deadlines_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = systemctl_shim(
        d,
        "#!/bin/sh\ncase \"$*\" in *list-unit-files*) sleep 60 ;; esac\n",
    );
    std::fs::create_dir_all(d.join("root/etc/systemd/system")).unwrap();
    let config = d.join("agent.toml");
    write(
        &config,
        "source = \"/nowhere\"\n[timeouts]\nquery = \"1s\"\n",
    );
    let root = d.join("root").canonicalize().unwrap();
    let timed_out = format!(
        "systemctl --root={} --no-ask-password list-unit-files --no-legend --no-pager --full: timed out after 1s and was killed",
        root.display()
    );
    // A snapshot of a tree without systemd (so no systemctl) to compare the live side with.
    std::fs::create_dir_all(d.join("bare/etc")).unwrap();
    let bare = d.join("bare.json");
    let out = support::converge(&["snapshot", "--config"])
        .arg(&config)
        .arg("--root")
        .arg(d.join("bare"))
        .arg("-o")
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bare = bare.display().to_string();
    let role = d.join("src/roles/x.toml").display().to_string();
    for args in [
        vec!["snapshot"],
        vec!["compare", "live", &bare],
        vec!["capture", "--from", "live", "--role", "x", "-o", &role],
    ] {
        let out = support::converge(&args)
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(&root)
            .env("PATH", &path)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&timed_out), "{args:?}: {stderr}");
    }
}
