//! The RHEL family without a RHEL machine: tiny RPMs built with rpmbuild, a local
//! repository made by createrepo_c, and a tree with its own rpm database and dnf
//! configuration that says it is Rocky Linux, which converge drives with `--root` through
//! the host's dnf (`--installroot`) and rpm (`--root`), as images of that family are built.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::tools::{output_text, require_tool, run_ok};

/// One generated RPM.
#[derive(Clone, Debug)]
pub struct Rpm<'a> {
    /// Package name.
    pub name: &'a str,
    /// Epoch, 0 for none.
    pub epoch: u32,
    /// Version.
    pub version: &'a str,
    /// Release.
    pub release: &'a str,
    /// A package it requires.
    pub requires: Option<&'a str>,
    /// Whether it ships the `%config(noreplace)` file `/etc/NAME.conf`.
    pub config: bool,
    /// `noarch`, or the machine it is built for (`rpmbuild --target`).
    pub arch: &'a str,
}

impl Rpm<'_> {
    /// `name-version-release.arch.rpm`.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }
}

/// A directory of RPMs (noarch unless asked) with its repodata. Each package installs
/// `/usr/share/NAME/version` (its version-release), and when asked the
/// `%config(noreplace)` file `/etc/NAME.conf` (`setting = VERSION`).
pub struct RpmRepo {
    dir: PathBuf,
}

impl RpmRepo {
    /// Builds the packages into `dir` and indexes them.
    pub fn build(dir: &Path, rpms: &[Rpm]) -> RpmRepo {
        let rpmbuild = require_tool("rpmbuild");
        let createrepo = require_tool("createrepo_c");
        fs::create_dir_all(dir).expect("create repo dir");
        for rpm in rpms {
            let top = tempfile::tempdir().expect("rpmbuild topdir");
            let mut header = String::new();
            if rpm.epoch != 0 {
                header.push_str(&format!("Epoch: {}\n", rpm.epoch));
            }
            if rpm.arch == "noarch" {
                header.push_str("BuildArch: noarch\n");
            }
            if let Some(req) = rpm.requires {
                header.push_str(&format!("Requires: {req}\n"));
            }
            let (config_install, config_files) = if rpm.config {
                (
                    format!(
                        "echo 'setting = {}' > %{{buildroot}}/etc/{}.conf\n",
                        rpm.version, rpm.name
                    ),
                    format!("%config(noreplace) /etc/{}.conf\n", rpm.name),
                )
            } else {
                (String::new(), String::new())
            };
            let spec = format!(
                "Name: {name}\n{header}Version: {version}\nRelease: {release}\nSummary: converge test package\nLicense: MIT\n\
                 %description\nconverge test package\n\
                 %install\nmkdir -p %{{buildroot}}/usr/share/{name} %{{buildroot}}/etc\n\
                 echo {version}-{release} > %{{buildroot}}/usr/share/{name}/version\n\
                 {config_install}\
                 %files\n/usr/share/{name}\n{config_files}",
                name = rpm.name,
                version = rpm.version,
                release = rpm.release,
            );
            let spec_path = top.path().join("pkg.spec");
            fs::write(&spec_path, spec).expect("write spec");
            run_ok(
                Command::new(&rpmbuild)
                    .arg("-bb")
                    .arg("--define")
                    .arg(format!("_topdir {}", top.path().display()))
                    .arg("--define")
                    .arg("_rpmdir %{_topdir}/RPMS")
                    .args(["--target", rpm.arch])
                    .arg(&spec_path),
            );
            fs::copy(
                top.path().join("RPMS").join(rpm.arch).join(rpm.file_name()),
                dir.join(rpm.file_name()),
            )
            .expect("copy built rpm");
        }
        run_ok(Command::new(createrepo).arg("-q").arg(dir));
        RpmRepo {
            dir: dir.to_path_buf(),
        }
    }

    /// The repository directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A copy of this repository in `dir` (which must not exist), for a test that spoils it.
    pub fn copy_to(&self, dir: &Path) -> RpmRepo {
        run_ok(Command::new("cp").arg("-a").arg(&self.dir).arg(dir));
        RpmRepo {
            dir: dir.to_path_buf(),
        }
    }
}

/// A tree that is a Rocky Linux 9 host as far as its files go: os-release, an rpm
/// database, dnf.conf, the versionlock plugin's configuration and a repository file.
pub struct RpmRoot {
    dir: tempfile::TempDir,
}

impl RpmRoot {
    /// An empty Rocky tree whose one repository is `repo`.
    pub fn new(repo: &RpmRepo) -> RpmRoot {
        require_tool("dnf");
        let dir = tempfile::tempdir().expect("rpm root");
        let r = dir.path();
        let write = |path: &str, text: &str| {
            let p = r.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        write(
            "etc/os-release",
            "NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n",
        );
        // The test RPMs are unsigned; a real host checks signatures.
        write("etc/dnf/dnf.conf", "[main]\ngpgcheck=0\nbest=True\n");
        write(
            "etc/dnf/plugins/versionlock.conf",
            "[main]\nenabled = 1\nlocklist = /etc/dnf/plugins/versionlock.list\n",
        );
        write(
            "etc/yum.repos.d/local.repo",
            &format!(
                "[local]\nname=local test packages\nbaseurl=file://{}\nenabled=1\ngpgcheck=0\nmetadata_expire=0\n",
                repo.dir().display()
            ),
        );
        run_ok(Command::new("rpm").arg("--root").arg(r).arg("--initdb"));
        RpmRoot { dir }
    }

    /// The tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs dnf against the tree (no host plugins), and returns its output.
    pub fn dnf(&self, args: &[&str]) -> Output {
        let mut root = std::ffi::OsString::from("--installroot=");
        root.push(self.path());
        Command::new("dnf")
            .args(["-y", "-q", "--noplugins"])
            .arg(root)
            .args(args)
            .output()
            .expect("run dnf")
    }

    /// [`RpmRoot::dnf`], which must succeed.
    pub fn dnf_ok(&self, args: &[&str]) {
        let out = self.dnf(args);
        assert!(out.status.success(), "dnf {args:?}\n{}", output_text(&out));
    }

    /// Runs rpm against the tree, which must succeed.
    pub fn rpm_ok(&self, args: &[&str]) -> String {
        run_ok(
            Command::new("rpm")
                .arg("--root")
                .arg(self.path())
                .args(args),
        )
    }

    /// The installed `version-release` of `name` (one line per installed copy).
    pub fn installed(&self, name: &str) -> Option<String> {
        let out = Command::new("rpm")
            .arg("--root")
            .arg(self.path())
            .args(["-q", "--qf", "%{VERSION}-%{RELEASE}", name])
            .output()
            .expect("rpm -q");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The entries of the tree's versionlock list, comments left out.
    pub fn locks(&self) -> Vec<String> {
        fs::read_to_string(self.path().join("etc/dnf/plugins/versionlock.list"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}
