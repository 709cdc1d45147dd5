//! Temp entries: one naming scheme, `.converge-tmp-PID-...`, for files, links and directories
//! everywhere converge writes, so any later run can tell a dead run's leftovers from a live
//! run's work in progress and sweep them.

use std::fs;
use std::io;
use std::path::Path;

use tempfile::{NamedTempFile, TempDir};

/// Prefix of every temp entry converge creates.
pub(crate) const PREFIX: &str = ".converge-tmp-";

/// Prefix that releases before this one used in state dirs; swept there under the lock.
const LEGACY_PREFIX: &str = ".tmp-";

/// Which temp entries a sweep removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sweep {
    /// Files and links left by processes that no longer exist: for directories another live
    /// run may be writing in (managed directories, a publish output).
    Dead,
    /// Every temp entry not of this process, directories too: for a directory only the
    /// holder of the state-dir lock writes in, where anything else is a dead run's.
    Locked,
    /// Directories of processes that no longer exist, when they are the running user's
    /// and untouched for [`ABANDONED_AFTER`]: for a directory that commands run by hand
    /// stage whole trees in (a capture's SRC), with no lock to tell a live run from a dead
    /// one. The age spares a run of another pid namespace, whose pid means nothing here.
    Abandoned,
}

/// How long a dead run's temp directory is left alone before [`Sweep::Abandoned`] takes it.
pub(crate) const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// A temp name of this process: `.converge-tmp-PID-SUFFIX`.
pub fn name(suffix: &str) -> String {
    format!("{}{suffix}", own_prefix())
}

fn own_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// A new temp file in `dir` (mode 0600), removed on drop unless persisted.
pub(crate) fn file_in(dir: &Path) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&own_prefix())
        .tempfile_in(dir)
}

/// A new temp directory in `dir` (mode 0700), removed on drop unless kept.
pub(crate) fn dir_in(dir: &Path) -> io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&own_prefix())
        .tempdir_in(dir)
}

/// The pid in a temp name, when `name` is one of ours.
fn owner(name: &str) -> Option<Option<u32>> {
    if let Some(rest) = name.strip_prefix(PREFIX) {
        return Some(rest.split('-').next().and_then(|p| p.parse().ok()));
    }
    name.starts_with(LEGACY_PREFIX).then_some(None)
}

/// Removes the temp entries of `dir` that `how` says are leftovers. A missing `dir` has none.
pub(crate) fn sweep(dir: &Path, how: Sweep) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let me = std::process::id();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        let stale = match how {
            Sweep::Locked => pid != Some(me),
            Sweep::Dead => match pid {
                Some(pid) => {
                    !Path::new("/proc").join(pid.to_string()).exists()
                        && !entry.file_type()?.is_dir()
                }
                None => false,
            },
            Sweep::Abandoned => match pid {
                Some(pid) => {
                    !Path::new("/proc").join(pid.to_string()).exists()
                        && abandoned_dir(&fs::symlink_metadata(entry.path())?)
                }
                None => false,
            },
        };
        if stale {
            tracing::debug!(path = %entry.path().display(), "removing a stale temp entry");
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// A real directory (never a link) of the running user, unchanged for [`ABANDONED_AFTER`].
fn abandoned_dir(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.is_dir()
        && meta.uid() == nix::unistd::geteuid().as_raw()
        && meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= ABANDONED_AFTER)
}

/// Removes whatever is at `path` (a directory with everything in it); nothing there is fine.
pub(super) fn remove_any(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_runs_temp_files_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Above pid_max: no such process can exist.
        let dead = dir.path().join(format!("{PREFIX}999999999-abc"));
        let dead_dir = dir.path().join(format!("{PREFIX}999999999-d"));
        let live = dir.path().join(name("x"));
        let other = dir.path().join("app.conf");
        for f in [&dead, &live, &other] {
            fs::write(f, "x").unwrap();
        }
        fs::create_dir(&dead_dir).unwrap();
        sweep(dir.path(), Sweep::Dead).unwrap();
        assert!(!dead.exists());
        assert!(live.exists() && other.exists() && dead_dir.exists());
    }

    #[test]
    fn under_the_lock_everything_but_our_own_goes_legacy_names_too() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join(format!("{PREFIX}1-abc"));
        let legacy = dir.path().join(".tmp-def");
        let mine = dir.path().join(name("x"));
        let other = dir.path().join("sync.json");
        fs::create_dir_all(legacy.join("roles")).unwrap();
        for f in [&init, &mine, &other] {
            fs::write(f, "x").unwrap();
        }
        sweep(dir.path(), Sweep::Locked).unwrap();
        assert!(!init.exists() && !legacy.exists());
        assert!(mine.exists() && other.exists());
        assert!(sweep(&dir.path().join("missing"), Sweep::Locked).is_ok());
    }

    #[test]
    fn only_our_old_directories_of_dead_runs_are_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(format!("{PREFIX}{name}"));
        let hours_ago = std::time::SystemTime::now() - ABANDONED_AFTER * 2;
        // Above pid_max: no such process can exist.
        let (old, fresh, file, link, live) = (
            at("999999999-old"),
            at("999999999-fresh"),
            at("999999999-file"),
            at("999999999-link"),
            dir.path().join(name("live")),
        );
        let elsewhere = dir.path().join("elsewhere");
        for d in [&old, &fresh, &live, &elsewhere] {
            fs::create_dir_all(d.join("files/r")).unwrap();
            fs::write(d.join("files/r/a.conf"), "a").unwrap();
        }
        fs::write(&file, "x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        for p in [&old, &file, &live, &elsewhere] {
            fs::File::open(p).unwrap().set_modified(hours_ago).unwrap();
        }
        sweep(dir.path(), Sweep::Abandoned).unwrap();
        assert!(!old.exists());
        assert!(fresh.exists() && file.exists() && live.exists());
        assert!(link.symlink_metadata().is_ok() && elsewhere.join("files/r/a.conf").exists());
    }
}
