//! What was there before a change (content, owner, group, mode, link target, live value,
//! package version, unit state), captured right before the change and written ahead of it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::resource::content::{Fingerprint, Verified};
use crate::resource::{Change, Kind, ResourceId};
use crate::system::fs::Entry;
use crate::system::{System, SystemError};

/// How deep a removed tree is kept; deeper entries are noted as not kept.
const MAX_DEPTH: usize = 32;

/// What one resource's target looked like before the run changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Prior {
    /// A path (file, directory, symlink, absent path).
    Path {
        /// `file:/etc/x`.
        resource: String,
        /// The managed path.
        path: PathBuf,
        /// What stood there.
        was: PathState,
    },
    /// A live kernel parameter.
    Sysctl {
        /// `sysctl:KEY`.
        resource: String,
        /// The key.
        key: String,
        /// Its value, whitespace-separated tokens as read.
        value: String,
    },
    /// A Debian package.
    Package {
        /// `package:NAME`.
        resource: String,
        /// The package.
        name: String,
        /// The installed version; `None`: not installed.
        version: Option<String>,
        /// Whether it was held.
        held: bool,
    },
    /// A systemd service's enablement and run state.
    Service {
        /// `service:NAME`.
        resource: String,
        /// `nginx.service`.
        unit: String,
        /// Whether it was enabled.
        enabled: bool,
        /// Whether it was masked.
        masked: bool,
        /// Whether it was running (`None`: not known, e.g. offline).
        running: Option<bool>,
    },
    /// A live nftables table, and the tables a purge deleted with it, as nft listed them;
    /// the text is in the run's blob store.
    Nftables {
        /// `nftables:FAMILY/TABLE`.
        resource: String,
        /// `inet`, `ip`...
        family: String,
        /// The table.
        table: String,
        /// The table before the run; `None`: there was none.
        was: Option<KeptText>,
        /// Tables of the family a purge deleted, by name.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        purged: BTreeMap<String, KeptText>,
    },
    /// A kernel module the run loaded or unloaded.
    KernelModule {
        /// `kernel_module:NAME`.
        resource: String,
        /// The module.
        name: String,
        /// Whether it was loaded.
        loaded: bool,
    },
    /// The live values of the attributes a `[sysfs]` key named.
    Sysfs {
        /// `sysfs:KEY`.
        resource: String,
        /// Path under /sys → its value (a choice list's selection).
        values: BTreeMap<String, String>,
    },
    /// Something converge does not undo (users, groups, commands).
    NotRestorable {
        /// The resource.
        resource: String,
        /// Why, for the report.
        why: String,
    },
}

impl Prior {
    /// The resource it belongs to, e.g. `file:/etc/x`.
    pub fn resource(&self) -> &str {
        match self {
            Prior::Path { resource, .. }
            | Prior::Sysctl { resource, .. }
            | Prior::Package { resource, .. }
            | Prior::Service { resource, .. }
            | Prior::Nftables { resource, .. }
            | Prior::KernelModule { resource, .. }
            | Prior::Sysfs { resource, .. }
            | Prior::NotRestorable { resource, .. } => resource,
        }
    }
}

/// What stood at a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PathState {
    /// Nothing.
    Missing,
    /// A regular file; its bytes are in the run's blob store under `sha256`.
    File {
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Permission bits.
        mode: u32,
        /// Hex sha256 of the content (the blob's name).
        sha256: String,
        /// Length in bytes.
        size: u64,
    },
    /// A directory, and the entries that the change removes (all of them when the whole
    /// directory goes), each with what it was.
    Directory {
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Permission bits.
        mode: u32,
        /// Entries kept to put back, by name.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        entries: BTreeMap<String, PathState>,
    },
    /// A symbolic link.
    Symlink {
        /// Its target as stored.
        target: PathBuf,
    },
    /// A device, socket or fifo, or a tree too deep: not kept.
    NotKept {
        /// What it was.
        what: String,
    },
}

/// Text kept in the run's blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptText {
    /// Hex sha256 (the blob's name).
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
}

impl KeptText {
    /// Puts `text` in `blobs`.
    pub(crate) fn put(text: &str, blobs: &dyn Blobs) -> std::io::Result<KeptText> {
        let digest = crate::resource::Digest::of(text.as_bytes());
        blobs.put(&digest.sha256, &mut text.as_bytes())?;
        Ok(KeptText {
            sha256: digest.sha256,
            size: digest.size,
        })
    }
}

/// Where a run keeps file contents: one file per distinct content, 0600.
pub trait Blobs {
    /// Stores what `content` reads (which fails at its end when the bytes are not the ones
    /// named `sha256`), returning nothing on success.
    fn put(&self, sha256: &str, content: &mut dyn std::io::Read) -> std::io::Result<()>;
}

