//! What a resource occupies on the host, as planning needs to know it: the path it manages
//! alone, the paths it keeps, the directory it makes, the account it creates, and what the
//! plan fills in once every role is known.
//!
//! Every kind answers [`Resource::footprint`](super::Resource::footprint) and
//! [`Resource::plan_slots`](super::Resource::plan_slots), which have no defaults, with
//! struct literals of types that have no `Default` either: a new kind does not compile until
//! it has said, field by field, what it occupies. A kind that keeps a path says so once, with
//! [`Place::Keeps`], and its conflicts, what a purging directory above leaves alone and its
//! managed parent all derive from that one answer. `Keeps` takes the kind's
//! [`ManagedParent`], the only thing [`parents::ensure`](super::parents::ensure) accepts: a
//! kind that checks its parents therefore has one, and a kind that keeps a path cannot say so
//! without handing it over to be filled in.
//!
//! A kind that does not say what it occupies does not build:
//!
//! ```compile_fail,E0046
//! use converge::resource::{Change, PlanSlots, Resource, ResourceError, ResourceId, Kind};
//! use converge::system::{Host, System};
//!
//! #[derive(Debug)]
//! struct Motd(std::path::PathBuf);
//!
//! impl Resource for Motd {
//!     type Live = ();
//!     fn id(&self) -> ResourceId {
//!         ResourceId::new(Kind::File, self.0.to_string_lossy())
//!     }
//!     fn observe(&self, _: &System) -> Result<(), ResourceError> {
//!         Ok(())
//!     }
//!     fn diff(&self, _: &()) -> Option<Change> {
//!         None
//!     }
//!     fn apply(&self, _: &Host, _: &(), _: &Change) -> Result<(), ResourceError> {
//!         Ok(())
//!     }
//!     fn plan_slots(&mut self) -> PlanSlots<'_> {
//!         PlanSlots { ownership: None, purge_keep: None }
//!     }
//!     // no `footprint`: error[E0046]: not all trait items implemented
//! }
//! ```
//!
//! Nor does one that leaves a question of the answer out:
//!
//! ```compile_fail,E0063
//! use converge::resource::{Footprint, Place};
//!
//! let _ = Footprint {
//!     place: Place::Elsewhere(Vec::new()),
//!     creates_account: false,
//!     // no `makes_directory`: error[E0063]: missing field
//! };
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::attrs::Ownership;

/// What a resource occupies on the host.
#[derive(Debug)]
pub struct Footprint<'a> {
    /// The path it manages, and how.
    pub place: Place<'a>,
    /// A directory it makes, under which missing parents count as managed.
    pub makes_directory: Option<&'a Path>,
    /// True for a user or group this run creates (files may be owned by it in check too).
    pub creates_account: bool,
}

impl<'a> Footprint<'a> {
    /// Keeps `path` on disk, makes no directory and creates no account: a file or a link.
    pub fn keeps(path: &'a Path, parent: &'a ManagedParent) -> Footprint<'a> {
        Footprint {
            place: Place::Keeps(path, parent),
            makes_directory: None,
            creates_account: false,
        }
    }

    /// Occupies no path on the host and creates nothing planning must know of (a kernel
    /// setting, a service, a package, whose files are dpkg's to track).
    pub(crate) fn no_path() -> Footprint<'a> {
        Footprint {
            place: Place::Elsewhere(Vec::new()),
            makes_directory: None,
            creates_account: false,
        }
    }
}

/// The path a resource manages, if any.
#[derive(Debug)]
pub enum Place<'a> {
    /// A path it keeps on disk (a file, directory, symlink): no other resource may manage it,
    /// a purging directory above leaves it alone, and a directory the run makes above it
    /// counts as its existing parent.
    Keeps(&'a Path, &'a ManagedParent),
    /// A path it removes: no other resource may manage it, and it keeps nothing there.
    Removes(&'a Path),
    /// No path of its own; the host paths it keeps all the same (a user's home, what an
    /// exec creates), which a purging directory above leaves alone. Often none.
    Elsewhere(Vec<PathBuf>),
}

/// What planning fills in once every role is known.
#[derive(Debug)]
pub struct PlanSlots<'a> {
    /// The owner and group it sets: whether they are accounts the run creates.
    pub ownership: Option<&'a mut Ownership>,
    /// A purging directory's kept entries: those other resources of the run claim.
    pub purge_keep: Option<&'a mut BTreeSet<String>>,
}

impl PlanSlots<'_> {
    /// Nothing for planning to fill in.
    pub fn none() -> PlanSlots<'static> {
        PlanSlots {
            ownership: None,
            purge_keep: None,
        }
    }
}

/// The nearest directory above a kept path that the run makes, filled in by planning: a
/// missing parent under it is not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedParent(OnceLock<Arc<Path>>);

impl ManagedParent {
    /// The directory, once planning found one.
    pub fn get(&self) -> Option<&Path> {
        self.0.get().map(|p| &**p)
    }

    /// Sets the directory; planning does it once, and a second call changes nothing.
    pub(crate) fn fill(&self, dir: Arc<Path>) {
        let _ = self.0.set(dir);
    }
}

impl serde::Serialize for ManagedParent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.get().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for ManagedParent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ManagedParent, D::Error> {
        let parent = ManagedParent::default();
        if let Some(dir) = Option::<Arc<Path>>::deserialize(d)? {
            parent.fill(dir);
        }
        Ok(parent)
    }
}

impl<'a> Place<'a> {
    /// The host path it manages alone, kept or removed.
    pub fn path(&self) -> Option<&'a Path> {
        match self {
            Place::Keeps(path, _) | Place::Removes(path) => Some(*path),
            Place::Elsewhere(_) => None,
        }
    }

    /// The host paths it keeps on disk.
    pub(crate) fn claims(self) -> Vec<PathBuf> {
        match self {
            Place::Keeps(path, _) => vec![path.to_path_buf()],
            Place::Removes(_) => Vec::new(),
            Place::Elsewhere(kept) => kept,
        }
    }
}
