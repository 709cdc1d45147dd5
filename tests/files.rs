//! Files, directories, symlinks and absent paths, converged in a temp root by the real binary.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use std::process::Command;

use support::Project;

fn web_project() -> Project {
    let p = Project::new();
    p.file(
        "roles/base.toml",
        r#"
[vars]
greeting = "hello"
workers = 1

[[file]]
path = "/etc/motd"
template = "motd.hbs"
mode = "0644"
"#,
    )
    .file(
        "roles/web.toml",
        r#"
include = ["base"]

[vars]
workers = 8

[[directory]]
path = "/etc/app"
mode = "0750"

[[file]]
path = "/etc/app/app.conf"
template = "app.conf.hbs"
owner = "root"
group = "root"
mode = "0640"
[file.vars]
port = 8080

[[symlink]]
path = "/etc/app/current"
target = "/opt/app/1.2"

[[absent]]
path = "/etc/legacy.conf"
"#,
    )
    .file("templates/motd.hbs", "{{vars.greeting}} from {{facts.fqdn}}\n")
    .file(
        "templates/app.conf.hbs",
        "# {{facts.hostname}}\nworkers = {{vars.workers}}\ncpus = {{facts.cpus}}\nport = {{vars.port}}\n",
    )
    .root_file("/etc/legacy.conf", "old\n")
    .root_file("/etc/motd", "hello from web1.example.com\nstale line\n");
    p
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_reports_then_apply_makes_exactly_those_changes_then_nothing() {
    let p = web_project();
    let before = p.tree();
    let check = p.converge("check", &["web"], &["--format", "json"]);
    assert_eq!(check.code, 2, "{}", check.stderr);
    assert_eq!(p.tree(), before, "check must not touch the root");
    insta::assert_snapshot!("web_check_json", p.snapshot_json(&check.stdout));
    let check: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(check["mode"], "check");
    assert_eq!(check["summary"]["changed"], 5);
    assert_eq!(check["summary"]["in_sync"], 0);

    let apply = p.converge("apply", &["web"], &["--format", "json"]);
    assert_eq!(apply.code, 2, "{}", apply.stderr);
    insta::assert_snapshot!("web_apply_json", p.snapshot_json(&apply.stdout));
    let apply: serde_json::Value = serde_json::from_str(&apply.stdout).unwrap();
    assert_eq!(apply["mode"], "apply");
    // The very changes check printed, resource by resource.
    let changes = |r: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["id"].as_str().unwrap().to_owned(), o["change"].clone()))
            .collect()
    };
    assert_eq!(changes(&check), changes(&apply));

    assert_eq!(
        std::fs::read_to_string(p.at("/etc/app/app.conf")).unwrap(),
        "# web1\nworkers = 8\ncpus = 4\nport = 8080\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.at("/etc/motd")).unwrap(),
        "hello from web1.example.com\n"
    );
    let md = std::fs::metadata(p.at("/etc/app/app.conf")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o640));
    assert_eq!(
        std::fs::metadata(p.at("/etc/app")).unwrap().mode() & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::read_link(p.at("/etc/app/current"))
            .unwrap()
            .to_str(),
        Some("/opt/app/1.2")
    );
    assert!(!p.at("/etc/legacy.conf").exists());

    let again = p.apply(&["web"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(
        again.stdout,
        "apply: 5 resources: 5 in sync, 0 changed, 0 failed\n"
    );
    let check = p.check(&["web"]);
    assert_eq!(check.code, 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn out_of_band_edits_are_detected_and_repaired() {
    let p = web_project();
    assert_eq!(p.apply(&["web"]).code, 2);
    let conf = p.at("/etc/app/app.conf");
    std::fs::write(&conf, "edited by hand\n").unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&conf, Some(1234), Some(4321)).unwrap();
    std::fs::set_permissions(p.at("/etc/app"), std::fs::Permissions::from_mode(0o777)).unwrap();

    let check = p.check(&["web"]);
    assert_eq!(check.code, 2);
    insta::assert_snapshot!("drift_check", check.stdout);

    assert_eq!(p.apply(&["web"]).code, 2);
    let md = std::fs::metadata(&conf).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o640));
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "# web1\nworkers = 8\ncpus = 4\nport = 8080\n"
    );
    assert_eq!(p.apply(&["web"]).code, 0);
}