/// Captures what `id` manages before `change` is made to it.
pub fn capture(
    sys: &System,
    id: &ResourceId,
    path: Option<&Path>,
    change: &Change,
    blobs: &dyn Blobs,
) -> Result<Prior, SystemError> {
    let resource = id.to_string();
    let prior = match (id.kind, path) {
        (Kind::File | Kind::Directory | Kind::Symlink | Kind::Absent, Some(path)) => {
            // Entries a purge removes are listed in the change; an absent path or a
            // directory replaced by a link goes whole.
            let whole = matches!(id.kind, Kind::Absent | Kind::Symlink);
            let was = path_state(sys, path, whole, &change.removes, blobs, 0)?;
            Prior::Path {
                resource,
                path: path.to_path_buf(),
                was,
            }
        }
        (Kind::Sysctl, _) => Prior::Sysctl {
            resource,
            key: id.name.clone(),
            value: sysctl_now(sys, &id.name)?,
        },
        (Kind::Package, _) => {
            let status = sys.packages().status(sys, &id.name)?;
            Prior::Package {
                resource,
                name: id.name.clone(),
                version: status.installed,
                held: status.held,
            }
        }
        (Kind::Service, _) => {
            let unit = crate::resource::service::unit_name(&id.name);
            let status = sys.services().status(sys, &unit)?;
            Prior::Service {
                resource,
                enabled: status.enabled() == Some(true),
                masked: status.masked(),
                running: status.running(),
                unit,
            }
        }
        (Kind::Nftables, _) => {
            let (family, table) = id.name.split_once('/').unwrap_or((&id.name, ""));
            let io = |e| SystemError::io(Path::new(crate::resource::nftables::PERSIST_DIR), e);
            let kept = |name: &str| -> Result<Option<KeptText>, SystemError> {
                match sys.nft_table(family, name)? {
                    Some(text) => KeptText::put(&text, blobs).map(Some).map_err(io),
                    None => Ok(None),
                }
            };
            let was = kept(table)?;
            let mut purged = BTreeMap::new();
            for name in &change.removes {
                let name = name.to_string_lossy();
                if let Some(k) = kept(&name)? {
                    purged.insert(name.into_owned(), k);
                }
            }
            Prior::Nftables {
                resource,
                family: family.to_owned(),
                table: table.to_owned(),
                was,
                purged,
            }
        }
        (Kind::Sysfs, None) => {
            let mut values = BTreeMap::new();
            for a in sys.sysfs_attributes(&id.name)? {
                values.insert(a.rel.clone(), sys.read_sysfs(&a.rel)?.value);
            }
            Prior::Sysfs { resource, values }
        }
        (Kind::KernelModule, _) => Prior::KernelModule {
            resource,
            loaded: sys.loaded_modules()?.contains_key(&id.name),
            name: id.name.clone(),
        },
        (kind, _) => Prior::NotRestorable {
            resource,
            why: match kind {
                Kind::User | Kind::Group => format!("converge does not roll back {kind}s"),
                Kind::Exec => "a command that ran cannot be undone".to_owned(),
                other => format!("converge does not roll back a {other}"),
            },
        },
    };
    Ok(prior)
}

/// A sysctl's live value with its fields one space apart (the kernel separates
/// `ip_local_port_range` with a tab); empty where the kernel has no such key.
fn sysctl_now(sys: &System, key: &str) -> Result<String, SystemError> {
    Ok(sys
        .read_sysctl(key)?
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default())
}

/// What stands live of what `prior` names, as a short text that tells a later change apart
/// (a table by its listing's digest): what a run notes it left there, and what a rollback
/// compares with that. `None` for a path (told by `LeftState::of`), a package, a service,
/// and under `--root`, whose kernel is not the tree's.
pub(crate) fn live_state(sys: &System, prior: &Prior) -> Result<Option<String>, SystemError> {
    if !sys.is_live() {
        return Ok(None);
    }
    let state = match prior {
        Prior::Sysctl { key, .. } => sysctl_now(sys, key)?,
        Prior::KernelModule { name, .. } => match sys.loaded_modules()?.contains_key(name) {
            true => "loaded",
            false => "not loaded",
        }
        .to_owned(),
        Prior::Sysfs { values, .. } => {
            let mut now = Vec::with_capacity(values.len());
            for rel in values.keys() {
                now.push(format!("{rel}: {}", sys.read_sysfs(rel)?.value));
            }
            now.join(", ")
        }
        Prior::Nftables {
            family,
            table,
            purged,
            ..
        } => {
            let mut now = Vec::with_capacity(1 + purged.len());
            for name in std::iter::once(table).chain(purged.keys()) {
                let listed = sys.nft_table(family, name)?;
                let digest = match listed.as_deref() {
                    Some(text) => crate::resource::nftables::listing_digest(text),
                    None => "absent".to_owned(),
                };
                now.push(format!("table {family} {name}: {digest}"));
            }
            now.join(", ")
        }
        Prior::Path { .. }
        | Prior::Package { .. }
        | Prior::Service { .. }
        | Prior::NotRestorable { .. } => return Ok(None),
    };
    Ok(Some(state))
}

