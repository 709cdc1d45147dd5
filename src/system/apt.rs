//! The apt/dpkg backend of [`PackageManager`]: dpkg-query, apt-cache, apt-get and apt-mark.
//!
//! Under `--root` every tool runs inside `chroot ROOT`, so the tree's own dpkg database, apt
//! sources and maintainer scripts are used, as they would be on a booted copy of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::command::{self, tool};
use super::packages::{InstalledPackage, PackageManager, PackageStatus, Vocabulary};
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
    fn madison_lists_each_version_once() {
        let text = "   cfgtest |      2.0-1 | file:/srv/r ./ Packages\n   cfgtest |      1.0-1 | file:/srv/r ./ Packages\n   cfgtest |      1.0-1 | http://x bookworm/main amd64 Packages\n";
        assert_eq!(parse_madison(text, "cfgtest"), vec!["2.0-1", "1.0-1"]);
    }
}
