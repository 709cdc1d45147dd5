//! `directory`: a directory's own owner, group and mode; its entries only with `purge`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::attrs::{Ownership, Resolved};
use super::parents;
use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, Place, PlanSlots};
use crate::system::fs::Entry;
use crate::system::{Host, System};

/// A managed directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirectoryResource {
    /// Absolute path on the host.
    pub path: PathBuf,
    /// Owner, group and mode of the directory itself.
    pub ownership: Ownership,
    /// Remove entries that are not in `keep`.
    pub purge: bool,
    /// Names of entries other resources of this run manage (filled in by the plan).
    pub keep: BTreeSet<String>,
    /// The nearest ancestor another directory resource manages (filled in by the plan).
    pub managed_ancestor: super::ManagedParent,
}

/// What a directory resource finds.
#[derive(Debug)]
pub struct DirectoryLive {
    entry: Entry,
    unmanaged: Vec<(std::ffi::OsString, &'static str)>,
    want: Resolved,
}

impl Resource for DirectoryResource {
    type Live = DirectoryLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Directory, self.path.to_string_lossy())
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint {
            place: Place::Keeps(&self.path, &self.managed_ancestor),
            makes_directory: Some(&self.path),
            creates_account: false,
        }
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots {
            ownership: Some(&mut self.ownership),
            purge_keep: self.purge.then_some(&mut self.keep),
        }
    }

    fn observe(&self, sys: &System) -> Result<DirectoryLive, ResourceError> {
        let want = self.ownership.resolve(sys.accounts())?;
        let entry = sys.entry(&self.path)?;
        let mut unmanaged = Vec::new();
        match &entry {
            Entry::Directory(_) => {
                if self.purge {
                    for name in sys.list_dir(&self.path)? {
                        if !name.to_str().is_some_and(|n| self.keep.contains(n)) {
                            let kind = sys.entry(&self.path.join(&name))?.kind();
                            unmanaged.push((name, kind));
                        }
                    }
                }
            }
            Entry::Missing => parents::ensure(sys, &self.path, &self.managed_ancestor)?,
            other => {
                return Err(ResourceError::WrongKind {
                    path: self.path.clone(),
                    found: other.kind(),
                    wanted: "directory",
                    hint: "",
                })
            }
        }
        Ok(DirectoryLive {
            entry,
            unmanaged,
            want,
        })
    }

    fn diff(&self, live: &DirectoryLive) -> Option<Change> {
        let (action, meta) = match &live.entry {
            Entry::Directory(meta) => (Action::Update, Some(meta)),
            _ => (Action::Create, None),
        };
        let mut fields = live.want.diff(meta);
        if action == Action::Create && self.ownership.mode.is_none() {
            fields.push(FieldChange::new("mode", None, Some("0755".into())));
        }
        for (name, kind) in &live.unmanaged {
            let field = format!("entry {}", name.to_string_lossy());
            fields.push(FieldChange::new(&field, Some((*kind).to_owned()), None));
        }
        let removes = live
            .unmanaged
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        (action == Action::Create || !fields.is_empty()).then(|| Change {
            removes,
            ..Change::fields(action, fields)
        })
    }

    fn apply(
        &self,
        host: &Host,
        live: &DirectoryLive,
        change: &Change,
    ) -> Result<(), ResourceError> {
        if change.action == Action::Create {
            return host
                .create_dir(&self.path, live.want.attrs)
                .map_err(Into::into);
        }
        // The entries observed for this change (their names as the OS spells them; the
        // change shows them readable).
        for (name, _) in &live.unmanaged {
            host.remove(&self.path.join(name), true)?;
        }
        let meta = match &live.entry {
            Entry::Directory(meta) => Some(meta),
            _ => None,
        };
        let attrs = live.want.differing(meta);
        if attrs != Default::default() {
            host.set_attrs(&self.path, attrs)?;
        }
        Ok(())
    }
}
