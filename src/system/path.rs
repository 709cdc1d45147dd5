//! Resolving managed paths: every parent walked from an open descriptor of the root, links
//! followed as a chroot would and only when root controls them, the parent kept open.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::{System, SystemError};

impl System {
    /// Where the managed absolute `path` is on this machine. Parent directories are resolved
    /// one component at a time from an open descriptor of the root, as a chroot would (an
    /// absolute link target restarts at the root, `..` stops at it), and the parent stays
    /// pinned by its descriptor: the returned path goes through `/proc/self/fd`, so swapping
    /// a directory on the way for a link after this check changes nothing. The last component
    /// is not followed: converge manages the path itself, whatever is there.
    pub(crate) fn host_path(&self, path: &Path) -> Result<HostPath, SystemError> {
        let rel = relative_components(path)?;
        let Some((last, parents)) = rel.split_last() else {
            return Err(SystemError::BadPath(path.to_path_buf()));
        };
        let parent = path.parent().unwrap_or(Path::new("/"));
        let walked = match self.parents.nearest(parent) {
            Some(cached) => self.resolve_dir(path, parents, Some(cached))?,
            None => None,
        };
        let walked = match walked {
            Some(w) => w,
            None => self
                .resolve_dir(path, parents, None)?
                .expect("a walk from the root never needs another"),
        };
        let dir = match walked {
            Walked::Pinned(d) => {
                self.parents.insert(parent.to_path_buf(), d.clone());
                d
            }
            // A missing (or non-directory) component: nothing below it exists, so the
            // lexical path is as good as any; operations fail as they should.
            Walked::Missing(d, rest) => {
                return Ok(HostPath {
                    path: d.proc_path().join(&rest).join(last),
                    shown: d.shown.join(&rest).join(last),
                    dir: d,
                    at: None,
                })
            }
        };
        Ok(HostPath {
            path: dir.proc_path().join(last),
            shown: dir.shown.join(last),
            dir,
            at: Some(last.clone()),
        })
    }

    /// Walks to the directory holding `path`, whose parent components are `parents`: from
    /// the root, or from a cached ancestor that covers the first `covered` of them. Each
    /// directory passed before any link is cached under its own path. `None` when a link
    /// leads above the cached ancestor (an absolute target, or `..` past it): only a walk
    /// from the root knows where that is.
    fn resolve_dir(
        &self,
        path: &Path,
        parents: &[std::ffi::OsString],
        from: Option<(usize, PinnedDir)>,
    ) -> Result<Option<Walked>, SystemError> {
        let err = |e: nix::errno::Errno| SystemError::io(path, e.into());
        let (covered, start) = match from {
            Some(cached) => cached,
            None => {
                let root =
                    PinnedDir::open_root(&self.root).map_err(|e| SystemError::io(path, e))?;
                self.parents.insert(PathBuf::from("/"), root.clone());
                (0, root)
            }
        };
        let from_root = covered == 0;
        let mut stack = vec![start];
        let mut pending: Vec<std::ffi::OsString> =
            parents[covered..].iter().rev().cloned().collect();
        // The path of the top of the stack as managed paths spell it, until a link is followed.
        let mut lexical = Some(
            std::iter::once(std::ffi::OsStr::new("/"))
                .chain(parents[..covered].iter().map(|p| p.as_os_str()))
                .collect::<PathBuf>(),
        );
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                if stack.len() > 1 {
                    stack.pop();
                } else if !from_root {
                    return Ok(None);
                }
                continue;
            }
            let cur = stack.last().expect("the start stays").clone();
            let st = match nix::sys::stat::fstatat(
                cur.fd(),
                part.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                Err(nix::errno::Errno::ENOENT) => {
                    let rest: PathBuf = std::iter::once(part)
                        .chain(pending.into_iter().rev())
                        .collect();
                    return Ok(Some(Walked::Missing(cur, rest)));
                }
                Err(e) => return Err(err(e)),
            };
            let kind = st.st_mode & nix::libc::S_IFMT;
            if kind == nix::libc::S_IFLNK {
                let dir_uid = nix::sys::stat::fstat(cur.fd()).map_err(err)?.st_uid;
                unsafe_transition(path, &cur.shown.join(&part), st.st_uid, dir_uid)?;
                hops += 1;
                if hops > 40 {
                    return Err(SystemError::Escapes(path.to_path_buf()));
                }
                lexical = None;
                let target = nix::fcntl::readlinkat(cur.fd(), part.as_os_str()).map_err(err)?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    if !from_root {
                        return Ok(None);
                    }
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
                if let Some(at) = &mut lexical {
                    at.push(&part);
                    self.parents.insert(at.clone(), next.clone());
                }
                stack.push(next);
            } else {
                let rest: PathBuf = std::iter::once(part)
                    .chain(pending.into_iter().rev())
                    .collect();
                return Ok(Some(Walked::Missing(cur, rest)));
            }
        }
        Ok(Some(Walked::Pinned(stack.pop().expect("the start stays"))))
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
        Ok(Self::open_at(
            nix::fcntl::AT_FDCWD,
            root,
            root.to_path_buf(),
            false,
        )?)
    }

    /// The subdirectory `name`; refuses a link swapped in since it was looked at.
    fn open_child(&self, name: &std::ffi::OsStr) -> nix::Result<PinnedDir> {
        Self::open_at(self.fd(), name, self.shown.join(name), true)
    }

    fn open_at<P: ?Sized + nix::NixPath>(
        dir: std::os::fd::BorrowedFd<'_>,
        name: &P,
        shown: PathBuf,
        nofollow: bool,
    ) -> nix::Result<PinnedDir> {
        use nix::fcntl::OFlag;
        let mut flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        if nofollow {
            flags |= OFlag::O_NOFOLLOW;
        }
        let fd = nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::empty())?;
        Ok(PinnedDir {
            fd: std::sync::Arc::new(fd),
            shown,
        })
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&*self.fd)
    }

    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&*self.fd)
        ))
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
    /// Held open so the parent cannot be swapped while the path is in use.
    dir: PinnedDir,
    /// The open parent and the last component, when every parent exists.
    at: Option<std::ffi::OsString>,
}

impl HostPath {
    /// The open parent directory and the name in it, for `*at` system calls (cheaper than a
    /// walk through `/proc/self/fd` on every call).
    pub fn at(&self) -> Option<(std::os::fd::BorrowedFd<'_>, &std::ffi::OsStr)> {
        self.at
            .as_ref()
            .map(|name| (self.dir.fd(), name.as_os_str()))
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
    #[ignore = "needs root (container tier, scripts/test)"]
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
