//! `package` against a real dpkg/apt in a chroot tree (`--root`), with a local repository of
//! tiny packages so versions are exact and nothing leaves the machine.
//! Needs root and `scripts/test-deps`.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::tools::converge_tree;
use support::*;

/// A chroot with cfgtest 1.0-1 and 2.0-1 available, and a source dir for role `pkg`.
struct Scene {
    ch: Chroot,
    src: tempfile::TempDir,
    _repo: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = AptRepo::build(
            &repo_dir.path().join("cfgrepo"),
            &[("cfgtest", "1.0-1"), ("cfgtest", "2.0-1")],
        );
        let ch = Chroot::new();
        repo.add_to(&ch);
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("roles")).unwrap();
        Scene {
            ch,
            src,
            _repo: repo_dir,
        }
    }

    fn role(&self, text: &str) {
        fs::write(self.src.path().join("roles/pkg.toml"), text).unwrap();
    }

    /// Runs converge on the chroot with ARGS, keeping its run history in STATE (what rollback reads).
    fn with_history(&self, state: &Path, args: &[&str]) -> Output {
        converge(args)
            .args(["--color", "never", "--root"])
            .arg(self.ch.path())
            .arg("--state-dir")
            .arg(state)
            .output()
            .unwrap()
    }

    /// Runs converge on role `pkg`, asserts the exit code, returns its output (echoed for
    /// `--nocapture`).
    fn expect(&self, mode: &str, code: i32) -> String {
        let (got, text) = converge_tree(mode, "pkg", self.src.path(), self.ch.path(), &[]);
        assert_eq!(got, code, "converge {mode}\n{text}");
        eprintln!("{text}");
        text
    }

    fn installed(&self) -> Option<String> {
        let out = self
            .ch
            .run(&["dpkg-query", "-W", "-f=${Status} ${Version}", "cfgtest"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.strip_prefix("install ok installed ")
            .or_else(|| text.strip_prefix("hold ok installed "))
            .map(str::to_owned)
    }

    fn held(&self) -> bool {
        self.ch
            .run_ok(&["apt-mark", "showhold"])
            .lines()
            .any(|l| l == "cfgtest")
    }
}

const PINNED: &str = "[[package]]\nname = \"cfgtest\"\nversion = \"1.0-1\"\n";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn pinned_package_is_installed_held_and_pulled_back_after_drift() {
    let s = Scene::new();
    s.role(PINNED);
    let out = s.expect("check", 2);
    assert!(out.contains("+ create package:cfgtest"), "{out}");
    assert!(out.contains("version: 1.0-1"), "{out}");
    assert!(out.contains("hold: not held → held"), "{out}");
    assert_eq!(s.installed(), None, "check installed something");

    s.expect("apply", 2);
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    assert!(s.held(), "a pinned package must be held");
    let out = s.expect("check", 0);
    assert!(out.contains("0 would change, 0 failed"), "{out}");

    // Someone moves it out of band, past the hold.
    s.ch.run_ok(&[
        "apt-get",
        "install",
        "-y",
        "-q",
        "--allow-change-held-packages",
        "cfgtest=2.0-1",
    ]);
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));
    let out = s.expect("check", 2);
    insta::assert_snapshot!("drift_check", out);
    assert!(out.contains("version: 2.0-1 → 1.0-1"), "{out}");
    // apt drops the hold of a package it was told to move.
    assert!(out.contains("hold: not held → held"), "{out}");
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));

    s.expect("apply", 2);
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    assert!(s.held());
    s.expect("check", 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_version_missing_from_the_archive_fails_before_anything_changes() {
    let s = Scene::new();
    s.role("[[package]]\nname = \"cfgtest\"\nversion = \"9.9-9\"\n");
    let out = s.expect("apply", 4);
    assert!(
        out.contains(
            "package cfgtest: version 9.9-9 not found in the archives (available: 2.0-1, 1.0-1); nothing was changed"
        ),
        "{out}"
    );
    assert_eq!(s.installed(), None);

    // Installed and held at a good version: a typo in the role moves nothing.
    s.role(PINNED);
    s.expect("apply", 2);
    s.role("[[package]]\nname = \"cfgtest\"\nversion = \"9.9-9\"\n");
    s.expect("check", 4);
    s.expect("apply", 4);
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    assert!(s.held());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn latest_upgrades_and_absent_removes() {
    let s = Scene::new();
    s.ch.run_ok(&["apt-get", "install", "-y", "-q", "cfgtest=1.0-1"]);
    s.role("[[package]]\nname = \"cfgtest\"\nensure = \"latest\"\n");
    let out = s.expect("apply", 2);
    assert!(out.contains("version: 1.0-1 → 2.0-1"), "{out}");
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));
    assert!(!s.held(), "only pinned packages are held");
    s.expect("check", 0);

    s.role("[[package]]\nname = \"cfgtest\"\nensure = \"absent\"\n");
    let out = s.expect("apply", 2);
    assert!(out.contains("- remove package:cfgtest"), "{out}");
    assert_eq!(s.installed(), None);
    assert!(!Path::new(&s.ch.path().join("usr/share/cfgtest/version")).exists());
    s.expect("check", 0);
}

