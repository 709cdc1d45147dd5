//! Crash-safe changes to disk, for managed files, bundles and run records alike: every final
//! name appears only with complete content and its final owner and mode, and a run killed at
//! any instant leaves at most temp files that a later run recognises as its own and sweeps.
//!
//! Everything converge writes goes through here: [`write_file`] (temp file in the same
//! directory, owner/group/mode/mtime set, fsync, rename, fsync of the directory),
//! [`swap_symlink`], [`remove_tree`], the temp naming and sweeping in [`temp`], and the one
//! lock on a state dir in [`lock`].

pub mod crash;
pub mod lock;
pub mod temp;
pub mod trust;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

pub use lock::{LockError, StateLock};

/// What a file written by [`write_file`] is given before it gets its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Owner uid; `None` leaves the writer's.
    pub uid: Option<u32>,
    /// Group gid; `None` leaves the writer's.
    pub gid: Option<u32>,
    /// Modification time; `None` leaves the time of the write.
    pub mtime: Option<SystemTime>,
}

impl FileSpec {
    /// A file owned by the writer with `mode`.
    pub fn mode(mode: u32) -> FileSpec {
        FileSpec {
            mode,
            uid: None,
            gid: None,
            mtime: None,
        }
    }
}

/// Replaces `path` whole: a temp file in the same directory (so the rename never crosses a
/// filesystem) gets the content, owner, group, mode and mtime, is synced, then renamed over
/// `path` (which replaces a link planted there instead of following it); then the directory
/// is synced so the rename survives a crash.
pub(crate) fn write_file(path: &Path, bytes: &[u8], spec: &FileSpec) -> io::Result<()> {
    write_file_from(path, &mut &bytes[..], spec)
}

/// Like [`write_file`], copying the content from `content` a chunk at a time; an error from
/// it leaves `path` as it was.
pub(crate) fn write_file_from(
    path: &Path,
    content: &mut dyn io::Read,
    spec: &FileSpec,
) -> io::Result<()> {
    let dir = parent(path);
    let mut tmp = temp::file_in(dir)?;
    io::copy(content, &mut tmp)?;
    let file = tmp.as_file();
    if spec.uid.is_some() || spec.gid.is_some() {
        nix::unistd::fchown(
            file,
            spec.uid.map(nix::unistd::Uid::from_raw),
            spec.gid.map(nix::unistd::Gid::from_raw),
        )?;
    }
    // After chown, which clears setuid/setgid; before the rename, so the final name never
    // exists with wider permissions.
    file.set_permissions(fs::Permissions::from_mode(spec.mode))?;
    if let Some(t) = spec.mtime {
        file.set_modified(t)?;
    }
    file.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Writes an output a user named (`-o FILE`, a metrics textfile): a regular file, or a
/// name not taken yet, is replaced whole as [`write_file`] does; anything else there (a
/// device such as /dev/null, a fifo, a socket, or a link such as /dev/stdout) is opened and
/// written as a stream, never replaced. A directory is an error.
pub fn write_output(path: &Path, bytes: &[u8], spec: &FileSpec) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_file(path, bytes, spec),
        Err(e) => Err(e),
        Ok(m) if m.is_file() => write_file(path, bytes, spec),
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        )),
        Ok(_) => {
            // O_TRUNC empties a regular file behind a link and is ignored by devices and
            // fifos; no O_CREAT: a dangling link is an error, not a file made elsewhere.
            let mut out = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)?;
            write_stream(&mut out, bytes, Some(spec.mode))
        }
    }
}

/// Writes `bytes` to an open output (stdout, a device, a pipe). When it is a regular file
/// and `narrow_to` is given, the file loses the permission bits `narrow_to` lacks first:
/// a shell's `> FILE` creates it with the umask's mode, often world-readable.
pub fn write_stream<W: io::Write + std::os::fd::AsFd>(
    out: &mut W,
    bytes: &[u8],
    narrow_to: Option<u32>,
) -> io::Result<()> {
    if let Some(mode) = narrow_to {
        let fd = out.as_fd();
        let st = nix::sys::stat::fstat(fd)?;
        let now = st.st_mode & 0o7777;
        if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG && now & !mode != 0 {
            nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_truncate(now & mode))?;
        }
    }
    out.write_all(bytes)?;
    out.flush()
}

/// Points the link at `link` to `target` atomically: a new link under a temp name (made by
/// symlink(2) itself, which fails if the name is taken), renamed over whatever is there.
pub(crate) fn swap_symlink(link: &Path, target: &Path) -> io::Result<()> {
    let dir = parent(link);
    let mut attempt = 0u32;
    let tmp = loop {
        let tmp = dir.join(temp::name(&attempt.to_string()));
        match std::os::unix::fs::symlink(target, &tmp) {
            Ok(()) => break tmp,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Removes the directory tree at `path` so that no partial copy is ever left under its real
/// name: it is renamed to a temp name first (swept if this run dies), then deleted.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trash = parent(path).join(temp::name(&format!("trash-{name}")));
    temp::remove_any(&trash)?;
    fs::rename(path, &trash)?;
    temp::remove_any(&trash)
}

/// Makes a rename, link or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents with `mode` (never briefly wider); the leaf gets
/// exactly `mode` whatever the umask. An existing `dir` is left as it is.
pub(crate) fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// The JSON record at `path`, if there is one: a missing file is none, and so is one that
/// cannot be read or parsed as a `T`, with a warning naming `what` it was meant to hold (a
/// damaged record must not stop the runs that consult it).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Option<T> {
    let text = fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable {what}");
            None
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn temps(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(temp::PREFIX))
            .collect()
    }

    #[test]
    fn a_json_record_is_read_and_a_missing_or_damaged_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        assert_eq!(read_json::<Vec<u32>>(&path, "record"), None);
        fs::write(&path, "[1, 2]").unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path, "record"), Some(vec![1, 2]));
        fs::write(&path, "[1, 2").unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path, "record"), None);
        fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path, "record"), None);
    }

    #[test]
    fn a_written_file_has_its_mode_and_mtime_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let spec = FileSpec {
            mtime: Some(when),
            ..FileSpec::mode(0o640)
        };
        write_file(&path, b"new", &spec).unwrap();
        let md = fs::metadata(&path).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(md.modified().unwrap(), when);
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(temps(dir.path()).is_empty());
    }

    #[test]
    fn a_write_replaces_a_planted_link_and_leaves_its_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink("victim", dir.path().join("f")).unwrap();
        write_file(&dir.path().join("f"), b"new", &FileSpec::mode(0o600)).unwrap();
        assert_eq!(fs::read(dir.path().join("victim")).unwrap(), b"keep");
        assert!(fs::symlink_metadata(dir.path().join("f"))
            .unwrap()
            .is_file());
    }

    #[test]
    fn a_link_is_swapped_and_a_tree_removed_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("current");
        swap_symlink(&link, Path::new("a")).unwrap();
        swap_symlink(&link, Path::new("b")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("b"));
        let tree = dir.path().join("b");
        fs::create_dir_all(tree.join("x/y")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(temps(dir.path()).is_empty());
    }
}
