//! The RHEL family: a tree that says it is Rocky Linux, with its own rpm database,
//! converged, snapshotted and compared with `--root` through the host's real dnf and rpm,
//! from a local repository of tiny RPMs at exact versions. Needs root and
//! `scripts/test-deps`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::tools::converge_tree;
use support::*;

/// cfgtest at 1.0-1 and 2.0-1, epochpkg 1.0-1 with epoch 2, tool 1.0-1 that requires
/// toollib 1.0-1 (neither with a config file), and NetTool 1.0-3.el9_2, named and released
/// as the RHEL family names and releases packages, built once per run.
fn repo() -> &'static RpmRepo {
    static REPO: OnceLock<(tempfile::TempDir, RpmRepo)> = OnceLock::new();
    &REPO
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let rpm = |name, epoch, version| Rpm {
                name,
                epoch,
                version,
                release: "1",
                requires: None,
                config: true,
                arch: "noarch",
            };
            let repo = RpmRepo::build(
                &dir.path().join("rpms"),
                &[
                    rpm("cfgtest", 0, "1.0"),
                    rpm("cfgtest", 0, "2.0"),
                    rpm("epochpkg", 2, "1.0"),
                    Rpm {
                        requires: Some("toollib"),
                        config: false,
                        ..rpm("tool", 0, "1.0")
                    },
                    Rpm {
                        config: false,
                        ..rpm("toollib", 0, "1.0")
                    },
                    Rpm {
                        release: "3.el9_2",
                        config: false,
                        ..rpm("NetTool", 0, "1.0")
                    },
                ],
            );
            (dir, repo)
        })
        .1
}

struct Scene {
    root: RpmRoot,
    src: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("roles")).unwrap();
        Scene {
            root: RpmRoot::new(repo()),
            src,
        }
    }

    fn role(&self, text: &str) {
        fs::write(self.src.path().join("roles/pkg.toml"), text).unwrap();
    }

    fn expect(&self, mode: &str, code: i32) -> String {
        let (got, text) = converge_tree(mode, "pkg", self.src.path(), self.root.path(), &[]);
        assert_eq!(got, code, "converge {mode}\n{text}");
        eprintln!("{text}");
        text
    }

    fn installed(&self) -> Option<String> {
        self.root.installed("cfgtest")
    }

    fn rpm_file(&self, version: &str) -> PathBuf {
        repo().dir().join(format!("cfgtest-{version}.noarch.rpm"))
    }

    /// cfgtest, pinned at 1.0-1 and locked, was moved to 2.0-1 by hand: check shows the
    /// version going back and no new lock, apply puts it back, and the lock stays.
    fn expect_put_back(&self) {
        assert_eq!(self.installed().as_deref(), Some("2.0-1"));
        let out = self.expect("check", 2);
        assert!(out.contains("~ update package:cfgtest"), "{out}");
        assert!(
            out.contains("version: 2.0-1.noarch → 1.0-1.noarch\n"),
            "{out}"
        );
        // The lock entry is still there: only the version moved.
        assert!(!out.contains("hold:"), "{out}");
        self.expect("apply", 2);
        assert_eq!(self.installed().as_deref(), Some("1.0-1"));
        assert_eq!(self.root.locks(), ["cfgtest-0:1.0-1.*"]);
        self.expect("check", 0);
    }

    /// Check and apply both refuse the role's package with `refused`, and nothing changes.
    fn expect_refused(&self, refused: &str) {
        for mode in ["check", "apply"] {
            let out = self.expect(mode, 4);
            assert!(out.contains(refused), "{out}");
        }
        assert_eq!(self.installed(), None);
        assert!(!self.root.path().join("var/cache/converge").exists());
    }

    /// Ships `file` in the bundle as `files/pkgs/NAME`.
    fn ship(&self, file: &Path, name: &str) {
        let dir = self.src.path().join("files/pkgs");
        fs::create_dir_all(&dir).unwrap();
        fs::copy(file, dir.join(name)).unwrap();
    }
}

