//! Installed packages: version, architecture, hold, whether an admin asked for them, and
//! whether the host's sources could install that version again (else apt's cached copy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::system::packages::Conffile;
use crate::system::{System, SystemError};

/// Where apt keeps the package files it downloaded.
const APT_CACHE: &str = "/var/cache/apt/archives";

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageEntry {
    /// The installed version.
    pub version: String,
    /// Its architecture.
    pub arch: String,
    /// Held (`apt-mark hold`, dnf's versionlock): the package manager will not move it.
    pub held: bool,
    /// Installed because an admin asked for it (`apt-mark showmanual`, dnf's
    /// `repoquery --userinstalled`), not as a dependency.
    pub manual: bool,
    /// Whether a source the host has configured offers this version (`apt-cache policy`);
    /// `false` for a package file installed by hand or a version the archives dropped.
    /// Not recorded where apt could not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<bool>,
    /// apt's cached copy of this version's .deb, recorded when no source offers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<CachedDeb>,
}

/// A package file in apt's cache on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedDeb {
    /// Its path, `/var/cache/apt/archives/NAME_VERSION_ARCH.deb`.
    pub path: String,
    /// The sha256 of its bytes, hex.
    pub sha256: String,
}

impl CachedDeb {
    /// The file name, when `path` is a .deb directly in apt's cache (a snapshot is input
    /// anyone may have edited: nothing else is ever read for it).
    pub fn file_name(&self) -> Option<&str> {
        let name = self.path.strip_prefix(APT_CACHE)?.strip_prefix('/')?;
        let plain = !name.contains('/') && !name.starts_with('.') && !name.contains('\0');
        (plain && name.ends_with(".deb")).then_some(name)
    }
}

/// Conffiles by path: the package and the digest of what it shipped.
pub(super) type Conffiles = BTreeMap<PathBuf, (String, Conffile)>;

pub(super) fn observe(
    sys: &System,
) -> Result<(BTreeMap<String, PackageEntry>, Conffiles), SystemError> {
    let mut conffiles = Conffiles::new();
    let mut out = BTreeMap::new();
    let installed = sys.packages().installed(sys)?;
    let versions: Vec<(&str, &str)> = installed
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    // A tree without apt (or a broken cache) says nothing about sources: not a failure.
    let offered = sys.packages().offered(sys, &versions).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot tell which package versions the sources offer");
        BTreeMap::new()
    });
    for p in installed {
        for c in &p.conffiles {
            if !c.obsolete {
                conffiles.insert(c.path.clone(), (p.name.clone(), c.clone()));
            }
        }
        let offered = offered.get(&p.name).copied();
        let cached = match offered {
            Some(false) => cached_deb(sys, &p.name, &p.version, &p.arch),
            _ => None,
        };
        let entry = PackageEntry {
            version: p.version,
            arch: p.arch,
            held: p.held,
            manual: p.manual,
            offered,
            cached,
        };
        out.insert(p.name, entry);
    }
    Ok((out, conffiles))
}

/// apt's cached .deb of `name` at `version`, when it is there as a regular file: apt names
/// it `NAME_VERSION_ARCH.deb`, an epoch's colon written `%3a`.
fn cached_deb(sys: &System, name: &str, version: &str, arch: &str) -> Option<CachedDeb> {
    let base = name.split(':').next().unwrap_or(name);
    let file = format!("{base}_{}_{arch}.deb", version.replace(':', "%3a"));
    let path = Path::new(APT_CACHE).join(file);
    let mut f = sys.open_file(&path).ok()?;
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return None;
    }
    // A chunk at a time: a package file may be hundreds of megabytes.
    let mut hash = Sha256::new();
    std::io::copy(&mut f, &mut hash).ok()?;
    Some(CachedDeb {
        path: path.display().to_string(),
        sha256: hex::encode(hash.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_deb_directly_in_apts_cache_is_ever_read_for_a_snapshot() {
        let named = |path: &str| {
            CachedDeb {
                path: path.into(),
                sha256: String::new(),
            }
            .file_name()
            .map(str::to_owned)
        };
        assert_eq!(
            named("/var/cache/apt/archives/tool_1%3a0.9-1_all.deb").as_deref(),
            Some("tool_1%3a0.9-1_all.deb")
        );
        for bad in [
            "/var/cache/apt/archives/../../../etc/shadow.deb",
            "/var/cache/apt/archives/partial/x.deb",
            "/var/cache/apt/archives/.deb",
            "/var/cache/apt/archivesx/x.deb",
            "/etc/x.deb",
            "/var/cache/apt/archives/x.conf",
        ] {
            assert_eq!(named(bad), None, "{bad}");
        }
    }
}
