//! The apt/dpkg backend of [`PackageManager`]: dpkg-query, apt-cache, apt-get and apt-mark.
//!
//! Under `--root` every tool runs inside `chroot ROOT`, so the tree's own dpkg database, apt
//! sources and maintainer scripts are used, as they would be on a booted copy of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::command::{self, tool};
use super::packages::{
    FileFormat, FileHeader, InstalledPackage, PackageManager, PackageStatus, Vocabulary,
};
use super::{Host, System, SystemError};

/// apt and dpkg of the live host, or of a tree through `chroot`.
#[derive(Debug, Default)]
pub(crate) struct Apt;

/// `program` run against this root: directly on the live host, else inside `chroot ROOT`.
pub(super) fn package_tool(sys: &System, program: &str) -> Command {
    let mut cmd = if sys.is_live() {
        tool(program)
    } else {
        let mut c = tool("chroot");
        c.arg(sys.root()).arg(program);
        c
    };
    // Never a debconf prompt or a pager: nobody is there to answer.
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .env("APT_LISTCHANGES_FRONTEND", "none");
    cmd
}

fn apt_get(sys: &System) -> Command {
    let mut cmd = package_tool(sys, "apt-get");
    cmd.args([
        "-y",
        "-q",
        // Wait for unattended-upgrades instead of failing on its lock.
        "-o",
        "DPkg::Lock::Timeout=120",
        // Keep locally changed conffiles; converge manages the ones it cares about.
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ]);
    cmd
}

impl PackageManager for Apt {
    fn vocabulary(&self) -> Vocabulary {
        Vocabulary {
            sources: "the archives",
            refresh_hint: "is its source configured and `apt-get update` done?",
            holds_hint: "apt-mark showhold",
        }
    }