const PINNED: &str = "[[package]]\nname = \"cfgtest\"\nversion = \"1.0-1\"\n";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_pinned_rpm_is_installed_locked_and_pulled_back_after_drift() {
    let s = Scene::new();
    s.role(PINNED);
    let out = s.expect("check", 2);
    assert!(out.contains("+ create package:cfgtest"), "{out}");
    assert!(out.contains("version: 1.0-1.noarch"), "{out}");
    assert!(out.contains("hold: not held → held"), "{out}");
    assert_eq!(s.installed(), None, "check installed something");

    s.expect("apply", 2);
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    assert_eq!(s.root.locks(), ["cfgtest-0:1.0-1.*"]);
    let out = s.expect("check", 0);
    assert!(out.contains("0 would change, 0 failed"), "{out}");

    // dnf's own versionlock plugin, pointed at the tree's list, keeps 2.0-1 out.
    let locked = plugin_dnf(&s.root, &["install", "cfgtest-2.0-1"]);
    assert!(!locked.status.success(), "{}", output_text(&locked));
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));

    // Someone moves it out of band, past dnf and its lock.
    s.root
        .rpm_ok(&["-U", s.rpm_file("2.0-1").to_str().unwrap()]);
    s.expect_put_back();

    // A new pin moves the package and its lock with it.
    s.role("[[package]]\nname = \"cfgtest\"\nversion = \"2.0-1\"\n");
    s.expect("apply", 2);
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));
    assert_eq!(s.root.locks(), ["cfgtest-0:2.0-1.*"]);
    s.expect("check", 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_name_with_capitals_and_a_release_with_an_underscore_are_pinned_as_rhel_names_them() {
    let s = Scene::new();
    s.role("[[package]]\nname = \"NetTool\"\nversion = \"1.0-3.el9_2\"\n");
    let out = s.expect("check", 2);
    assert!(out.contains("+ create package:NetTool"), "{out}");
    assert!(out.contains("version: 1.0-3.el9_2.noarch"), "{out}");
    s.expect("apply", 2);
    assert_eq!(s.root.installed("NetTool").as_deref(), Some("1.0-3.el9_2"));
    let out = s.expect("check", 0);
    assert!(out.contains("0 would change, 0 failed"), "{out}");
}

const FROM_FILE: &str = "[[package]]\nname = \"cfgtest\"\nsource = \"pkgs/cfgtest.rpm\"\n";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn an_rpm_of_the_bundle_is_installed_held_and_put_back_after_drift() {
    let s = Scene::new();
    s.ship(&s.rpm_file("1.0-1"), "cfgtest.rpm");
    s.role(FROM_FILE);
    let out = s.expect("check", 2);
    assert!(
        out.contains(
            "+ create package:cfgtest  (role pkg)\n    version: 1.0-1.noarch\n    hold: not held → held\n"
        ),
        "{out}"
    );
    assert_eq!(s.installed(), None, "check installed something");

    s.expect("apply", 2);
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    assert_eq!(s.root.locks(), ["cfgtest-0:1.0-1.*"]);
    assert!(
        !s.root.path().join("var/cache/converge").exists(),
        "the staged copy and the directories made for it are removed"
    );
    let out = s.expect("apply", 0);
    assert!(out.contains("0 changed, 0 failed"), "{out}");

    // A newer version from the repository, installed by hand past the lock.
    s.root.dnf_ok(&["install", "cfgtest-2.0-1"]);
    s.expect_put_back();

    // A new file in the bundle moves the package and its lock; the file's version, as
    // the role may give it, and the name with its arch name the same package.
    s.ship(&s.rpm_file("2.0-1"), "cfgtest.rpm");
    s.role("[[package]]\nname = \"cfgtest.noarch\"\nversion = \"2.0-1\"\nsource = \"pkgs/cfgtest.rpm\"\n");
    let out = s.expect("apply", 2);
    assert!(
        out.contains("version: 1.0-1.noarch → 2.0-1.noarch"),
        "{out}"
    );
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));
    assert_eq!(s.root.locks(), ["cfgtest-0:2.0-1.*"]);
    s.expect("check", 0);

    s.role("[[package]]\nname = \"cfgtest\"\nensure = \"absent\"\n");
    s.expect("apply", 2);
    assert_eq!(s.installed(), None);
    assert!(s.root.locks().is_empty());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn an_rpm_that_is_not_the_declared_package_is_refused_with_its_place() {
    let s = Scene::new();
    s.ship(&s.rpm_file("1.0-1"), "cfgtest.rpm");
    fs::write(s.src.path().join("files/pkgs/junk.rpm"), "not a package").unwrap();
    s.role(
        "[[package]]\nname = \"other\"\nsource = \"pkgs/cfgtest.rpm\"\n\n\
         [[package]]\nname = \"cfgtest\"\nversion = \"2.0-1\"\nsource = \"pkgs/cfgtest.rpm\"\n\n\
         [[package]]\nname = \"cfgtest.x86_64\"\nsource = \"pkgs/cfgtest.rpm\"\n\n\
         [[package]]\nname = \"junk\"\nsource = \"pkgs/junk.rpm\"\n",
    );
    let out = s.expect("check", 1);
    for expected in [
        "roles/pkg.toml:2:8: package 'other': files/pkgs/cfgtest.rpm is package 'cfgtest' (noarch), not 'other'",
        "roles/pkg.toml:7:11: package 'cfgtest': version '2.0-1' is not the version of files/pkgs/cfgtest.rpm ('1.0-1.noarch'); give the file's version or none",
        "roles/pkg.toml:11:8: package 'cfgtest.x86_64': files/pkgs/cfgtest.rpm is package 'cfgtest' (noarch), not 'cfgtest.x86_64'",
        "roles/pkg.toml:16:10: package 'junk': files/pkgs/junk.rpm is not a readable package file: it is neither a Debian package (.deb) nor an RPM package (.rpm)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    s.expect("apply", 1);
    assert_eq!(s.installed(), None);
    assert!(!s.root.path().join("var/cache/converge").exists());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_deb_on_an_rpm_host_is_refused_at_check() {
    let s = Scene::new();
    let debs = tempfile::tempdir().unwrap();
    let deb = build_deb(
        debs.path(),
        &Deb {
            name: "cfgtest",
            version: "1.0-1",
            depends: None,
            files: &[],
        },
    );
    s.ship(&deb, "cfgtest.deb");
    s.role("[[package]]\nname = \"cfgtest\"\nsource = \"pkgs/cfgtest.deb\"\n");
    s.expect_refused("package cfgtest: files/pkgs/cfgtest.deb cannot be installed on this host: it is a Debian package (.deb), and this host's packages are rpm's (dnf); nothing was changed");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn an_rpm_for_another_machine_is_refused_at_check() {
    let s = Scene::new();
    let dir = tempfile::tempdir().unwrap();
    let other = if std::env::consts::ARCH == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    let built = RpmRepo::build(
        dir.path(),
        &[Rpm {
            name: "cfgtest",
            epoch: 0,
            version: "3.0",
            release: "1",
            requires: None,
            config: false,
            arch: other,
        }],
    );
    s.ship(
        &built.dir().join(format!("cfgtest-3.0-1.{other}.rpm")),
        "cfgtest.rpm",
    );
    s.role(FROM_FILE);
    let refused = format!(
        "package cfgtest: files/pkgs/cfgtest.rpm cannot be installed on this host: it is built for architecture {other}, and rpm here installs {} or noarch; nothing was changed",
        std::env::consts::ARCH
    );
    s.expect_refused(&refused);
}

/// A name with its arch (`NAME.ARCH`) is pinned, locked as `dnf versionlock add` locks
/// it, and that lock keeps dnf from moving it.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_name_with_its_arch_is_pinned_and_locked_as_the_plugin_locks_it() {
    let s = Scene::new();
    s.role("[[package]]\nname = \"cfgtest.noarch\"\nversion = \"1.0-1\"\n");
    s.expect("apply", 2);
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    s.expect("check", 0);

    // The plugin's own entry for the same package, in a second tree.
    let plugin = RpmRoot::new(repo());
    plugin.dnf_ok(&["install", "cfgtest-1.0-1"]);
    // The plugin adds to a list that exists.
    fs::write(plugin.path().join("etc/dnf/plugins/versionlock.list"), "").unwrap();
    let out = plugin_dnf(&plugin, &["versionlock", "add", "cfgtest.noarch"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(s.root.locks(), plugin.locks());
    assert_eq!(s.root.locks(), ["cfgtest-0:1.0-1.*"]);

    let out = plugin_dnf(&s.root, &["install", "cfgtest-2.0-1"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));

    // Moved by hand past the lock: put back, and the lock kept.
    s.root
        .rpm_ok(&["-U", s.rpm_file("2.0-1").to_str().unwrap()]);
    s.expect_put_back();
}

/// dnf against `root` with its versionlock plugin alone, reading the tree's list.
fn plugin_dnf(root: &RpmRoot, args: &[&str]) -> std::process::Output {
    let plugins = tempfile::tempdir().unwrap();
    fs::write(
        plugins.path().join("versionlock.conf"),
        format!(
            "[main]\nenabled = 1\nlocklist = {}\n",
            root.path()
                .join("etc/dnf/plugins/versionlock.list")
                .display()
        ),
    )
    .unwrap();
    let mut installroot = std::ffi::OsString::from("--installroot=");
    installroot.push(root.path());
    Command::new("dnf")
        .args(["-y", "-q"])
        .arg(installroot)
        .arg(format!(
            "--setopt=pluginconfpath={}",
            plugins.path().display()
        ))
        .args(["--disableplugin=*", "--enableplugin=versionlock"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_version_in_no_enabled_repository_fails_before_anything_changes() {
    let s = Scene::new();
    s.role("[[package]]\nname = \"cfgtest\"\nversion = \"9.9-9\"\n");
    let out = s.expect("apply", 4);
    assert!(
        out.contains(
            "package cfgtest: version 9.9-9 not found in any enabled repository (available: 2.0-1.noarch, 1.0-1.noarch); nothing was changed"
        ),
        "{out}"
    );
    assert_eq!(s.installed(), None);

    s.role("[[package]]\nname = \"nosuchpkg\"\n");
    let out = s.expect("check", 4);
    assert!(
        out.contains("package nosuchpkg: not found in any enabled repository (is its repository configured and enabled?)"),
        "{out}"
    );

    // Installed and locked at a good version: a typo in the role moves nothing.
    s.role(PINNED);
    s.expect("apply", 2);
    s.role("[[package]]\nname = \"cfgtest\"\nversion = \"9.9-9\"\n");
    s.expect("apply", 4);
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    assert_eq!(s.root.locks(), ["cfgtest-0:1.0-1.*"]);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn latest_upgrades_and_absent_removes_an_rpm() {
    let s = Scene::new();
    s.root.dnf_ok(&["install", "cfgtest-1.0-1"]);
    s.role("[[package]]\nname = \"cfgtest\"\nensure = \"latest\"\n");
    let out = s.expect("apply", 2);
    assert!(
        out.contains("version: 1.0-1.noarch → 2.0-1.noarch"),
        "{out}"
    );
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));
    assert!(s.root.locks().is_empty(), "only pinned packages are held");
    s.expect("check", 0);

    // Installed without a version: whatever is there stays.
    s.role("[[package]]\nname = \"cfgtest\"\n");
    s.expect("check", 0);

    // Edited %config files outlive the package, as .rpmsave.
    fs::write(s.root.path().join("etc/cfgtest.conf"), "edited\n").unwrap();
    s.role("[[package]]\nname = \"cfgtest\"\nensure = \"absent\"\n");
    let out = s.expect("apply", 2);
    assert!(out.contains("- remove package:cfgtest"), "{out}");
    assert_eq!(s.installed(), None);
    assert!(!s.root.path().join("usr/share/cfgtest/version").exists());
    assert_eq!(
        fs::read_to_string(s.root.path().join("etc/cfgtest.conf.rpmsave")).unwrap(),
        "edited\n"
    );
    s.expect("check", 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_pin_without_its_epoch_or_with_its_arch_names_the_same_package() {
    let s = Scene::new();
    s.role("[[package]]\nname = \"epochpkg\"\nversion = \"1.0-1\"\n");
    let out = s.expect("apply", 2);
    assert!(out.contains("version: 2:1.0-1.noarch"), "{out}");
    assert_eq!(s.root.installed("epochpkg").as_deref(), Some("1.0-1"));
    assert_eq!(s.root.locks(), ["epochpkg-2:1.0-1.*"]);
    s.expect("check", 0);
    for pin in ["2:1.0-1", "2:1.0-1.noarch", "1.0-1.noarch"] {
        s.role(&format!(
            "[[package]]\nname = \"epochpkg\"\nversion = \"{pin}\"\n"
        ));
        s.expect("check", 0);
    }
    s.role("[[package]]\nname = \"epochpkg\"\nversion = \"1:1.0-1\"\n");
    let out = s.expect("check", 4);
    assert!(out.contains("version 1:1.0-1 not found"), "{out}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_pin_where_dnf_cannot_lock_says_so() {
    let s = Scene::new();
    fs::remove_file(s.root.path().join("etc/dnf/plugins/versionlock.conf")).unwrap();
    s.role(PINNED);
    let out = s.expect("apply", 4);
    assert!(
        out.contains("cannot hold package cfgtest: dnf's versionlock plugin is not installed or not enabled on this host (/etc/dnf/plugins/versionlock.conf; install python3-dnf-plugin-versionlock)"),
        "{out}"
    );
    assert!(s.root.locks().is_empty());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn facts_of_an_rpm_tree_name_its_family() {
    let root = RpmRoot::new(repo());
    let out = converge(&["facts", "--json", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(facts["os"]["family"], "redhat");
    assert_eq!(facts["os"]["id"], "rocky");
    assert_eq!(facts["os"]["version_id"], "9.3");
}

/// `converge snapshot --root ROOT` into `file`.
fn snapshot(root: &RpmRoot, file: &Path) {
    let out = converge(&["snapshot", "--root"])
        .arg(root.path())
        .arg("-o")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

fn read_json(file: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn compare_of_two_rpm_trees_names_the_packages_and_the_edited_config_file_only() {
    let (a, b) = (RpmRoot::new(repo()), RpmRoot::new(repo()));
    a.dnf_ok(&["install", "cfgtest-1.0-1", "tool"]);
    b.dnf_ok(&["install", "cfgtest-2.0-1"]);
    fs::write(a.path().join("etc/cfgtest.conf"), "setting = tuned\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a_json, b_json) = (dir.path().join("a.json"), dir.path().join("b.json"));
    snapshot(&a, &a_json);
    snapshot(&b, &b_json);

    let snap = read_json(&a_json);
    assert_eq!(snap["host"]["os_family"], "redhat");
    let pkg = &snap["packages"];
    assert_eq!(
        pkg["cfgtest"],
        serde_json::json!({"version": "1.0-1", "arch": "noarch", "held": false, "manual": true, "offered": true})
    );
    assert_eq!(pkg["tool"]["manual"], true, "asked for");
    assert_eq!(pkg["toollib"]["manual"], false, "came as tool's dependency");
    let conf = &snap["files"]["/etc/cfgtest.conf"];
    assert_eq!(conf["package"], "cfgtest");
    assert_eq!(conf["conffile_modified"], true, "{conf}");
    assert_eq!(
        snap["files"]["/etc/os-release"]["package"],
        serde_json::Value::Null
    );
    let conf = &read_json(&b_json)["files"]["/etc/cfgtest.conf"];
    assert_eq!(conf["conffile_modified"], false, "{conf}");

    let out = converge(&["compare", "--format", "json"])
        .arg(&a_json)
        .arg(&b_json)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(String, String, String)> = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            (s("kind"), s("id"), s("presence"))
        })
        .collect();
    let want = |k: &str, id: &str, p: &str| (k.to_owned(), id.to_owned(), p.to_owned());
    assert_eq!(
        found,
        [
            want("package", "cfgtest", "changed"),
            want("package", "tool", "only-in-a"),
            want("package", "toollib", "only-in-a"),
            want("file", "/etc/cfgtest.conf", "changed"),
        ],
        "{report:#}"
    );

    // A pin converge holds shows as held.
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("roles")).unwrap();
    fs::write(src.path().join("roles/pkg.toml"), PINNED).unwrap();
    let (code, text) = converge_tree("apply", "pkg", src.path(), a.path(), &[]);
    assert_eq!(code, 2, "{text}");
    snapshot(&a, &a_json);
    assert_eq!(read_json(&a_json)["packages"]["cfgtest"]["held"], true);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn capture_between_families_is_refused() {
    let rpm = RpmRoot::new(repo());
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("rocky.json"),
        dir.path().join("debian.json"),
    );
    snapshot(&rpm, &old);
    let mut deb = read_json(&old);
    deb["host"]["os_family"] = "debian".into();
    fs::write(&new, deb.to_string()).unwrap();
    let out_role = dir.path().join("src/roles/r.toml");
    let out = converge(&["capture", "--role", "r", "--from"])
        .arg(&old)
        .arg("--against")
        .arg(&new)
        .arg("-o")
        .arg(&out_role)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} is a redhat host and {} a debian host: package names, versions and config layouts differ",
            old.display(),
            new.display()
        )),
        "{err}"
    );
    assert!(!dir.path().join("src").exists(), "capture wrote something");
}

/// The shipped web role on a host of each family: nginx runs as that family's user and
/// loads that family's module directory; everything else is the same.
#[test]
fn the_shipped_web_role_renders_for_both_families() {
    let render = |family: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut facts: serde_json::Value = serde_json::from_str(FACTS).unwrap();
        facts["os"]["family"] = family.into();
        let file = dir.path().join("facts.json");
        fs::write(&file, facts.to_string()).unwrap();
        let out = converge(&[
            "render",
            "--role",
            "web",
            "--source",
            env!("CARGO_MANIFEST_DIR"),
        ])
        .arg("--facts")
        .arg(&file)
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (debian, redhat) = (render("debian"), render("redhat"));
    assert!(debian.contains("\nuser www-data;\n"), "{debian}");
    assert!(debian.contains("\ninclude /etc/nginx/modules-enabled/*.conf;\n"));
    assert!(redhat.contains("\nuser nginx;\n"), "{redhat}");
    assert!(redhat.contains("\ninclude /usr/share/nginx/modules/*.conf;\n"));
    let changed: Vec<(&str, &str)> = debian
        .lines()
        .zip(redhat.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [
            ("user www-data;", "user nginx;"),
            (
                "# Dynamic modules Debian's packages enable (libnginx-mod-*).",
                "# Dynamic modules the RHEL family's packages install (nginx-mod-*)."
            ),
            (
                "include /etc/nginx/modules-enabled/*.conf;",
                "include /usr/share/nginx/modules/*.conf;"
            ),
        ]
    );
}

/// The RPM of converge, built by packaging/rpm/build from the binary under test, ships what
/// the .deb ships (tests/install.rs), in the RHEL family's places.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_rpm_of_converge_ships_the_binary_units_man_pages_and_config_example() {
    let dir = tempfile::tempdir().unwrap();
    let staged = dir.path().join("target/release");
    fs::create_dir_all(&staged).unwrap();
    copy_file(Path::new(BIN), &staged.join("converge"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(source.join("packaging/rpm/build"))
        .args(["--no-build", "--release", "3", "--output"])
        .arg(dir.path().join("out"))
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let rpm = dir.path().join(format!(
        "out/converge-{}-3.x86_64.rpm",
        env!("CARGO_PKG_VERSION")
    ));
    let query = |args: &[&str]| run_ok(Command::new("rpm").args(args).arg(&rpm));
    let files = query(&["-qlp"]);
    for shipped in [
        "/usr/bin/converge",
        "/usr/lib/systemd/system/converge.service",
        "/usr/lib/systemd/system/converge.timer",
        "/usr/share/converge/agent.toml.example",
        "/usr/share/converge/prometheus/converge.rules.yml",
        "/usr/share/converge/prometheus/converge.rules.test.yml",
        "/usr/share/man/man1/converge.1.gz",
        "/usr/share/man/man1/converge-bootstrap.1.gz",
        "/usr/share/bash-completion/completions/converge",
        "/usr/share/zsh/site-functions/_converge",
        "/usr/share/fish/vendor_completions.d/converge.fish",
        "/usr/share/licenses/converge/copyright",
        "/usr/share/doc/converge/README.md.gz",
        "/usr/share/doc/converge/changelog.gz",
    ] {
        assert!(
            files.lines().any(|l| l == shipped),
            "{shipped} not in:\n{files}"
        );
    }
    assert!(!files.contains("/etc/converge"), "{files}");
    // No %config: bootstrap owns /etc/converge/agent.toml, %post creates it once.
    assert_eq!(query(&["-qcp"]).trim(), "");
    let scripts = query(&["-qp", "--scripts"]);
    assert!(
        scripts.contains(
            "install -m 0600 /usr/share/converge/agent.toml.example /etc/converge/agent.toml"
        ),
        "{scripts}"
    );

    // Unpacked into a tree: the units are the shipped ones, the binary is stripped.
    let root = RpmRoot::new(repo());
    root.rpm_ok(&["-i", "--nodeps", "--noscripts", rpm.to_str().unwrap()]);
    assert_eq!(
        fs::read(root.path().join("usr/lib/systemd/system/converge.timer")).unwrap(),
        fs::read(source.join("packaging/systemd/converge.timer")).unwrap()
    );
    let sections = run_ok(
        Command::new("readelf")
            .args(["-S", "-W"])
            .arg(root.path().join("usr/bin/converge")),
    );
    assert!(!sections.contains(".debug_info") && !sections.contains(".debug_line"));
}

/// A package's `timeout` bounds dnf: an install stuck reading its package (here a fifo in
/// place of the .rpm, which no one ever writes) is killed, and the package fails alone.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_dnf_install_past_its_deadline_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = repo().copy_to(&dir.path().join("stuck"));
    let rpm = stuck.dir().join("cfgtest-2.0-1.noarch.rpm");
    fs::remove_file(&rpm).unwrap();
    nix::unistd::mkfifo(&rpm, nix::sys::stat::Mode::S_IRUSR).unwrap();
    let s = Scene {
        root: RpmRoot::new(&stuck),
        src: tempfile::tempdir().unwrap(),
    };
    fs::create_dir_all(s.src.path().join("roles")).unwrap();
    s.role(
        "[[package]]\nname = \"cfgtest\"\nversion = \"2.0-1\"\ntimeout = \"3s\"\n\n[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    );
    let out = s.expect("apply", 6);
    assert!(
        out.contains(
            "--noplugins install -- cfgtest-2.0-1.noarch: timed out after 3s and was killed"
        ),
        "{out}"
    );
    assert_eq!(s.installed(), None);
    assert_eq!(
        fs::read_to_string(s.root.path().join("etc/motd")).unwrap(),
        "hi\n"
    );
}
