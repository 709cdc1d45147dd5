//! Files on the host: observing entries and changing them atomically.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{System, SystemError};
use crate::durable::temp::{self, Sweep};
use crate::durable::{self, FileSpec};

/// What is at a path, without following a final symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Nothing.
    Missing,
    /// A regular file.
    File(Meta),
    /// A directory.
    Directory(Meta),
    /// A symbolic link and its target as stored.
    Symlink(PathBuf),
    /// A device, socket or fifo.
    Other,
}

impl Entry {
    /// A short noun for messages and diffs.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Missing => "absent",
            Entry::File(_) => "file",
            Entry::Directory(_) => "directory",
            Entry::Symlink(_) => "symlink",
            Entry::Other => "special file",
        }
    }
}

/// Ownership and permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Hard links to the inode: a file with more than one is shared with another path.
    pub links: u64,
}

impl System {
    /// What is at the managed `path`.
    pub fn entry(&self, path: &Path) -> Result<Entry, SystemError> {
        let real = self.host_path(path)?;
        let err = |e: nix::errno::Errno| SystemError::io(path, e.into());
        let Some((dir, name)) = real.at() else {
            // A parent is missing: so is the path.
            return match std::fs::symlink_metadata(&*real) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Entry::Missing),
                Err(e) => Err(SystemError::io(path, e)),
                Ok(_) => Ok(Entry::Other),
            };
        };
        let st = match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {
                return Ok(Entry::Missing)
            }
            Err(e) => return Err(err(e)),
        };
        let meta = Meta {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            links: st.st_nlink,
        };
        Ok(match st.st_mode & nix::libc::S_IFMT {
            nix::libc::S_IFREG => Entry::File(meta),
            nix::libc::S_IFDIR => Entry::Directory(meta),
            nix::libc::S_IFLNK => {
                Entry::Symlink(nix::fcntl::readlinkat(dir, name).map_err(err)?.into())
            }
            _ => Entry::Other,
        })
    }

    /// The contents of the regular file at `path`, refusing to follow a link planted there.
    pub fn read_file(&self, path: &Path) -> Result<Vec<u8>, SystemError> {
        let mut f = self.open_file(path)?;
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut f, &mut buf).map_err(|e| SystemError::io(path, e))?;
        Ok(buf)
    }

    /// The file at `path` open for reading, refusing to follow a link planted there: for
    /// content read a piece at a time.
    pub(crate) fn open_file(&self, path: &Path) -> Result<File, SystemError> {
        let real = self.host_path(path)?;
        let f = match real.at() {
            Some((dir, name)) => {
                let flags = nix::fcntl::OFlag::O_RDONLY
                    | nix::fcntl::OFlag::O_NOFOLLOW
                    | nix::fcntl::OFlag::O_NONBLOCK
                    | nix::fcntl::OFlag::O_CLOEXEC;
                let fd = nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::empty())
                    .map_err(|e| SystemError::io(path, e.into()))?;
                File::from(fd)
            }
            None => open_nofollow(&real, false).map_err(|e| SystemError::io(path, e))?,
        };
        Ok(f)
    }

    /// Names of the entries in the directory at `path`, sorted.
    /// Names are kept as the OS gives them: a name that is not UTF-8 must still be removable.
    pub(crate) fn list_dir(&self, path: &Path) -> Result<Vec<std::ffi::OsString>, SystemError> {
        let real = self.host_path(path)?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&real).map_err(|e| SystemError::io(path, e))? {
            let entry = entry.map_err(|e| SystemError::io(path, e))?;
            names.push(entry.file_name());
        }
        names.sort();
        Ok(names)
    }
}

fn open_nofollow(real: &Path, dir: bool) -> io::Result<File> {
    let mut flags = nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK;
    if dir {
        flags |= nix::libc::O_DIRECTORY;
    }
    OpenOptions::new().read(true).custom_flags(flags).open(real)
}

/// The writing handle: every change to the host goes through here.
#[derive(Debug)]
pub struct Host<'a> {
    pub(super) sys: &'a System,
    /// The deadlines of the commands this host runs: the system's, or a resource's own.
    timeouts: super::Timeouts,
}

/// Ownership and mode to give a new or changed entry; `None` keeps what is there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Owner uid.
    pub uid: Option<u32>,
    /// Group gid.
    pub gid: Option<u32>,
    /// Permission bits.
    pub mode: Option<u32>,
}

