//! What a run left at each path it changed, and what a rollback keeps before it restores
//! over a path someone changed since. Together they let a rollback tell the run's own
//! content (safe to replace: the bundle has it) from a hand edit made afterwards (never
//! destroyed without a copy).
//!
//! ```text
//! <run>/left.jsonl   one Left per changed path, by the change's line in backup.jsonl
//! <run>/kept.jsonl   one Kept per path a rollback restored over, its content in blobs/
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{files, io_err, HistoryError, PathState};
use crate::resource::content::Fingerprint;
use crate::system::fs::Entry;
use crate::system::{System, SystemError};

pub(super) const LEFT_FILE: &str = "left.jsonl";
pub(super) const KEPT_FILE: &str = "kept.jsonl";

/// What a run left at a path, or of a live state, right after changing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// The change, as its line (from 0) in `backup.jsonl`.
    pub change: usize,
    /// What stood at the path afterwards.
    pub state: LeftState,
    /// The content must not be shown (a `sensitive` file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// What stood at a path, as far as telling a later change apart needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LeftState {
    /// Nothing.
    Missing,
    /// A regular file with this content.
    File {
        /// Hex sha256.
        sha256: String,
        /// Length in bytes.
        size: u64,
    },
    /// A directory holding these entries.
    Directory {
        /// Entry names (lossy UTF-8).
        entries: Vec<String>,
    },
    /// A symbolic link.
    Symlink {
        /// Its target as stored.
        target: PathBuf,
    },
    /// A device, socket or fifo.
    Other,
    /// Live state that is no path (a firewall table, a kernel value), as
    /// [`super::backup::live_state`] tells it.
    Live {
        /// Its text.
        state: String,
    },
}

impl LeftState {
    /// What stands at `path` now.
    pub fn of(sys: &System, path: &Path) -> Result<LeftState, SystemError> {
        Ok(match sys.entry(path)? {
            Entry::Missing => LeftState::Missing,
            Entry::File(_) => {
                let digest = Fingerprint::of_reader(&mut sys.open_file(path)?)
                    .map_err(|e| SystemError::io(path, e))?
                    .digest();
                LeftState::File {
                    sha256: digest.sha256,
                    size: digest.size,
                }
            }
            Entry::Directory(_) => LeftState::Directory {
                entries: sys
                    .list_dir(path)?
                    .iter()
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect(),
            },
            Entry::Symlink(target) => LeftState::Symlink { target },
            Entry::Other => LeftState::Other,
        })
    }
}

/// A path's content that a rollback found changed since its run, kept before restoring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The resource, e.g. `file:/etc/motd`.
    pub resource: String,
    /// The path.
    pub path: PathBuf,
    /// When (RFC 3339).
    pub at: String,
    /// What stood there; file contents are in the run's `blobs/`.
    pub state: PathState,
}

/// Opens `path` for appending: never through a link, never anything but a regular file.
pub(super) fn open_append(path: &Path) -> Result<File, HistoryError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true).mode(0o600);
    files::open(&mut options, path, files::MAX_BACKUP_FILE)
}

/// Writes `line` as JSON on a line of its own to `file` (`path`); synced when `sync`.
pub(super) fn write_line(
    mut file: &File,
    path: &Path,
    line: &impl Serialize,
    sync: bool,
) -> Result<(), HistoryError> {
    let mut bytes = serde_json::to_vec(line).expect("history records serialize");
    bytes.push(b'\n');
    file.write_all(&bytes).map_err(io_err(path))?;
    if sync {
        file.sync_data().map_err(io_err(path))?;
    }
    Ok(())
}

/// The `left.jsonl` of the run in `dir`, by change. A line that does not parse (a kill
/// mid-write, or damage) is skipped: its change then counts as one whose aftermath is not
/// known, which a rollback treats with care, never as the run's own.
pub(super) fn read_left(dir: &Path) -> Result<BTreeMap<usize, Left>, HistoryError> {
    let path = dir.join(LEFT_FILE);
    let file = match files::open_read(&path, files::MAX_BACKUP_FILE) {
        Ok(f) => f,
        Err(e) if files::is_missing(&e) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut out = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io_err(&path))?;
        match serde_json::from_str::<Left>(&line) {
            Ok(left) => {
                out.insert(left.change, left);
            }
            Err(e) if !line.trim().is_empty() => {
                tracing::warn!(path = %path.display(), error = %e, "skipping a damaged record of what a run left");
            }
            Err(_) => {}
        }
    }
    Ok(out)
}
