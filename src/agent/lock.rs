//! One run at a time: an `flock` on a file in the state dir. The kernel releases it when the
//! holder dies, so a killed run never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
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
    /// The lock file could not be opened.
    #[error("cannot open lock file {path}: {source}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    flock: Flock<File>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // A later waiter must not name this (finished) run as the holder.
        let _ = self.flock.set_len(0);
    }
}

impl RunLock {
    /// Takes the lock at `path`, waiting up to `wait` for another run to finish.
    pub fn acquire(path: &Path, wait: Duration) -> Result<RunLock, LockError> {
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
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut flock) => {
                    // The pid is only for the message a waiting run prints.
                    let _ = flock.set_len(0);
                    let _ = flock.rewind();
                    let _ = writeln!(flock, "{}", std::process::id());
                    return Ok(RunLock { flock });
                }
                Err((f, _)) => {
                    if started.elapsed() >= wait {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = RunLock::acquire(&path, Duration::ZERO).unwrap();
        let e = RunLock::acquire(&path, Duration::from_millis(250)).unwrap_err();
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
        RunLock::acquire(&path, Duration::ZERO).unwrap();
    }
}
