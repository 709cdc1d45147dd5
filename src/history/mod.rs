//! Run history in the state dir: one directory per apply run that changed something, holding
//! what was there before each change (written ahead of the change) and how the run ended.
//!
//! ```text
//! <state_dir>/runs/20261201T230512Z-q7Rk2xVb/run.json       id, times, bundle, counts, status
//!                                           /backup.jsonl   one Prior per line, in change order
//!                                           /blobs/<sha256> file contents, 0600
//! ```
//!
//! Bounded: only the newest `keep_runs` runs are kept.

pub mod backup;
mod files;
mod left;
mod recorder;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use backup::{KeptText, PathState, Prior};
pub use left::{Kept, Left, LeftState};
pub use recorder::{Recorder, RunBlobs};

/// The runs' directory inside the state dir.
pub const RUNS_DIR: &str = "runs";
/// How many runs are kept when the config does not say.
pub(crate) const DEFAULT_KEEP_RUNS: usize = 10;

const RUN_FILE: &str = "run.json";
const BACKUP_FILE: &str = "backup.jsonl";
const BLOBS_DIR: &str = "blobs";

/// How a recorded run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// It has not finished: still running, or killed (when seen by a later run).
    Running,
    /// It finished (with or without failures).
    Finished,
    /// A rollback started and has not finished.
    RollingBack,
    /// Its changes were undone.
    RolledBack,
    /// A rollback ran but could not restore everything.
    RollbackIncomplete,
}

impl RunStatus {
    /// The word `converge history` shows.
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Running => "interrupted",
            RunStatus::Finished => "finished",
            RunStatus::RollingBack => "rollback interrupted",
            RunStatus::RolledBack => "rolled back",
            RunStatus::RollbackIncomplete => "rollback incomplete",
        }
    }

    /// A run killed during its changes or its rollback, whose job the next run must finish
    /// or undo.
    pub(crate) fn is_unfinished(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::RollingBack)
    }
}

/// A restart or reload the run carried out, to repeat after its changes are undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAction {
    /// `nginx.service`.
    pub unit: String,
    /// `restart` or `reload`.
    pub action: crate::report::NotifyAction,
}

/// `run.json`: one run as history lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Id, e.g. `20261201T230512Z-q7Rk2xVb`: start second and a random suffix, unique by
    /// construction (runs recorded before had the pid in its place).
    pub id: String,
    /// Where the run stands among the state dir's runs: one past the newest when it began
    /// or was continued. Ids do not order runs: two in one second sort by pid, which crosses
    /// digit counts and wraps at pid_max, and clocks step back.
    #[serde(default)]
    pub seq: u64,
    /// When it started (RFC 3339).
    pub started: String,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// The bundle id it applied (empty for a source tree).
    #[serde(default)]
    pub bundle: String,
    /// What the publisher said the bundle is (`publish --message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Resources changed.
    #[serde(default)]
    pub changed: usize,
    /// Resources failed.
    #[serde(default)]
    pub failed: usize,
    /// How it ended.
    pub status: RunStatus,
    /// Why it was rolled back (the failing health check and what it saw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_reason: Option<String>,
    /// Restarts and reloads done by the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceAction>,
    /// The root it converged (`/` for the host itself); a rollback must target the same.
    #[serde(default = "live_root")]
    pub root: PathBuf,
    /// Its bundle is remembered as rolled back on the host (`rolled-back.json`); a run
    /// rolled back without this was killed before it could remember it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Its health checks, probed again after its changes are undone by hand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<crate::health::HealthCheck>,
    /// Whether health checks have passed with its changes in place: `Some(false)` when it
    /// finished without (it has none, or one of them failed), until a later run's pass.
    /// Absent in records written before this field, which no later failure is blamed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

fn live_root() -> PathBuf {
    PathBuf::from("/")
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file or directory of the history.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A record that does not parse.
    #[error("{path}:{line}: not a run record: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// Why.
        reason: String,
    },
    /// A history file that is a link, a FIFO, a device...: refused before it is read.
    #[error("{path}: {what}, not a regular file: not read")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// A history file larger than converge writes one: refused before it is read.
    #[error("{path}: {size} bytes, more than the {max} it may hold: not read")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The most it may hold.
        max: u64,
    },
    /// A kept copy whose bytes are not the ones recorded: it is never restored.
    #[error("{path}: the kept copy does not match its recorded sha256 (it hashes to {found})")]
    CorruptBlob {
        /// The blob.
        path: PathBuf,
        /// What its bytes hash to.
        found: String,
    },
    /// No run of that id.
    #[error("no run '{0}' in the history (see `converge history`)")]
    NoSuchRun(String),
    /// The history is empty.
    #[error("no runs in the history yet")]
    Empty,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Removes all but the newest `keep` finished runs. An unfinished run stays whatever its
/// age: its backups are the only way to undo what it left half-done.
fn prune(runs: &Path, keep: usize) {
    let finished: Vec<String> = ordered(runs)
        .into_iter()
        .filter(|(_, s)| !s.as_ref().is_ok_and(|s| s.status.is_unfinished()))
        .map(|(id, _)| id)
        .collect();
    let excess = finished.len().saturating_sub(keep);
    for id in &finished[..excess] {
        let dir = runs.join(id);
        tracing::debug!(run = %id, "dropping an old run from the history");
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove an old run");
        }
    }
}

