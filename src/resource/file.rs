//! `file`: a regular file with exact content, owner, group and mode.

use std::path::PathBuf;

use super::attrs::{Ownership, Resolved};
use super::parents;
use super::{
    Action, Change, ContentChange, FieldChange, Kind, Resource, ResourceError, ResourceId,
};
use crate::system::fs::Entry;
use crate::system::{Host, System};

/// Mode of a new file when the role does not say.
const DEFAULT_MODE: u32 = 0o644;
/// Mode of a new sensitive file when the role does not say: readable by its owner only.
const SENSITIVE_DEFAULT_MODE: u32 = 0o600;

/// A managed regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileResource {
    /// Absolute path on the host.
    pub path: PathBuf,
    /// The exact bytes it must hold (already rendered).
    pub content: Vec<u8>,
    /// Owner, group and mode.
    pub ownership: Ownership,
    /// Keep the content out of diffs, logs and reports.
    pub sensitive: bool,
    /// The nearest ancestor a directory resource manages (filled in by the plan).
    pub managed_ancestor: Option<PathBuf>,
    /// Command that must accept new content before the swap (`{path}`: a temp copy).
    pub validate: Option<String>,
}

/// What a file resource finds.
#[derive(Debug)]
pub struct FileLive {
    entry: Entry,
    content: Option<Vec<u8>>,
    want: Resolved,
}

impl Resource for FileResource {
    type Live = FileLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::File, self.path.to_string_lossy())
    }

    fn claims(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn set_managed_ancestor(&mut self, dir: PathBuf) {
        self.managed_ancestor = Some(dir);
    }

    fn ownership_mut(&mut self) -> Option<&mut Ownership> {
        Some(&mut self.ownership)
    }

    fn observe(&self, sys: &System) -> Result<FileLive, ResourceError> {
        let want = self.ownership.resolve(sys.accounts())?;
        let entry = sys.entry(&self.path)?;
        let content = match &entry {
            Entry::File(_) => Some(sys.read_file(&self.path)?),
            Entry::Directory(_) => {
                return Err(ResourceError::WrongKind {
                    path: self.path.clone(),
                    found: "directory",
                    wanted: "file",
                    hint: "",
                })
            }
            _ => None,
        };
        if entry == Entry::Missing {
            parents::ensure(sys, &self.path, self.managed_ancestor.as_deref())?;
        }
        Ok(FileLive {
            entry,
            content,
            want,
        })
    }

    fn diff(&self, live: &FileLive) -> Option<Change> {
        let label = self.path.to_string_lossy();
        let (action, mut fields, content) = match &live.entry {
            Entry::File(meta) => {
                let same = live.content.as_deref() == Some(&self.content[..]);
                let content = (!same).then(|| {
                    ContentChange::between(
                        &label,
                        live.content.as_deref(),
                        &self.content,
                        self.sensitive,
                    )
                });
                (Action::Update, live.want.diff(Some(meta)), content)
            }
            other => {
                let mut fields = Vec::new();
                let action = if let Entry::Missing = other {
                    Action::Create
                } else {
                    let before = match other {
                        Entry::Symlink(t) => format!("symlink to {}", t.display()),
                        o => o.kind().to_owned(),
                    };
                    fields.push(FieldChange::new("type", Some(before), Some("file".into())));
                    Action::Replace
                };
                let content = ContentChange::between(&label, None, &self.content, self.sensitive);
                (action, fields, Some(content))
            }
        };
        if action != Action::Update {
            fields.extend(live.want.diff(None));
        }
        if fields.is_empty() && content.is_none() {
            return None;
        }
        Some(Change {
            content,
            ..Change::fields(action, fields)
        })
    }

    fn validate(&self, sys: &System, change: &Change, applying: bool) -> Result<(), ResourceError> {
        let Some(command) = &self.validate else {
            return Ok(());
        };
        // Only new content needs the check: owner or mode alone leave the bytes as they are.
        if change.content.is_none() && change.action == Action::Update {
            return Ok(());
        }
        super::validate::run(
            sys,
            command,
            &self.path,
            &self.content,
            self.sensitive,
            applying,
        )
    }

    fn apply(&self, host: &Host, live: &FileLive, change: &Change) -> Result<(), ResourceError> {
        // A file with other hard links shares its inode with another path (say /etc/shadow):
        // it gets a new inode, so the other path keeps its owner and mode.
        let shared = matches!(live.entry, Entry::File(meta) if meta.links > 1);
        if change.content.is_some() || change.action != Action::Update || shared {
            // New content goes in whole, with the attributes already set, in one rename.
            let default_mode = if self.sensitive {
                SENSITIVE_DEFAULT_MODE
            } else {
                DEFAULT_MODE
            };
            host.write_file(&self.path, &self.content, live.want.attrs, default_mode)?;
        } else if let Entry::File(meta) = &live.entry {
            host.set_attrs(&self.path, live.want.differing(Some(meta)))?;
        }
        Ok(())
    }
}
