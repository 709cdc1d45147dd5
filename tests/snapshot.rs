//! `converge snapshot` against a real Debian tree (an overlay of the cached debootstrap
//! rootfs) tuned by hand, with kernel settings read inside a network namespace of its own.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;
use support::{in_netns_sh, output_text, AptRepo, Chroot, Deb, BIN};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn snapshot_records_every_kind_of_a_tuned_debian_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = Chroot::new();
    let root = ch.path();
    let repo = AptRepo::build_debs(
        &tmp.path().join("snaprepo"),
        &[
            Deb {
                name: "snapdep",
                version: "1.0-1",
                depends: None,
                files: &[],
            },
            Deb {
                name: "snaptool",
                version: "1.0-1",
                depends: Some("snapdep"),
                files: &[],
            },
        ],
    );
    repo.add_to(&ch);
    ch.run_ok(&["apt-get", "install", "-y", "-q", "snaptool"]);
    ch.run_ok(&["apt-mark", "hold", "snaptool"]);
    ch.run_ok(&["useradd", "--uid", "1500", "--shell", "/bin/sh", "app"]);
    ch.run_ok(&["systemctl", "disable", "nginx.service"]);
    ch.run_ok(&["systemctl", "mask", "e2scrub_reap.service"]);
    // A hand edit of a conffile, a file no package owns, a private one and a private key.
    let conf = root.join("etc/nginx/nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text.replace("worker_connections 768", "worker_connections 4096"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("etc/app")).unwrap();
    std::fs::write(root.join("etc/app/app.conf"), "port = 8080\n").unwrap();
    std::fs::write(root.join("etc/app/db.conf"), "password = hunter2\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/app/db.conf"),
        PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/app/tls.pem"),
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();

    let out = tmp.path().join("snap.json");
    let script = format!(
        "sysctl -q -w net.ipv4.tcp_fin_timeout=17 && {BIN} snapshot --root {} -o {}",
        root.display(),
        out.display()
    );
    let run = in_netns_sh(&script);
    assert!(run.status.success(), "{}", output_text(&run));
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a snapshot holds config text: owner only");
    let s = read_json(&out);

    assert_eq!(s["format"], "converge-snapshot");
    assert_eq!(s["version"], 1);
    assert_eq!(
        s["host"]["root"],
        root.canonicalize().unwrap().to_str().unwrap()
    );
    // Kernel settings: values of this namespace, with their access.
    assert_eq!(
        s["sysctl"]["net.ipv4.tcp_fin_timeout"],
        serde_json::json!({"value": "17", "access": "read-write"})
    );
    assert_eq!(s["sysctl"]["fs.file-nr"]["access"], "read-only");
    assert_eq!(
        s["sysctl"]["vm.drop_caches"]["access"],
        if s["sysctl"]["vm.drop_caches"]["value"].is_null() {
            "write-only"
        } else {
            "read-write"
        }
    );
    assert!(s["sysctl"].as_object().unwrap().len() > 500);
    // Packages: manual or dependency, held, versions, and whether a source offers them.
    assert_eq!(
        s["packages"]["snaptool"],
        serde_json::json!({"version": "1.0-1", "arch": "all", "held": true, "manual": true, "offered": true})
    );
    assert_eq!(
        s["packages"]["snapdep"],
        serde_json::json!({"version": "1.0-1", "arch": "all", "held": false, "manual": false, "offered": true})
    );
    // Units, read offline from the tree.
    assert_eq!(s["units"]["nginx.service"]["state"], "disabled");
    assert_eq!(s["units"]["nginx.service"]["preset"], "enabled");
    assert_eq!(s["units"]["e2scrub_reap.service"]["state"], "masked");
    assert!(s["units"]["nginx.service"].get("active").is_none());
    // Accounts, never a hash.
    assert_eq!(
        s["users"]["app"],
        serde_json::json!({"uid": 1500, "gid": 1500, "group": "app", "comment": "", "home": "/home/app", "shell": "/bin/sh"})
    );
    assert_eq!(
        s["groups"]["app"],
        serde_json::json!({"gid": 1500, "members": []})
    );
    // Files.
    let files = &s["files"];
    assert_eq!(files["/etc/nginx/nginx.conf"]["conffile_modified"], true);
    assert_eq!(files["/etc/nginx/nginx.conf"]["package"], "nginx-common");
    assert!(files["/etc/nginx/nginx.conf"]["content"]
        .as_str()
        .unwrap()
        .contains("worker_connections 4096"));
    assert_eq!(files["/etc/nginx/mime.types"]["conffile_modified"], false);
    assert_eq!(
        files["/etc/app/app.conf"],
        serde_json::json!({
            "type": "file", "owner": "root", "group": "root", "mode": "0644", "size": 12,
            "sha256": "37107a4e5ea873399e16cc41781ede69752273d4232675d990fda44a0603dfa2",
            "content": "port = 8080\n"
        })
    );
    assert_eq!(files["/etc/app"]["type"], "directory");
    assert_eq!(files["/etc/app/db.conf"]["private"], true);
    assert_eq!(files["/etc/app/db.conf"]["mode"], "0640");
    for secret in ["/etc/app/tls.pem", "/etc/shadow", "/etc/gshadow"] {
        assert_eq!(files[secret]["secret"], true, "{secret}");
        assert!(files[secret].get("content").is_none(), "{secret}");
        assert!(files[secret]["sha256"].is_string(), "{secret}");
    }
    assert_eq!(files["/etc/mtab"]["type"], "symlink");
    assert_eq!(files["/etc/mtab"]["target"], "../proc/self/mounts");
    let raw = std::fs::read_to_string(&out).unwrap();
    assert!(!raw.contains("hunter2") || files["/etc/app/db.conf"]["content"].is_string());
    assert!(!raw.contains("MIIB"), "private key material leaked");
    assert!(
        !raw.contains("$y$") && !raw.contains("$6$"),
        "a password hash leaked"
    );

    // `-o -` writes the same document to stdout.
    let script = format!(
        "sysctl -q -w net.ipv4.tcp_fin_timeout=17 && {BIN} snapshot --root {} -o -",
        root.display()
    );
    let run = in_netns_sh(&script);
    assert!(run.status.success(), "{}", output_text(&run));
    let again: Value = serde_json::from_slice(&run.stdout).unwrap();
    // Kernel counters move between two reads; everything else is the same.
    for kind in ["packages", "units", "users", "groups", "files"] {
        assert!(
            again[kind] == s[kind],
            "{kind} differs between -o FILE and -o -"
        );
    }
    assert_eq!(again["sysctl"]["net.ipv4.tcp_fin_timeout"]["value"], "17");
}

