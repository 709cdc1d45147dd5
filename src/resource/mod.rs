//! Resources: desired state as plain data, with one code path for check and apply.
//!
//! Each type answers four questions (identity, live state, difference, how to converge); the
//! engine drives them through [`Managed::pending`], whose change only a writing [`Host`]
//! (apply mode) can apply. That is what keeps `check` honest: it runs the same code minus the writes.

pub mod absent;
pub mod attrs;
pub mod change;
pub mod content;
pub mod directory;
pub mod exec;
pub mod file;
pub mod group;
pub mod kernel_module;
pub mod kind;
pub mod nftables;
pub mod package;
pub mod parents;
pub mod pending;
pub mod service;
pub mod stored;
pub mod symlink;
pub mod sysctl;
pub mod sysctl_conf;
pub mod user;
pub mod validate;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

pub use change::{Action, Change, ContentChange, Digest, FieldChange};
pub use kind::Kind;
pub use pending::Pending;

use crate::system::{Host, System, SystemError};
use attrs::Ownership;
use service::ServiceResource;
use stored::Stored;

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
    #[error("package {name}: version {version} not found in the archives (available: {available}); nothing was changed")]
    PackageVersionNotFound {
        /// The package.
        name: String,
        /// The version asked for.
        version: String,
        /// What the archives offer.
        available: String,
    },
    /// A package no configured archive offers.
    #[error("package {0}: not found in the archives (is its source configured and `apt-get update` done?)")]
    PackageNotFound(String),
    /// A table that nft loads here but not in the empty namespace it is compared in.
    #[error("nftables {table}: nft takes this table on this host but not in an empty network namespace, where converge puts it in nft's own form to compare it: {reason}\n(a statement bound to a device, such as `iif eth0` or a flowtable's devices, needs the device; match by name with `iifname \"eth0\"`)")]
    NftablesNotComparable {
        /// `inet/filter`.
        table: String,
        /// nft's message in the scratch namespace.
        reason: String,
    },
    /// `ensure = "latest"` on a package someone held.
    #[error("package {0} is held (apt-mark showhold); ensure = \"latest\" would move it: unhold it or pin a version")]
    PackageHeld(String),
    /// A kernel module that cannot be had as the role wants it.
    #[error(transparent)]
    KernelModule(#[from] kernel_module::ModuleError),
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
            ResourceError::PackageNotFound(_) => "package_not_found",
            ResourceError::PackageHeld(_) => "package_held",
            ResourceError::NftablesNotComparable { .. } => "nftables_not_comparable",
            ResourceError::KernelModule(e) => e.kind(),
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

    // What planning needs to know. `claims` has no default: a kind that keeps paths on disk
    // and did not say so would have them removed by a purging directory above.

    /// The host paths this resource keeps on disk (its own path, a user's home, what an
    /// exec creates); a purging directory above leaves them alone.
    fn claims(&self) -> Vec<PathBuf>;
    /// A directory this resource makes, under which missing parents count as managed.
    fn makes_directory(&self) -> Option<&Path> {
        None
    }
    /// The host path it manages, when it manages one (two resources may not share a path).
    fn host_path(&self) -> Option<&Path> {
        None
    }
    /// Tells a path resource which directory of the run above it will exist (planning
    /// fills it in once every role is known).
    fn set_managed_ancestor(&mut self, _dir: std::sync::Arc<Path>) {}
    /// The owner and group it sets, for resources that set them.
    fn ownership_mut(&mut self) -> Option<&mut Ownership> {
        None
    }
    /// True for a user or group this run creates (files may be owned by it in check too).
    fn creates_account(&self) -> bool {
        false
    }
    /// A purging directory: its path and the entries it keeps.
    fn purge_mut(&mut self) -> Option<(&Path, &mut BTreeSet<String>)> {
        None
    }
    /// The service this resource is, for notify and unit providers.
    fn service(&self) -> Option<&ServiceResource> {
        None
    }
    /// The service this resource is, mutable, for planning steps.
    fn service_mut(&mut self) -> Option<&mut ServiceResource> {
        None
    }
    /// Itself, lent as a stored plan keeps it. No default: a type that cannot be stored
    /// would make every plan holding it uncacheable.
    fn stored(&self) -> Stored<'_>;
}

