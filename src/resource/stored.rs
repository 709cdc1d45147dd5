//! A resource as a stored plan keeps it: one variant per resource type, so a plan read
//! back holds the very types a freshly built one does. Each type names its variant in
//! [`Resource::stored`](super::Resource::stored), which has no default: a new type does not
//! build until it can be stored. A plan being stored lends its resources (no copy is made
//! to write them); a plan read back owns them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::absent::AbsentResource;
use super::directory::DirectoryResource;
use super::exec::ExecResource;
use super::file::FileResource;
use super::group::GroupResource;
use super::kernel_module::KernelModuleResource;
use super::nftables::NftablesResource;
use super::package::PackageResource;
use super::service::ServiceResource;
use super::symlink::SymlinkResource;
use super::sysctl::SysctlResource;
use super::sysctl_conf::SysctlConfResource;
use super::user::UserResource;
use super::Managed;

/// Every resource type, lent (to store it) or owned (read back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Stored<'a> {
    /// `[[file]]`, unit files.
    File(Cow<'a, FileResource>),
    /// The sysctl drop-in.
    SysctlConf(Cow<'a, SysctlConfResource>),
    /// `[[directory]]`.
    Directory(Cow<'a, DirectoryResource>),
    /// `[[symlink]]`.
    Symlink(Cow<'a, SymlinkResource>),
    /// `[[absent]]`.
    Absent(Cow<'a, AbsentResource>),
    /// One `[sysctl]` key.
    Sysctl(Cow<'a, SysctlResource>),
    /// `[[group]]`.
    Group(Cow<'a, GroupResource>),
    /// `[[user]]`.
    User(Cow<'a, UserResource>),
    /// `[[exec]]`.
    Exec(Cow<'a, ExecResource>),
    /// `[[service]]`.
    Service(Cow<'a, ServiceResource>),
    /// `[[package]]`.
    Package(Cow<'a, PackageResource>),
    /// `[[nftables]]`.
    Nftables(Cow<'a, NftablesResource>),
    /// `[[kernel_module]]`.
    KernelModule(Cow<'a, KernelModuleResource>),
}

impl Stored<'_> {
    /// The resource the engine drives.
    pub fn into_managed(self) -> Box<dyn Managed> {
        match self {
            Stored::File(r) => Box::new(r.into_owned()),
            Stored::SysctlConf(r) => Box::new(r.into_owned()),
            Stored::Directory(r) => Box::new(r.into_owned()),
            Stored::Symlink(r) => Box::new(r.into_owned()),
            Stored::Absent(r) => Box::new(r.into_owned()),
            Stored::Sysctl(r) => Box::new(r.into_owned()),
            Stored::Group(r) => Box::new(r.into_owned()),
            Stored::User(r) => Box::new(r.into_owned()),
            Stored::Exec(r) => Box::new(r.into_owned()),
            Stored::Service(r) => Box::new(r.into_owned()),
            Stored::Package(r) => Box::new(r.into_owned()),
            Stored::Nftables(r) => Box::new(r.into_owned()),
            Stored::KernelModule(r) => Box::new(r.into_owned()),
        }
    }

    /// The desired content of a file resource, whose source file a stored plan must find
    /// unchanged. (The sysctl drop-in's content is held whole, never read from a file.)
    pub fn content(&self) -> Option<&super::content::Desired> {
        match self {
            Stored::File(r) => Some(&r.content),
            Stored::Nftables(r) => Some(&r.content),
            Stored::SysctlConf(_)
            | Stored::Directory(_)
            | Stored::Symlink(_)
            | Stored::Absent(_)
            | Stored::Sysctl(_)
            | Stored::Group(_)
            | Stored::User(_)
            | Stored::Exec(_)
            | Stored::Service(_)
            | Stored::Package(_)
            | Stored::KernelModule(_) => None,
        }
    }
}

/// `#[serde(with = "...")]` for a `Box<dyn Managed>` field: stored as its [`Stored`] form.
pub mod boxed {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Managed, Stored};

    /// Stores the resource as its [`Stored`] variant.
    #[allow(clippy::borrowed_box)] // serde's `with` hands over the field as it is declared
    pub fn serialize<S: Serializer>(r: &Box<dyn Managed>, s: S) -> Result<S::Ok, S::Error> {
        r.stored().serialize(s)
    }

    /// Reads a [`Stored`] variant back into the resource the engine drives.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<dyn Managed>, D::Error> {
        Stored::deserialize(d).map(Stored::into_managed)
    }
}
