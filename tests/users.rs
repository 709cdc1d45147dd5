//! `[[user]]` and `[[group]]` against a real Debian tree (an overlay chroot) with `--root`:
//! the shadow-utils tools do the changes, converge reads the tree's /etc/passwd and /etc/group.
//! Needs root and `scripts/test-deps`.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use support::Chroot;

/// A source tree with the given roles.
fn source(roles: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("roles")).unwrap();
    for (name, text) in roles {
        std::fs::write(dir.path().join(format!("roles/{name}.toml")), text).unwrap();
    }
    dir
}

/// Runs `converge MODE --role ROLE --root ROOT` and returns (exit code, stdout + stderr).
fn converge(mode: &str, src: &Path, role: &str, root: &Path) -> (i32, String) {
    support::tools::converge_tree(mode, role, src, root, &[])
}

fn passwd_line(ch: &Chroot, user: &str) -> Option<String> {
    std::fs::read_to_string(ch.path().join("etc/passwd"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .map(str::to_owned)
}

const ACCOUNTS: &str = r#"
[[group]]
name = "cvgapp"
gid = 1600

[[user]]
name = "cvgapp"
uid = 1600
group = "cvgapp"
groups = ["adm"]
home = "/srv/cvgapp"
shell = "/bin/sh"
comment = "converge test"
"#;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_new_group_and_user_are_created_and_own_a_file_of_the_same_run() {
    let ch = Chroot::new();
    let files = r#"
include = ["accounts"]

[[file]]
path = "/srv/cvgapp/app.conf"
content = "x\n"
owner = "cvgapp"
group = "cvgapp"
mode = "0640"
after = ["user:cvgapp"]
"#;
    let src = source(&[("accounts", ACCOUNTS), ("files", files)]);

    let (rc, out) = converge("check", src.path(), "accounts", ch.path());
    assert_eq!(rc, 2, "{out}");
    insta::assert_snapshot!("accounts_fresh_check", out);
    assert!(
        out.contains("+ create group:cvgapp  (role accounts)\n    gid: 1600\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "+ create user:cvgapp  (role accounts)\n    uid: 1600\n    group: cvgapp\n    groups: adm\n    \
             home: /srv/cvgapp\n    shell: /bin/sh\n    comment: converge test\n    home directory: create\n"
        ),
        "{out}"
    );
    assert_eq!(passwd_line(&ch, "cvgapp"), None, "check must not create");

    // The file's owner and parent (the user's home) come from the same run: check reports
    // the change instead of failing on an owner that does not exist yet.
    let (rc, out) = converge("check", src.path(), "files", ch.path());
    assert_eq!(rc, 2, "{out}");
    assert!(
        out.contains("+ create file:/srv/cvgapp/app.conf  (role files)\n    owner: cvgapp\n    group: cvgapp\n    mode: 0640\n"),
        "{out}"
    );

    let (rc, out) = converge("apply", src.path(), "files", ch.path());
    assert_eq!(rc, 2, "{out}");
    assert_eq!(
        passwd_line(&ch, "cvgapp").as_deref(),
        Some("cvgapp:x:1600:1600:converge test:/srv/cvgapp:/bin/sh")
    );
    assert_eq!(ch.run_ok(&["id", "-Gn", "cvgapp"]).trim(), "cvgapp adm");
    let md = std::fs::metadata(ch.path().join("srv/cvgapp/app.conf")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1600, 1600, 0o640)
    );
    assert!(ch.path().join("srv/cvgapp").is_dir(), "home created");

    let (rc, out) = converge("check", src.path(), "files", ch.path());
    assert_eq!(rc, 0, "{out}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn changes_and_out_of_band_drift_show_field_by_field() {
    let ch = Chroot::new();
    let v2 = ACCOUNTS
        .replace("shell = \"/bin/sh\"", "shell = \"/bin/bash\"")
        .replace("groups = [\"adm\"]", "groups = [\"adm\", \"www-data\"]");
    let src = source(&[("v1", ACCOUNTS), ("v2", &v2)]);
    assert_eq!(converge("apply", src.path(), "v1", ch.path()).0, 2);

    let (rc, out) = converge("check", src.path(), "v2", ch.path());
    assert_eq!(rc, 2, "{out}");
    assert!(
        out.contains(
            "~ update user:cvgapp  (role v2)\n    groups: adm → adm, www-data\n    shell: /bin/sh → /bin/bash\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("2 resources: 1 in sync, 1 would change"),
        "{out}"
    );
    assert_eq!(converge("apply", src.path(), "v2", ch.path()).0, 2);
    assert!(passwd_line(&ch, "cvgapp").unwrap().ends_with(":/bin/bash"));
    assert_eq!(
        ch.run_ok(&["id", "-Gn", "cvgapp"]).trim(),
        "cvgapp adm www-data"
    );

    // Someone changes the account by hand; the next check sees exactly that.
    ch.run_ok(&["usermod", "-s", "/bin/false", "-G", "adm", "cvgapp"]);
    let (rc, out) = converge("check", src.path(), "v2", ch.path());
    assert_eq!(rc, 2, "{out}");
    insta::assert_snapshot!("accounts_drift_check", out);
    assert!(
        out.contains("    groups: adm → adm, www-data\n    shell: /bin/false → /bin/bash\n"),
        "{out}"
    );
    assert_eq!(converge("apply", src.path(), "v2", ch.path()).0, 2);
    assert_eq!(converge("apply", src.path(), "v2", ch.path()).0, 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn absent_removes_the_user_its_home_and_then_its_group() {
    let ch = Chroot::new();
    let gone = r#"
[[user]]
name = "cvgapp"
ensure = "absent"

[[group]]
name = "cvgapp"
ensure = "absent"
after = ["user:cvgapp"]
"#;
    let src = source(&[("accounts", ACCOUNTS), ("gone", gone)]);
    assert_eq!(converge("apply", src.path(), "accounts", ch.path()).0, 2);
    assert!(ch.path().join("srv/cvgapp").is_dir());

    let (rc, out) = converge("check", src.path(), "gone", ch.path());
    assert_eq!(rc, 2, "{out}");
    insta::assert_snapshot!("accounts_absent_check", out);
    let user = out.find("- remove user:cvgapp").expect(&out);
    let group = out.find("- remove group:cvgapp").expect(&out);
    assert!(user < group, "the user goes first: {out}");
    assert!(
        out.contains("    home directory: /srv/cvgapp → (remove)\n"),
        "{out}"
    );

    let (rc, out) = converge("apply", src.path(), "gone", ch.path());
    assert_eq!(rc, 2, "{out}");
    assert_eq!(passwd_line(&ch, "cvgapp"), None);
    let groups = std::fs::read_to_string(ch.path().join("etc/group")).unwrap();
    assert!(!groups.contains("cvgapp"), "{groups}");
    assert!(!ch.path().join("srv/cvgapp").exists());
    assert_eq!(converge("apply", src.path(), "gone", ch.path()).0, 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_failing_account_tool_is_a_clear_failure_and_later_steps_are_skipped() {
    let ch = Chroot::new();
    let role = r#"
[[user]]
name = "cvgapp"
group = "nosuchgroup"

[[file]]
path = "/etc/cvgapp.conf"
content = "x\n"
owner = "cvgapp"
"#;
    let src = source(&[("bad", role)]);
    let (rc, out) = converge("apply", src.path(), "bad", ch.path());
    assert_eq!(rc, 4, "{}", out);
    assert!(
        out.contains("! user:cvgapp  (role bad)\n    useradd --root "),
        "{out}"
    );
    assert!(out.contains("group 'nosuchgroup' does not exist"), "{out}");
    assert!(
        out.contains("skipped: user:cvgapp did not converge"),
        "{out}"
    );
}

#[test]
fn unknown_keys_and_bad_names_are_located_errors() {
    let root = tempfile::tempdir().unwrap();
    let src = source(&[
        ("typo", "[[user]]\nname = \"app\"\nshel = \"/bin/sh\"\n"),
        (
            "names",
            "[[group]]\nname = \"bad name\"\n\n[[user]]\nname = \"app\"\ngid = 5\ngroup = \"app\"\n",
        ),
    ]);
    let (rc, out) = converge("check", src.path(), "typo", root.path());
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("roles/typo.toml:3:1: unknown field `shel`"),
        "{out}"
    );
    let (rc, out) = converge("check", src.path(), "names", root.path());
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("roles/names.toml:2:8: invalid group name 'bad name'"),
        "{out}"
    );
    assert!(
        out.contains("roles/names.toml:7:9: give the primary group as gid or as group, not both"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_user_goes_after_its_groups_even_when_declared_first() {
    let ch = Chroot::new();
    // Roles load in the order given, so without the implicit edge the user would come first.
    let src = source(&[
        (
            "people",
            "[[user]]\nname = \"cvgapp\"\ngroup = \"cvgapp\"\ngroups = [\"cvgextra\"]\n",
        ),
        (
            "groups",
            "[[group]]\nname = \"cvgextra\"\n\n[[group]]\nname = \"cvgapp\"\n",
        ),
    ]);
    let out = support::converge(&[
        "apply", "--color", "never", "--role", "people", "--role", "groups",
    ])
    .arg("--source")
    .arg(src.path())
    .arg("--root")
    .arg(ch.path())
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let user = text.find("+ create user:cvgapp").expect(&text);
    assert!(text.find("+ create group:cvgapp").unwrap() < user, "{text}");
    assert!(
        text.find("+ create group:cvgextra").unwrap() < user,
        "{text}"
    );
    assert_eq!(
        ch.run_ok(&["id", "-Gn", "cvgapp"]).trim(),
        "cvgapp cvgextra"
    );
}
