//! The package manager seam: what `package` resources ask of whatever installs software on
//! the host. apt/dpkg ([`super::apt`]) serves the Debian family, dnf/rpm ([`super::dnf`])
//! the RHEL family; [`for_tree`] picks one from the tree's os-release, and nothing above
//! this seam knows which runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::os_release::{Family, OsRelease};
use super::{Host, System, SystemError};

/// The backend for the tree at `root`: dnf/rpm for the RHEL family, apt/dpkg for the Debian
/// family and for a tree whose os-release names neither (as converge always did).
pub(crate) fn for_tree(root: &Path) -> Box<dyn PackageManager> {
    match OsRelease::of_tree(root).family() {
        Some(Family::Redhat) => Box::new(super::dnf::Dnf),
        Some(Family::Debian) | None => Box::new(super::apt::Apt),
    }
}

/// How a backend's messages name its sources and its holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vocabulary {
    /// Where versions come from: `the archives`, `any enabled repository`.
    pub sources: &'static str,
    /// What to check when a package is in no source.
    pub refresh_hint: &'static str,
    /// The command that lists holds.
    pub holds_hint: &'static str,
}

/// What the package database knows about one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageStatus {
    /// The installed version; `None` when not installed (or only its conffiles remain).
    pub installed: Option<String>,
    /// Whether the package is held, which keeps upgrades from moving it.
    pub held: bool,
}

/// One installed package, as an inventory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    /// The name, with `:ARCH` only for a foreign-architecture package.
    pub name: String,
    /// Its architecture (`amd64`, `all`...).
    pub arch: String,
    /// The installed version.
    pub version: String,
    /// Whether it is held.
    pub held: bool,
    /// Installed because an admin asked for it, not as a dependency.
    pub manual: bool,
    /// The configuration files the manager tracks for it, with what it shipped.
    pub conffiles: Vec<Conffile>,
}

/// A configuration file as the package manager recorded it at install time (dpkg's
/// conffiles, rpm's `%config` files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conffile {
    /// Absolute path.
    pub path: PathBuf,
    /// The hex digest of the content the package shipped: md5 for dpkg (`newconffile`
    /// until configured), whatever the rpm database records for rpm (sha256 today, md5
    /// for old packages); its length says which.
    pub digest: String,
    /// No longer shipped by the current version.
    pub obsolete: bool,
}

/// A package manager. Reads get the [`System`] (root, limits); changes get the writing
/// [`Host`], which only the engine can obtain, in apply mode.
pub trait PackageManager: fmt::Debug + Send + Sync {
    /// The words this backend's messages use.
    fn vocabulary(&self) -> Vocabulary;
    /// The installed version and hold state of `name`. Never changes anything.
    fn status(&self, sys: &System, name: &str) -> Result<PackageStatus, SystemError>;
    /// Every version of `name` that the configured archives offer.
    fn available(&self, sys: &System, name: &str) -> Result<Vec<String>, SystemError>;
    /// The version a plain install of `name` would pick, if any archive has the package.
    fn candidate(&self, sys: &System, name: &str) -> Result<Option<String>, SystemError>;
    /// Whether version `a` sorts after `b` in this manager's version order.
    fn is_newer(&self, sys: &System, a: &str, b: &str) -> Result<bool, SystemError>;
    /// Whether `full`, a version as [`PackageManager::status`] or
    /// [`PackageManager::available`] gives it, is the version a role wrote as `wanted`.
    fn same_version(&self, full: &str, wanted: &str) -> bool {
        full == wanted
    }
    /// Installs `name`, at `version` when given (downgrading if needed).
    fn install(&self, host: &Host, name: &str, version: Option<&str>) -> Result<(), SystemError>;
    /// Installs the package file `file` (a path inside the root) as `name` at `version`,
    /// its dependencies from the archives (downgrading if needed).
    fn install_file(
        &self,
        host: &Host,
        name: &str,
        version: &str,
        file: &Path,
    ) -> Result<(), SystemError>;
    /// Removes `name`, keeping its configuration files.
    fn remove(&self, host: &Host, name: &str) -> Result<(), SystemError>;
    /// Holds `name` at its version, or releases the hold.
    fn hold(&self, host: &Host, name: &str, hold: bool) -> Result<(), SystemError>;
    /// Of `packages` (name and installed version), those whose version some configured
    /// source offers (`true`) or none does (`false`, as for a hand-installed package file);
    /// a package the manager cannot say anything about is left out.
    fn offered(
        &self,
        sys: &System,
        packages: &[(&str, &str)],
    ) -> Result<BTreeMap<String, bool>, SystemError>;
    /// Every installed package, sorted by name (empty where there is no package database).
    fn installed(&self, sys: &System) -> Result<Vec<InstalledPackage>, SystemError>;
    /// The package that owns each path below `prefix`.
    fn file_owners(
        &self,
        sys: &System,
        prefix: &Path,
    ) -> Result<BTreeMap<PathBuf, String>, SystemError>;
}
