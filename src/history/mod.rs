//! Run history in the state dir: one directory per apply run that changed something, holding
//! what was there before each change (written ahead of the change) and how the run ended.
//!
//! ```text
//! <state_dir>/runs/20261201T230512Z-4821/run.json      id, times, bundle, counts, status
//!                                       /backup.jsonl  one Prior per line, in change order
//!                                       /blobs/<sha256> file contents, 0600
//! ```
//!
//! Bounded: only the newest `keep_runs` runs are kept.

pub mod backup;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use backup::{PathState, Prior};

/// The runs' directory inside the state dir.
pub const RUNS_DIR: &str = "runs";
/// How many runs are kept when the config does not say.
pub const DEFAULT_KEEP_RUNS: usize = 10;

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
    /// Sortable id, e.g. `20261201T230512Z-4821`.
    pub id: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// The bundle id it applied (empty for a source tree).
    #[serde(default)]
    pub bundle: String,
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

/// The recorder of one apply run. Its directory appears with the first change, so runs that
/// change nothing leave no trace in the history.
#[derive(Debug)]
pub struct Recorder {
    runs: PathBuf,
    keep: usize,
    summary: Mutex<RunSummary>,
    journal: Mutex<Option<File>>,
    // Continues an interrupted run, whose journal already holds changes.
    adopted: bool,
    // Kept alive so a temporary history lives as long as the run.
    _temp: Option<tempfile::TempDir>,
}

impl Recorder {
    /// A recorder for a run starting now on `root`, keeping `keep` runs in `<state_dir>/runs`.
    ///
    /// When the newest run on the same root never finished (killed during its changes or its
    /// rollback), this run continues it: its backups hold what was there before the job
    /// began, so a rollback now undoes the whole job, not only what this run changes.
    pub fn new(state_dir: &Path, keep: usize, bundle: &str, root: &Path) -> Recorder {
        let runs = state_dir.join(RUNS_DIR);
        let started = SystemTime::now();
        let stamp = humantime::format_rfc3339_seconds(started).to_string();
        let interrupted = run_ids(&runs)
            .last()
            .and_then(|id| read_summary(&runs.join(id)).ok())
            .filter(|s| {
                matches!(s.status, RunStatus::Running | RunStatus::RollingBack) && s.root == root
            });
        let adopted = interrupted.is_some();
        let summary = match interrupted {
            Some(mut s) => {
                tracing::warn!(run = %s.id, "an earlier run was interrupted; this run continues it");
                s.status = RunStatus::Running;
                s.bundle = bundle.to_owned();
                s
            }
            None => RunSummary {
                id: format!("{}-{}", stamp.replace(['-', ':'], ""), std::process::id()),
                started: stamp,
                finished: None,
                bundle: bundle.to_owned(),
                changed: 0,
                failed: 0,
                status: RunStatus::Running,
                rollback_reason: None,
                services: Vec::new(),
                root: root.to_path_buf(),
            },
        };
        Recorder {
            runs,
            keep: keep.max(1),
            summary: Mutex::new(summary),
            journal: Mutex::new(None),
            adopted,
            _temp: None,
        }
    }

    /// A recorder for a run without a state dir (a source tree converged by hand): backups
    /// live in a private temp dir for the run, so it can still roll itself back.
    pub fn temporary() -> io::Result<Recorder> {
        let dir = tempfile::Builder::new().prefix("converge-run-").tempdir()?;
        let mut r = Recorder::new(dir.path(), 1, "", Path::new("/"));
        r._temp = Some(dir);
        Ok(r)
    }

    /// This run's id.
    pub fn id(&self) -> String {
        self.lock_summary().id.clone()
    }

    fn lock_summary(&self) -> std::sync::MutexGuard<'_, RunSummary> {
        self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir(&self) -> PathBuf {
        self.runs.join(&self.lock_summary().id)
    }

    /// Creates the run's directory on the first change (before its contents are kept).
    pub fn begin(&self) -> Result<(), HistoryError> {
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if journal.is_none() {
            *journal = Some(self.open()?);
        }
        Ok(())
    }

