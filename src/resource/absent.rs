//! `absent`: a path that must not exist.

use std::path::PathBuf;

use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, Place, PlanSlots};
use crate::system::fs::Entry;
use crate::system::{Host, System};

/// A path that must not exist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AbsentResource {
    /// Absolute path on the host.
    pub path: PathBuf,
    /// Remove a non-empty directory with everything in it.
    pub force: bool,
}

impl Resource for AbsentResource {
    type Live = Entry;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Absent, self.path.to_string_lossy())
    }

    /// Its path is what it removes, not what it keeps.
    fn footprint(&self) -> Footprint<'_> {
        Footprint {
            place: Place::Removes(&self.path),
            makes_directory: None,
            creates_account: false,
        }
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<Entry, ResourceError> {
        let entry = sys.entry(&self.path)?;
        if matches!(entry, Entry::Directory(_))
            && !self.force
            && !sys.list_dir(&self.path)?.is_empty()
        {
            return Err(ResourceError::NonEmptyDirectory(self.path.clone()));
        }
        Ok(entry)
    }

    fn diff(&self, live: &Entry) -> Option<Change> {
        let before = match live {
            Entry::Missing => return None,
            Entry::Symlink(t) => format!("symlink to {}", t.display()),
            other => other.kind().to_owned(),
        };
        Some(Change::fields(
            Action::Remove,
            vec![FieldChange::new("type", Some(before), None)],
        ))
    }

    fn apply(&self, host: &Host, _live: &Entry, _change: &Change) -> Result<(), ResourceError> {
        host.remove(&self.path, self.force)?;
        Ok(())
    }
}