#[test]
fn human_check_output_for_a_fresh_root() {
    let p = web_project();
    let check = p.check(&["web"]);
    assert_eq!(check.code, 2);
    insta::assert_snapshot!("fresh_check", check.stdout);
}

#[test]
fn a_symlink_planted_at_a_managed_path_is_replaced_not_followed() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/app.conf\"\ncontent = \"managed\\n\"\nmode = \"0600\"\n",
    );
    let victim = p.at("/victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, p.at("/etc/app.conf")).unwrap();

    let check = p.check(&["r"]);
    assert_eq!(check.code, 2);
    assert!(
        check
            .stdout
            .contains(&format!("type: symlink to {} → file", victim.display())),
        "{}",
        check.stdout
    );
    assert_eq!(p.apply(&["r"]).code, 2);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o7777, 0o644);
    let md = std::fs::symlink_metadata(p.at("/etc/app.conf")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::read_to_string(p.at("/etc/app.conf")).unwrap(),
        "managed\n"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_link_in_a_parent_directory_cannot_lead_outside_the_root() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    // Inside the tree, /conf points at an absolute path: resolved as in a chroot.
    std::os::unix::fs::symlink(outside.path(), p.at("/conf")).unwrap();
    let target = outside.path().strip_prefix("/").unwrap();
    std::fs::create_dir_all(p.root().join(target)).unwrap();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/conf/x\"\ncontent = \"inside\\n\"\n",
    );
    assert_eq!(p.apply(&["r"]).code, 2);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_to_string(p.root().join(target).join("x")).unwrap(),
        "inside\n"
    );
}

#[test]
fn purge_removes_only_unmanaged_entries() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        r#"
[[directory]]
path = "/etc/conf.d"
purge = true

