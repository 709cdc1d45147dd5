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
use std::os::unix::fs::MetadataExt;
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
    parents: std::sync::Mutex<std::collections::HashMap<PathBuf, PathBuf>>,
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
    /// as a chroot would (an absolute link target restarts at the root, `..` stops at it), so a
    /// link inside the tree never leads a write outside it. The last component is not followed:
    /// converge manages the path itself, whatever is there.
    pub fn host_path(&self, path: &Path) -> Result<PathBuf, SystemError> {
        let rel = relative_components(path)?;
        let Some((last, parents)) = rel.split_last() else {
            return Ok(self.root.clone());
        };
        let parent = path.parent().unwrap_or(Path::new("/"));
        if let Some(hit) = self
            .parents
            .lock()
            .ok()
            .and_then(|c| c.get(parent).cloned())
        {
            return Ok(hit.join(last));
        }
        let mut resolved = self.root.clone();
        let mut pending: Vec<std::ffi::OsString> = parents.iter().rev().cloned().collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                if resolved != self.root {
                    resolved.pop();
                }
                continue;
            }
            let next = resolved.join(&part);
            let is_link =
                std::fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink());
            match std::fs::read_link(&next).ok().filter(|_| is_link) {
                Some(target) => {
                    unsafe_transition(path, &resolved, &next)?;
                    hops += 1;
                    if hops > 40 {
                        return Err(SystemError::Escapes(path.to_path_buf()));
                    }
                    if target.is_absolute() {
                        resolved = self.root.clone();
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(p) => pending.push(p.to_os_string()),
                            Component::ParentDir => pending.push("..".into()),
                            _ => {}
                        }
                    }
                }
                None => resolved = next,
            }
        }
        if !resolved.starts_with(&self.root) {
            return Err(SystemError::Escapes(path.to_path_buf()));
        }
        if let Ok(mut cache) = self.parents.lock() {
            cache.insert(parent.to_path_buf(), resolved.clone());
        }
        Ok(resolved.join(last))
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
fn unsafe_transition(path: &Path, dir: &Path, link: &Path) -> Result<(), SystemError> {
    let owner = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.uid())
            .unwrap_or(u32::MAX)
    };
    let (dir_uid, link_uid) = (owner(dir), owner(link));
    if dir_uid == 0 && link_uid == 0 {
        return Ok(());
    }
    Err(SystemError::UnsafeLink {
        path: path.to_path_buf(),
        link: link.to_path_buf(),
        uid: if link_uid != 0 { link_uid } else { dir_uid },
    })
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
    fn absolute_links_in_parents_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var-run")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let sys = System::new(&root).unwrap();
        assert_eq!(
            sys.host_path(Path::new("/var-run/x.pid")).unwrap(),
            root.join("run/x.pid")
        );
        assert_eq!(
            sys.host_path(Path::new("/up/etc/passwd")).unwrap(),
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
