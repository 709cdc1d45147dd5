//! The package manager seam: what `package` resources ask of whatever installs software on
//! the host. apt/dpkg ([`super::apt`]) serves the Debian family, dnf/rpm ([`super::dnf`])
//! the RHEL family; [`for_tree`] picks one from the tree's os-release, and nothing above
//! this seam knows which runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::os_release::{Family, OsRelease};
use super::rpm_evr::Evr;
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

/// The format of a package file, told by its first bytes, not by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FileFormat {
    /// A Debian package: an `ar` archive.
    Deb,
    /// An RPM package: rpm's lead.
    Rpm,
}

impl FileFormat {
    /// What messages call it.
    pub fn describe(self) -> &'static str {
        match self {
            FileFormat::Deb => "a Debian package (.deb)",
            FileFormat::Rpm => "an RPM package (.rpm)",
        }
    }

    /// The file name extension its manager expects.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Deb => "deb",
            FileFormat::Rpm => "rpm",
        }
    }

    /// The format whose magic `head` (a file's first bytes) starts with.
    fn of(head: &[u8]) -> Option<FileFormat> {
        if head.starts_with(b"!<arch>\n") {
            Some(FileFormat::Deb)
        } else if head.starts_with(&[0xed, 0xab, 0xee, 0xdb]) {
            Some(FileFormat::Rpm)
        } else {
            None
        }
    }
}

/// What a package file installs, read from its own header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileHeader {
    /// Debian's or rpm's.
    pub format: FileFormat,
    /// The package name (`Package`, rpm's `NAME`).
    pub name: String,
    /// The version as [`PackageManager::status`] reports it once installed: `1:0.9-1` for a
    /// .deb, `[EPOCH:]VERSION-RELEASE.ARCH` for an .rpm.
    pub version: String,
    /// Its architecture (`all`, `amd64`, `noarch`, `x86_64`...).
    pub arch: String,
}

impl FileHeader {
    /// Reads the package file at `path` (a file of the source tree, not of the root) with
    /// the tool of its format, run on this machine: `dpkg-deb` or `rpm -qp`.
    pub fn read(path: &Path, deadline: std::time::Duration) -> Result<FileHeader, SystemError> {
        use std::io::Read;
        let mut head = Vec::with_capacity(8);
        std::fs::File::open(path)
            .and_then(|f| f.take(8).read_to_end(&mut head))
            .map_err(|e| SystemError::io(path, e))?;
        let Some(format) = FileFormat::of(&head) else {
            return Err(SystemError::Unsupported(
                "it is neither a Debian package (.deb) nor an RPM package (.rpm)".to_owned(),
            ));
        };
        let header = match format {
            FileFormat::Deb => super::apt::read_deb(path, deadline),
            FileFormat::Rpm => super::dnf::read_rpm(path, deadline),
        };
        header.map_err(|e| match e {
            SystemError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                SystemError::Unsupported(format!(
                    "it is {}, and this machine lacks {} to read it",
                    format.describe(),
                    match format {
                        FileFormat::Deb => "dpkg-deb",
                        FileFormat::Rpm => "rpm",
                    }
                ))
            }
            other => other,
        })
    }

    /// Whether a role's `name` names this file's package: its name, or with its
    /// architecture as each manager writes one (`NAME:ARCH` for dpkg, where an `all`
    /// package fits any; `NAME.ARCH` for rpm).
    pub fn is_named(&self, name: &str) -> bool {
        if name == self.name {
            return true;
        }
        match self.format {
            FileFormat::Deb => name.split_once(':').is_some_and(|(base, arch)| {
                base == self.name && (self.arch == "all" || self.arch == arch)
            }),
            FileFormat::Rpm => name
                .strip_prefix(self.name.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|arch| arch == self.arch),
        }
    }

    /// Whether a role's `version` is this file's: equal for a .deb; for an .rpm, the parts
    /// it gives agree (`1.0-1` names `1.0-1.noarch`, as a pinned version does).
    pub fn has_version(&self, version: &str) -> bool {
        match self.format {
            FileFormat::Deb => version == self.version,
            FileFormat::Rpm => Evr::parse(&self.version).satisfies(&Evr::parse(version)),
        }
    }
}

/// Why a manager that installs `format` files, on a host whose packages are `whose`,
/// cannot install `file`: another format, or an architecture that is neither `any` (which
/// fits every machine) nor one of the `arches` its `tool` says it installs here (asked only
/// when needed). `None` when it can.
pub(super) fn unfit(
    file: &FileHeader,
    format: FileFormat,
    whose: &str,
    any: &str,
    tool: &str,
    arches: impl FnOnce() -> Result<Vec<String>, SystemError>,
) -> Result<Option<String>, SystemError> {
    if file.format != format {
        return Ok(Some(format!(
            "it is {}, and this host's packages are {whose}",
            file.format.describe()
        )));
    }
    if file.arch == any {
        return Ok(None);
    }
    let arches = arches()?;
    Ok((!arches.contains(&file.arch)).then(|| {
        format!(
            "it is built for architecture {}, and {tool} here installs {} or {any}",
            file.arch,
            arches.join(", ")
        )
    }))
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
    /// Why the package file `file` cannot be installed here (its format is another
    /// manager's, or its architecture one this host does not run), or `None` when it can.
    /// Never changes anything.
    fn file_unfit(&self, sys: &System, file: &FileHeader) -> Result<Option<String>, SystemError>;
    /// The directory inside the root where a package file is put for this manager to
    /// install it.
    fn staging_dir(&self) -> &'static Path;
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