[[file]]
path = "/etc/conf.d/keep.conf"
content = "k\n"
"#,
    )
    .root_file("/etc/conf.d/keep.conf", "k\n")
    .root_file("/etc/conf.d/stray.conf", "s\n")
    .root_file("/etc/conf.d/sub/deep", "d\n");
    let check = p.check(&["r"]);
    assert_eq!(check.code, 2);
    assert!(
        check.stdout.contains("entry stray.conf: file → (remove)"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("entry sub: directory → (remove)"),
        "{}",
        check.stdout
    );
    assert_eq!(p.apply(&["r"]).code, 2);
    let names: Vec<_> = std::fs::read_dir(p.at("/etc/conf.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["keep.conf"]);
    assert_eq!(p.apply(&["r"]).code, 0);
}

#[test]
fn sensitive_content_never_appears_in_any_output() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/secret\"\ncontent = \"password=hunter2\\n\"\nsensitive = true\nmode = \"0600\"\n",
    )
    .root_file("/etc/secret", "password=old-secret\n");
    for format in ["human", "json"] {
        let r = p.converge("check", &["r"], &["--format", format, "-vvv"]);
        assert_eq!(r.code, 2);
        for secret in ["hunter2", "old-secret"] {
            assert!(
                !r.stdout.contains(secret),
                "{format} stdout leaks: {}",
                r.stdout
            );
            assert!(
                !r.stderr.contains(secret),
                "{format} stderr leaks: {}",
                r.stderr
            );
        }
    }
    let r = p.converge("apply", &["r"], &["-vvv"]);
    assert_eq!(r.code, 2);
    assert!(!r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"));
    assert!(
        r.stdout
            .contains("content (sensitive, not shown): 20 bytes"),
        "{}",
        r.stdout
    );
    let r = p.converge("render", &["r"], &[]);
    assert!(
        r.stdout.contains("(sensitive: 17 bytes, not shown)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("hunter2"));
}

#[test]
fn failures_and_changes_give_exit_6_and_dependents_are_skipped() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        r#"
[[file]]
path = "/etc/ok"
content = "ok\n"

[[absent]]
path = "/etc/full"

[[directory]]
path = "/etc/nouser"
owner = "no-such-user"

[[file]]
path = "/etc/nouser/x"
content = "x\n"
"#,
    )
    .root_file("/etc/full/a", "a\n");
    let r = p.apply(&["r"]);
    assert_eq!(r.code, 6, "{}", r.stdout);
    assert!(r.stdout.contains(
        "/etc/full: is a non-empty directory; set force = true to remove it and everything in it"
    ), "{}", r.stdout);
    assert!(
        r.stdout.contains("owner 'no-such-user' does not exist"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("skipped: directory:/etc/nouser did not converge"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .ends_with("apply: 4 resources: 0 in sync, 1 changed, 2 failed, 1 skipped\n"));
    assert!(p.at("/etc/full/a").exists());
    assert!(!p.at("/etc/nouser").exists());
}

#[test]
fn render_prints_the_files_with_their_origin() {
    let p = web_project();
    let r = p.converge("render", &["web"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    insta::assert_snapshot!("render_web", r.stdout);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn var_overrides_win_over_role_vars() {
    let p = web_project();
    let r = p.converge(
        "apply",
        &["web"],
        &["--var", "workers=32", "--var", "greeting=hi"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(std::fs::read_to_string(p.at("/etc/app/app.conf"))
        .unwrap()
        .contains("workers = 32\n"));
    assert_eq!(
        std::fs::read_to_string(p.at("/etc/motd")).unwrap(),
        "hi from web1.example.com\n"
    );
}

#[test]
fn a_missing_parent_is_a_clear_failure_in_check_and_apply_alike() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        r#"
[[file]]
path = "/srv/app/conf/app.conf"
content = "x\n"

[[directory]]
path = "/etc/managed"

[[file]]
path = "/etc/managed/inner.conf"
content = "y\n"
"#,
    );
    for cmd in ["check", "apply"] {
        let r = p.converge(cmd, &["r"], &[]);
        assert_eq!(r.code, 6, "{cmd}: {}", r.stdout);
        assert!(r.stdout.contains(
            "/srv/app/conf/app.conf: parent directory /srv does not exist (manage it with a [[directory]] resource)"
        ), "{cmd}: {}", r.stdout);
    }
    // The managed parent was created by apply, so its file could be written.
    assert_eq!(
        std::fs::read_to_string(p.at("/etc/managed/inner.conf")).unwrap(),
        "y\n"
    );
    assert!(!p.at("/srv").exists());
}

#[test]
fn facts_print_as_template_paths_and_as_json() {
    let p = Project::new();
    let json = p.run(&["facts", "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let facts: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    for key in [
        "hostname",
        "fqdn",
        "os",
        "kernel",
        "arch",
        "cpus",
        "memory",
        "interfaces",
    ] {
        assert!(facts.get(key).is_some(), "missing {key}: {facts}");
    }
    assert_eq!(
        facts["interfaces"]["lo"]["ipv4"],
        serde_json::json!(["127.0.0.1"])
    );
    let text = p.run(&["facts"]);
    assert!(
        text.stdout
            .lines()
            .any(|l| l == "facts.interfaces.lo.ipv4 = [\"127.0.0.1\"]"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.lines().any(|l| l.starts_with("facts.cpus = ")));
}

#[test]
fn a_package_goes_before_the_files_in_its_config_dir() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        r#"
[[file]]
path = "/etc/app/app.conf"
content = "x\n"

[[file]]
path = "/etc/other.conf"
content = "y\n"

[[package]]
name = "app"
"#,
    );
    let r = p.converge("check", &["r"], &["--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let order: Vec<&str> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "file:/etc/other.conf",
            "package:app",
            "file:/etc/app/app.conf"
        ]
    );
    // This scratch tree has no dpkg: the package fails, and its config file waits for it.
    assert_eq!(report["resources"][1]["status"], "failed");
    assert_eq!(report["resources"][2]["status"], "skipped");
    assert_eq!(r.code, 6);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn changing_the_owner_keeps_setuid_bits_and_the_second_apply_is_a_no_op() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/usr/local/bin/tool\"\ncontent = \"#!/bin/sh\\n\"\nowner = \"1234\"\nmode = \"4755\"\n",
    )
    .root_file("/usr/local/bin/tool", "#!/bin/sh\n");
    let tool = p.at("/usr/local/bin/tool");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let check = p.check(&["r"]);
    assert_eq!(check.code, 2);
    assert!(
        check.stdout.contains("    owner: root → 1234\n"),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains("mode:"), "{}", check.stdout);
    assert_eq!(p.apply(&["r"]).code, 2);
    let md = std::fs::metadata(&tool).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (1234, 0o4755));
    assert_eq!(p.apply(&["r"]).code, 0);
}

#[test]
fn sensitive_files_are_created_private_unless_a_mode_is_given() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/token\"\ncontent = \"t\\n\"\nsensitive = true\n",
    );
    assert_eq!(p.apply(&["r"]).code, 2);
    assert_eq!(
        std::fs::metadata(p.at("/etc/token")).unwrap().mode() & 0o7777,
        0o600
    );
}

#[test]
fn a_symlink_whose_parent_is_missing_fails_in_check_as_in_apply() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[symlink]]\npath = \"/etc/nodir/link\"\ntarget = \"/x\"\n",
    );
    for cmd in ["check", "apply"] {
        let r = p.converge(cmd, &["r"], &[]);
        assert_eq!(r.code, 4, "{cmd}: {}", r.stdout);
        assert!(
            r.stdout
                .contains("/etc/nodir/link: parent directory /etc/nodir does not exist"),
            "{cmd}: {}",
            r.stdout
        );
    }
}

