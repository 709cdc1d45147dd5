//! Where a snapshot looks for files by default, and what it keeps in places that hold more
//! than configuration: /etc, /usr/local, /opt and user crontabs whole (up to the caps), /srv's
//! configuration files, and the access and shell files of /root and each home.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is recorded under one path of the default scope. Every one of them is capped
/// ([`MAX_ENTRIES`], [`MAX_READ`]); /etc, and any `--path` given, are recorded whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Everything, up to the caps.
    Capped,
    /// Directories and the files whose name says they configure something; the rest is
    /// data (web roots, uploads, databases) and is not recorded.
    Configuration,
    /// One home directory (/root): its `.ssh/` access files and shell rc files.
    Home,
    /// A directory of homes (/home): each one as [`Selection::Home`].
    Homes,
}

/// The default scope: paths and how each is recorded (`None`: whole, as always for /etc).
pub(crate) const DEFAULT_SCOPE: &[(&str, Option<Selection>)] = &[
    ("/etc", None),
    ("/usr/local", Some(Selection::Capped)),
    ("/opt", Some(Selection::Capped)),
    ("/srv", Some(Selection::Configuration)),
    ("/var/spool/cron/crontabs", Some(Selection::Capped)),
    ("/root", Some(Selection::Home)),
    ("/home", Some(Selection::Homes)),
];

/// Entries recorded below one capped path at most; past it the walk stops there, says so,
/// and the snapshot notes it (`host.capped`).
pub const MAX_ENTRIES: usize = 20_000;

/// Files larger than this under a capped path are recorded by size only, never read:
/// configuration is small, and hashing a vendor's binaries and tarballs in /opt and
/// /usr/local would cost most of a snapshot's time.
pub const MAX_READ: u64 = 1024 * 1024;

/// In a home: the files that say who may log in and how shells start.
const HOME_FILES: &[&str] = &[
    ".profile",
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".bash_aliases",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".cshrc",
    ".tcshrc",
    ".kshrc",
    ".forward",
];

/// In a home's `.ssh/`: who may log in, and how this account connects on. Keys and
/// `known_hosts` (which grows by itself) are not configuration.
const SSH_FILES: &[&str] = &["authorized_keys", "authorized_keys2", "config", "rc"];

/// Names of configuration files under /srv, by suffix or whole name.
const CONFIG_SUFFIXES: &[&str] = &[
    ".conf",
    ".cfg",
    ".cnf",
    ".ini",
    ".toml",
    ".yaml",
    ".yml",
    ".json",
    ".env",
    ".properties",
    ".service",
    ".timer",
];
const CONFIG_NAMES: &[&str] = &[".env", ".htaccess", "Caddyfile", "Dockerfile", "Procfile"];

/// Directory names whose content is never configuration: caches, logs, build output,
/// version control. The walk does not enter them under a selective path.
const NOISE_DIRS: &[&str] = &[
    "__pycache__",
    ".cache",
    "cache",
    ".git",
    ".svn",
    ".hg",
    "node_modules",
    "log",
    "logs",
    "tmp",
    ".tmp",
];

impl Selection {
    /// The name the JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::Capped => "capped",
            Selection::Configuration => "configuration",
            Selection::Home => "home",
            Selection::Homes => "homes",
        }
    }

    /// Whether `rel` (the path below the selective start, as components) is recorded, and
    /// whether a directory there is entered.
    pub(crate) fn admits(self, rel: &[&str], is_dir: bool) -> (bool, bool) {
        let Some(last) = rel.last() else {
            // The start itself; a home belongs to its user (`[[user]]` makes it).
            return (
                matches!(self, Selection::Capped | Selection::Configuration),
                true,
            );
        };
        match self {
            _ if is_dir && NOISE_DIRS.contains(last) => (false, false),
            Selection::Capped => (true, true),
            Selection::Configuration if is_dir => (true, true),
            Selection::Configuration => (is_configuration(last), false),
            Selection::Home => home(rel, is_dir),
            Selection::Homes => match rel {
                [_] => (false, is_dir),
                [_, rest @ ..] => home(rest, is_dir),
                [] => unreachable!("handled above"),
            },
        }
    }
}

/// Within one home: `.ssh/` and its access files, and the shell rc files.
fn home(rel: &[&str], is_dir: bool) -> (bool, bool) {
    match rel {
        [] => (false, true),
        [".ssh"] => (is_dir, is_dir),
        [".ssh", name] => (!is_dir && SSH_FILES.contains(name), false),
        [name] => (!is_dir && HOME_FILES.contains(name), false),
        _ => (false, false),
    }
}