#[test]
fn snapshot_of_a_tree_without_dpkg_or_systemd_has_only_files_and_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
    std::fs::write(tmp.path().join("etc/motd"), "hi\n").unwrap();
    let out = support::converge(&["snapshot", "--root"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["packages"], serde_json::json!({}));
    assert_eq!(s["units"], serde_json::json!({}));
    assert_eq!(s["users"], serde_json::json!({}));
    assert_eq!(s["host"]["hostname"], "");
    assert_eq!(s["files"]["/etc/motd"]["content"], "hi\n");
}

/// Writes `text` at `rel` under `root`, making its directories.
fn put(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_default_scope_records_where_admins_leave_things_and_not_what_lives_there() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for (rel, text) in [
        ("etc/motd", "hi\n"),
        ("usr/local/bin/backup.sh", "#!/bin/sh\n"),
        ("usr/local/lib/app/__pycache__/m.pyc", "x"),
        ("opt/app/etc/app.conf", "workers = 8\n"),
        ("opt/app/logs/app.log", "started\n"),
        ("srv/app/config.yaml", "port: 80\n"),
        ("srv/app/.env", "MODE=prod\n"),
        ("srv/www/index.html", "<p>data</p>\n"),
        ("srv/app/node_modules/x/package.json", "{}\n"),
        (
            "var/spool/cron/crontabs/root",
            "0 3 * * * /usr/local/bin/backup.sh\n",
        ),
        ("root/.ssh/authorized_keys", "ssh-ed25519 AAAA root@admin\n"),
        ("root/.ssh/known_hosts", "github.com ssh-ed25519 AAAA\n"),
        (
            "root/.ssh/id_ed25519",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        ),
        ("root/.bashrc", "alias ll='ls -l'\n"),
        ("root/.bash_history", "ls\n"),
        ("root/notes/todo.txt", "x\n"),
        (
            "home/deploy/.ssh/authorized_keys",
            "ssh-ed25519 AAAA ci@build\n",
        ),
        ("home/deploy/.profile", "umask 027\n"),
        ("home/deploy/.cache/pip/blob", "x"),
        ("home/deploy/src/app.py", "print()\n"),
    ] {
        put(root, rel, text);
    }
    let out = support::converge(&["snapshot", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files: Vec<&str> = s["files"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        files,
        [
            "/etc",
            "/etc/motd",
            "/home/deploy/.profile",
            "/home/deploy/.ssh",
            "/home/deploy/.ssh/authorized_keys",
            "/opt",
            "/opt/app",
            "/opt/app/etc",
            "/opt/app/etc/app.conf",
            "/root/.bashrc",
            "/root/.ssh",
            "/root/.ssh/authorized_keys",
            "/srv",
            "/srv/app",
            "/srv/app/.env",
            "/srv/app/config.yaml",
            "/srv/www",
            "/usr/local",
            "/usr/local/bin",
            "/usr/local/bin/backup.sh",
            "/usr/local/lib",
            "/usr/local/lib/app",
            "/var/spool/cron/crontabs",
            "/var/spool/cron/crontabs/root",
        ]
    );
    assert_eq!(
        s["host"]["paths"],
        serde_json::json!([
            "/etc",
            "/usr/local",
            "/opt",
            "/srv",
            "/var/spool/cron/crontabs",
            "/root",
            "/home"
        ])
    );
    assert_eq!(
        s["host"]["selected"],
        serde_json::json!({
            "/home": "homes",
            "/opt": "capped",
            "/root": "home",
            "/srv": "configuration",
            "/usr/local": "capped",
            "/var/spool/cron/crontabs": "capped"
        })
    );
    assert!(s["host"]["size"]["memory_kb"].as_u64().unwrap() > 0);
}

#[test]
fn a_path_that_does_not_exist_is_a_warning_and_none_at_all_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    put(tmp.path(), "etc/motd", "hi\n");
    let out = support::converge(&["snapshot", "--path", "/etc", "--path", "/ect", "--root"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "warning: snapshot: --path /ect does not exist under {}: nothing recorded there",
            tmp.path().display()
        )),
        "{err}"
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["files"]["/etc/motd"]["content"], "hi\n");
    let out = support::converge(&["snapshot", "--path", "/ect", "--root"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(out.stdout.is_empty(), "no snapshot is written");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("none of the --path arguments exists under"),
        "{}",
        output_text(&out)
    );
}

/// Makes `depth` nested directories `d/d/d/...` under `dir`, one level at a time from the
/// last one's descriptor: the full path is far beyond PATH_MAX.
fn nest(dir: &Path, depth: usize) {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(dir, flags, Mode::empty()).unwrap();
    for _ in 0..depth {
        mkdirat(&fd, "d", Mode::from_bits_truncate(0o755)).unwrap();
        fd = openat(&fd, "d", flags, Mode::empty()).unwrap();
    }
}

#[test]
fn a_tree_fifteen_thousand_levels_deep_is_recorded_to_a_bounded_depth_with_a_warning() {
    // In memory: on this disk, making and removing 15,000 levels takes over a minute.
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc/deep")).unwrap();
    std::fs::write(root.join("etc/motd"), "hi\n").unwrap();
    nest(&root.join("etc/deep"), 15_000);
    let out = support::converge(&["snapshot", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // Before any assertion, and not by the temp dir's own removal, which recurses: `rm`
    // walks without recursion.
    let rm = std::process::Command::new("rm")
        .arg("-rf")
        .arg(&root)
        .status()
        .unwrap();
    assert!(rm.success());
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        err.contains(
            "directory tree deeper than 256 levels below /etc: what lies deeper is not recorded"
        ),
        "{err}"
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = s["files"].as_object().unwrap();
    assert_eq!(s["files"]["/etc/motd"]["content"], "hi\n");
    let deepest = files.keys().map(|k| k.matches('/').count()).max().unwrap();
    // /etc is one level, /etc/deep the first below it; the directory at the limit is
    // recorded, its entries are not.
    assert_eq!(deepest, 2 + 256);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn snapshot_writes_into_devices_fifos_and_links_instead_of_replacing_them() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/motd"), "hi\n").unwrap();
    let snapshot_to = |output: &Path| {
        let out = support::converge(&["snapshot", "--root"])
            .arg(&root)
            .arg("-o")
            .arg(output)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    };
    // /dev/null's device, made here so the machine's own is never at stake; and a link to
    // it, as /dev/stdout is a link.
    let null = tmp.path().join("null");
    let status = std::process::Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success());
    let link = tmp.path().join("stdout");
    std::os::unix::fs::symlink(&null, &link).unwrap();
    snapshot_to(&null);
    snapshot_to(&link);
    assert!(std::fs::symlink_metadata(&null)
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), null);
    // A fifo is written as a stream, read at its other end.
    let fifo = tmp.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let reader = std::process::Command::new("cat")
        .arg(&fifo)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    snapshot_to(&fifo);
    let read = reader.wait_with_output().unwrap();
    let s: Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(s["files"]["/etc/motd"]["content"], "hi\n");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    // A link to a regular file is written through, and the file made owner-only.
    let real = tmp.path().join("real.json");
    std::fs::write(&real, "old").unwrap();
    std::fs::set_permissions(&real, PermissionsExt::from_mode(0o644)).unwrap();
    let to_real = tmp.path().join("to-real.json");
    std::os::unix::fs::symlink(&real, &to_real).unwrap();
    snapshot_to(&to_real);
    assert!(std::fs::symlink_metadata(&to_real)
        .unwrap()
        .file_type()
        .is_symlink());
    let s = read_json(&real);
    assert_eq!(s["files"]["/etc/motd"]["content"], "hi\n");
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "fifo",
            "null",
            "real.json",
            "root",
            "stdout",
            "to-real.json"
        ]
    );
}

