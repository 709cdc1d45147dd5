//! Resources: desired state as plain data, with one code path for check and apply.
//!
//! Each type answers four questions (identity, live state, difference, how to converge); the
//! engine drives them through [`AnyResource::pending`], whose change only a writing [`Host`]
//! (apply mode) can apply. That is what keeps `check` honest: it runs the same code minus the writes.

pub mod absent;
mod any;
pub mod attrs;
pub mod change;
pub mod content;
pub mod directory;
pub mod exec;
pub mod file;
pub mod footprint;
pub mod group;
pub mod kernel_module;
pub mod kind;
pub mod nftables;
pub mod package;
pub mod parents;
pub mod pending;
pub mod service;
pub mod symlink;
pub mod sysctl;
pub mod sysctl_conf;
pub mod sysfs;
pub mod sysfs_boot;
pub(crate) mod sysfs_glob;
pub mod user;
pub mod validate;

use std::fmt;
use std::path::PathBuf;

pub use any::AnyResource;
pub use change::{Action, Change, ContentChange, Digest, FieldChange};
pub use footprint::{Footprint, ManagedParent, Place, PlanSlots};
pub use kind::Kind;
pub use pending::Pending;

use crate::system::packages::Vocabulary;
use crate::system::{Host, System, SystemError};

/// Stable identity such as `file:/etc/nginx/nginx.conf`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    /// The resource type, e.g. `file`.
    pub kind: Kind,
    /// Its name within the type, e.g. the path.
    pub name: String,
}

impl ResourceId {
    /// Builds an id.
    pub fn new(kind: Kind, name: impl Into<String>) -> ResourceId {
        ResourceId {
            kind,
            name: name.into(),
        }
    }

    /// `file:/etc/x` → the id, when the kind is known and the name is not empty.
    pub fn parse(text: &str) -> Option<ResourceId> {
        let (kind, name) = text.split_once(':')?;
        let kind = Kind::parse(kind)?;
        (!name.is_empty()).then(|| ResourceId::new(kind, name))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ResourceId, D::Error> {
        let text = String::deserialize(d)?;
        ResourceId::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a resource id: {text:?}")))
    }
}

/// Why a resource could not be observed or converged.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The host refused an operation.
    #[error(transparent)]
    System(#[from] SystemError),
    /// An owner that the tree's /etc/passwd does not know.
    #[error("owner '{0}' does not exist (not in /etc/passwd)")]
    UnknownUser(String),
    /// A user to run as that the tree's /etc/passwd does not know.
    #[error("user '{0}' does not exist (not in /etc/passwd)")]
    NoSuchUser(String),
    /// A group that the tree's /etc/group does not know.
    #[error("group '{0}' does not exist (not in /etc/group)")]
    UnknownGroup(String),
    /// Something of another kind stands where the resource wants to be.
    #[error("{path}: is a {found}; converge does not replace a {found} with a {wanted}{hint}")]
    WrongKind {
        /// The managed path.
        path: PathBuf,
        /// What is there.
        found: &'static str,
        /// What the resource wants.
        wanted: &'static str,
        /// How to allow it, when it can be allowed.
        hint: &'static str,
    },
    /// Removing a non-empty directory needs `force = true`.
    #[error("{0}: is a non-empty directory; set force = true to remove it and everything in it")]
    NonEmptyDirectory(PathBuf),
    /// A parent directory of a managed path is missing and no resource manages it.
    #[error("{path}: parent directory {missing} does not exist (manage it with a [[directory]] resource)")]
    MissingParent {
        /// The managed path.
        path: PathBuf,
        /// The outermost missing ancestor.
        missing: PathBuf,
    },
    /// An `exec` command ran and failed.
    #[error("command {status}{}", if output.is_empty() { String::new() } else { format!(": {output}") })]
    ExecFailed {
        /// How it exited, e.g. `exited with status 3`.
        status: String,
        /// The end of its stderr, or why it is not shown.
        output: String,
    },
    /// A sysctl key this kernel (or namespace) does not have.
    #[error("sysctl key '{key}' does not exist in this kernel or namespace (no {path})")]
    SysctlUnknownKey {
        /// The key as written.
        key: String,
        /// The /proc/sys file that is missing.
        path: PathBuf,
    },
    /// The kernel refused a sysctl write.
    #[error("sysctl key '{key}': cannot set '{value}': {reason}")]
    SysctlRejected {
        /// The key as written.
        key: String,
        /// The value that was refused.
        value: String,
        /// Why, in words.
        reason: &'static str,
    },
    /// The kernel accepted a sysctl write but reads back something else.
    #[error(
        "sysctl key '{key}': wrote '{wanted}' but the kernel keeps '{got}' (clamped or rounded?)"
    )]
    SysctlNotKept {
        /// The key as written.
        key: String,
        /// The value written.
        wanted: String,
        /// The value read back.
        got: String,
    },
    /// systemd has no unit file of this name.
    #[error("unit {unit} not found: {hint}")]
    UnitNotFound {
        /// The unit, e.g. `app.service`.
        unit: String,
        /// Where it was expected to come from, or how to provide it.
        hint: String,
    },
    /// The desired content could not be had again when it was needed.
    #[error("{}: desired content: {reason}", path.display())]
    Desired {
        /// The managed path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// What is there could not be kept, so it was not changed.
    #[error("cannot keep a backup of what is there ({0}); nothing was changed")]
    Backup(String),
    /// The role's `validate` command refused the new content.
    #[error("{} `{command}` {status}{}",
        if *applying { "validation failed (the old file was kept):" } else { "would fail validation:" },
        if output.is_empty() { String::new() } else { format!(": {output}") })]
    ValidationFailed {
        /// The command as the role wrote it.
        command: String,
        /// How it ended, e.g. `exited with status 1`.
        status: String,
        /// The end of what it printed, or why it is not shown.
        output: String,
        /// Whether this was apply (the old file kept) or check (it would fail).
        applying: bool,
    },
    /// A pinned version that no configured archive offers.
    #[error("package {name}: version {version} not found in {sources} (available: {available}); nothing was changed", sources = words.sources)]
    PackageVersionNotFound {
        /// The package.
        name: String,
        /// The version asked for.
        version: String,
        /// What the archives offer.
        available: String,
        /// How the package manager names its archives.
        words: Vocabulary,
    },
    /// A package file of the bundle that this host's package manager cannot install.
    #[error(
        "package {name}: {file} cannot be installed on this host: {reason}; nothing was changed"
    )]
    PackageFileUnfit {
        /// The package.
        name: String,
        /// The file, as the bundle names it.
        file: String,
        /// Why: its format or its architecture.
        reason: String,
    },
    /// A package no configured archive offers.
    #[error("package {0}: not found in {sources} ({hint})", sources = .1.sources, hint = .1.refresh_hint)]
    PackageNotFound(String, Vocabulary),
    /// A table that nft loads here but not in the empty namespace it is compared in.
    #[error("nftables {table}: nft takes this table on this host but not in an empty network namespace, where converge puts it in nft's own form to compare it: {reason}\n(a statement bound to a device, such as `iif eth0` or a flowtable's devices, needs the device; match by name with `iifname \"eth0\"`)")]
    NftablesNotComparable {
        /// `inet/filter`.
        table: String,
        /// nft's message in the scratch namespace.
        reason: String,
    },
    /// `ensure = "latest"` on a package someone held.
    #[error("package {0} is held ({hint}); ensure = \"latest\" would move it: unhold it or pin a version", hint = .1.holds_hint)]
    PackageHeld(String, Vocabulary),
    /// A kernel module that cannot be had as the role wants it.
    #[error(transparent)]
    KernelModule(#[from] kernel_module::ModuleError),
    /// A `[sysfs]` key that cannot be had on this host.
    #[error(transparent)]
    Sysfs(#[from] sysfs::SysfsError),
}

impl ResourceError {
    /// A stable name for what went wrong, for the JSON report (`error_kind`), so that tools
    /// can tell failures apart without parsing the text.
    pub fn kind(&self) -> &'static str {
        match self {
            ResourceError::System(e) => e.kind(),
            ResourceError::UnknownUser(_) => "unknown_owner",
            ResourceError::NoSuchUser(_) => "unknown_user",
            ResourceError::UnknownGroup(_) => "unknown_group",
            ResourceError::WrongKind { .. } => "wrong_kind",
            ResourceError::NonEmptyDirectory(_) => "non_empty_directory",
            ResourceError::MissingParent { .. } => "missing_parent",
            ResourceError::ExecFailed { .. } => "command_failed",
            ResourceError::SysctlUnknownKey { .. } => "sysctl_unknown_key",
            ResourceError::SysctlRejected { .. } => "sysctl_rejected",
            ResourceError::SysctlNotKept { .. } => "sysctl_not_kept",
            ResourceError::UnitNotFound { .. } => "unit_not_found",
            ResourceError::Desired { .. } => "desired_content_unavailable",
            ResourceError::Backup(_) => "backup_failed",
            ResourceError::ValidationFailed { .. } => "validation_failed",
            ResourceError::PackageVersionNotFound { .. } => "package_version_not_found",
            ResourceError::PackageNotFound(..) => "package_not_found",
            ResourceError::PackageFileUnfit { .. } => "package_file_unfit",
            ResourceError::PackageHeld(..) => "package_held",
            ResourceError::NftablesNotComparable { .. } => "nftables_not_comparable",
            ResourceError::KernelModule(e) => e.kind(),
            ResourceError::Sysfs(e) => e.kind(),
        }
    }
}

