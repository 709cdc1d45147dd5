//! [`AnyResource`]: every resource type in one closed enum, declared from
//! [`every_kind!`](super::kind::every_kind). The plan holds it, the engine drives it and the
//! plan cache stores it as it is; every `match` on it is exhaustive, so a new type is a
//! compile error wherever it must be answered.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::attrs::Ownership;
use super::content::Desired;
use super::kind::every_kind;
use super::service::ServiceResource;
use super::{Footprint, Kind, Pending, PlanSlots, Resource, ResourceError, ResourceId};
use crate::system::System;

/// Declares [`AnyResource`] and its dispatch from [`every_kind!`]'s list.
macro_rules! declare_any_resource {
    ($($(#[$doc:meta])* $kind:ident => $name:literal, planned by $planner:ident,
        [$($(#[$vdoc:meta])* $variant:ident($ty:path)),*];)+) => {
        /// One desired resource, of any type.
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum AnyResource {
            $($($(#[$vdoc])* $variant($ty),)*)+
        }

        $($(
            impl From<$ty> for AnyResource {
                fn from(r: $ty) -> AnyResource {
                    AnyResource::$variant(r)
                }
            }
        )*)+

        impl AnyResource {
            /// How many resource types there are.
            pub const TYPES: usize = [$($(stringify!($variant),)*)+].len();

            /// Its kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $($(AnyResource::$variant(_) => Kind::$kind,)*)+
                }
            }

            /// Stable identity.
            pub fn id(&self) -> ResourceId {
                match self { $($(AnyResource::$variant(r) => r.id(),)*)+ }
            }

            /// Observes and diffs without writing: the change converging would make, which
            /// only applying it consumes; `None` when in sync.
            pub fn pending(&self, sys: &System) -> Result<Option<Pending<'_>>, ResourceError> {
                match self { $($(AnyResource::$variant(r) => Pending::observe(r, sys),)*)+ }
            }

            /// Whether it checks new content with a command of the role's.
            pub fn validates(&self) -> bool {
                match self { $($(AnyResource::$variant(r) => r.validates(),)*)+ }
            }

            /// Remarks for the report, independent of any change.
            pub fn notes(&self, sys: &System) -> Vec<String> {
                match self { $($(AnyResource::$variant(r) => r.notes(sys),)*)+ }
            }

            /// What it occupies on the host.
            pub(crate) fn footprint(&self) -> Footprint<'_> {
                match self { $($(AnyResource::$variant(r) => r.footprint(),)*)+ }
            }

            /// What planning fills in once every role is known.
            pub(crate) fn plan_slots(&mut self) -> PlanSlots<'_> {
                match self { $($(AnyResource::$variant(r) => r.plan_slots(),)*)+ }
            }
        }
    };
}

every_kind!(declare_any_resource);

impl AnyResource {
    /// The host path it manages, when it manages one (two resources may not share a path).
    pub(crate) fn host_path(&self) -> Option<&Path> {
        self.footprint().place.path()
    }

    /// The host paths it keeps on disk; a purging directory above leaves them alone.
    pub(crate) fn claims(&self) -> Vec<PathBuf> {
        self.footprint().place.claims()
    }

    /// A directory it makes, under which missing parents count as managed.
    pub(crate) fn makes_directory(&self) -> Option<&Path> {
        self.footprint().makes_directory
    }

    /// True for a user or group this run creates.
    pub(crate) fn creates_account(&self) -> bool {
        self.footprint().creates_account
    }

    /// Tells a path it keeps which directory of the run above it will exist.
    pub(crate) fn set_managed_ancestor(&self, dir: Arc<Path>) {
        if let super::Place::Keeps(_, parent) = self.footprint().place {
            parent.fill(dir);
        }
    }

    /// The owner and group it sets, for resources that set them.
    pub(crate) fn ownership_mut(&mut self) -> Option<&mut Ownership> {
        self.plan_slots().ownership
    }

    /// A purging directory: its path and the entries it keeps.
    pub(crate) fn purge_mut(&mut self) -> Option<(PathBuf, &mut BTreeSet<String>)> {
        // Asked of every item: the path is copied only for the purging few.
        self.plan_slots().purge_keep.as_ref()?;
        let path = self.host_path()?.to_path_buf();
        Some((path, self.plan_slots().purge_keep?))
    }

    /// The service this resource is, for notify and unit providers.
    pub fn service(&self) -> Option<&ServiceResource> {
        match self {
            AnyResource::Service(s) => Some(s),
            _ => None,
        }
    }

    /// The service this resource is, mutable, for planning steps.
    pub(crate) fn service_mut(&mut self) -> Option<&mut ServiceResource> {
        match self {
            AnyResource::Service(s) => Some(s),
            _ => None,
        }
    }

    /// The desired content of a `[[file]]`, or the .deb of a package from a file, whose
    /// source file a stored plan must find unchanged. (The sysctl drop-in's content is held
    /// whole, never read from a file.)
    pub fn content(&self) -> Option<&Desired> {
        match self {
            AnyResource::File(f) => Some(&f.content),
            AnyResource::Package(p) => match &p.ensure {
                super::package::Ensure::FromFile(file) => Some(&file.content),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether it is a `[[file]]` whose content must not be shown.
    pub fn sensitive(&self) -> bool {
        matches!(self, AnyResource::File(f) if f.sensitive)
    }
}
