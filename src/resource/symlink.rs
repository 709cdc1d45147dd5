//! `symlink`: a symbolic link with an exact target.

use std::path::PathBuf;

use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, PlanSlots};
use crate::system::fs::Entry;
use crate::system::{Host, System};

/// A managed symbolic link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SymlinkResource {
    /// Absolute path of the link.
    pub path: PathBuf,
    /// Target, stored as written.
    pub target: PathBuf,
    /// Replace a directory standing at `path`.
    pub force: bool,
    /// The nearest ancestor a directory resource manages (filled in by the plan).
    pub managed_ancestor: super::ManagedParent,
}

impl Resource for SymlinkResource {
    type Live = Entry;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Symlink, self.path.to_string_lossy())
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint::keeps(&self.path, &self.managed_ancestor)
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<Entry, ResourceError> {
        let entry = sys.entry(&self.path)?;
        if entry == Entry::Missing {
            super::parents::ensure(sys, &self.path, &self.managed_ancestor)?;
        }
        if matches!(entry, Entry::Directory(_)) && !self.force {
            return Err(ResourceError::WrongKind {
                path: self.path.clone(),
                found: "directory",
                wanted: "symlink",
                hint: " unless force = true",
            });
        }
        Ok(entry)
    }

    fn diff(&self, live: &Entry) -> Option<Change> {
        let target = Some(self.target.display().to_string());
        match live {
            Entry::Symlink(t) if *t == self.target => None,
            Entry::Symlink(t) => Some(Change::fields(
                Action::Update,
                vec![FieldChange::new(
                    "target",
                    Some(t.display().to_string()),
                    target,
                )],
            )),
            Entry::Missing => Some(Change::fields(
                Action::Create,
                vec![FieldChange::new("target", None, target)],
            )),
            other => Some(Change::fields(
                Action::Replace,
                vec![
                    FieldChange::new("type", Some(other.kind().into()), Some("symlink".into())),
                    FieldChange::new("target", None, target),
                ],
            )),
        }
    }

    fn apply(&self, host: &Host, live: &Entry, _change: &Change) -> Result<(), ResourceError> {
        if matches!(live, Entry::Directory(_)) {
            // rename(2) cannot put a link over a directory; this step alone is not atomic.
            host.remove(&self.path, true)?;
        }
        host.symlink(&self.path, &self.target)?;
        Ok(())
    }
}
