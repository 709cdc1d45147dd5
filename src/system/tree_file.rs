//! Reading the tree's own files (os-release, hosts, passwd, group) the way a chroot would.
//!
//! Under `--root`, `/etc/os-release -> /usr/lib/os-release` or `/etc/passwd -> /etc/passwd-`
//! must resolve inside the tree: followed by the host's kernel, they would give the facts and
//! uids of the machine running converge. And a fifo or device planted at such a path must be
//! refused, not opened for reading (a fifo blocks the run forever).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};

/// The largest tree file read for converge's own use: these are small text databases.
pub(crate) const MAX_TREE_FILE: u64 = 64 << 20;

/// Reads `path` (absolute) inside `root` chroot-style: every link, absolute or relative,
/// resolves inside `root`. Only a regular file is read; a missing one is `NotFound`.
pub(crate) fn read_in_root(root: &Path, path: &Path) -> io::Result<Vec<u8>> {
    let dir = File::open(root)?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    // O_PATH opens nothing for I/O: a fifo does not block and a device is not touched.
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let handle = File::from(nix::fcntl::openat2(&dir, rel, how).map_err(io::Error::from)?);
    let kind = handle.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&kind) {
            "a fifo"
        } else {
            "a special file"
        };
        return Err(io::Error::other(format!(
            "{} is {what}, not a regular file: not read",
            path.display()
        )));
    }
    // Open it again for reading, resolved the same way: not through /proc/self/fd, which a
    // chroot without /proc lacks (and an account database read as empty there made users
    // that exist look absent). O_NONBLOCK keeps a FIFO swapped in meanwhile from blocking,
    // and only the very inode checked above is read.
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut file = File::from(nix::fcntl::openat2(&dir, rel, how).map_err(io::Error::from)?);
    let (checked, opened) = (handle.metadata()?, file.metadata()?);
    if (checked.dev(), checked.ino()) != (opened.dev(), opened.ino()) {
        return Err(io::Error::other(format!(
            "{} changed while it was read: not read",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_TREE_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TREE_FILE {
        return Err(io::Error::other(format!(
            "{} is larger than {MAX_TREE_FILE} bytes: not read",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Opens `path` for reading, but only a regular file: `Ok(Err(what))` names anything else
/// ("a FIFO", "a device", ...), found before a byte is read. O_NONBLOCK keeps the open of a
/// FIFO from waiting for a writer that may never come.
pub(crate) fn open_if_regular(path: &Path) -> io::Result<Result<File, &'static str>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let kind = file.metadata()?.file_type();
    Ok(if kind.is_file() {
        Ok(file)
    } else {
        Err(kind_name(&kind))
    })
}

/// What a file of type `kind` is, in words ("a regular file", "a FIFO", "a device", ...).
pub(crate) fn kind_name(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        "a regular file"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// [`read_in_root`] as text; a missing file is empty, and any other problem is logged and
/// taken as empty (what these files add is optional: facts, account names).
pub(crate) fn read_text_or_empty(root: &Path, path: &Path) -> String {
    match read_in_root(root, path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            tracing::warn!(root = %root.display(), path = %path.display(), error = %e, "cannot read a file of the tree");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative_links_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/os-release"), "ID=tree\n").unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", root.join("etc/os-release")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/hostname", root.join("etc/up")).unwrap();
        assert_eq!(
            read_in_root(root, Path::new("/etc/os-release")).unwrap(),
            b"ID=tree\n"
        );
        // Climbing out stops at the root, as in a chroot: the host's /etc/hostname is not read.
        let e = read_in_root(root, Path::new("/etc/up")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        nix::unistd::mkfifo(&root.join("etc/passwd"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_in_root(root, Path::new("/etc/passwd")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/passwd is a fifo, not a regular file: not read"
        );
        assert_eq!(read_text_or_empty(root, Path::new("/etc/passwd")), "");
    }
}
