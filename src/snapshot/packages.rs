//! Installed packages: version, architecture, hold, and whether an admin asked for them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::system::packages::Conffile;
use crate::system::{System, SystemError};

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
}

/// Conffiles by path: the package and the digest of what it shipped.
pub(super) type Conffiles = BTreeMap<PathBuf, (String, Conffile)>;

pub(super) fn observe(
    sys: &System,
) -> Result<(BTreeMap<String, PackageEntry>, Conffiles), SystemError> {
    let mut conffiles = Conffiles::new();
    let mut out = BTreeMap::new();
    for p in sys.packages().installed(sys)? {
        for c in &p.conffiles {
            if !c.obsolete {
                conffiles.insert(c.path.clone(), (p.name.clone(), c.clone()));
            }
        }
        let entry = PackageEntry {
            version: p.version,
            arch: p.arch,
            held: p.held,
            manual: p.manual,
        };
        out.insert(p.name, entry);
    }
    Ok((out, conffiles))
}
