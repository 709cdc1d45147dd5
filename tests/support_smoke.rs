//! Proves each helper in tests/support works against the real machine.
//! Needs root and `scripts/test-deps`.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::rootfs::{mirror_from_deb822, mounts_below};
use support::*;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn rootfs_is_built_and_cached() {
    let t = Instant::now();
    let root = debian_rootfs();
    eprintln!("debian_rootfs() took {:.2} s", t.elapsed().as_secs_f64());
    assert!(root.join("usr/lib/systemd/systemd").exists());
    assert!(root.join("usr/sbin/nginx").exists());
    let policy = fs::read_to_string(root.join("usr/sbin/policy-rc.d")).unwrap();
    assert!(policy.contains("exit 101"), "{policy}");
    assert!(root.starts_with(support::rootfs::CACHE_DIR));
}

#[test]
fn mirror_is_read_from_the_plain_suite_stanza() {
    let sources = "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n\
                   Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n";
    assert_eq!(
        mirror_from_deb822(sources).as_deref(),
        Some("http://mirror.example/debian")
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn chroot_overlay_keeps_changes_private() {
    let t = Instant::now();
    let ch = Chroot::new();
    eprintln!("Chroot::new() took {:.3} s", t.elapsed().as_secs_f64());
    run_ok(
        Command::new("useradd")
            .arg("--root")
            .arg(ch.path())
            .args(["-m", "cvgsmoke"]),
    );
    let passwd = fs::read_to_string(ch.path().join("etc/passwd")).unwrap();
    assert!(passwd.contains("cvgsmoke:"), "{passwd}");
    assert!(ch.path().join("home/cvgsmoke").is_dir());
    let id = ch.run_ok(&["id", "-un", "cvgsmoke"]);
    assert_eq!(id.trim(), "cvgsmoke");

    let cached = fs::read_to_string(debian_rootfs().join("etc/passwd")).unwrap();
    assert!(
        !cached.contains("cvgsmoke"),
        "user leaked into cached rootfs"
    );

    let merged = ch.path().to_path_buf();
    drop(ch);
    assert!(mounts_below(&merged).is_empty(), "overlay still mounted");
    assert!(!merged.exists(), "scratch dir not removed");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn apt_repo_installs_pinned_versions_in_chroot() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let repo = AptRepo::build(
        &tmp.path().join("cfgrepo"),
        &[("cfgtest", "1.0-1"), ("cfgtest", "2.0-1")],
    );
    eprintln!("AptRepo::build took {:.2} s", t.elapsed().as_secs_f64());
    let ch = Chroot::new();
    let t = Instant::now();
    repo.add_to(&ch);
    eprintln!(
        "add_to + apt-get update took {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let version = ch.path().join("usr/share/cfgtest/version");

    let t = Instant::now();
    ch.run_ok(&["apt-get", "install", "-y", "-q", "cfgtest=1.0-1"]);
    eprintln!("apt-get install took {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(fs::read_to_string(&version).unwrap(), "1.0-1\n");

    ch.run_ok(&["apt-get", "install", "-y", "-q", "cfgtest=2.0-1"]);
    assert_eq!(fs::read_to_string(&version).unwrap(), "2.0-1\n");
    let installed = ch.run_ok(&["dpkg-query", "-W", "-f", "${Version}", "cfgtest"]);
    assert_eq!(installed, "2.0-1");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn container_boots_runs_commands_and_cleans_up() {
    let ct = Container::boot("smoke");
    eprintln!(
        "Container::boot took {:.2} s (leader {})",
        ct.boot_time().as_secs_f64(),
        ct.leader()
    );
    assert_eq!(ct.exec_ok(&["cat", "/proc/1/comm"]).trim(), "systemd");
    assert_eq!(ct.exec_ok(&["hostname"]).trim(), ct.name());
    let state = ct.exec(&["systemctl", "is-system-running"]);
    let state = String::from_utf8_lossy(&state.stdout);
    assert!(
        matches!(state.trim(), "running" | "degraded"),
        "state: {state}"
    );

    // Files pass both ways: share dir in, root() out.
    fs::write(ct.share_dir().join("hello"), "from host\n").unwrap();
    assert_eq!(ct.exec_ok(&["cat", "/mnt/share/hello"]), "from host\n");
    let version = ct.exec_ok(&[ct.bin(), "--version"]);
    assert!(version.starts_with("converge "), "{version}");
    ct.exec_ok(&["sh", "-c", "echo inside > /root/out"]);
    assert_eq!(
        fs::read_to_string(ct.root().join("root/out")).unwrap(),
        "inside\n"
    );

    // The local apt repo works inside a booted system too.
    let tmp = tempfile::tempdir().unwrap();
    let repo = AptRepo::build(&tmp.path().join("ctrepo"), &[("cfgtest", "1.0-1")]);
    repo.add_to(&ct);
    ct.exec_ok(&["apt-get", "install", "-y", "-q", "cfgtest=1.0-1"]);
    assert_eq!(
        ct.exec_ok(&["cat", "/usr/share/cfgtest/version"]),
        "1.0-1\n"
    );

    let cgroups = ct.cgroup_dirs().to_vec();
    assert!(cgroups.iter().all(|c| c.exists()));
    let root = ct.root().to_path_buf();
    let leader = ct.leader();
    let t = Instant::now();
    drop(ct);
    eprintln!("Container drop took {:.2} s", t.elapsed().as_secs_f64());
    for cg in &cgroups {
        assert!(!cg.exists(), "cgroup {} left behind", cg.display());
    }
    assert!(
        mounts_below(&root).is_empty(),
        "container overlay still mounted"
    );
    assert!(!root.exists(), "container scratch dir not removed");
    assert!(
        !Path::new(&format!("/proc/{leader}")).exists(),
        "container systemd still running"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn nginx_logs_200_then_304() {
    let site = tempfile::tempdir().unwrap();
    fs::write(site.path().join("hello.txt"), "hello\n").unwrap();
    let t = Instant::now();
    let nginx = Nginx::serve(site.path());
    eprintln!("Nginx::serve took {:.3} s", t.elapsed().as_secs_f64());
    let url = format!("{}/hello.txt", nginx.url());
    let dl = tempfile::tempdir().unwrap();
    let local = dl.path().join("hello.txt");

    // -R stamps the local copy with Last-Modified; -z sends it back as
    // If-Modified-Since.
    let code = run_ok(
        Command::new("curl")
            .args(["-sS", "-R", "-w", "%{http_code}", "-o"])
            .arg(&local)
            .arg(&url),
    );
    assert_eq!(code, "200");
    assert_eq!(fs::read_to_string(&local).unwrap(), "hello\n");
    let code = run_ok(
        Command::new("curl")
            .args(["-sS", "-w", "%{http_code}", "-o", "/dev/null", "-z"])
            .arg(&local)
            .arg(&url),
    );
    assert_eq!(code, "304");
    assert_eq!(
        nginx.wait_for_requests(2),
        vec![200, 304],
        "{}",
        nginx.access_log()
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn nginx_tls_serves_with_self_signed_cert() {
    let site = tempfile::tempdir().unwrap();
    fs::write(site.path().join("a.txt"), "tls\n").unwrap();
    let nginx = Nginx::serve_tls(site.path());
    let cert = nginx.cert_path().expect("TLS server has a cert");
    assert!(nginx.url().starts_with("https://127.0.0.1:"));
    for url in [
        format!("{}/a.txt", nginx.url()),
        format!("https://localhost:{}/a.txt", nginx.port()),
    ] {
        let body = run_ok(
            Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(cert)
                .arg(&url),
        );
        assert_eq!(body, "tls\n");
    }
    // Without the cert the client must refuse: proves TLS is really on.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null"])
        .arg(format!("{}/a.txt", nginx.url()))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn netns_sysctl_write_stays_inside() {
    let key = "/proc/sys/net/core/somaxconn";
    let host_before = fs::read_to_string(key).unwrap().trim().to_string();
    let want = if host_before == "1234" {
        "2345"
    } else {
        "1234"
    };
    let t = Instant::now();
    let out = in_netns_sh(&format!(
        "sysctl -q -w net.core.somaxconn={want} && sysctl -n net.core.somaxconn"
    ));
    eprintln!("in_netns took {:.3} s", t.elapsed().as_secs_f64());
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    assert_eq!(fs::read_to_string(key).unwrap().trim(), host_before);

    // Loopback is up, so servers inside the namespace can be reached.
    let lo = in_netns(&["ip", "-o", "link", "show", "lo"]);
    assert!(
        String::from_utf8_lossy(&lo.stdout).contains("UP"),
        "{}",
        output_text(&lo)
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn two_containers_boot_side_by_side() {
    let t = Instant::now();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Container::boot("pair"));
        let b = s.spawn(|| Container::boot("pair"));
        (a.join().unwrap(), b.join().unwrap())
    });
    eprintln!("two parallel boots took {:.2} s", t.elapsed().as_secs_f64());
    assert_ne!(a.name(), b.name());
    assert_ne!(a.leader(), b.leader());
    // Separate overlays: a write in one is invisible in the other.
    a.exec_ok(&["touch", "/etc/only-in-a"]);
    assert!(b.exec(&["test", "-e", "/etc/only-in-a"]).status.code() == Some(1));
}

/// A binary copied for a container or chroot runs at once even while other threads of the
/// test process fork: a child forked during the copy must not inherit a descriptor that
/// writes to it, or the exec fails with "Text file busy" (ETXTBSY) until that child execs.
#[test]
#[allow(unsafe_code)] // fork, and fstat on whatever descriptors the child inherited
fn a_copied_binary_runs_while_other_threads_fork() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use nix::sys::signal::{kill, Signal};
    use nix::sys::stat::fstat;
    use nix::sys::wait::waitpid;
    use nix::unistd::{close, fork, pause, ForkResult};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let copied = dir.join("converge");
    let done = Arc::new(AtomicBool::new(false));
    // Forks while the copy is under way (its file is in the dir); each child keeps the files
    // it inherited open until it is killed, as a child that is slow to exec does. It closes
    // its pipes: one held open would keep this process's own spawns (the copy's among them)
    // waiting for an end of file.
    let forker = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let mut children = Vec::new();
            while !done.load(Ordering::SeqCst) && children.len() < 64 {
                if fs::read_dir(&dir).unwrap().next().is_none() {
                    continue;
                }
                // SAFETY: the child only calls fstat, close and pause, which are
                // async-signal-safe, until it is killed.
                match unsafe { fork() }.expect("fork") {
                    ForkResult::Child => {
                        for fd in 0..1024 {
                            // SAFETY: nothing closes `fd` while it is borrowed here; one
                            // that is not open makes fstat fail with EBADF.
                            let fd_ref = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                            let is_file = fstat(fd_ref)
                                .map(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG);
                            if is_file == Ok(false) {
                                let _ = close(fd);
                            }
                        }
                        loop {
                            pause();
                        }
                    }
                    ForkResult::Parent { child } => children.push(child),
                }
            }
            children
        })
    };
    copy_file(Path::new(BIN), &copied);
    done.store(true, Ordering::SeqCst);
    let children = forker.join().unwrap();
    let run = Command::new(&copied).arg("--version").output();
    for child in &children {
        kill(*child, Signal::SIGKILL).unwrap();
        waitpid(*child, None).unwrap();
    }
    assert!(
        !children.is_empty(),
        "no fork happened during the copy, so this proves nothing"
    );
    let run = run.unwrap_or_else(|e| panic!("the copy cannot be executed: {e}"));
    assert!(run.status.success(), "{}", output_text(&run));
}
