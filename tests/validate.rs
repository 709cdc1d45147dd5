//! `validate = "COMMAND {path}"` with the real nginx of a Debian tree (an overlay chroot):
//! a config nginx rejects never replaces the old one, in check and apply alike. Needs root and
//! `scripts/test-deps`.

mod support;

use std::path::Path;

use support::Chroot;

const GOOD: &str = "events {}\nhttp { server { listen 127.0.0.1:8080; } }\n";
const BROKEN: &str = "events {}\nhttp { server { listen 127.0.0.1:8080; bogus_directive on; } }\n";

fn role(content: &str) -> String {
    format!(
        r#"
[[file]]
path = "/etc/nginx/nginx.conf"
content = '''{content}'''
validate = "nginx -t -q -c {{path}}"

[[file]]
path = "/etc/nginx/after-conf"
content = "depends on the config\n"
after = ["file:/etc/nginx/nginx.conf"]
"#
    )
}

fn converge(mode: &str, src: &Path, root: &Path) -> (i32, String) {
    support::tools::converge_tree(mode, "web", src, root, &[])
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_config_nginx_rejects_keeps_the_old_file_and_skips_what_depends_on_it() {
    let ch = Chroot::new();
    let before = std::fs::read_to_string(ch.path().join("etc/nginx/nginx.conf")).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("roles")).unwrap();
    std::fs::write(src.path().join("roles/web.toml"), role(BROKEN)).unwrap();

    for (mode, prefix) in [
        ("check", "would fail validation:"),
        ("apply", "validation failed (the old file was kept):"),
    ] {
        let (rc, out) = converge(mode, src.path(), ch.path());
        assert_eq!(rc, 4, "{out}");
        assert!(
            out.contains(&format!(
                "{prefix} `nginx -t -q -c {{path}}` exited with status 1: "
            )),
            "{out}"
        );
        // nginx's own words, pointing at the managed path rather than the temp copy.
        assert!(
            out.contains("unknown directive \"bogus_directive\" in /etc/nginx/nginx.conf:2\n"),
            "{out}"
        );
        assert!(
            out.contains("skipped: file:/etc/nginx/nginx.conf did not converge"),
            "{out}"
        );
        assert_eq!(
            std::fs::read_to_string(ch.path().join("etc/nginx/nginx.conf")).unwrap(),
            before
        );
        assert!(!ch.path().join("etc/nginx/after-conf").exists());
    }
    // The temp copies are gone from the tree.
    let leftovers: Vec<_> = std::fs::read_dir(ch.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    std::fs::write(src.path().join("roles/web.toml"), role(GOOD)).unwrap();
    let (rc, out) = converge("apply", src.path(), ch.path());
    assert_eq!(rc, 2, "{out}");
    assert_eq!(
        std::fs::read_to_string(ch.path().join("etc/nginx/nginx.conf")).unwrap(),
        GOOD
    );
    assert!(ch.path().join("etc/nginx/after-conf").exists());
    let (rc, out) = converge("apply", src.path(), ch.path());
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn validate_must_name_the_file_to_check() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("roles")).unwrap();
    std::fs::write(
        src.path().join("roles/web.toml"),
        "[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\nvalidate = \"nginx -t\"\n",
    )
    .unwrap();
    let (rc, out) = converge("check", src.path(), root.path());
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains(
            "roles/web.toml:4:12: validate 'nginx -t': the command must name the file to check as {path}, e.g. \"nginx -t -c {path}\""
        ),
        "{out}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_writes_nothing_into_the_tree_nor_through_a_link_at_its_tmp() {
    let ch = Chroot::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(ch.path().join("tmp")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ch.path().join("tmp")).unwrap();
    let before = ch.changed();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("roles")).unwrap();
    std::fs::write(src.path().join("roles/web.toml"), role(GOOD)).unwrap();
    let (rc, out) = converge("check", src.path(), ch.path());
    assert_eq!(rc, 4, "{out}");
    // Inside the tree the link leads back to itself: nowhere to show the command its file,
    // and nothing written to find out.
    assert!(
        out.contains(
            "would fail validation: `nginx -t -q -c {path}` could not run: \
             /tmp/.converge-validate: resolves outside the root through symbolic links"
        ),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(ch.changed(), before);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_and_apply_show_the_command_its_file_without_writing_into_the_tree() {
    let ch = Chroot::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("roles")).unwrap();
    // nginx -t writes a pid file and logs of its own: a checker that only reads shows what
    // converge itself writes.
    let role = role(GOOD).replace("nginx -t -q -c {path}", "grep -q listen {path}");
    std::fs::write(src.path().join("roles/web.toml"), role).unwrap();
    let (rc, out) = converge("check", src.path(), ch.path());
    assert_eq!(rc, 2, "{out}");
    assert_eq!(ch.changed(), Vec::<std::path::PathBuf>::new());
    let (rc, out) = converge("apply", src.path(), ch.path());
    assert_eq!(rc, 2, "{out}");
    // Only the two managed files (and the directories above them) were written.
    assert_eq!(
        ch.changed(),
        [
            "/etc",
            "/etc/nginx",
            "/etc/nginx/after-conf",
            "/etc/nginx/nginx.conf"
        ]
        .map(std::path::PathBuf::from)
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn no_quoting_of_the_placeholder_makes_the_file_name_shell_code() {
    let ch = Chroot::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("roles")).unwrap();
    let mut role = String::new();
    for (i, quoted) in [
        "{path}",
        "\"{path}\"",
        "'{path}'",
        "\"$(printf %s {path})\"",
    ]
    .iter()
    .enumerate()
    {
        role.push_str(&format!(
            "[[file]]\npath = \"/etc/{i}$(touch pwned{i})`touch tick{i}`.conf\"\ncontent = \"x\\n\"\nvalidate = '''test -s {quoted}'''\n\n"
        ));
    }
    std::fs::write(src.path().join("roles/web.toml"), role).unwrap();
    let (rc, out) = converge("check", src.path(), ch.path());
    let pwned: Vec<_> = std::fs::read_dir(ch.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pwned") || n.starts_with("tick"))
        .collect();
    assert_eq!(pwned, Vec::<String>::new(), "{out}");
    assert_eq!(ch.changed(), Vec::<std::path::PathBuf>::new());
    assert!(!out.contains("validation"), "{out}");
    assert_eq!(rc, 2, "{out}");
}
