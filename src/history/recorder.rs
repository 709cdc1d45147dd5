//! Writing one run's record: its summary, and each prior written and synced ahead of its
//! change.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{
    backup, io_err, newest_unfinished, next_seq, ordered, prune, read_priors, HistoryError, Kept,
    Left, PathState, Prior, RunStatus, RunSummary, BACKUP_FILE, BLOBS_DIR, RUNS_DIR, RUN_FILE,
};

/// The recorder of one apply run. Its directory appears with the first change, so runs that
/// change nothing leave no trace in the history.
#[derive(Debug)]
pub struct Recorder {
    runs: PathBuf,
    keep: usize,
    summary: Mutex<RunSummary>,
    // The open journal and how many priors it holds.
    journal: Mutex<Option<(File, usize)>>,
    // What the changes left, open once the first is noted.
    left: Mutex<Option<File>>,
    // Continues an interrupted run, whose journal already holds changes.
    adopted: bool,
    // The resources the interrupted run recorded changes of (empty for a fresh run).
    inherited: BTreeSet<String>,
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
        let known = ordered(&runs);
        let seq = next_seq(&known);
        let interrupted = newest_unfinished(known, root);
        let adopted = interrupted.is_some();
        // A journal that cannot be read counts nothing here; the run's own changes still do,
        // and the rollback that needs it reports the error.
        let inherited = interrupted
            .as_ref()
            .and_then(|s| read_priors(&runs.join(&s.id)).ok())
            .unwrap_or_default()
            .iter()
            .map(|p| p.resource().to_owned())
            .collect();
        let summary = match interrupted {
            Some(mut s) => {
                tracing::warn!(run = %s.id, "an earlier run was interrupted; this run continues it");
                s.status = RunStatus::Running;
                s.bundle = bundle.to_owned();
                s.seq = seq;
                s
            }
            None => RunSummary {
                // Named when its directory is made (`open`): the name must not exist yet.
                id: String::new(),
                seq,
                started: stamp,
                finished: None,
                bundle: bundle.to_owned(),
                message: None,
                changed: 0,
                failed: 0,
                status: RunStatus::Running,
                rollback_reason: None,
                services: Vec::new(),
                root: root.to_path_buf(),
                held: false,
                health: Vec::new(),
                healthy: None,
            },
        };
        Recorder {
            runs,
            keep: keep.max(1),
            summary: Mutex::new(summary),
            journal: Mutex::new(None),
            left: Mutex::new(None),
            adopted,
            inherited,
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

    /// Gives the run another id (tests make runs faster than ids change).
    #[cfg(test)]
    pub(super) fn set_id(&mut self, id: impl Into<String>) {
        self.summary.get_mut().unwrap().id = id.into();
    }

    pub(super) fn dir(&self) -> PathBuf {
        self.runs.join(&self.lock_summary().id)
    }

    /// Creates the run's directory on the first change (before its contents are kept).
    pub(crate) fn begin(&self) -> Result<(), HistoryError> {
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if journal.is_none() {
            *journal = Some(self.open()?);
        }
        Ok(())
    }

    /// Writes `prior` to the run's journal and syncs it: only then may the change happen.
    /// Returns its line in the journal, which names the change in [`Recorder::left`].
    pub fn record(&self, prior: &Prior) -> Result<usize, HistoryError> {
        self.begin()?;
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        let (file, count) = journal.as_mut().expect("opened by begin");
        let mut line = serde_json::to_vec(prior).expect("priors serialize");
        line.push(b'\n');
        let path = self.dir().join(BACKUP_FILE);
        file.write_all(&line).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))?;
        *count += 1;
        Ok(*count - 1)
    }

    /// Notes what the change recorded as `left.change` left at its path. Not synced: lost
    /// in a crash, the change counts as one whose aftermath is unknown, which a rollback
    /// treats as possibly changed since (it keeps a copy before restoring over it).
    pub fn left(&self, left: &Left) -> Result<(), HistoryError> {
        let path = self.dir().join(super::left::LEFT_FILE);
        let mut file = self.left.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            let opened = super::left::open_append(&path)?;
            if self.adopted {
                // The killed run may have left a torn last line: start on a line of our own
                // (a blank line reads as nothing).
                (&opened).write_all(b"\n").map_err(io_err(&path))?;
            }
            *file = Some(opened);
        }
        super::left::write_line(file.as_ref().expect("opened above"), &path, left, false)
    }

    /// What each change left, by change.
    pub(crate) fn lefts(&self) -> Result<BTreeMap<usize, Left>, HistoryError> {
        if !self.has_changes() {
            return Ok(BTreeMap::new());
        }
        super::left::read_left(&self.dir())
    }

    /// Creates the run's directory (pruning old runs first) and opens its journal.
    fn open(&self) -> Result<(File, usize), HistoryError> {
        mkdir(&self.runs)?;
        prune(&self.runs, self.keep.saturating_sub(1));
        let fresh = self.lock_summary().id.is_empty();
        if fresh {
            let started = self.lock_summary().started.clone();
            let id = new_run_dir(&self.runs, &started)?;
            self.lock_summary().id = id;
        }
        let dir = self.dir();
        mkdir(&dir)?;
        mkdir(&dir.join(BLOBS_DIR))?;
        self.write_summary()?;
        let path = dir.join(BACKUP_FILE);
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true).mode(0o600);
        let file = super::files::open(&mut options, &path, super::files::MAX_BACKUP_FILE)?;
        drop_torn_tail(&file).map_err(io_err(&path))?;
        let count = if self.adopted {
            read_priors(&dir)?.len()
        } else {
            0
        };
        Ok((file, count))
    }

    /// Whether anything was recorded (this run, or the interrupted one it continues,
    /// changed something).
    pub(crate) fn has_changes(&self) -> bool {
        self.adopted || self.journal.lock().map(|j| j.is_some()).unwrap_or(false)
    }

    /// The resources whose changes the interrupted run this one continues recorded: they
    /// are part of this run's job.
    pub fn inherited(&self) -> &BTreeSet<String> {
        &self.inherited
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
    pub(crate) fn priors(&self) -> Result<Vec<Prior>, HistoryError> {
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
    pub(super) dir: PathBuf,
}

impl RunBlobs {
    /// Where the content named `sha256` is kept.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// The `size` bytes stored under `sha256`, only if they still hash to it: a copy that
    /// changed on disk is never put back.
    pub fn get(&self, sha256: &str, size: u64) -> Result<Vec<u8>, HistoryError> {
        let path = self.dir.join(sha256);
        let bytes = super::files::read(&path, size)?;
        let found = crate::resource::Digest::of(&bytes).sha256;
        if found != sha256 {
            return Err(HistoryError::CorruptBlob { path, found });
        }
        Ok(bytes)
    }
}

impl RunBlobs {
    /// Keeps `kept` (its file contents already in this store) in the run's history, synced
    /// before the rollback restores over it; returns where its content now lives.
    pub fn keep(&self, kept: &Kept) -> Result<PathBuf, HistoryError> {
        let run = self.dir.parent().unwrap_or(&self.dir);
        let record = run.join(super::left::KEPT_FILE);
        let file = super::left::open_append(&record)?;
        super::left::write_line(&file, &record, kept, true)?;
        Ok(match &kept.state {
            PathState::File { sha256, .. } => self.dir.join(sha256),
            _ => record,
        })
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

/// Makes a new run's directory under `runs` and returns its name, the run's id: the start
/// second and a random suffix. A pid would not do: in a container or an image build converge
/// gets the same low pid every time, and two runs in one second shared one history. The
/// directory is made with mkdir, which fails on a name that exists (another is drawn then),
/// so no two runs ever share one.
fn new_run_dir(runs: &Path, started: &str) -> Result<String, HistoryError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-", started.replace(['-', ':'], "")))
        .rand_bytes(8)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .disable_cleanup(true)
        .tempdir_in(runs)
        .map_err(io_err(runs))?;
    let name = dir.path().file_name().and_then(|n| n.to_str());
    Ok(name.expect("a prefix and random ASCII").to_owned())
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