#[test]
fn private_files_keep_their_text_unless_asked_and_stdout_into_a_file_is_made_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc/wireguard")).unwrap();
    std::fs::write(root.join("etc/motd"), "hi\n").unwrap();
    let key = root.join("etc/wireguard/wg0.conf");
    std::fs::write(&key, "PrivateKey = c2VjcmV0\n").unwrap();
    std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
    // The README's recipe: stdout into a file the shell made with its umask.
    let snapshot_into = |file: &Path, extra: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask 022 && {BIN} snapshot --root {} -o - {extra} > {}",
                root.display(),
                file.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        (
            read_json(file),
            std::fs::read_to_string(file).unwrap(),
            mode,
        )
    };
    let (s, raw, mode) = snapshot_into(&tmp.path().join("old.json"), "");
    assert!(!raw.contains("c2VjcmV0"), "private text leaked:\n{raw}");
    let wg = &s["files"]["/etc/wireguard/wg0.conf"];
    assert_eq!(wg["private"], true);
    assert_eq!(wg["mode"], "0600");
    assert_eq!(wg["size"], 22);
    assert!(wg["sha256"].is_string());
    assert!(wg.get("content").is_none());
    assert_eq!(s["files"]["/etc/motd"]["content"], "hi\n");
    assert_eq!(
        mode, 0o644,
        "nothing private in it: the shell's file is left as made"
    );
    let (s, _, mode) = snapshot_into(&tmp.path().join("all.json"), "--include-private");
    assert_eq!(
        s["files"]["/etc/wireguard/wg0.conf"]["content"],
        "PrivateKey = c2VjcmV0\n"
    );
    assert_eq!(mode, 0o600, "private text in a world-readable file");
}
