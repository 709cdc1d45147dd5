//! Crash-safe filesystem steps: every final name appears only with complete content.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::{BundleError, IoContext};

/// Prefix of every temporary entry we create; swept on the next run under the lock.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Write `bytes` to `path` via temp file + fsync + rename + fsync(dir).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BundleError> {
    write_atomic_at(path, bytes, mode, None)
}

/// Like [`write_atomic`], with the file's modification time set before the rename.
pub fn write_atomic_at(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    mtime: Option<std::time::SystemTime>,
) -> Result<(), BundleError> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .at(dir)?;
    tmp.write_all(bytes).at(tmp.path())?;
    // Mode before rename: the final name must never exist with wider permissions.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).at(tmp.path())?;
    if let Some(t) = mtime {
        tmp.as_file().set_modified(t).at(tmp.path())?;
    }
    tmp.as_file().sync_all().at(tmp.path())?;
    tmp.persist(path)
        .map_err(|e| BundleError::io(path, e.error))?;
    fsync_dir(dir)
}

/// Make a rename or unlink in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<(), BundleError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Create `dir` (and parents) with `mode` on the leaf if it does not exist.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), BundleError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).at(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).at(dir)?;
    }
    Ok(())
}

/// Point symlink `link` at `target` atomically: a new link under a temp name, renamed over.
pub fn swap_symlink(link: &Path, target: &Path) -> Result<(), BundleError> {
    let dir = parent(link);
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}",
        link.file_name().and_then(|n| n.to_str()).unwrap_or("link"),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).at(&tmp)?;
    fs::rename(&tmp, link).at(link)?;
    fsync_dir(dir)
}

/// Remove leftovers of a run that was killed midway (temp files, temp dirs, trash).
pub fn sweep_temps(dir: &Path) -> Result<(), BundleError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BundleError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TEMP_PREFIX) {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Remove a directory tree so that no partial copy is ever left under its real name:
/// rename it to a temp name first, then delete.
pub fn remove_tree_atomically(dir: &Path) -> Result<(), BundleError> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("dir");
    let trash = parent(dir).join(format!("{TEMP_PREFIX}trash-{name}"));
    remove_any(&trash)?;
    fs::rename(dir, &trash).at(dir)?;
    remove_any(&trash)
}

fn remove_any(path: &Path) -> Result<(), BundleError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BundleError::io(path, e)),
    };
    if meta.is_dir() {
        fs::remove_dir_all(path).at(path)
    } else {
        fs::remove_file(path).at(path)
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Join a validated `/`-separated bundle path onto a directory.
pub fn join_rel(base: &Path, rel: &str) -> PathBuf {
    rel.split('/').fold(base.to_path_buf(), |p, c| p.join(c))
}
