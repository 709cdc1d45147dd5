//! The only code that touches the host. Everything is resolved under a root directory.
//!
//! Reading goes through [`System`]; writing needs a [`Host`], which only `apply` asks for, so
//! a check run has no way to change anything.

pub mod accounts;
pub mod apt;
pub mod command;
pub mod fs;
pub mod process;
pub mod procfs;
pub mod systemd;
pub mod users;

use std::io;
use std::path::{Component, Path, PathBuf};

pub use accounts::Accounts;
pub use fs::Host;

/// Errors from the system layer.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The root given with `--root` is unusable.
    #[error("root {path}: {source}")]
    Root {
        /// The root as given.
        path: PathBuf,
        /// Why it is unusable.
        source: io::Error,
    },
    /// A managed path must be absolute and free of `..`.
    #[error("{0}: managed paths must be absolute and must not contain '..'")]
    BadPath(PathBuf),
    /// A parent of a managed path is a link that a non-root user controls.
    #[error("{path}: refusing to follow {link}: the link or its directory belongs to uid {uid}, who could point it anywhere")]
    UnsafeLink {
        /// The managed path.
        path: PathBuf,
        /// The link on the way (as seen on this machine).
        link: PathBuf,
        /// Who controls it.
        uid: u32,
    },
    /// A path resolved outside the root (through symbolic links).
    #[error("{0}: resolves outside the root through symbolic links")]
    Escapes(PathBuf),
    /// Live kernel state belongs to the running machine, not to a tree under `--root`.
    #[error("{0}: live state is not managed under --root (only files in the tree are)")]
    NotLive(String),
    /// The live host does not run systemd, so units cannot be observed or started.
    #[error(
        "{0}: systemd is not running on this host (PID 1 is not systemd; no /run/systemd/system)"
    )]
    NoSystemd(String),
    /// A program could not be started.
    #[error("{command}: cannot run: {source}")]
    Spawn {
        /// The program and arguments.
        command: String,
        /// Why it could not start.
        source: io::Error,
    },
    /// A program ran and failed.
    #[error("{command}: {status}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Command {
        /// The program and arguments.
        command: String,
        /// How it exited.
        status: String,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// A program ran past its time limit and was killed.
    #[error("{command}: timed out after {after} and was killed")]
    Timeout {
        /// What ran.
        command: String,
        /// The limit.
        after: String,
    },
    /// An I/O error on a managed path.
    #[error("{path}: {source}")]
    Io {
        /// The managed path (as seen on the host, without the root).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl SystemError {
    /// Wraps an I/O error with the managed path it happened on.
    pub fn io(path: &Path, source: io::Error) -> SystemError {
        SystemError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Read access to the host (or to a tree standing in for it).
#[derive(Debug)]
pub struct System {
    root: PathBuf,
    // Read once per run; user and group resources forget it when they change the databases.
    accounts: std::sync::RwLock<Option<std::sync::Arc<Accounts>>>,
    // Resolved parent directories under a non-live root. Any write through `Host` clears it,
    // since a write may replace a link; a no-op run resolves each directory once.
    parents: std::sync::Mutex<std::collections::HashMap<PathBuf, PinnedDir>>,
}

impl System {
    /// A view of the tree at `root` (`/` for the live host).
    pub fn new(root: &Path) -> Result<System, SystemError> {
        let root = root.canonicalize().map_err(|source| SystemError::Root {
            path: root.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(SystemError::Root {
                path: root,
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(System {
            root,
            accounts: Default::default(),
            parents: Default::default(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when converging the running machine rather than a tree.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Where the managed absolute `path` is on this machine. Parent directories are resolved
    /// one component at a time from an open descriptor of the root, as a chroot would (an
    /// absolute link target restarts at the root, `..` stops at it), and the parent stays
    /// pinned by its descriptor: the returned path goes through `/proc/self/fd`, so swapping
    /// a directory on the way for a link after this check changes nothing. The last component
    /// is not followed: converge manages the path itself, whatever is there.
    pub fn host_path(&self, path: &Path) -> Result<HostPath, SystemError> {
        let rel = relative_components(path)?;
        let Some((last, parents)) = rel.split_last() else {
            return Err(SystemError::BadPath(path.to_path_buf()));
        };
        let parent = path.parent().unwrap_or(Path::new("/"));
        let cached = self
            .parents
            .lock()
            .ok()
            .and_then(|c| c.get(parent).cloned());
        let dir = match cached {
            Some(dir) => dir,
            None => {
                let dir = self.resolve_dir(path, parents)?;
                if let (Ok(mut cache), Walked::Pinned(d)) = (self.parents.lock(), &dir) {
                    cache.insert(parent.to_path_buf(), d.clone());
                }
                match dir {
                    Walked::Pinned(d) => d,
                    // A missing (or non-directory) component: nothing below it exists, so
                    // the lexical path is as good as any; operations fail as they should.
                    Walked::Missing(d, rest) => {
                        return Ok(HostPath {
                            path: d.proc_path().join(&rest).join(last),
                            shown: d.shown.join(&rest).join(last),
                            _dir: Some(d),
                            at: None,
                        })
                    }
                }
            }
        };
        Ok(HostPath {
            path: dir.proc_path().join(last),
            shown: dir.shown.join(last),
            _dir: Some(dir),
            at: Some(last.clone()),
        })
    }

    fn resolve_dir(
        &self,
        path: &Path,
        parents: &[std::ffi::OsString],
    ) -> Result<Walked, SystemError> {
        let err = |e: nix::errno::Errno| SystemError::io(path, e.into());
        let root = PinnedDir::open_root(&self.root).map_err(|e| SystemError::io(path, e))?;
        let mut stack = vec![root];
        let mut pending: Vec<std::ffi::OsString> = parents.iter().rev().cloned().collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let cur = stack.last().expect("the root stays").clone();
            let st = match nix::sys::stat::fstatat(
                Some(cur.raw()),
                part.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                Err(nix::errno::Errno::ENOENT) => {
                    let rest: PathBuf = std::iter::once(part)
                        .chain(pending.into_iter().rev())
                        .collect();
                    return Ok(Walked::Missing(cur, rest));
                }
                Err(e) => return Err(err(e)),
            };
            let kind = st.st_mode & nix::libc::S_IFMT;
            if kind == nix::libc::S_IFLNK {
                let dir_uid = nix::sys::stat::fstat(cur.raw()).map_err(err)?.st_uid;
                unsafe_transition(path, &cur.shown.join(&part), st.st_uid, dir_uid)?;
                hops += 1;
                if hops > 40 {
                    return Err(SystemError::Escapes(path.to_path_buf()));
                }
                let target =
                    nix::fcntl::readlinkat(Some(cur.raw()), part.as_os_str()).map_err(err)?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(p) => pending.push(p.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            } else if kind == nix::libc::S_IFDIR {
                let next = cur.open_child(&part).map_err(err)?;
                stack.push(next);
            } else {
                let rest: PathBuf = std::iter::once(part)
                    .chain(pending.into_iter().rev())
                    .collect();
                return Ok(Walked::Missing(cur, rest));
            }
        }
        Ok(Walked::Pinned(stack.pop().expect("the root stays")))
    }

    /// Forgets resolved parents after the tree changed.
    pub(crate) fn forget_paths(&self) {
        if let Ok(mut cache) = self.parents.lock() {
            cache.clear();
        }
    }

    /// User and group names of this tree (read once, until [`System::forget_accounts`]).
    pub fn accounts(&self) -> std::sync::Arc<Accounts> {
        if let Some(a) = self.accounts.read().ok().and_then(|g| g.clone()) {
            return a;
        }
        let fresh = std::sync::Arc::new(Accounts::new(&self.root));
        if let Ok(mut g) = self.accounts.write() {
            *g = Some(fresh.clone());
        }
        fresh
    }

    /// Drops the cached account databases after they changed.
    pub fn forget_accounts(&self) {
        if let Ok(mut g) = self.accounts.write() {
            *g = None;
        }
    }

    /// The writing handle. Only `apply` asks for it.
    pub fn host(&self) -> Host<'_> {
        Host::new(self)
    }
}

/// A link in a parent path is followed only when root owns both the link and the directory
/// holding it. Otherwise another user could point it anywhere (their `~/.config` at
/// `/etc/cron.d`, their `~/.ssh` at `/root/.ssh`), and the write would land there, owned by them.
fn unsafe_transition(
    path: &Path,
    link: &Path,
    link_uid: u32,
    dir_uid: u32,
) -> Result<(), SystemError> {
    if dir_uid == 0 && link_uid == 0 {
        return Ok(());
    }
    Err(SystemError::UnsafeLink {
        path: path.to_path_buf(),
        link: link.to_path_buf(),
        uid: if link_uid != 0 { link_uid } else { dir_uid },
    })
}

/// A directory held open: the path through `/proc/self/fd` names this very directory for as
/// long as the descriptor lives, whatever happens to its name.
#[derive(Debug, Clone)]
pub struct PinnedDir {
    fd: std::sync::Arc<std::os::fd::OwnedFd>,
    /// Where it was found, for messages.
    shown: PathBuf,
}

impl PinnedDir {
    fn open_root(root: &Path) -> io::Result<PinnedDir> {
        let fd = nix::fcntl::open(
            root,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(PinnedDir {
            fd: std::sync::Arc::new(fd),
            shown: root.to_path_buf(),
        })
    }

    /// The subdirectory `name`; refuses a link swapped in since it was looked at.
    fn open_child(&self, name: &std::ffi::OsStr) -> nix::Result<PinnedDir> {
        let fd = nix::fcntl::openat(
            Some(self.raw()),
            name,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(PinnedDir {
            fd: std::sync::Arc::new(fd),
            shown: self.shown.join(name),
        })
    }

    fn raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&*self.fd)
    }

    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.raw()))
    }
}

/// How far the walk to a parent directory got.
enum Walked {
    /// Every parent exists and the last one is held open.
    Pinned(PinnedDir),
    /// The deepest existing directory, and the rest of the parent path below it.
    Missing(PinnedDir, PathBuf),
}

/// A managed path as this machine reaches it, with its parent directory held open for as
/// long as this value lives. Use it as a `Path`.
#[derive(Debug)]
pub struct HostPath {
    path: PathBuf,
    shown: PathBuf,
    _dir: Option<PinnedDir>,
    /// The open parent and the last component, when every parent exists.
    at: Option<std::ffi::OsString>,
}

impl HostPath {
    /// The open parent directory and the name in it, for `*at` system calls (cheaper than a
    /// walk through `/proc/self/fd` on every call).
    pub fn at(&self) -> Option<(std::os::fd::RawFd, &std::ffi::OsStr)> {
        match (&self._dir, &self.at) {
            (Some(dir), Some(name)) => Some((dir.raw(), name.as_os_str())),
            _ => None,
        }
    }

    /// Where the path is, spelled from the root (for messages and tests).
    pub fn shown(&self) -> &Path {
        &self.shown
    }
}

impl std::ops::Deref for HostPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for HostPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// The normal components of an absolute managed path; anything else is refused.
fn relative_components(path: &Path) -> Result<Vec<std::ffi::OsString>, SystemError> {
    if !path.is_absolute() {
        return Err(SystemError::BadPath(path.to_path_buf()));
    }
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_os_string()),
            _ => return Err(SystemError::BadPath(path.to_path_buf())),
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolved_parent_stays_the_same_directory_when_its_name_is_swapped_for_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        let sys = System::new(&root).unwrap();
        let hp = sys.host_path(Path::new("/d/f")).unwrap();
        // The race: after the check, the directory is moved away and a link takes its name.
        std::fs::rename(root.join("d"), root.join("d-moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("d")).unwrap();
        std::fs::write(&*hp, "pinned").unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_to_string(root.join("d-moved/f")).unwrap(),
            "pinned"
        );
    }

    #[test]
    fn absolute_links_in_parents_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var-run")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let sys = System::new(&root).unwrap();
        assert_eq!(
            sys.host_path(Path::new("/var-run/x.pid")).unwrap().shown(),
            root.join("run/x.pid")
        );
        assert_eq!(
            sys.host_path(Path::new("/up/etc/passwd")).unwrap().shown(),
            root.join("etc/passwd")
        );
        assert!(matches!(
            sys.host_path(Path::new("/a/../b")),
            Err(SystemError::BadPath(_))
        ));
        assert!(matches!(
            sys.host_path(Path::new("rel")),
            Err(SystemError::BadPath(_))
        ));
    }
}