/// The runs under `runs` with their summaries, oldest first: by `seq`, then by id (runs
/// recorded before `seq` existed have 0). A summary that cannot be read sorts as oldest.
/// A directory without a `run.json` is a run killed before its first record: not listed.
fn ordered(runs: &Path) -> Vec<(String, Result<RunSummary, HistoryError>)> {
    let mut out: Vec<_> = std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| std::fs::symlink_metadata(e.path().join(RUN_FILE)).is_ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|id| {
            let summary = read_summary(&runs.join(&id));
            (id, summary)
        })
        .collect();
    let key = |(id, s): &(String, Result<RunSummary, HistoryError>)| {
        (s.as_ref().map_or(0, |s| s.seq), id.clone())
    };
    out.sort_by_cached_key(key);
    out
}

/// The `seq` of a run starting after all of `known`.
fn next_seq(known: &[(String, Result<RunSummary, HistoryError>)]) -> u64 {
    known
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok().map(|s| s.seq))
        .max()
        .map_or(1, |m| m + 1)
}

/// The newest run on `root` that a kill left unfinished. Found by its status, not by being
/// the newest of all: runs on other roots may have come after it.
fn newest_unfinished(
    known: Vec<(String, Result<RunSummary, HistoryError>)>,
    root: &Path,
) -> Option<RunSummary> {
    known
        .into_iter()
        .rev()
        .filter_map(|(_, s)| s.ok())
        .find(|s| s.status.is_unfinished() && s.root == root)
}

fn read_priors(dir: &Path) -> Result<Vec<Prior>, HistoryError> {
    let path = dir.join(BACKUP_FILE);
    let file = match files::open_read(&path, files::MAX_BACKUP_FILE) {
        Ok(f) => f,
        Err(e) if files::is_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let lines: Vec<String> = io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(io_err(&path))?;
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(p) => out.push(p),
            // A kill in the middle of a write leaves a torn last line: the change it
            // announced never happened, because the change waits for the sync.
            Err(_) if Some(i) == last => break,
            Err(e) => {
                return Err(HistoryError::Corrupt {
                    path,
                    line: i + 1,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// One run of the history: its summary, or why it cannot be read.
#[derive(Debug)]
pub struct Listed {
    /// The run's id (its directory's name).
    pub id: String,
    /// Its summary, or why `run.json` cannot be read.
    pub summary: Result<RunSummary, HistoryError>,
}

/// The history of `state_dir`, oldest first. A run whose summary cannot be read is listed
/// with the reason, so one damaged record does not hide the others.
pub fn list(state_dir: &Path) -> Vec<Listed> {
    ordered(&state_dir.join(RUNS_DIR))
        .into_iter()
        .map(|(id, summary)| Listed { id, summary })
        .collect()
}

fn read_summary(dir: &Path) -> Result<RunSummary, HistoryError> {
    let path = dir.join(RUN_FILE);
    let text = files::read(&path, files::MAX_RUN_FILE)?;
    serde_json::from_slice(&text).map_err(|e| HistoryError::Corrupt {
        path,
        line: e.line(),
        reason: e.to_string(),
    })
}

/// The newest run on `root` that a kill left unfinished (during its changes or its
/// rollback), if any.
pub(crate) fn load_unfinished(state_dir: &Path, root: &Path) -> Option<PastRun> {
    let summary = newest_unfinished(ordered(&state_dir.join(RUNS_DIR)), root)?;
    load(state_dir, Some(&summary.id)).ok()
}

/// A run's record as a rollback reads it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// The run's id.
    pub run: &'a str,
    /// What was there before each change, in change order.
    pub priors: &'a [Prior],
    /// What each change left at its path, by change.
    pub left: &'a BTreeMap<usize, Left>,
    /// The run's kept contents.
    pub blobs: &'a RunBlobs,
}

/// One past run: its summary, what it changed, and its kept contents.
#[derive(Debug)]
pub struct PastRun {
    /// The summary.
    pub summary: RunSummary,
    /// What was there before each change, in change order.
    pub priors: Vec<Prior>,
    /// What each change left at its path, by change (runs recorded before this was kept,
    /// and changes a kill cut short, have none).
    pub left: BTreeMap<usize, Left>,
    /// Kept file contents.
    pub blobs: RunBlobs,
    dir: PathBuf,
}

impl PastRun {
    /// The run as a rollback reads it.
    pub fn recorded(&self) -> Recorded<'_> {
        Recorded {
            run: &self.summary.id,
            priors: &self.priors,
            left: &self.left,
            blobs: &self.blobs,
        }
    }

    /// Rewrites the run's summary.
    pub fn save(&self) -> Result<(), HistoryError> {
        let path = self.dir.join(RUN_FILE);
        let json = serde_json::to_vec_pretty(&self.summary).expect("summaries serialize");
        crate::durable::write_file(&path, &json, &crate::durable::FileSpec::mode(0o600))
            .map_err(io_err(&path))
    }
}

/// Loads run `id`, or the newest run when `id` is `None`.
pub fn load(state_dir: &Path, id: Option<&str>) -> Result<PastRun, HistoryError> {
    let runs = state_dir.join(RUNS_DIR);
    let ids: Vec<String> = ordered(&runs).into_iter().map(|(id, _)| id).collect();
    let id = match id {
        Some(id) => ids
            .iter()
            .find(|i| *i == id)
            .ok_or_else(|| HistoryError::NoSuchRun(id.to_owned()))?,
        None => ids.last().ok_or(HistoryError::Empty)?,
    };
    let dir = runs.join(id);
    Ok(PastRun {
        summary: read_summary(&dir)?,
        priors: read_priors(&dir)?,
        left: left::read_left(&dir)?,
        blobs: RunBlobs {
            dir: dir.join(BLOBS_DIR),
        },
        dir,
    })
}