#[test]
fn purge_keeps_what_a_user_or_an_exec_of_the_run_owns() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        r#"
[[directory]]
path = "/srv"
purge = true

[[exec]]
name = "initdb"
command = "false"
creates = "/srv/db"
"#,
    )
    .root_file("/srv/db/data", "precious\n")
    .root_file("/srv/stray", "s\n");
    let r = p.check(&["r"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("entry stray: file → (remove)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("entry db"), "{}", r.stdout);
    assert_eq!(p.apply(&["r"]).code, 2);
    assert_eq!(
        std::fs::read_to_string(p.at("/srv/db/data")).unwrap(),
        "precious\n"
    );
    assert_eq!(p.apply(&["r"]).code, 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_link_that_another_user_controls_is_never_followed() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/home/alice/.config/app.conf\"\ncontent = \"x\\n\"\nowner = \"1000\"\n",
    );
    std::fs::create_dir_all(p.at("/etc/cron.d")).unwrap();
    std::fs::create_dir_all(p.at("/home/alice")).unwrap();
    std::os::unix::fs::chown(p.at("/home/alice"), Some(1000), Some(1000)).unwrap();
    // alice points her ~/.config at /etc/cron.d, hoping for a root-written, alice-owned file.
    std::os::unix::fs::symlink("/etc/cron.d", p.at("/home/alice/.config")).unwrap();
    std::os::unix::fs::lchown(p.at("/home/alice/.config"), Some(1000), Some(1000)).unwrap();
    for cmd in ["check", "apply"] {
        let r = p.converge(cmd, &["r"], &[]);
        assert_eq!(r.code, 4, "{cmd}: {}", r.stdout);
        assert!(
            r.stdout.contains("refusing to follow") && r.stdout.contains("belongs to uid 1000"),
            "{cmd}: {}",
            r.stdout
        );
    }
    assert_eq!(std::fs::read_dir(p.at("/etc/cron.d")).unwrap().count(), 0);
}

#[test]
fn other_sysctl_files_are_read_inside_the_tree_and_never_block() {
    let p = Project::new();
    p.file("roles/r.toml", "[sysctl]\n\"net.core.somaxconn\" = 4096\n");
    std::fs::create_dir_all(p.at("/etc/sysctl.d")).unwrap();
    let outside = p.src().parent().unwrap().join("host-only.conf");
    std::fs::write(&outside, "net.core.somaxconn = 1\n").unwrap();
    std::os::unix::fs::symlink(&outside, p.at("/etc/sysctl.d/99-local.conf")).unwrap();
    nix::unistd::mkfifo(
        &p.at("/etc/sysctl.d/98-fifo.conf"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let r = support::converge_with(
        &["timeout", "20"],
        &["check", "--color", "never", "--role", "r"],
        &p.config_path(),
    )
    .arg("--source")
    .arg(p.src())
    .arg("--root")
    .arg(p.root())
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(
        r.status.code(),
        Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(!stdout.contains("sets net.core.somaxconn = 1"), "{stdout}");
}

#[test]
fn purge_removes_entries_whose_names_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[directory]]\npath = \"/etc/conf.d\"\npurge = true\n",
    );
    std::fs::create_dir_all(p.at("/etc/conf.d")).unwrap();
    let odd = p
        .at("/etc/conf.d")
        .join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    std::fs::write(&odd, "x").unwrap();
    let r = p.check(&["r"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stdout.contains("entry bad\u{fffd}name: file → (remove)"),
        "{}",
        r.stdout
    );
    assert_eq!(p.apply(&["r"]).code, 2);
    assert!(!odd.exists());
    assert_eq!(p.apply(&["r"]).code, 0);
}

#[test]
fn a_large_rewrite_is_summarised_not_diffed() {
    let p = Project::new();
    let old: String = (0..500_000).map(|i| format!("old {i}\n")).collect();
    let new: String = (0..500_000).map(|i| format!("new {i}\n")).collect();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/big.txt\"\nsource = \"big.txt\"\n",
    )
    .file("files/big.txt", &new)
    .root_file("/etc/big.txt", &old);
    let check = p.check(&["r"]);
    assert_eq!(check.code, 2, "{}", check.stderr);
    let content = check
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("content ("))
        .unwrap_or_else(|| panic!("{}", check.stdout));
    let (b, n) = (old.len(), new.len());
    assert!(
        content.starts_with(&format!(
            "    content ({n} bytes, more than 1048576 to diff, not shown): {b} bytes, sha256 "
        )),
        "{content}"
    );
    assert!(
        content.ends_with(", 500000 lines removed, 500000 added"),
        "{content}"
    );
    assert!(check.stdout.len() < 2000, "{}", check.stdout.len());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_hard_link_is_replaced_and_the_other_file_keeps_its_owner_and_mode() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/app.conf\"\ncontent = \"secret\\n\"\nowner = \"1234\"\nmode = \"0644\"\n",
    )
    .root_file("/etc/shadow", "secret\n");
    let shadow = p.at("/etc/shadow");
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::hard_link(&shadow, p.at("/etc/app.conf")).unwrap();
    let check = p.check(&["r"]);
    assert_eq!(check.code, 2, "{}{}", check.stdout, check.stderr);
    assert!(
        check
            .stdout
            .contains("    owner: root → 1234\n    mode: 0640 → 0644\n"),
        "{}",
        check.stdout
    );
    let apply = p.apply(&["r"]);
    assert_eq!(apply.code, 2, "{}{}", apply.stdout, apply.stderr);
    let md = std::fs::metadata(&shadow).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777, md.nlink()), (0, 0o640, 1));
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "secret\n");
    let app = std::fs::metadata(p.at("/etc/app.conf")).unwrap();
    assert_eq!((app.uid(), app.mode() & 0o7777), (1234, 0o644));
    assert_ne!(app.ino(), md.ino());
    assert_eq!(p.apply(&["r"]).code, 0);
}