#[test]
fn package_declarations_are_checked_with_locations() {
    let s = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(s.path().join("roles")).unwrap();
    fs::write(
        s.path().join("roles/pkg.toml"),
        "[[package]]\nname = \"cfgtest\"\nensure = \"latest\"\nversion = \"1.0-1\"\n\n[[package]]\nname = \"-x\"\n",
    )
    .unwrap();
    // Exit 1 prints nothing on stdout: the text is stderr alone.
    let (code, err) = converge_tree("check", "pkg", s.path(), root.path(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("roles/pkg.toml:4:11: package 'cfgtest': version only goes with ensure = \"installed\", not \"latest\""),
        "{err}"
    );
    assert!(
        err.contains("roles/pkg.toml:7:8: invalid package name '-x'"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn on_a_booted_host_a_package_upgrade_restarts_the_service_it_notifies() {
    let ct = Container::boot("pkg");
    let repo_dir = tempfile::tempdir().unwrap();
    AptRepo::build(
        &repo_dir.path().join("ctrepo"),
        &[("cfgtest", "1.0-1"), ("cfgtest", "2.0-1")],
    )
    .add_to(&ct);
    let role = |version: &str| {
        ct.write_source(&[(
            "roles/pkg.toml",
            &format!(
                r#"
[[package]]
name = "cfgtest"
version = "{version}"
notify = ["service:pkgsvc"]

[[service]]
name = "pkgsvc"
state = "running"
unit = {{ content = "[Service]\nExecStart=/bin/sleep infinity\n" }}
"#
            ),
        )]);
    };
    let apply = |want: i32| {
        let out = ct.converge("apply", "pkg", &[]);
        assert_eq!(out.status.code(), Some(want), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pid = || {
        ct.exec_ok(&["systemctl", "show", "-p", "MainPID", "--value", "pkgsvc"])
            .trim()
            .to_owned()
    };

    role("1.0-1");
    let out = apply(2);
    assert!(
        out.contains("no restart of service:pkgsvc: started in this run"),
        "{out}"
    );
    assert_eq!(
        ct.exec_ok(&["cat", "/usr/share/cfgtest/version"]),
        "1.0-1\n"
    );
    assert!(ct.exec_ok(&["apt-mark", "showhold"]).contains("cfgtest"));
    let first = pid();
    apply(0);
    assert_eq!(pid(), first);

    role("2.0-1");
    let out = apply(2);
    assert!(
        out.contains("restarted service:pkgsvc (notified by package:cfgtest)"),
        "{out}"
    );
    assert_eq!(
        ct.exec_ok(&["cat", "/usr/share/cfgtest/version"]),
        "2.0-1\n"
    );
    assert_ne!(
        pid(),
        first,
        "the package change did not restart its service"
    );
    assert!(ct.exec_ok(&["apt-mark", "showhold"]).contains("cfgtest"));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn rollback_installs_the_version_that_was_there_before_and_holds_it_again() {
    let s = Scene::new();
    s.role(PINNED);
    s.expect("apply", 2);
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| s.with_history(state.path(), args);
    s.role("[[package]]\nname = \"cfgtest\"\nversion = \"2.0-1\"\n");
    let src = s.src.path().display().to_string();
    let out = run(&["apply", "--role", "pkg", "--source", &src]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));

    let out = run(&["rollback", "--check"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("    restore package:cfgtest: version: 2.0-1 → 1.0-1\n"),
        "{}",
        output_text(&out)
    );
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));

    let out = run(&["rollback"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("    restored package:cfgtest\n"),
        "{}",
        output_text(&out)
    );
    assert_eq!(s.installed().as_deref(), Some("1.0-1"));
    assert!(s.held(), "the hold it had is back");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_version_gone_from_the_archive_is_named_as_not_rolled_back() {
    let s = Scene::new();
    s.role(PINNED);
    s.expect("apply", 2);
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| s.with_history(state.path(), args);
    s.role("[[package]]\nname = \"cfgtest\"\nversion = \"2.0-1\"\n");
    let src = s.src.path().display().to_string();
    let out = run(&["apply", "--role", "pkg", "--source", &src]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    // The archive moves on: 1.0-1 is no longer offered.
    let newer = tempfile::tempdir().unwrap();
    AptRepo::build(&newer.path().join("cfgrepo"), &[("cfgtest", "2.0-1")]).add_to(&s.ch);

    let out = run(&["rollback"]);
    assert_eq!(out.status.code(), Some(4), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "    not rolled back package:cfgtest: version 1.0-1 is no longer in the archives; cfgtest stays at 2.0-1\n"
        ),
        "{}",
        output_text(&out)
    );
    assert_eq!(s.installed().as_deref(), Some("2.0-1"));
    assert!(s.held(), "its hold stays");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_says_when_a_fresh_package_may_start_its_own_service() {
    let ct = Container::boot("pkgscript");
    let repo_dir = tempfile::tempdir().unwrap();
    let unit = "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n";
    // What Debian packages do: enable and start the service they ship.
    let postinst = "#!/bin/sh\nset -e\nsystemctl daemon-reload\nsystemctl enable svcpkg.service\nsystemctl start svcpkg.service\n";
    AptRepo::build_debs(
        &repo_dir.path().join("scriptrepo"),
        &[Deb {
            name: "svcpkg",
            version: "1.0-1",
            depends: None,
            files: &[
                ("/lib/systemd/system/svcpkg.service", unit),
                ("/DEBIAN/postinst", postinst),
            ],
        }],
    )
    .add_to(&ct);
    ct.write_source(&[(
        "roles/pkg.toml",
        "[[package]]\nname = \"svcpkg\"\n\n[[service]]\nname = \"svcpkg\"\nenabled = true\nstate = \"running\"\n",
    )]);
    let run = |mode: &str, want: i32| {
        let out = ct.converge(mode, "pkg", &[]);
        assert_eq!(out.status.code(), Some(want), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let note = "note: service:svcpkg: package:svcpkg installs this unit in this run, and its \
                install script may enable or start it itself: apply then shows only what is \
                left to do\n";
    let check = run("check", 2);
    assert!(check.contains("~ update service:svcpkg"), "{check}");
    assert!(check.contains(note), "{check}");
    let apply = run("apply", 2);
    assert!(apply.contains("+ create package:svcpkg"), "{apply}");
    // The install script did the enable and the start: nothing was left for the service.
    assert!(!apply.contains("service:svcpkg  (role"), "{apply}");
    assert!(!apply.contains("note: service:svcpkg"), "{apply}");
    assert_eq!(
        ct.exec_ok(&["systemctl", "is-active", "svcpkg"]).trim(),
        "active"
    );
    run("apply", 0);
}

/// A chroot whose local archive has only `tooldep`, and the .debs of `tool` (which depends
/// on it) that no archive offers: what a vendor ships.
struct FileScene {
    s: Scene,
    debs: tempfile::TempDir,
}

impl FileScene {
    fn new() -> FileScene {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = AptRepo::build(&repo_dir.path().join("deprepo"), &[("tooldep", "1.0-1")]);
        let ch = Chroot::new();
        repo.add_to(&ch);
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("roles")).unwrap();
        let debs = tempfile::tempdir().unwrap();
        let tool = |version| Deb {
            name: "tool",
            version,
            depends: Some("tooldep"),
            files: &[],
        };
        build_deb(debs.path(), &tool("0.9-1"));
        build_deb(debs.path(), &tool("1.0-1"));
        FileScene {
            s: Scene {
                ch,
                src,
                _repo: repo_dir,
            },
            debs,
        }
    }

    /// Ships tool at `version` in the bundle as `files/pkgs/tool.deb`.
    fn ship(&self, version: &str) {
        let dir = self.s.src.path().join("files/pkgs");
        fs::create_dir_all(&dir).unwrap();
        fs::copy(
            self.debs.path().join(format!("tool_{version}_all.deb")),
            dir.join("tool.deb"),
        )
        .unwrap();
    }

    fn status(&self, name: &str) -> String {
        let out = self
            .s
            .ch
            .run(&["dpkg-query", "-W", "-f=${Status} ${Version}", name]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

const FROM_FILE: &str = "[[package]]\nname = \"tool\"\nsource = \"pkgs/tool.deb\"\n";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_package_file_of_the_bundle_is_installed_with_its_dependency_and_upgraded_when_it_changes() {
    let f = FileScene::new();
    f.ship("0.9-1");
    f.s.role(FROM_FILE);
    let out = f.s.expect("check", 2);
    assert!(
        out.contains(
            "+ create package:tool  (role pkg)\n    version: 0.9-1\n    hold: not held → held\n"
        ),
        "{out}"
    );
    assert!(
        !f.status("tool").contains(" installed "),
        "check installed something"
    );

    let out = f.s.expect("apply", 2);
    assert!(out.contains("1 changed, 0 failed"), "{out}");
    assert_eq!(f.status("tool"), "hold ok installed 0.9-1");
    // The dependency came from the archive.
    assert_eq!(f.status("tooldep"), "install ok installed 1.0-1");
    assert!(
        !f.s.ch
            .path()
            .join("var/cache/apt/archives/converge-tool.deb")
            .exists(),
        "the staged copy is removed"
    );
    let out = f.s.expect("apply", 0);
    assert!(out.contains("0 changed, 0 failed"), "{out}");

    // A new version of the file in the bundle, under the same name: an upgrade.
    f.ship("1.0-1");
    let out = f.s.expect("check", 2);
    assert!(
        out.contains("~ update package:tool  (role pkg)\n    version: 0.9-1 → 1.0-1\n"),
        "{out}"
    );
    assert_eq!(f.status("tool"), "hold ok installed 0.9-1");
    f.s.expect("apply", 2);
    assert_eq!(f.status("tool"), "hold ok installed 1.0-1");
    f.s.expect("apply", 0);

    // The older file again: a downgrade, as a pinned version would.
    f.ship("0.9-1");
    f.s.expect("apply", 2);
    assert_eq!(f.status("tool"), "hold ok installed 0.9-1");
    f.s.expect("check", 0);
}

/// `deb` rebuilt as `out` with `Architecture: arch`.
fn with_arch(deb: &Path, arch: &str, out: &Path) {
    let tree = tempfile::tempdir().unwrap();
    let unpacked = tree.path().join("pkg");
    run_ok(
        std::process::Command::new("dpkg-deb")
            .arg("-R")
            .arg(deb)
            .arg(&unpacked),
    );
    let control = unpacked.join("DEBIAN/control");
    let text = fs::read_to_string(&control)
        .unwrap()
        .replace("Architecture: all", &format!("Architecture: {arch}"));
    fs::write(&control, text).unwrap();
    run_ok(
        std::process::Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&unpacked)
            .arg(out),
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_package_file_for_another_machine_or_family_is_refused_at_check() {
    let f = FileScene::new();
    let dir = f.s.src.path().join("files/pkgs");
    fs::create_dir_all(&dir).unwrap();
    let host = run_ok(std::process::Command::new("dpkg").arg("--print-architecture"));
    let host = host.trim();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    with_arch(
        &f.debs.path().join("tool_0.9-1_all.deb"),
        other,
        &dir.join("tool.deb"),
    );
    let rpms = tempfile::tempdir().unwrap();
    let rpm = Rpm {
        name: "tool",
        epoch: 0,
        version: "0.9",
        release: "1",
        requires: None,
        config: false,
        arch: "noarch",
    };
    RpmRepo::build(rpms.path(), std::slice::from_ref(&rpm));
    fs::copy(rpms.path().join(rpm.file_name()), dir.join("tool.rpm")).unwrap();

    f.s.role(FROM_FILE);
    let foreign = format!(
        "package tool: files/pkgs/tool.deb cannot be installed on this host: it is built for architecture {other}, and dpkg here installs {host} or all; nothing was changed"
    );
    let out = f.s.expect("check", 4);
    assert!(out.contains(&foreign), "{out}");
    let out = f.s.expect("apply", 4);
    assert!(out.contains(&foreign), "{out}");
    assert!(!f.status("tool").contains(" installed "));

    // Once dpkg is told to take that architecture, the same file passes the check.
    f.s.ch.run_ok(&["dpkg", "--add-architecture", other]);
    let out = f.s.expect("check", 2);
    assert!(out.contains("+ create package:tool"), "{out}");

    f.s.role("[[package]]\nname = \"tool\"\nsource = \"pkgs/tool.rpm\"\n");
    let refused = "package tool: files/pkgs/tool.rpm cannot be installed on this host: it is an RPM package (.rpm), and this host's packages are Debian's (apt and dpkg); nothing was changed";
    let out = f.s.expect("check", 4);
    assert!(out.contains(refused), "{out}");
    let out = f.s.expect("apply", 4);
    assert!(out.contains(refused), "{out}");
    assert!(!f.status("tool").contains(" installed "));
}

#[test]
fn a_package_file_that_is_not_the_declared_package_is_refused_with_its_place() {
    let f = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let debs = tempfile::tempdir().unwrap();
    let tool = Deb {
        name: "tool",
        version: "0.9-1",
        depends: None,
        files: &[],
    };
    fs::create_dir_all(f.path().join("roles")).unwrap();
    fs::create_dir_all(f.path().join("files/pkgs")).unwrap();
    fs::copy(
        build_deb(debs.path(), &tool),
        f.path().join("files/pkgs/tool.deb"),
    )
    .unwrap();
    fs::write(f.path().join("files/pkgs/junk.deb"), "not a package").unwrap();
    fs::write(
        f.path().join("roles/pkg.toml"),
        "[[package]]\nname = \"other\"\nsource = \"pkgs/tool.deb\"\n\n\
         [[package]]\nname = \"tool\"\nversion = \"1.0-1\"\nsource = \"pkgs/tool.deb\"\n\n\
         [[package]]\nname = \"tool2\"\nsource = \"../roles/pkg.toml\"\n\n\
         [[package]]\nname = \"tool3\"\nsource = \"pkgs/missing.deb\"\n\n\
         [[package]]\nname = \"tool4\"\nsource = \"pkgs/junk.deb\"\n\n\
         [[package]]\nname = \"tool\"\nensure = \"absent\"\nsource = \"pkgs/tool.deb\"\n",
    )
    .unwrap();
    let (code, err) = converge_tree("check", "pkg", f.path(), root.path(), &[]);
    assert_eq!(code, 1, "{err}");
    for expected in [
        "roles/pkg.toml:2:8: package 'other': files/pkgs/tool.deb is package 'tool' (all), not 'other'",
        "roles/pkg.toml:7:11: package 'tool': version '1.0-1' is not the version of files/pkgs/tool.deb ('0.9-1'); give the file's version or none",
        "roles/pkg.toml:12:10: source file 'files/../roles/pkg.toml' not found in the bundle",
        "roles/pkg.toml:16:10: source file 'files/pkgs/missing.deb' not found in the bundle",
        "roles/pkg.toml:20:10: package 'tool4': files/pkgs/junk.deb is not a readable package file: it is neither a Debian package (.deb) nor an RPM package (.rpm)",
        "roles/pkg.toml:25:10: package 'tool': source only goes with ensure = \"installed\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    assert!(!root.path().join("var").exists(), "nothing was written");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn rollback_removes_a_package_file_it_installed_and_names_a_file_version_it_cannot_have_again() {
    let f = FileScene::new();
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| f.s.with_history(state.path(), args);
    let src = f.s.src.path().display().to_string();
    let apply = ["apply", "--role", "pkg", "--source", src.as_str()];
    f.ship("0.9-1");
    f.s.role(FROM_FILE);
    let out = run(&apply);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let out = run(&["rollback"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("    restored package:tool\n"),
        "{}",
        output_text(&out)
    );
    assert!(
        !f.status("tool").contains(" installed "),
        "installed by the run, so removed"
    );

    // From one file to the next: the earlier file's version is in no archive.
    let out = run(&apply);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    f.ship("1.0-1");
    let out = run(&apply);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let out = run(&["rollback"]);
    assert_eq!(out.status.code(), Some(4), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "    not rolled back package:tool: version 0.9-1 is no longer in the archives; tool stays at 1.0-1\n"
        ),
        "{}",
        output_text(&out)
    );
    assert_eq!(f.status("tool"), "hold ok installed 1.0-1");
}