    /// `dpkg-query`; a held package is one whose dpkg selection is `hold`.
    fn status(&self, sys: &System, name: &str) -> Result<PackageStatus, SystemError> {
        let mut cmd = package_tool(sys, "dpkg-query");
        cmd.args(["-W", "-f=${Status}\t${Version}", "--", name]);
        let out = command::output(&mut cmd, sys.timeouts().query)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("no packages found") {
                return Ok(PackageStatus {
                    installed: None,
                    held: false,
                });
            }
            return Err(command::failed(&cmd, &out));
        }
        Ok(parse_status(&stdout))
    }

    /// `apt-cache madison`.
    fn available(&self, sys: &System, name: &str) -> Result<Vec<String>, SystemError> {
        let mut cmd = package_tool(sys, "apt-cache");
        cmd.args(["madison", "--", name]);
        let out = command::output(&mut cmd, sys.timeouts().query)?;
        // madison exits non-zero for a name no archive has; that is an empty list, not a failure.
        Ok(parse_madison(&String::from_utf8_lossy(&out.stdout), name))
    }

    /// `dpkg --compare-versions a gt b`.
    fn is_newer(&self, sys: &System, a: &str, b: &str) -> Result<bool, SystemError> {
        let mut cmd = package_tool(sys, "dpkg");
        cmd.args(["--compare-versions", a, "gt", b]);
        let out = command::output(&mut cmd, sys.timeouts().query)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(command::failed(&cmd, &out)),
        }
    }

    /// The candidate of `apt-cache policy`.
    fn candidate(&self, sys: &System, name: &str) -> Result<Option<String>, SystemError> {
        let mut cmd = package_tool(sys, "apt-cache");
        cmd.args(["policy", "--", name]);
        let text = command::run(&mut cmd, sys.timeouts().query)?;
        Ok(text.lines().find_map(|l| {
            let v = l.trim().strip_prefix("Candidate:")?.trim();
            (v != "(none)").then(|| v.to_owned())
        }))
    }

    /// `apt-get install --allow-downgrades`.
    fn install(&self, host: &Host, name: &str, version: Option<&str>) -> Result<(), SystemError> {
        let mut cmd = apt_get(host.system());
        cmd.args(["install", "--allow-downgrades", "--"]);
        match version {
            Some(v) => cmd.arg(format!("{name}={v}")),
            None => cmd.arg(name),
        };
        tracing::info!(package = name, version, "apt-get install");
        command::run(&mut cmd, host.timeouts().package).map(drop)
    }

    /// A .deb for dpkg's own architecture, one it was told to add (`dpkg
    /// --add-architecture`), or `all`.
    fn file_unfit(&self, sys: &System, file: &FileHeader) -> Result<Option<String>, SystemError> {
        let whose = "Debian's (apt and dpkg)";
        super::packages::unfit(file, FileFormat::Deb, whose, "all", "dpkg", || {
            let mut arches = Vec::new();
            for flag in ["--print-architecture", "--print-foreign-architectures"] {
                let mut cmd = package_tool(sys, "dpkg");
                cmd.arg(flag);
                let text = command::run(&mut cmd, sys.timeouts().query)?;
                arches.extend(text.split_whitespace().map(str::to_owned));
            }
            Ok(arches)
        })
    }

    /// A directory apt owns (so it exists wherever apt does) and whose `apt-get clean`
    /// would sweep a leftover; inside the root, since apt runs chrooted into it.
    fn staging_dir(&self) -> &'static Path {
        Path::new("/var/cache/apt/archives")
    }

    /// `apt-get install --allow-downgrades /PATH.deb`: apt takes a path as a package.
    fn install_file(
        &self,
        host: &Host,
        name: &str,
        version: &str,
        file: &Path,
    ) -> Result<(), SystemError> {
        let mut cmd = apt_get(host.system());
        cmd.args(["install", "--allow-downgrades", "--"]).arg(file);
        tracing::info!(package = name, version, file = %file.display(), "apt-get install");
        command::run(&mut cmd, host.timeouts().package).map(drop)
    }

    /// `apt-get remove`, which keeps conffiles.
    fn remove(&self, host: &Host, name: &str) -> Result<(), SystemError> {
        let mut cmd = apt_get(host.system());
        cmd.args(["remove", "--", name]);
        tracing::info!(package = name, "apt-get remove");
        command::run(&mut cmd, host.timeouts().package).map(drop)
    }

    /// `apt-mark hold` or `apt-mark unhold`.
    fn hold(&self, host: &Host, name: &str, hold: bool) -> Result<(), SystemError> {
        let mut cmd = package_tool(host.system(), "apt-mark");
        cmd.args([if hold { "hold" } else { "unhold" }, "--", name]);
        command::run(&mut cmd, host.timeouts().package).map(drop)
    }

    /// One `apt-cache policy` for all of them: a version is offered when its version table
    /// lists a source besides dpkg's own status file.
    fn offered(
        &self,
        sys: &System,
        packages: &[(&str, &str)],
    ) -> Result<BTreeMap<String, bool>, SystemError> {
        if packages.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut cmd = package_tool(sys, "apt-cache");
        cmd.arg("policy").arg("--");
        cmd.args(packages.iter().map(|(name, _)| name));
        let text = command::run(&mut cmd, sys.timeouts().query)?;
        let offers = parse_policy(&text);
        Ok(packages
            .iter()
            .filter_map(|&(name, version)| {
                // apt prints a native package without its `:ARCH`.
                let base = name.split(':').next().unwrap_or(name);
                let versions = offers.get(name).or_else(|| offers.get(base))?;
                Some((name.to_owned(), versions.iter().any(|v| v == version)))
            })
            .collect())
    }

    /// `dpkg-query` with conffiles; the manual mark from apt's `extended_states`, the file
    /// `apt-mark showmanual` reads (apt-mark itself loads the whole cache: seconds, not ms).
    fn installed(&self, sys: &System) -> Result<Vec<InstalledPackage>, SystemError> {
        super::dpkg_inventory::installed(sys)
    }

    /// From dpkg's file lists in /var/lib/dpkg/info.
    fn file_owners(
        &self,
        sys: &System,
        prefix: &Path,
    ) -> Result<BTreeMap<PathBuf, String>, SystemError> {
        super::dpkg_inventory::file_owners(sys, prefix)
    }
}

/// Reads `Package`, `Version` and `Architecture` of the .deb at `path` (a file of the source
/// tree, not of the root) with the machine's own `dpkg-deb`, which knows every compression
/// a .deb may use.
pub(super) fn read_deb(
    path: &Path,
    deadline: std::time::Duration,
) -> Result<FileHeader, SystemError> {
    let mut cmd = tool("dpkg-deb");
    cmd.arg("--field")
        .arg(path)
        .args(["Package", "Version", "Architecture"]);
    let text = command::run(&mut cmd, deadline)?;
    parse_deb_fields(&text).ok_or_else(|| {
        SystemError::io(
            path,
            std::io::Error::other("its control file lacks Package, Version or Architecture"),
        )
    })
}