#[test]
fn variables_rendered_into_sensitive_files_never_reach_logs_or_errors() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/token\"\ntemplate = \"token.hbs\"\nsensitive = true\n",
    )
    .file(
        "templates/token.hbs",
        "token={{upper vars.token}}\nkey={{vars.key}}\nhosts={{join vars.hosts \",\"}}\n",
    );
    let config = p.src().parent().unwrap().join("agent.toml");
    let state = p.src().parent().unwrap().join("state");
    std::fs::write(
        &config,
        format!(
            "source = \"{}\"\nstate_dir = \"{}\"\n[vars]\nkey = \"agent-config-secret\"\nhosts = [\"h1\"]\n",
            p.src().display(),
            state.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let secrets = ["cli-secret", "CLI-SECRET", "agent-config-secret"];
    let (root, facts) = (
        p.root().display().to_string(),
        p.facts_path().display().to_string(),
    );
    // The agent path: the source and the [vars] come from the agent config.
    let run = |cmd: &str, token: &str| {
        let var = format!("token={token}");
        p.run(&[
            cmd, "--config", &config, "--root", &root, "--facts", &facts, "--role", "r", "--var",
            &var, "-vvv",
        ])
    };
    for cmd in ["check", "apply"] {
        let r = run(cmd, "cli-secret");
        assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
        for s in secrets {
            assert!(
                !r.stdout.contains(s) && !r.stderr.contains(s),
                "{cmd} leaks {s}:\n{}{}",
                r.stdout,
                r.stderr
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(p.at("/etc/token")).unwrap(),
        "token=CLI-SECRET\nkey=agent-config-secret\nhosts=h1\n"
    );
    // A helper error names the variable, not its value.
    p.file(
        "templates/token.hbs",
        "token={{vars.token}}\nhosts={{join vars.key \",\"}}\n",
    );
    let r = run("apply", "cli-secret");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("helper 'join': 'vars.key' is a string, expected a list"),
        "{}",
        r.stderr
    );
    for s in secrets {
        assert!(
            !r.stdout.contains(s) && !r.stderr.contains(s),
            "leaks {s}:\n{}",
            r.stderr
        );
    }
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_trees_own_links_resolve_inside_it_for_facts_and_owners() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/app.conf\"\ncontent = \"x\\n\"\nowner = \"treeuser\"\n",
    )
    .root_file("/usr/lib/os-release", "ID=treeos\nVERSION_ID=\"7\"\n")
    .root_file(
        "/etc/passwd-",
        "root:x:0:0::/root:/bin/sh\ntreeuser:x:4321:4321::/:/bin/sh\n",
    );
    // Absolute links, as a Debian tree has them: followed on the host they would give the
    // host's os-release and the host's users.
    std::os::unix::fs::symlink("/usr/lib/os-release", p.at("/etc/os-release")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd-", p.at("/etc/passwd")).unwrap();
    let root = p.root().display().to_string();
    let facts = p.run(&["facts", "--root", &root, "--json"]);
    assert_eq!(facts.code, 0, "{}", facts.stderr);
    let facts: serde_json::Value = serde_json::from_str(&facts.stdout).unwrap();
    assert_eq!(facts["os"]["id"], "treeos");
    assert_eq!(facts["os"]["version_id"], "7");
    let apply = p.apply(&["r"]);
    assert_eq!(apply.code, 2, "{}{}", apply.stdout, apply.stderr);
    assert_eq!(
        std::fs::metadata(p.at("/etc/app.conf")).unwrap().uid(),
        4321
    );
}

#[test]
fn a_fifo_at_the_trees_passwd_is_refused_not_waited_on() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/app.conf\"\ncontent = \"x\\n\"\nowner = \"root\"\n\n[[user]]\nname = \"svc\"\n",
    );
    let fifo = p.at("/etc/passwd");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let check = p.check(&["r"]);
    assert!(
        check
            .stderr
            .contains("/etc/passwd is a fifo, not a regular file: not read"),
        "{}{}",
        check.stdout,
        check.stderr
    );
    assert!(check.stdout.contains("! user:svc"), "{}", check.stdout);
    assert!(
        check.stdout.contains("+ create file:/etc/app.conf"),
        "{}",
        check.stdout
    );
}
