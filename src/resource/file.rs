//! `file`: a regular file with exact content, owner, group and mode.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use super::attrs::{Ownership, Resolved};
use super::change::{Reopen, MAX_DIFF_INPUT};
use super::content::{Desired, DesiredError, Fingerprint, Hashing, CHUNK};
use super::parents;
use super::{
    Action, Change, ContentChange, FieldChange, Kind, Resource, ResourceError, ResourceId,
};
use super::{Footprint, PlanSlots};
use crate::system::fs::Entry;
use crate::system::{Host, System, SystemError};

/// Mode of a new file when the role does not say.
const DEFAULT_MODE: u32 = 0o644;
/// Mode of a new sensitive file when the role does not say: readable by its owner only.
const SENSITIVE_DEFAULT_MODE: u32 = 0o600;

/// A managed regular file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileResource {
    /// Absolute path on the host.
    pub path: PathBuf,
    /// The exact bytes it must hold: their fingerprint, and where they come from when needed.
    pub content: Desired,
    /// Owner, group and mode.
    pub ownership: Ownership,
    /// Keep the content out of diffs, logs and reports.
    pub sensitive: bool,
    /// The nearest ancestor a directory resource manages (filled in by the plan).
    pub managed_ancestor: super::ManagedParent,
    /// Command that must accept new content before the swap (`{path}`: a temp copy).
    pub validate: Option<String>,
}

/// What a file resource finds.
#[derive(Debug)]
pub struct FileLive {
    entry: Entry,
    /// How the content found differs from the desired content (`None`: it does not).
    content: Option<ContentChange>,
    want: Resolved,
}

/// The content of the file found: its fingerprint, and the bytes when they are few enough
/// to diff; a bigger file stays open, to be read again in pieces if it differs.
struct LiveContent {
    fingerprint: Fingerprint,
    small: Option<Vec<u8>>,
    file: std::fs::File,
}

/// Reads the file at `path` through once, keeping the bytes only while they could be diffed.
fn read_live(sys: &System, path: &Path, keep: bool) -> Result<LiveContent, ResourceError> {
    let mut file = sys.open_file(path)?;
    let mut hashing = Hashing::default();
    let mut small = keep.then(Vec::new);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SystemError::io(path, e).into()),
        };
        hashing.update(&buf[..n]);
        if let Some(s) = small.as_mut() {
            if s.len() + n > MAX_DIFF_INPUT {
                small = None;
            } else {
                s.extend_from_slice(&buf[..n]);
            }
        }
    }
    Ok(LiveContent {
        fingerprint: hashing.finish(),
        small,
        file,
    })
}

impl Resource for FileResource {
    type Live = FileLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::File, self.path.to_string_lossy())
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint::keeps(&self.path, &self.managed_ancestor)
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots {
            ownership: Some(&mut self.ownership),
            purge_keep: None,
        }
    }

    fn observe(&self, sys: &System) -> Result<FileLive, ResourceError> {
        let want = self.ownership.resolve(sys.accounts())?;
        let entry = sys.entry(&self.path)?;
        let content = match &entry {
            Entry::File(_) => {
                let found = read_live(sys, &self.path, !self.sensitive)?;
                if found.fingerprint == self.content.fingerprint() {
                    None
                } else {
                    Some(self.content_change(Some(found))?)
                }
            }
            Entry::Directory(_) => {
                return Err(ResourceError::WrongKind {
                    path: self.path.clone(),
                    found: "directory",
                    wanted: "file",
                    hint: "",
                })
            }
            _ => Some(self.content_change(None)?),
        };
        if entry == Entry::Missing {
            parents::ensure(sys, &self.path, &self.managed_ancestor)?;
        }
        Ok(FileLive {
            entry,
            content,
            want,
        })
    }

    fn diff(&self, live: &FileLive) -> Option<Change> {
        let (action, mut fields, content) = match &live.entry {
            Entry::File(meta) => (
                Action::Update,
                live.want.diff(Some(meta)),
                live.content.clone(),
            ),
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
                (action, fields, live.content.clone())
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

    fn validates(&self) -> bool {
        self.validate.is_some()
    }

    fn validate(&self, sys: &System, change: &Change, applying: bool) -> Result<(), ResourceError> {
        let Some(command) = &self.validate else {
            return Ok(());
        };
        // Only new content needs the check: owner or mode alone leave the bytes as they are.
        if change.content.is_none() && change.action == Action::Update {
            return Ok(());
        }
        let mut content = self.content.open().map_err(|e| self.desired_error(e))?;
        super::validate::run(
            sys,
            command,
            &self.path,
            &mut content,
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
            let mut content = self.content.open().map_err(|e| self.desired_error(e))?;
            host.write_file_from(&self.path, &mut content, live.want.attrs, default_mode)?;
        } else if let Entry::File(meta) = &live.entry {
            host.set_attrs(&self.path, live.want.differing(Some(meta)))?;
        }
        Ok(())
    }
}

impl FileResource {
    /// A configuration file converge writes itself from `text` (the sysctl drop-in, a
    /// module's modprobe.d file): root's, mode 0644, as the tools reading it expect.
    pub fn system(path: PathBuf, text: String) -> FileResource {
        FileResource {
            path,
            content: Desired::bytes(text.into_bytes()),
            ownership: Ownership {
                owner: Some("0".into()),
                group: Some("0".into()),
                mode: Some(0o644),
                ..Ownership::default()
            },
            sensitive: false,
            managed_ancestor: Default::default(),
            validate: None,
        }
    }

    /// The content change from `found` (`None`: no file there) to the desired content. The
    /// bytes are read again only as far as the report needs them.
    fn content_change(&self, found: Option<LiveContent>) -> Result<ContentChange, ResourceError> {
        let label = self.path.to_string_lossy();
        let open_desired = || -> std::io::Result<Box<dyn Read + '_>> {
            let r = self.content.open().map_err(std::io::Error::other)?;
            Ok(Box::new(r))
        };
        let open_live = || -> std::io::Result<Box<dyn Read + '_>> {
            let found = found.as_ref().expect("opened only when there is a file");
            if let Some(bytes) = &found.small {
                return Ok(Box::new(&bytes[..]));
            }
            // The very file that was hashed, from its start again.
            let mut f = found.file.try_clone()?;
            f.rewind()?;
            Ok(Box::new(f))
        };
        let before = found
            .as_ref()
            .map(|f| (f.fingerprint, &open_live as Reopen));
        let after = (self.content.fingerprint(), &open_desired as Reopen);
        ContentChange::streamed(&label, before, after, self.sensitive).map_err(|e| {
            match e.into_inner().map(|i| i.downcast::<DesiredError>()) {
                Some(Ok(d)) => self.desired_error(*d),
                Some(Err(other)) => {
                    SystemError::io(&self.path, std::io::Error::other(other)).into()
                }
                None => SystemError::io(&self.path, std::io::Error::other("cannot read")).into(),
            }
        })
    }

    fn desired_error(&self, e: DesiredError) -> ResourceError {
        ResourceError::Desired {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}
