//! One writer per state dir: an `flock` on `run.lock` in it, held by a run for as long as it
//! touches bundles, run records or the notify journal. The kernel releases it when the holder
//! dies, so a killed run never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::temp::{self, Sweep};

/// Name of the lock file in a state dir.
pub(crate) const LOCK_FILE: &str = "run.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The state dir does not exist and cannot be created.
    #[error("state dir {path}: {source}")]
    StateDir {
        /// The state dir.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another run holds it.
    #[error("another converge run holds {path} (pid {pid}); waited {waited:?}")]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid as it wrote it, or "unknown".
        pid: String,
        /// How long this run waited.
        waited: Duration,
    },
    /// The state dir, or something in it, could belong to or be changed by someone else.
    #[error(transparent)]
    Untrusted(#[from] super::trust::Untrusted),
    /// The lock file could not be opened.
    #[error("cannot open lock file {path}: {source}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl LockError {
    /// A stable name for what went wrong, for JSON records (`error_kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            LockError::StateDir { .. } => "state_dir",
            LockError::Held { .. } => "lock_held",
            LockError::Open { .. } => "lock_open",
            LockError::Untrusted(_) => "state_dir_untrusted",
        }
    }
}

/// The held lock of a state dir; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    dir: PathBuf,
    flock: Flock<File>,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // A later waiter must not name this (finished) run as the holder.
        let _ = self.flock.set_len(0);
    }
}

impl StateLock {
    /// Creates the state dir `dir` if needed (0700: bundles may carry secrets, and run records
    /// show diffs), refuses it unless it and everything in it are the running user's alone
    /// ([`super::trust`]), takes its lock, waiting up to `wait` for another run to finish (`None`: as
    /// long as it takes), and sweeps the temp entries dead runs left in it.
    pub fn acquire(dir: &Path, wait: Option<Duration>) -> Result<StateLock, LockError> {
        super::ensure_dir(dir, 0o700).map_err(|source| LockError::StateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        // Before anything in it is opened: a FIFO planted as the lock file would block.
        super::trust::check(dir, true)?;
        let path = &dir.join(LOCK_FILE);
        let started = Instant::now();
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|source| LockError::Open {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let mut file = open()?;
        let how = match wait {
            Some(_) => FlockArg::LockExclusiveNonblock,
            None => FlockArg::LockExclusive,
        };
        loop {
            match Flock::lock(file, how) {
                Ok(mut flock) => {
                    // The pid is only for the message a waiting run prints.
                    let _ = flock.set_len(0);
                    let _ = flock.rewind();
                    let _ = writeln!(flock, "{}", std::process::id());
                    let lock = StateLock {
                        dir: dir.to_path_buf(),
                        flock,
                    };
                    // Holding the lock, any temp entry here belongs to a run that died. A
                    // leftover that cannot be removed hinders nothing.
                    if let Err(e) = temp::sweep(dir, Sweep::Locked) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot sweep temp entries");
                    }
                    return Ok(lock);
                }
                Err((_, errno)) if wait.is_none() && errno != nix::errno::Errno::EINTR => {
                    return Err(LockError::Open {
                        path: path.clone(),
                        source: errno.into(),
                    });
                }
                Err((f, _)) => {
                    if wait.is_some_and(|wait| started.elapsed() >= wait) {
                        let mut pid = String::new();
                        let mut f = f;
                        let _ = f.rewind();
                        let _ = f.read_to_string(&mut pid);
                        let pid = pid.trim();
                        return Err(LockError::Held {
                            path: path.to_path_buf(),
                            pid: if pid.is_empty() {
                                "unknown".into()
                            } else {
                                pid.into()
                            },
                            waited: started.elapsed(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    file = f;
                }
            }
        }
    }

    /// The state dir this lock is held on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let first = StateLock::acquire(dir.path(), Some(Duration::ZERO)).unwrap();
        let e = StateLock::acquire(dir.path(), Some(Duration::from_millis(250))).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "another converge run holds {} (pid {})",
                path.display(),
                std::process::id()
            )),
            "{msg}"
        );
        drop(first);
        StateLock::acquire(dir.path(), Some(Duration::ZERO)).unwrap();
    }
}