/// The type-erased face of a resource that the engine drives.
pub trait Managed: fmt::Debug + Send + Sync {
    /// Stable identity.
    fn id(&self) -> ResourceId;
    /// Observes and diffs without writing: the change converging would make, which only
    /// applying it consumes; `None` when in sync.
    fn pending(&self, sys: &System) -> Result<Option<Pending<'_>>, ResourceError>;
    /// Whether it checks new content with a command of the role's.
    fn validates(&self) -> bool;
    /// The concrete resource, only so that [`Managed::same_as`] can compare two of a type.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Same type and same desired state (two roles may declare one resource identically).
    fn same_as(&self, other: &dyn Managed) -> bool;
    /// Remarks for the report, independent of any change.
    fn notes(&self, sys: &System) -> Vec<String>;
    /// See [`Resource::claims`].
    fn claims(&self) -> Vec<PathBuf>;
    /// See [`Resource::makes_directory`].
    fn makes_directory(&self) -> Option<&Path>;
    /// See [`Resource::host_path`].
    fn host_path(&self) -> Option<&Path>;
    /// See [`Resource::set_managed_ancestor`].
    fn set_managed_ancestor(&mut self, dir: std::sync::Arc<Path>);
    /// See [`Resource::ownership_mut`].
    fn ownership_mut(&mut self) -> Option<&mut Ownership>;
    /// See [`Resource::creates_account`].
    fn creates_account(&self) -> bool;
    /// See [`Resource::purge_mut`].
    fn purge_mut(&mut self) -> Option<(&Path, &mut BTreeSet<String>)>;
    /// See [`Resource::service`].
    fn service(&self) -> Option<&ServiceResource>;
    /// See [`Resource::service_mut`].
    fn service_mut(&mut self) -> Option<&mut ServiceResource>;
    /// See [`Resource::stored`].
    fn stored(&self) -> Stored<'_>;
}

impl<R: Resource + PartialEq + 'static> Managed for R {
    fn same_as(&self, other: &dyn Managed) -> bool {
        other.as_any().downcast_ref::<R>() == Some(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn id(&self) -> ResourceId {
        Resource::id(self)
    }

    fn notes(&self, sys: &System) -> Vec<String> {
        Resource::notes(self, sys)
    }

    fn claims(&self) -> Vec<PathBuf> {
        Resource::claims(self)
    }

    fn makes_directory(&self) -> Option<&Path> {
        Resource::makes_directory(self)
    }

    fn host_path(&self) -> Option<&Path> {
        Resource::host_path(self)
    }

    fn set_managed_ancestor(&mut self, dir: std::sync::Arc<Path>) {
        Resource::set_managed_ancestor(self, dir)
    }

    fn ownership_mut(&mut self) -> Option<&mut Ownership> {
        Resource::ownership_mut(self)
    }

    fn creates_account(&self) -> bool {
        Resource::creates_account(self)
    }

    fn purge_mut(&mut self) -> Option<(&Path, &mut BTreeSet<String>)> {
        Resource::purge_mut(self)
    }

    fn service(&self) -> Option<&ServiceResource> {
        Resource::service(self)
    }

    fn service_mut(&mut self) -> Option<&mut ServiceResource> {
        Resource::service_mut(self)
    }

    fn stored(&self) -> Stored<'_> {
        Resource::stored(self)
    }

    fn pending(&self, sys: &System) -> Result<Option<Pending<'_>>, ResourceError> {
        Pending::observe(self, sys)
    }

    fn validates(&self) -> bool {
        Resource::validates(self)
    }
}