/// What stands at `path`, its file contents put in `blobs`: the whole tree when `whole`,
/// else the directory itself and its entries named in `removed`.
pub(crate) fn path_state(
    sys: &System,
    path: &Path,
    whole: bool,
    removed: &[OsString],
    blobs: &dyn Blobs,
    depth: usize,
) -> Result<PathState, SystemError> {
    Ok(match sys.entry(path)? {
        Entry::Missing => PathState::Missing,
        Entry::File(meta) => {
            // Hashed, then copied, each a piece at a time: a huge file is never held whole.
            let io = |e| SystemError::io(path, e);
            let found = Fingerprint::of_reader(&mut sys.open_file(path)?).map_err(io)?;
            let digest = found.digest();
            let mut again = Verified::new(sys.open_file(path)?, found);
            blobs.put(&digest.sha256, &mut again).map_err(io)?;
            PathState::File {
                uid: meta.uid,
                gid: meta.gid,
                mode: meta.mode,
                sha256: digest.sha256,
                size: digest.size,
            }
        }
        Entry::Directory(meta) => {
            let mut entries = BTreeMap::new();
            if depth >= MAX_DEPTH {
                return Ok(PathState::NotKept {
                    what: format!("a directory more than {MAX_DEPTH} levels deep"),
                });
            }
            let names = if whole {
                sys.list_dir(path)?
            } else {
                removed.to_vec()
            };
            for name in names {
                let Some(text) = name.to_str() else {
                    // Names that are not UTF-8 cannot be written into the record; say so.
                    entries.insert(
                        name.to_string_lossy().into_owned(),
                        PathState::NotKept {
                            what: "an entry whose name is not UTF-8".into(),
                        },
                    );
                    continue;
                };
                let child = path.join(OsStr::new(text));
                let state = path_state(sys, &child, true, &[], blobs, depth + 1)?;
                entries.insert(text.to_owned(), state);
            }
            PathState::Directory {
                uid: meta.uid,
                gid: meta.gid,
                mode: meta.mode,
                entries,
            }
        }
        Entry::Symlink(target) => PathState::Symlink { target },
        Entry::Other => PathState::NotKept {
            what: "a device, socket or fifo".into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Action, FieldChange};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Mem(Mutex<BTreeMap<String, Vec<u8>>>);
    impl Blobs for Mem {
        fn put(&self, sha256: &str, content: &mut dyn std::io::Read) -> std::io::Result<()> {
            let mut bytes = Vec::new();
            content.read_to_end(&mut bytes)?;
            self.0.lock().unwrap().insert(sha256.into(), bytes);
            Ok(())
        }
    }

    #[test]
    fn a_removed_tree_is_kept_whole_and_a_purge_keeps_what_it_removes() {
        let dir = tempfile::tempdir().unwrap();
        let sys = System::new(dir.path()).unwrap();
        let root = sys.root();
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::write(root.join("d/a"), "a").unwrap();
        std::fs::write(root.join("d/sub/b"), "b").unwrap();
        std::os::unix::fs::symlink("a", root.join("d/l")).unwrap();
        let blobs = Mem::default();
        let id = ResourceId::new(Kind::Absent, "/d");
        let change = Change::fields(Action::Remove, vec![]);
        let Prior::Path { was, .. } =
            capture(&sys, &id, Some(Path::new("/d")), &change, &blobs).unwrap()
        else {
            panic!()
        };
        let PathState::Directory { entries, .. } = was else {
            panic!("{was:?}")
        };
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["a", "l", "sub"]);
        assert_eq!(entries["l"], PathState::Symlink { target: "a".into() });
        assert_eq!(blobs.0.lock().unwrap().len(), 2);

        let id = ResourceId::new(Kind::Directory, "/d");
        let change = Change {
            removes: vec!["sub".into()],
            ..Change::fields(
                Action::Update,
                vec![FieldChange::new(
                    "entry sub",
                    Some("directory".into()),
                    None,
                )],
            )
        };
        let Prior::Path { was, .. } =
            capture(&sys, &id, Some(Path::new("/d")), &change, &blobs).unwrap()
        else {
            panic!()
        };
        let PathState::Directory { entries, .. } = was else {
            panic!("{was:?}")
        };
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["sub"]);
    }
}
