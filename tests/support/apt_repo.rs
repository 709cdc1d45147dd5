//! A local, unsigned apt repository of tiny generated packages, so package
//! tests pin exact versions without touching the live mirror.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::sandbox::Sandbox;
use super::tools::{output_text, require_tool, run_ok};

/// One generated package.
#[derive(Clone, Debug)]
pub struct Deb<'a> {
    /// Package name.
    pub name: &'a str,
    /// Debian version, e.g. "1.0-1".
    pub version: &'a str,
    /// Optional Depends: field.
    pub depends: Option<&'a str>,
    /// Extra files as (absolute path in the package, contents); `/DEBIAN/postinst` and the
    /// like are maintainer scripts.
    pub files: &'a [(&'a str, &'a str)],
}

/// A directory holding .debs and a Packages index usable as `./` repository.
pub struct AptRepo {
    dir: PathBuf,
}

impl AptRepo {
    /// Builds a repository of minimal `Architecture: all` packages; each
    /// installs /usr/share/NAME/version containing its version.
    pub fn build(dir: &Path, pkgs: &[(&str, &str)]) -> AptRepo {
        let debs: Vec<Deb> = pkgs
            .iter()
            .map(|&(name, version)| Deb {
                name,
                version,
                depends: None,
                files: &[],
            })
            .collect();
        Self::build_debs(dir, &debs)
    }

    /// Builds a repository from fully specified packages.
    pub fn build_debs(dir: &Path, debs: &[Deb]) -> AptRepo {
        let scan = require_tool("dpkg-scanpackages");
        fs::create_dir_all(dir).expect("create repo dir");
        for deb in debs {
            build_deb(dir, deb);
        }
        // Without --multiversion only one version per package is indexed.
        let packages = run_ok(
            Command::new(scan)
                .args(["--multiversion", ".", "/dev/null"])
                .current_dir(dir),
        );
        fs::write(dir.join("Packages"), packages).expect("write Packages");
        AptRepo {
            dir: dir.to_path_buf(),
        }
    }

    /// The repository directory on the host.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies the repository into `sb`, registers it as a trusted source and
    /// runs `apt-get update` for it alone; returns the path inside `sb`.
    pub fn add_to(&self, sb: &impl Sandbox) -> String {
        let id = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        let inner = format!("/srv/converge-apt/{id}");
        let target = sb.root_dir().join(inner.trim_start_matches('/'));
        fs::create_dir_all(&target).expect("create repo dir in sandbox");
        for entry in fs::read_dir(&self.dir).expect("read repo dir").flatten() {
            if entry.path().is_file() {
                fs::copy(entry.path(), target.join(entry.file_name())).expect("copy repo file");
            }
        }
        let list_name = format!("converge-{id}.list");
        fs::write(
            sb.root_dir()
                .join("etc/apt/sources.list.d")
                .join(&list_name),
            format!("deb [trusted=yes] file:{inner} ./\n"),
        )
        .expect("write sources list");
        // Update only this list: the mirror is unreachable from containers
        // with a private network and slow from chroots.
        let sourcelist = format!("Dir::Etc::sourcelist=sources.list.d/{list_name}");
        let out = sb.run_in(&[
            "apt-get",
            "update",
            "-q",
            "-o",
            &sourcelist,
            "-o",
            "Dir::Etc::sourceparts=-",
            "-o",
            "APT::Get::List-Cleanup=0",
        ]);
        assert!(
            out.status.success(),
            "apt-get update for local repo {inner} failed\n{}",
            output_text(&out)
        );
        inner
    }
}

/// Builds the package `deb` as `dir/NAME_VERSION_all.deb` (with `dpkg-deb` alone, which
/// every Debian host has) and returns its path.
pub fn build_deb(dir: &Path, deb: &Deb) -> PathBuf {
    let dpkg_deb = require_tool("dpkg-deb");
    let staging = tempfile::tempdir().expect("create staging dir");
    let pkg = staging.path().join(format!("{}_{}", deb.name, deb.version));
    fs::create_dir_all(pkg.join("DEBIAN")).expect("create DEBIAN dir");
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: converge tests <tests@converge.invalid>\n",
        deb.name, deb.version
    );
    if let Some(dep) = deb.depends {
        control.push_str(&format!("Depends: {dep}\n"));
    }
    control.push_str(&format!(
        "Description: converge test package {} {}\n",
        deb.name, deb.version
    ));
    fs::write(pkg.join("DEBIAN/control"), control).expect("write control");
    let default = format!("/usr/share/{}/version", deb.name);
    let version_line = format!("{}\n", deb.version);
    let files =
        std::iter::once((default.as_str(), version_line.as_str())).chain(deb.files.iter().copied());
    for (path, contents) in files {
        let target = pkg.join(path.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap()).expect("create pkg dir");
        fs::write(&target, contents).expect("write pkg file");
        if path.starts_with("/DEBIAN/") {
            // Maintainer scripts (postinst, ...) must be executable for dpkg-deb.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
                .expect("chmod maintainer script");
        }
    }
    let out_file = dir.join(format!("{}_{}_all.deb", deb.name, deb.version));
    run_ok(
        Command::new(&dpkg_deb)
            .args(["--build", "--root-owner-group"])
            .arg(&pkg)
            .arg(&out_file),
    );
    out_file
}
