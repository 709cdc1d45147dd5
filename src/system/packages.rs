//! The package manager seam: what `package` resources ask of whatever installs software on
//! the host. apt/dpkg ([`super::apt`]) is the one backend today; another (dnf, apk) is one
//! added file implementing [`PackageManager`].

use std::fmt;

use super::{Host, System, SystemError};

/// What the package database knows about one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageStatus {
    /// The installed version; `None` when not installed (or only its conffiles remain).
    pub installed: Option<String>,
    /// Whether the package is held, which keeps upgrades from moving it.
    pub held: bool,
}

/// A package manager. Reads get the [`System`] (root, limits); changes get the writing
/// [`Host`], which only the engine can obtain, in apply mode.
pub trait PackageManager: fmt::Debug + Send + Sync {
    /// The installed version and hold state of `name`. Never changes anything.
    fn status(&self, sys: &System, name: &str) -> Result<PackageStatus, SystemError>;
    /// Every version of `name` that the configured archives offer.
    fn available(&self, sys: &System, name: &str) -> Result<Vec<String>, SystemError>;
    /// The version a plain install of `name` would pick, if any archive has the package.
    fn candidate(&self, sys: &System, name: &str) -> Result<Option<String>, SystemError>;
    /// Whether version `a` sorts after `b` in this manager's version order.
    fn is_newer(&self, sys: &System, a: &str, b: &str) -> Result<bool, SystemError>;
    /// Installs `name`, at `version` when given (downgrading if needed).
    fn install(&self, host: &Host, name: &str, version: Option<&str>) -> Result<(), SystemError>;
    /// Removes `name`, keeping its configuration files.
    fn remove(&self, host: &Host, name: &str) -> Result<(), SystemError>;
    /// Holds `name` at its version, or releases the hold.
    fn hold(&self, host: &Host, name: &str, hold: bool) -> Result<(), SystemError>;
}
