//! Walking a whole directory tree under the root, for snapshots.
//!
//! The start is resolved like any managed path; below it every directory is opened from its
//! parent's descriptor without following links, so a link inside the tree is reported as a
//! link and never leads the walk (or a read) outside it.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};

use super::fs::Meta;
use super::{System, SystemError};

/// What the walk found at one path.
#[derive(Debug)]
pub enum WalkKind {
    /// A regular file, opened for reading (`None` when it could not be opened).
    File(Option<File>),
    /// A directory (its entries follow).
    Directory,
    /// A symbolic link and its target as stored.
    Symlink(PathBuf),
    /// A device, socket or fifo: never opened.
    Other,
}

/// One entry of a walk.
#[derive(Debug)]
pub struct WalkEntry {
    /// The path inside the tree, e.g. `/etc/ssh/sshd_config`.
    pub path: PathBuf,
    /// Owner, group and permission bits.
    pub meta: Meta,
    /// Size in bytes (regular files).
    pub size: u64,
    /// What it is.
    pub kind: WalkKind,
}

/// How many directory levels below its start a walk descends. A walk holds one open
/// descriptor per level, so a hostile tree thousands of levels deep would run out of them
/// (or, walked recursively, out of stack); real configuration trees are a few levels deep.
pub(crate) const MAX_DEPTH: usize = 256;

impl System {
    /// Visits `start` and everything below it in sorted order, parents before children; a
    /// directory is entered only when `visit` returns true for it. A missing start visits
    /// nothing. Unreadable subdirectories, and the entries of any directory [`MAX_DEPTH`]
    /// levels down, are reported and skipped.
    pub fn walk(
        &self,
        start: &Path,
        visit: &mut dyn FnMut(WalkEntry) -> bool,
    ) -> Result<(), SystemError> {
        let real = self.host_path(start)?;
        let Some((dir, name)) = real.at() else {
            return Ok(());
        };
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(SystemError::io(start, e.into())),
        };
        // One open directory per level, with the names still to visit in it (reversed, so
        // the next one pops off the end): an explicit stack, not recursion.
        let mut open: Vec<Level> = Vec::new();
        if let Some(level) = visit_entry(dir, name, start.to_path_buf(), &st, visit) {
            open.push(level);
        }
        let mut warned = false;
        while let Some(top) = open.last_mut() {
            let Some(child) = top.names.pop() else {
                open.pop();
                continue;
            };
            let fd = top.fd.as_fd();
            let Ok(st) = fstatat(fd, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            let path = top.path.join(&child);
            let Some(level) = visit_entry(fd, &child, path, &st, visit) else {
                continue;
            };
            if open.len() > MAX_DEPTH {
                if !warned {
                    tracing::warn!(
                        path = %level.path.display(),
                        "directory tree deeper than {MAX_DEPTH} levels below {}: what lies deeper is not recorded",
                        start.display()
                    );
                    warned = true;
                }
                continue;
            }
            open.push(level);
        }
        Ok(())
    }
}

/// A directory being walked: its descriptor, its path in the tree, the names left.
struct Level {
    fd: OwnedFd,
    path: PathBuf,
    names: Vec<OsString>,
}

/// Visits one entry; a directory is opened and listed, and returned to be walked.
fn visit_entry(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    path: PathBuf,
    st: &FileStat,
    visit: &mut dyn FnMut(WalkEntry) -> bool,
) -> Option<Level> {
    let meta = Meta {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        links: st.st_nlink,
    };
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let entry = |kind| WalkEntry {
        path: path.clone(),
        meta,
        size,
        kind,
    };
    match st.st_mode & nix::libc::S_IFMT {
        nix::libc::S_IFREG => {
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
            let file = nix::fcntl::openat(dir, name, flags, Mode::empty())
                .ok()
                .map(File::from);
            visit(entry(WalkKind::File(file)));
            None
        }
        nix::libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(dir, name)
                .map(PathBuf::from)
                .unwrap_or_default();
            visit(entry(WalkKind::Symlink(target)));
            None
        }
        nix::libc::S_IFDIR => {
            if !visit(entry(WalkKind::Directory)) {
                return None;
            }
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open directory; skipped");
                    return None;
                }
            };
            let mut names = match list(&fd) {
                Ok(names) => names,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot list directory; skipped");
                    return None;
                }
            };
            names.sort_by(|a, b| b.cmp(a));
            Some(Level { fd, path, names })
        }
        _ => {
            visit(entry(WalkKind::Other));
            None
        }
    }
}

/// The names in the open directory `fd` (without `.` and `..`).
fn list(fd: &OwnedFd) -> nix::Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    // Dir takes ownership of the descriptor it reads, so give it a duplicate.
    let dup = nix::unistd::dup(fd)?;
    let mut dir = nix::dir::Dir::from_fd(dup)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_in_order_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/b")).unwrap();
        std::fs::write(root.join("etc/b/x"), "x").unwrap();
        std::fs::write(root.join("etc/a"), "a").unwrap();
        std::os::unix::fs::symlink("/", root.join("etc/up")).unwrap();
        let sys = System::new(root).unwrap();
        let mut seen = Vec::new();
        sys.walk(Path::new("/etc"), &mut |e| {
            let kind = match e.kind {
                WalkKind::File(f) => format!("file {}", f.is_some()),
                WalkKind::Directory => "dir".into(),
                WalkKind::Symlink(t) => format!("link {}", t.display()),
                WalkKind::Other => "other".into(),
            };
            seen.push(format!("{} {kind}", e.path.display()));
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "/etc dir",
                "/etc/a file true",
                "/etc/b dir",
                "/etc/b/x file true",
                "/etc/up link /",
            ]
        );
        let mut none = 0;
        sys.walk(Path::new("/missing"), &mut |_| {
            none += 1;
            true
        })
        .unwrap();
        assert_eq!(none, 0);
    }
}