/// The contract every resource type implements.
pub trait Resource: fmt::Debug + Send + Sync {
    /// What [`Resource::observe`] finds on the host.
    type Live;
    /// Stable identity, e.g. `file:/etc/nginx/nginx.conf`.
    fn id(&self) -> ResourceId;
    /// Reads the live state. Never changes the host.
    fn observe(&self, sys: &System) -> Result<Self::Live, ResourceError>;
    /// What would change; `None` when in sync. Pure.
    fn diff(&self, live: &Self::Live) -> Option<Change>;
    /// Makes exactly `change` happen.
    fn apply(&self, host: &Host, live: &Self::Live, change: &Change) -> Result<(), ResourceError>;
    /// Refuses `change` before it is made when the role's own check rejects it (`validate`).
    /// Runs in check mode too; `applying` only words the error.
    fn validate(
        &self,
        _sys: &System,
        _change: &Change,
        _applying: bool,
    ) -> Result<(), ResourceError> {
        Ok(())
    }
    /// Whether [`Resource::validate`] runs a command of the role's (checked ahead of the
    /// run's first write).
    fn validates(&self) -> bool {
        false
    }
    /// What the report should say even when nothing changes (e.g. what `--root` cannot manage).
    fn notes(&self, _sys: &System) -> Vec<String> {
        Vec::new()
    }

    // What planning needs to know. No defaults: with "not me" defaults, a kind that keeps
    // a path and forgot to say so compiled, then lost its path conflicts, was removed by a
    // purging directory above, or failed on a parent the run makes (see footprint.rs).

    /// What it occupies on the host.
    fn footprint(&self) -> Footprint<'_>;
    /// What planning fills in once every role is known.
    fn plan_slots(&mut self) -> PlanSlots<'_>;
}