    /// Writes `prior` to the run's journal and syncs it: only then may the change happen.
    pub fn record(&self, prior: &Prior) -> Result<(), HistoryError> {
        self.begin()?;
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        let file = journal.as_mut().expect("opened by begin");
        let mut line = serde_json::to_vec(prior).expect("priors serialize");
        line.push(b'\n');
        let path = self.dir().join(BACKUP_FILE);
        file.write_all(&line).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))
    }

    /// Creates the run's directory (pruning old runs first) and opens its journal.
    fn open(&self) -> Result<File, HistoryError> {
        mkdir(&self.runs)?;
        prune(&self.runs, self.keep.saturating_sub(1));
        let dir = self.dir();
        mkdir(&dir)?;
        mkdir(&dir.join(BLOBS_DIR))?;
        self.write_summary()?;
        let path = dir.join(BACKUP_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        drop_torn_tail(&file).map_err(io_err(&path))?;
        Ok(file)
    }

    /// Whether anything was recorded (this run, or the interrupted one it continues,
    /// changed something).
    pub fn has_changes(&self) -> bool {
        self.adopted || self.journal.lock().map(|j| j.is_some()).unwrap_or(false)
    }

    /// Updates the run's summary with `f` and writes it, when the run has a directory.
    pub fn update(&self, f: impl FnOnce(&mut RunSummary)) -> Result<(), HistoryError> {
        f(&mut self.lock_summary());
        if self.has_changes() {
            self.write_summary()?;
        }
        Ok(())
    }

    fn write_summary(&self) -> Result<(), HistoryError> {
        let summary = self.lock_summary().clone();
        let path = self.runs.join(&summary.id).join(RUN_FILE);
        let json = serde_json::to_vec_pretty(&summary).expect("summaries serialize");
        crate::durable::write_file(&path, &json, &crate::durable::FileSpec::mode(0o600))
            .map_err(io_err(&path))
    }

    /// The blob store of this run.
    pub fn blobs(&self) -> RunBlobs {
        RunBlobs {
            dir: self.dir().join(BLOBS_DIR),
        }
    }

    /// The priors recorded so far, in change order.
    pub fn priors(&self) -> Result<Vec<Prior>, HistoryError> {
        if !self.has_changes() {
            return Ok(Vec::new());
        }
        read_priors(&self.dir())
    }

    /// The run's summary as it stands.
    pub fn summary(&self) -> RunSummary {
        self.lock_summary().clone()
    }
}

/// File contents kept by one run.
#[derive(Debug, Clone)]
pub struct RunBlobs {
    dir: PathBuf,
}

impl RunBlobs {
    /// The bytes stored under `sha256`.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, HistoryError> {
        let path = self.dir.join(sha256);
        std::fs::read(&path).map_err(io_err(&path))
    }
}

impl backup::Blobs for RunBlobs {
    fn put(&self, sha256: &str, content: &mut dyn io::Read) -> io::Result<()> {
        let path = self.dir.join(sha256);
        if path.exists() {
            return Ok(());
        }
        // 0600 whatever the content: a sensitive file's old secret is still a secret.
        crate::durable::write_file_from(&path, content, &crate::durable::FileSpec::mode(0o600))
    }
}

/// Cuts a line a kill left half-written (its change never happened), so that appending
/// continues on a line of its own.
fn drop_torn_tail(file: &File) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut f = file;
    let mut keep = len;
    let mut buf = [0u8; 4096];
    loop {
        let start = keep.saturating_sub(buf.len() as u64);
        let n = (keep - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        keep = start;
        if start == 0 {
            break;
        }
    }
    if keep != len {
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(())
}

fn mkdir(dir: &Path) -> Result<(), HistoryError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(HistoryError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

/// Removes all but the newest `keep` runs.
fn prune(runs: &Path, keep: usize) {
    let mut ids = run_ids(runs);
    if ids.len() <= keep {
        return;
    }
    let excess = ids.len() - keep;
    for id in ids.drain(..excess) {
        let dir = runs.join(&id);
        tracing::debug!(run = %id, "dropping an old run from the history");
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove an old run");
        }
    }
}

fn run_ids(runs: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(RUN_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids
}

fn read_priors(dir: &Path) -> Result<Vec<Prior>, HistoryError> {
    let path = dir.join(BACKUP_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(&path))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(p) => out.push(p),
            // A kill in the middle of a write leaves a torn last line: the change it
            // announced never happened, because the change waits for the sync.
            Err(_) if i + 1 >= count_lines(&path) => break,
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

fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count())
        .unwrap_or(0)
}

/// The history of `state_dir`, oldest first.
pub fn list(state_dir: &Path) -> Result<Vec<RunSummary>, HistoryError> {
    let runs = state_dir.join(RUNS_DIR);
    let mut out = Vec::new();
    for id in run_ids(&runs) {
        out.push(read_summary(&runs.join(&id))?);
    }
    Ok(out)
}

fn read_summary(dir: &Path) -> Result<RunSummary, HistoryError> {
    let path = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| HistoryError::Corrupt {
        path,
        line: e.line(),
        reason: e.to_string(),
    })
}