fn parse_deb_fields(text: &str) -> Option<FileHeader> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.strip_prefix(':')?.trim();
            (!v.is_empty()).then(|| v.to_owned())
        })
    };
    Some(FileHeader {
        format: FileFormat::Deb,
        name: field("Package")?,
        version: field("Version")?,
        arch: field("Architecture")?,
    })
}

/// `apt-cache policy`'s sections: each package's versions that a source other than dpkg's
/// status file (`/var/lib/dpkg/status`, where every installed version is listed) offers.
fn parse_policy(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut package: Option<String> = None;
    let mut version: Option<String> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let words: Vec<&str> = line.split_whitespace().collect();
        if indent == 0 {
            package = line.strip_suffix(':').map(str::to_owned);
            version = None;
            if let Some(p) = &package {
                out.entry(p.clone()).or_default();
            }
            continue;
        }
        let Some(p) = &package else { continue };
        match words.as_slice() {
            // A source of the version above: "500 http://... Packages".
            [_, source, ..] if indent >= 8 => {
                if let Some(v) = &version {
                    let offers = out.entry(p.clone()).or_default();
                    if *source != "/var/lib/dpkg/status" && !offers.contains(v) {
                        offers.push(v.clone());
                    }
                }
            }
            // A version of the table: " *** 1.0-1 500" (installed) or "     2.0-1 500".
            // (Not "Installed: 1.0-1" nor "Version table:": their first word or line ends
            // in a colon; an epoch's colon never ends a version.)
            ["***", v, _] | [v, _]
                if indent <= 5 && !v.ends_with(':') && !line.trim_end().ends_with(':') =>
            {
                version = Some((*v).to_owned());
            }
            _ => version = None,
        }
    }
    out
}

fn parse_status(text: &str) -> PackageStatus {
    let (status, version) = text.split_once('\t').unwrap_or((text, ""));
    let words: Vec<&str> = status.split_whitespace().collect();
    // Status is "want error state": e.g. "hold ok installed", "deinstall ok config-files".
    let installed = words.get(2) == Some(&"installed") && !version.is_empty();
    PackageStatus {
        installed: installed.then(|| version.trim().to_owned()),
        held: words.first() == Some(&"hold"),
    }
}

fn parse_madison(text: &str, name: &str) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() >= 3 && cols[0] == name && !versions.iter().any(|v| v == cols[1]) {
            versions.push(cols[1].to_owned());
        }
    }
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_parses_hold_and_leftover_conffiles() {
        assert_eq!(
            parse_status("hold ok installed\t1.0-1"),
            PackageStatus {
                installed: Some("1.0-1".into()),
                held: true
            }
        );
        assert_eq!(
            parse_status("deinstall ok config-files\t1.0-1"),
            PackageStatus {
                installed: None,
                held: false
            }
        );
    }

    #[test]
    fn deb_fields_are_read_by_name() {
        let text = "Package: tool\nVersion: 1:0.9-1\nArchitecture: all\n";
        assert_eq!(
            parse_deb_fields(text),
            Some(FileHeader {
                format: FileFormat::Deb,
                name: "tool".into(),
                version: "1:0.9-1".into(),
                arch: "all".into()
            })
        );
        assert_eq!(parse_deb_fields("Package: tool\nVersion: 1.0\n"), None);
    }

    #[test]
    fn policy_tells_an_archive_version_from_a_hand_installed_one() {
        let text = "\
adduser:
  Installed: 3.134
  Candidate: 3.134
  Version table:
 *** 3.134 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
tool:
  Installed: 0.9-1
  Candidate: 0.9-1
  Version table:
 *** 0.9-1 100
        100 /var/lib/dpkg/status
     0.8-1 500
        500 file:/srv/repo ./ Packages
";
        let offers = parse_policy(text);
        assert_eq!(offers["adduser"], vec!["3.134"]);
        assert_eq!(offers["tool"], vec!["0.8-1"]);
    }

    #[test]
    fn madison_lists_each_version_once() {
        let text = "   cfgtest |      2.0-1 | file:/srv/r ./ Packages\n   cfgtest |      1.0-1 | file:/srv/r ./ Packages\n   cfgtest |      1.0-1 | http://x bookworm/main amd64 Packages\n";
        assert_eq!(parse_madison(text, "cfgtest"), vec!["2.0-1", "1.0-1"]);
    }
}
