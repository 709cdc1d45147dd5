//! The only code that touches the host. Everything is resolved under a root directory.
//!
//! Reading goes through [`System`]; writing needs a [`Host`], which only the engine can
//! obtain, and only in apply mode, so a check run has no way to change anything.
//!
//! Services and packages go through the [`ServiceManager`] and [`PackageManager`] seams, so
//! resources never name systemctl, apt-get or dnf; the backends are [`systemd`], and [`apt`]
//! or [`dnf`] as the tree's os-release says.

pub mod accounts;
pub mod apt;
pub mod command;
pub mod dnf;
pub mod dpkg_inventory;
#[cfg(test)]
pub mod fake;
pub mod fs;
pub mod modalias;
pub mod modules;
pub mod nftables;
pub mod os_release;
pub mod packages;
mod parent_cache;
pub mod path;
pub mod process;
pub mod procfs;
pub mod rpm_evr;
pub mod services;
pub mod sysfs;
pub mod systemd;
pub mod timeouts;
pub mod tree_file;
pub mod users;
pub mod walk;

use std::io;
use std::path::{Path, PathBuf};

pub use accounts::Accounts;
pub use fs::Host;
pub use packages::PackageManager;
pub use path::{HostPath, PinnedDir};
pub use services::ServiceManager;
pub use timeouts::Timeouts;

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
    /// /proc is not mounted (a bare chroot): managed paths are reached through
    /// /proc/self/fd, so nothing could be written safely.
    #[error("/proc is not mounted ({0}): converge reaches managed files through /proc/self/fd, so that a directory swapped for a link during a run is never followed. Mount it (mount -t proc proc /proc), or to build an image run converge outside it with --root DIR instead of inside a chroot")]
    NoProc(String),
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
    /// The host cannot do what was asked (a tool or plugin it lacks).
    #[error("{0}")]
    Unsupported(String),
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
    /// A stable name for what went wrong (see [`crate::resource::ResourceError::kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            SystemError::Root { .. } => "root",
            SystemError::BadPath(_) => "bad_path",
            SystemError::UnsafeLink { .. } => "unsafe_link",
            SystemError::Escapes(_) => "escapes_root",
            SystemError::NotLive(_) => "not_live",
            SystemError::NoProc(_) => "no_proc",
            SystemError::NoSystemd(_) => "no_systemd",
            SystemError::Spawn { .. } => "spawn_failed",
            SystemError::Command { .. } => "command_failed",
            SystemError::Unsupported(_) => "unsupported",
            SystemError::Timeout { .. } => "timeout",
            SystemError::Io { .. } => "io",
        }
    }

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
    // Resolved parent directories, bounded. Any write through `Host` clears it, since a write
    // may replace a link; a no-op run resolves each directory about once.
    parents: parent_cache::ParentCache,
    // Directories (device, inode) this run has swept of dead runs' temp files.
    swept: std::sync::Mutex<std::collections::HashSet<(u64, u64)>>,
    packages: Box<dyn PackageManager>,
    services: Box<dyn ServiceManager>,
    timeouts: Timeouts,
}

impl System {
    /// A view of the tree at `root` (`/` for the live host), with systemd and the package
    /// manager of the tree's distribution (apt or dnf).
    pub fn new(root: &Path) -> Result<System, SystemError> {
        System::with_managers(root, packages::for_tree(root), Box::new(systemd::Systemd))
    }

    /// A view of the tree at `root` whose packages and services go to the given managers.
    pub(crate) fn with_managers(
        root: &Path,
        packages: Box<dyn PackageManager>,
        services: Box<dyn ServiceManager>,
    ) -> Result<System, SystemError> {
        proc_mounted()?;
        Ok(System {
            root: canonical_root(root)?,
            accounts: Default::default(),
            parents: parent_cache::ParentCache::new(),
            swept: Default::default(),
            packages,
            services,
            timeouts: Timeouts::default(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How long each kind of external command may run.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Sets the deadlines of external commands (agent.toml's `[timeouts]`).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// The package manager.
    pub fn packages(&self) -> &dyn PackageManager {
        &*self.packages
    }

    /// The service manager.
    pub fn services(&self) -> &dyn ServiceManager {
        &*self.services
    }

    /// True when converging the running machine rather than a tree.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Forgets resolved parents after the tree changed.
    pub(crate) fn forget_paths(&self) {
        self.parents.clear();
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
    pub(crate) fn forget_accounts(&self) {
        if let Ok(mut g) = self.accounts.write() {
            *g = None;
        }
    }

    /// The writing handle; only the engine holds an [`Applying`].
    pub fn host(&self, _applying: &Applying) -> Host<'_> {
        Host::new(self)
    }
}

/// Proof that a plan is being applied: [`System::host`] wants one, so nothing outside an
/// apply run can get a writing handle, and a check cannot write by mistake.
///
/// It lives beside the [`Host`] it guards, so `system` needs nothing from the layers above
/// it. Rust cannot let only the engine (a sibling module) call a constructor, so the
/// constructors are `pub(crate)`, which keeps every other crate out, and `tests/layers.rs`
/// fails when one is called outside `engine` (or this module's own tests).
#[derive(Debug)]
pub struct Applying {
    _private: (),
}

impl Applying {
    /// For the engine alone, when it applies a plan or rolls one back.
    pub(crate) fn by_the_engine() -> Applying {
        Applying { _private: () }
    }

    /// For unit tests of the writing side of `system`.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Applying {
        Applying { _private: () }
    }
}

/// Refuses to start without /proc/self/fd, before the first file is looked at: every file
/// would fail on its own otherwise, and an apply would be half done.
fn proc_mounted() -> Result<(), SystemError> {
    match std::fs::metadata("/proc/self/fd") {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SystemError::NoProc(
            "/proc/self/fd is not a directory".into(),
        )),
        Err(e) => Err(SystemError::NoProc(format!("/proc/self/fd: {e}"))),
    }
}

fn canonical_root(root: &Path) -> Result<PathBuf, SystemError> {
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
    Ok(root)
}
