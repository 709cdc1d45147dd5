//! The apt backend's inventory: what dpkg and apt record as installed (every package with its
//! conffiles, which ones an admin asked for) and which package owns which file. Read-only;
//! reached through [`super::packages::PackageManager`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::apt::package_tool;
use super::command;
use super::fs::Entry;
use super::packages::{Conffile, InstalledPackage};
use super::{System, SystemError};

/// apt's record of automatically installed packages (`Dir::State::extended_states`), the
/// file `apt-mark showmanual` reads. Read directly: apt-mark loads the whole package cache
/// and takes seconds, this takes a millisecond.
pub(crate) const EXTENDED_STATES: &str = "/var/lib/apt/extended_states";

/// dpkg's database of installed packages.
pub(crate) const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Where dpkg lists the files of each package (`NAME.list` or `NAME:ARCH.list`).
pub(crate) const DPKG_INFO: &str = "/var/lib/dpkg/info";

/// Every installed package (`ii` and `hi`; not removed ones whose conffiles remain), with
/// its conffiles and apt's manual mark, sorted by name. Empty without a dpkg database.
pub(super) fn installed(sys: &System) -> Result<Vec<InstalledPackage>, SystemError> {
    if !matches!(sys.entry(Path::new(DPKG_STATUS)), Ok(Entry::File(_))) {
        return Ok(Vec::new());
    }
    let mut cmd = package_tool(sys, "dpkg-query");
    cmd.args([
        "-W",
        "-f=${binary:Package}\t${Architecture}\t${Version}\t${Status}\n${Conffiles}\n",
    ]);
    let mut out = parse_installed(&command::run(&mut cmd, sys.timeouts().query)?);
    let auto = auto_installed(sys)?;
    let mut cmd = package_tool(sys, "dpkg");
    cmd.arg("--print-architecture");
    let native = command::run(&mut cmd, sys.timeouts().query)?
        .trim()
        .to_owned();
    for p in &mut out {
        p.manual = !is_auto(&auto, p, &native);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Names (`NAME` or `NAME:ARCH` as apt writes them) of the packages apt marked as installed
/// automatically, as dependencies. Empty when apt has no record.
fn auto_installed(sys: &System) -> Result<BTreeSet<String>, SystemError> {
    match sys.read_file(Path::new(EXTENDED_STATES)) {
        Ok(bytes) => Ok(parse_extended_states(&String::from_utf8_lossy(&bytes))),
        Err(SystemError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(BTreeSet::new())
        }
        Err(e) => Err(e),
    }
}

/// The package that owns each path below `prefix`, from dpkg's file lists. A directory
/// several packages ship goes to the first in name order.
pub(super) fn file_owners(
    sys: &System,
    prefix: &Path,
) -> Result<BTreeMap<PathBuf, String>, SystemError> {
    let info = Path::new(DPKG_INFO);
    let names = match sys.list_dir(info) {
        Ok(names) => names,
        Err(SystemError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(BTreeMap::new())
        }
        Err(e) => return Err(e),
    };
    let mut owners = BTreeMap::new();
    for name in names {
        let name = name.to_string_lossy();
        let Some(package) = name.strip_suffix(".list") else {
            continue;
        };
        let text = sys.read_file(&info.join(name.as_ref()))?;
        for line in String::from_utf8_lossy(&text).lines() {
            let path = Path::new(line);
            if path.starts_with(prefix) {
                owners
                    .entry(path.to_path_buf())
                    .or_insert_with(|| package.to_owned());
            }
        }
    }
    Ok(owners)
}

fn parse_installed(text: &str) -> Vec<InstalledPackage> {
    let mut out: Vec<InstalledPackage> = Vec::new();
    // Whether the package the conffile lines below belong to is installed.
    let mut current = false;
    for line in text.lines() {
        if let Some(conf) = line.strip_prefix(' ') {
            let Some(pkg) = out.last_mut().filter(|_| current) else {
                continue;
            };
            let words: Vec<&str> = conf.split_whitespace().collect();
            if let [path, md5, rest @ ..] = words.as_slice() {
                pkg.conffiles.push(Conffile {
                    path: PathBuf::from(path),
                    digest: (*md5).to_owned(),
                    obsolete: rest.contains(&"obsolete"),
                });
            }
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [name, arch, version, status] = f.as_slice() else {
            continue;
        };
        let words: Vec<&str> = status.split_whitespace().collect();
        current = words.get(2) == Some(&"installed");
        if current {
            out.push(InstalledPackage {
                name: (*name).to_owned(),
                arch: (*arch).to_owned(),
                version: (*version).to_owned(),
                held: words.first() == Some(&"hold"),
                manual: true,
                conffiles: Vec::new(),
            });
        }
    }
    out
}

fn parse_extended_states(text: &str) -> BTreeSet<String> {
    let mut auto = BTreeSet::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let (Some(name), Some(flag)) = (field("Package"), field("Auto-Installed")) else {
            continue;
        };
        if flag == "1" {
            match field("Architecture") {
                Some(arch) => auto.insert(format!("{name}:{arch}")),
                None => auto.insert(name),
            };
        }
    }
    auto
}

/// Whether `pkg` is in apt's automatic set (which names packages with their architecture).
fn is_auto(auto: &BTreeSet<String>, pkg: &InstalledPackage, native: &str) -> bool {
    let bare = pkg.name.split(':').next().unwrap_or(&pkg.name);
    let arch = if pkg.arch == "all" { native } else { &pkg.arch };
    auto.contains(&format!("{bare}:{arch}")) || auto.contains(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_query_output_parses_with_conffiles() {
        let text = "base-files\tamd64\t12.4\tinstall ok installed\n /etc/debian_version 0b9e2ea2\n /etc/old 1234 obsolete\ncfgtest\tall\t1.0-1\thold ok installed\n\ngone\tall\t1\tdeinstall ok config-files\n /etc/gone abcd\n";
        let got = parse_installed(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].conffiles.len(), 2);
        assert_eq!(got[0].conffiles[0].path, Path::new("/etc/debian_version"));
        assert!(got[0].conffiles[1].obsolete);
        assert!(got[1].held);
        assert!(got[1].conffiles.is_empty());
    }

    #[test]
    fn extended_states_name_automatic_packages() {
        let auto = parse_extended_states(
            "Package: libc6\nArchitecture: amd64\nAuto-Installed: 1\n\nPackage: vim\nArchitecture: amd64\nAuto-Installed: 0\n",
        );
        assert_eq!(auto.into_iter().collect::<Vec<_>>(), ["libc6:amd64"]);
    }
}