fn is_configuration(name: &str) -> bool {
    CONFIG_NAMES.contains(&name) || CONFIG_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// A snapshot's scope as recorded: its paths, and how the selective ones were recorded.
pub(crate) struct Scope<'s> {
    paths: &'s [String],
    selected: &'s BTreeMap<String, Selection>,
}

impl<'s> Scope<'s> {
    pub(crate) fn new(paths: &'s [String], selected: &'s BTreeMap<String, Selection>) -> Self {
        Scope { paths, selected }
    }

    /// Whether a snapshot with this scope would have recorded `path` (of a directory or
    /// not) had it been there.
    pub(crate) fn covers(&self, path: &str, is_dir: bool) -> bool {
        self.paths.iter().any(|start| {
            let Some(rel) = below(Path::new(path), Path::new(start)) else {
                return false;
            };
            match self.selected.get(start) {
                None => true,
                Some(sel) => {
                    // Every directory on the way must have been entered.
                    (0..rel.len()).all(|i| sel.admits(&rel[..i], true).1)
                        && sel.admits(&rel, is_dir).0
                }
            }
        })
    }
}

/// `path`'s components below `start`, when it is `start` or lies under it.
pub(crate) fn below<'p>(path: &'p Path, start: &Path) -> Option<Vec<&'p str>> {
    let rest = path.strip_prefix(start).ok()?;
    rest.components()
        .map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect()
}

/// The default scope's paths, and the selective ones among them.
pub(crate) fn defaults() -> (Vec<PathBuf>, BTreeMap<PathBuf, Selection>) {
    let paths = DEFAULT_SCOPE
        .iter()
        .map(|(p, _)| PathBuf::from(p))
        .collect();
    let selected = DEFAULT_SCOPE
        .iter()
        .filter_map(|(p, s)| s.map(|s| (PathBuf::from(p), s)))
        .collect();
    (paths, selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(path: &str, is_dir: bool) -> bool {
        let paths: Vec<String> = DEFAULT_SCOPE.iter().map(|(p, _)| p.to_string()).collect();
        let selected: BTreeMap<String, Selection> = DEFAULT_SCOPE
            .iter()
            .filter_map(|(p, s)| s.map(|s| (p.to_string(), s)))
            .collect();
        Scope::new(&paths, &selected).covers(path, is_dir)
    }

    #[test]
    fn homes_keep_access_and_shell_files_only() {
        assert!(covers("/root/.ssh", true));
        assert!(covers("/root/.ssh/authorized_keys", false));
        assert!(covers("/root/.bashrc", false));
        assert!(!covers("/root/.ssh/id_ed25519", false));
        assert!(!covers("/root/.ssh/known_hosts", false));
        assert!(!covers("/root/.bash_history", false));
        assert!(!covers("/root/src/x.c", false));
        assert!(
            !covers("/root", true),
            "the home itself belongs to its user"
        );
        assert!(covers("/home/deploy/.ssh/authorized_keys", false));
        assert!(covers("/home/deploy/.profile", false));
        assert!(!covers("/home/deploy", true));
        assert!(!covers("/home", true));
        assert!(!covers("/home/deploy/.cache/pip/x", false));
    }

    #[test]
    fn srv_keeps_configuration_not_data() {
        assert!(covers("/srv/app", true));
        assert!(covers("/srv/app/config.yaml", false));
        assert!(covers("/srv/app/.env", false));
        assert!(covers("/srv/www/site/nginx.conf", false));
        assert!(!covers("/srv/www/site/index.html", false));
        assert!(!covers("/srv/db/base/16384/1259", false));
        assert!(!covers("/srv/app/node_modules/x/package.json", false));
        assert!(!covers("/srv/app/logs", true));
    }

    #[test]
    fn the_rest_is_whole_but_for_noise_directories() {
        assert!(covers("/etc/ssh/sshd_config", false));
        assert!(covers("/etc/app/cache/x", false), "/etc is recorded whole");
        assert!(covers("/usr/local/bin/backup.sh", false));
        assert!(covers("/opt/app/etc/app.conf", false));
        assert!(!covers("/opt/app/lib/__pycache__/x.pyc", false));
        assert!(covers("/var/spool/cron/crontabs/root", false));
        assert!(!covers("/var/lib/dpkg/status", false));
        assert!(!covers("/etcetera/x", false));
    }
}