impl System {
    /// Removes the temp files dead runs left in `dir` (a real path of a managed directory)
    /// before this run first writes there. Every managed write sweeps through here; a
    /// directory is listed once per run (known by device and inode, whatever path led to it),
    /// so writing many files into one directory stays linear.
    fn sweep_temps(&self, dir: &Path) {
        if let Ok(md) = std::fs::metadata(dir) {
            let first = self
                .swept
                .lock()
                .map_or(true, |mut swept| swept.insert((md.dev(), md.ino())));
            if !first {
                return;
            }
        }
        if let Err(e) = temp::sweep(dir, Sweep::Dead) {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot sweep temp files");
        }
    }
}

impl<'a> Host<'a> {
    pub(super) fn new(sys: &'a System) -> Host<'a> {
        Host {
            sys,
            timeouts: *sys.timeouts(),
        }
    }

    /// The read side of this host.
    pub fn system(&self) -> &'a System {
        self.sys
    }

    /// The deadlines of the changes made through this host.
    pub fn timeouts(&self) -> &super::Timeouts {
        &self.timeouts
    }

    /// This host with other deadlines, for a resource that sets its own (`timeout = "20m"`).
    pub(crate) fn with_timeouts(&self, timeouts: super::Timeouts) -> Host<'a> {
        Host {
            sys: self.sys,
            timeouts,
        }
    }

    /// Replaces the file at `path` atomically: a temp file in the same directory gets the
    /// content, owner, group and mode, is synced, then renamed over the path (which replaces a
    /// link planted there instead of following it), and the directory is synced.
    /// `default_mode` applies when neither `attrs` nor an existing file says otherwise.
    pub(crate) fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        attrs: Attrs,
        default_mode: u32,
    ) -> Result<(), SystemError> {
        self.write_file_from(path, &mut &content[..], attrs, default_mode)
    }

    /// Like [`Host::write_file`], with the content copied from `content` a chunk at a time.
    /// When reading fails, even at the very end, the temp file goes and nothing is replaced.
    pub(crate) fn write_file_from(
        &self,
        path: &Path,
        content: &mut dyn io::Read,
        attrs: Attrs,
        default_mode: u32,
    ) -> Result<(), SystemError> {
        self.sys.forget_paths();
        let real = self.sys.host_path(path)?;
        let err = |e: io::Error| SystemError::io(path, e);
        let dir = real
            .parent()
            .ok_or_else(|| SystemError::BadPath(path.to_path_buf()))?;
        let existing = match std::fs::symlink_metadata(&real) {
            Ok(md) if md.is_file() => Some(md),
            _ => None,
        };
        let mode = attrs
            .mode
            .or(existing.as_ref().map(|m| m.mode() & 0o7777))
            .unwrap_or(default_mode);
        let uid = attrs.uid.or(existing.as_ref().map(|m| m.uid()));
        let gid = attrs.gid.or(existing.as_ref().map(|m| m.gid()));
        self.sys.sweep_temps(dir);
        let spec = FileSpec {
            mode,
            uid,
            gid,
            mtime: None,
        };
        durable::write_file_from(&real, content, &spec).map_err(err)
    }

    /// Sets owner, group and mode of the file or directory at `path` without following a link.
    pub(crate) fn set_attrs(&self, path: &Path, attrs: Attrs) -> Result<(), SystemError> {
        let real = self.sys.host_path(path)?;
        let err = |e: io::Error| SystemError::io(path, e);
        let is_dir = std::fs::symlink_metadata(&real).map_err(err)?.is_dir();
        let f = open_nofollow(&real, is_dir).map_err(err)?;
        let md = f.metadata().map_err(err)?;
        if md.is_file() && md.nlink() > 1 {
            // The inode is shared with another path (say /etc/shadow): changing it in place
            // would change that file too. Callers replace such a file instead.
            return Err(err(io::Error::other(format!(
                "has {} hard links; its owner and mode are not changed in place",
                md.nlink()
            ))));
        }
        let mut mode = attrs.mode;
        if attrs.uid.is_some() || attrs.gid.is_some() {
            // chown(2) clears setuid/setgid: put back the bits the file had (or is to have),
            // or the next run would find a mode change that check never reported.
            let before = md.mode() & 0o7777;
            mode = mode.or(Some(before));
            nix::unistd::fchown(
                &f,
                attrs.uid.map(nix::unistd::Uid::from_raw),
                attrs.gid.map(nix::unistd::Gid::from_raw),
            )
            .map_err(|e| err(e.into()))?;
        }
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(err)?;
        }
        Ok(())
    }

    /// Creates the directory at `path` (its parent must exist) with the given attributes.
    pub fn create_dir(&self, path: &Path, attrs: Attrs) -> Result<(), SystemError> {
        self.sys.forget_paths();
        let real = self.sys.host_path(path)?;
        // Created closed (0700), then given its owner and mode: never briefly wider.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&real)
            .map_err(|e| SystemError::io(path, e))?;
        self.set_attrs(
            path,
            Attrs {
                mode: Some(attrs.mode.unwrap_or(0o755)),
                ..attrs
            },
        )?;
        durable::sync_dir(real.parent().unwrap_or(&real)).map_err(|e| SystemError::io(path, e))
    }

    /// Points the link at `path` to `target`, atomically replacing a file or link there.
    pub fn symlink(&self, path: &Path, target: &Path) -> Result<(), SystemError> {
        self.sys.forget_paths();
        let real = self.sys.host_path(path)?;
        let dir = real
            .parent()
            .ok_or_else(|| SystemError::BadPath(path.to_path_buf()))?;
        self.sys.sweep_temps(dir);
        durable::swap_symlink(&real, target).map_err(|e| SystemError::io(path, e))
    }

    /// Removes whatever is at `path`; a directory only when empty unless `recursive`.
    pub fn remove(&self, path: &Path, recursive: bool) -> Result<(), SystemError> {
        self.sys.forget_paths();
        let real = self.sys.host_path(path)?;
        let err = |e: io::Error| SystemError::io(path, e);
        let md = match std::fs::symlink_metadata(&real) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(e)),
        };
        if md.is_dir() {
            if recursive {
                // remove_dir_all does not follow links inside the tree.
                std::fs::remove_dir_all(&real).map_err(err)?;
            } else {
                std::fs::remove_dir(&real).map_err(err)?;
            }
        } else {
            std::fs::remove_file(&real).map_err(err)?;
        }
        durable::sync_dir(real.parent().unwrap_or(&real)).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_a_planted_link_and_leaves_its_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sys = System::new(dir.path()).unwrap();
        let root = sys.root().to_path_buf();
        std::fs::write(root.join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(root.join("victim"), root.join("managed")).unwrap();
        let attrs = Attrs {
            mode: Some(0o640),
            ..Attrs::default()
        };
        sys.host(&crate::system::Applying::for_tests())
            .write_file(Path::new("/managed"), b"new", attrs, 0o644)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("victim")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("managed")).unwrap(),
            "new"
        );
        match sys.entry(Path::new("/managed")).unwrap() {
            Entry::File(m) => assert_eq!(m.mode, 0o640),
            other => panic!("expected a file, got {other:?}"),
        }
        let leftovers: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(temp::PREFIX))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    #[ignore = "needs root (container tier, scripts/test)"]
    fn a_directory_is_swept_of_dead_runs_temp_files_once_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let sys = System::new(dir.path()).unwrap();
        let root = sys.root().to_path_buf();
        std::fs::create_dir(root.join("d")).unwrap();
        // Above pid_max: no such process can exist.
        let dead = |n: u32| root.join(format!("d/{}999999999-{n}", temp::PREFIX));
        std::fs::write(dead(1), "torn").unwrap();
        let write = |sys: &System, name: &str| {
            sys.host(&crate::system::Applying::for_tests())
                .write_file(Path::new(name), b"x", Attrs::default(), 0o644)
                .unwrap()
        };
        write(&sys, "/d/a");
        assert!(!dead(1).exists());
        // Later writes into the same directory do not list it again, by any path to it.
        std::os::unix::fs::symlink("d", root.join("alias")).unwrap();
        std::fs::write(dead(2), "torn").unwrap();
        write(&sys, "/d/b");
        write(&sys, "/alias/c");
        assert!(dead(2).exists());
        // The next run does.
        write(&System::new(&root).unwrap(), "/d/e");
        assert!(!dead(2).exists());
    }

    #[test]
    fn read_refuses_to_follow_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let sys = System::new(dir.path()).unwrap();
        std::fs::write(sys.root().join("t"), "x").unwrap();
        std::os::unix::fs::symlink("t", sys.root().join("l")).unwrap();
        assert!(sys.read_file(Path::new("/l")).is_err());
    }
}