/// One past run: its summary, what it changed, and its kept contents.
#[derive(Debug)]
pub struct PastRun {
    /// The summary.
    pub summary: RunSummary,
    /// What was there before each change, in change order.
    pub priors: Vec<Prior>,
    /// Kept file contents.
    pub blobs: RunBlobs,
    dir: PathBuf,
}

impl PastRun {
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
    let ids = run_ids(&runs);
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
        blobs: RunBlobs {
            dir: dir.join(BLOBS_DIR),
        },
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup::Blobs;

    fn prior(n: usize) -> Prior {
        Prior::Sysctl {
            resource: format!("sysctl:k{n}"),
            key: format!("k{n}"),
            value: n.to_string(),
        }
    }

    #[test]
    fn runs_that_change_nothing_leave_no_trace_and_only_keep_runs_are_kept() {
        let state = tempfile::tempdir().unwrap();
        let idle = Recorder::new(state.path(), 3, "b0", Path::new("/"));
        idle.update(|s| s.status = RunStatus::Finished).unwrap();
        assert!(list(state.path()).unwrap().is_empty());
        for n in 0..5 {
            let mut r = Recorder::new(state.path(), 3, "b1", Path::new("/"));
            // Distinct ids within one second and one pid.
            r.summary.get_mut().unwrap().id = format!("2026-run-{n}");
            r.record(&prior(n)).unwrap();
            r.blobs().put("abc", &mut &b"secret"[..]).unwrap();
            r.update(|s| {
                s.changed = 1;
                s.status = RunStatus::Finished;
            })
            .unwrap();
        }
        let runs = list(state.path()).unwrap();
        let ids: Vec<_> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["2026-run-2", "2026-run-3", "2026-run-4"]);
        let past = load(state.path(), None).unwrap();
        assert_eq!(past.summary.id, "2026-run-4");
        assert_eq!(past.priors, vec![prior(4)]);
        assert_eq!(past.blobs.get("abc").unwrap(), b"secret");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(past.blobs.dir.join("abc"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            load(state.path(), Some("nope")),
            Err(HistoryError::NoSuchRun(_))
        ));
    }

    #[test]
    fn a_run_after_an_interrupted_one_continues_it() {
        let state = tempfile::tempdir().unwrap();
        let killed = Recorder::new(state.path(), 3, "b1", Path::new("/"));
        killed.record(&prior(1)).unwrap();
        drop(killed);
        let other_root = Recorder::new(state.path(), 3, "b2", Path::new("/srv/tree"));
        assert!(!other_root.has_changes());
        let next = Recorder::new(state.path(), 3, "b2", Path::new("/"));
        assert!(next.has_changes());
        next.record(&prior(2)).unwrap();
        next.update(|s| s.status = RunStatus::Finished).unwrap();
        let runs = list(state.path()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].bundle, "b2");
        assert_eq!(
            load(state.path(), None).unwrap().priors,
            vec![prior(1), prior(2)]
        );
        let fresh = Recorder::new(state.path(), 3, "b3", Path::new("/"));
        assert!(!fresh.has_changes());
    }

    #[test]
    fn a_torn_last_line_is_a_change_that_never_happened() {
        let state = tempfile::tempdir().unwrap();
        let r = Recorder::new(state.path(), 3, "", Path::new("/"));
        r.record(&prior(1)).unwrap();
        let path = r.dir().join(BACKUP_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"kind\":\"sysc").unwrap();
        assert_eq!(read_priors(&r.dir()).unwrap(), vec![prior(1)]);
        // A run continuing it appends on a line of its own.
        let next = Recorder::new(state.path(), 3, "", Path::new("/"));
        next.record(&prior(2)).unwrap();
        assert_eq!(read_priors(&r.dir()).unwrap(), vec![prior(1), prior(2)]);
    }
}
