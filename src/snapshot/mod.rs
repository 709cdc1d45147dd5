//! A host's observable state as versioned JSON: kernel settings, packages, units, accounts and
//! files. Taken only through the observers in [`crate::system`], the same ones check and
//! apply use, so a role captured from a snapshot is in sync on its origin by construction.

mod accounts;
mod files;
mod packages;
mod runtime;
pub mod scope;
mod size;
mod sysctl;
mod sysfs;
mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diagnostics::{Diagnostic, Location};
use crate::system::os_release::OsRelease;
use crate::system::{System, SystemError};

pub use accounts::{GroupEntry, UserEntry};
pub use files::{FileEntry, FileType, CONTENT_LIMIT, DEFAULT_SECRETS};
pub use packages::{CachedDeb, PackageEntry};
pub use scope::Selection;
pub use size::MachineSize;
pub use sysctl::SysctlEntry;
pub use units::UnitEntry;

/// The `format` field every snapshot carries, so another JSON file is recognised as such.
pub(crate) const FORMAT: &str = "converge-snapshot";

/// The layout version this build writes and reads.
pub(crate) const VERSION: u32 = 1;

/// Everything a snapshot records about one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version, [`VERSION`].
    pub version: u32,
    /// Where and when it was taken.
    pub host: HostInfo,
    /// Every kernel parameter, by dotted key.
    pub sysctl: BTreeMap<String, SysctlEntry>,
    /// The modules the running kernel has loaded (built-in ones are the kernel's own).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub kernel_modules: std::collections::BTreeSet<String>,
    /// Tuned attributes under /sys by key; a disk's as `block/@LABEL/queue/ATTR`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysfs: BTreeMap<String, String>,
    /// The disk each label stands for: `root` (holds `/`), `disk1`... → kernel name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub disks: BTreeMap<String, String>,
    /// The loaded modules no admin loaded by hand, with why (a driver of the machine's own
    /// hardware, or needed by another loaded module): compare does not report them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kernel_modules_implied: BTreeMap<String, String>,
    /// The nftables ruleset of the namespace, by `FAMILY/TABLE`: each table's body as nft
    /// prints it. Absent when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables: Option<BTreeMap<String, String>>,
    /// Installed packages, by name (`NAME:ARCH` for foreign architectures).
    pub packages: BTreeMap<String, PackageEntry>,
    /// Unit files, by full unit name.
    pub units: BTreeMap<String, UnitEntry>,
    /// Users, by login name.
    pub users: BTreeMap<String, UserEntry>,
    /// Groups, by name.
    pub groups: BTreeMap<String, GroupEntry>,
    /// Files, directories and links under the snapshot's paths, by absolute path.
    pub files: BTreeMap<String, FileEntry>,
}

/// Where and when a snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// The host name (of the tree, under `--root`).
    pub hostname: String,
    /// The root that was observed.
    pub root: String,
    /// The running kernel's release (sysctl values come from it).
    pub kernel: String,
    /// The running kernel's command line (compared, never captured: the boot loader holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// The running machine's memory and CPUs, which the kernel sizes some settings from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<MachineSize>,
    /// Seconds since the epoch.
    pub taken: u64,
    /// The paths whose files were recorded.
    pub paths: Vec<String>,
    /// The `os.family` fact of the host (`debian`, `redhat`): package names and versions
    /// only compare within one family. Empty in snapshots taken before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os_family: String,
    /// Those of `paths` recorded selectively (homes, /srv's configuration) and capped; the
    /// others were recorded whole.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selected: BTreeMap<String, Selection>,
    /// The entry caps that were hit, each said in a sentence: what lies past them is not
    /// recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<String>,
    /// The secret patterns given on top of the defaults: a `live` side compared with this
    /// snapshot keeps the same files secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// What to record.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directories (or files) whose entries are recorded.
    pub paths: Vec<PathBuf>,
    /// Those of `paths` recorded selectively and capped ([`scope::DEFAULT_SCOPE`]).
    pub selected: BTreeMap<PathBuf, Selection>,
    /// More secret path patterns, on top of [`DEFAULT_SECRETS`].
    pub secrets: Vec<String>,
    /// Record the text of files that are not world-readable too (by default only their
    /// hash, size, mode and owner).
    pub include_private: bool,
}

impl Default for Options {
    fn default() -> Self {
        let (paths, selected) = scope::defaults();
        Options {
            paths,
            selected,
            secrets: Vec::new(),
            include_private: false,
        }
    }
}

/// Errors taking or reading a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Observing the host failed.
    #[error(transparent)]
    System(#[from] SystemError),
    /// A snapshot file could not be read.
    #[error("{path}: cannot read snapshot: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A snapshot file is not a snapshot this build understands.
    #[error(transparent)]
    Invalid(#[from] Diagnostic),
    /// A secret pattern does not parse.
    #[error("secret pattern '{pattern}': {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Longest path a snapshot may name, in bytes (PATH_MAX less its NUL).
pub(crate) const MAX_PATH: usize = 4095;
/// Longest name of one path component, in bytes (NAME_MAX).
pub(crate) const MAX_NAME: usize = 255;

/// Checks that `path` names one place on any host: absolute, every component a plain name
/// (no `.`, `..` or empty one), no NUL, within PATH_MAX and NAME_MAX. A snapshot is input
/// that may have been edited by anyone: capture writes files named after these paths, so a
/// `..` would reach out of the source tree. The error says what is wrong.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.contains('\0') {
        return Err("holds a NUL byte".into());
    }
    if path.len() > MAX_PATH {
        return Err(format!("is longer than {MAX_PATH} bytes"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("is not absolute".into());
    };
    if rest.is_empty() {
        return Err("is the root itself".into());
    }
    for part in rest.split('/') {
        match part {
            "" => return Err("has an empty component (`//` or a trailing `/`)".into()),
            "." | ".." => return Err(format!("has a `{part}` component")),
            _ if part.len() > MAX_NAME => {
                return Err(format!("has a component longer than {MAX_NAME} bytes"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Observes the host (or the tree) behind `sys`. Packages, units and files are read in
/// parallel: each waits mostly on its own tool or disk.
pub fn take(sys: &System, options: &Options) -> Result<Snapshot, SnapshotError> {
    let secrets = files::SecretMatcher::new(&options.secrets)?;
    let (sysctl, packages, units, files, accounts, nftables) = std::thread::scope(|s| {
        let packages = s.spawn(|| packages::observe(sys));
        let nftables = s.spawn(|| runtime::observe_nftables(sys));
        let units = s.spawn(|| units::observe(sys));
        let sysctl = s.spawn(|| sysctl::observe(sys));
        let files = files::observe(
            sys,
            &options.paths,
            &options.selected,
            &secrets,
            options.include_private,
        );
        let accounts = accounts::observe(sys);
        (
            sysctl
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            packages
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            units
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            files,
            accounts,
            nftables
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let loaded = crate::system::modules::running_kernel_modules()?;
    let (packages, conffiles) = packages?;
    let files::Walked {
        observed: mut files,
        capped,
    } = files?;
    files::mark_packaged(sys, &mut files, &conffiles, &options.paths)?;
    let files = files.0;
    let (users, groups) = accounts?;
    let (sysfs, disks) = sysfs::observe()?;
    Ok(Snapshot {
        format: FORMAT.to_owned(),
        version: VERSION,
        host: HostInfo {
            hostname: hostname(sys),
            root: sys.root().display().to_string(),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            cmdline: runtime::observe_cmdline(),
            size: size::observe(),
            taken: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            paths: options
                .paths
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            os_family: OsRelease::of_tree(sys.root()).family_name(),
            selected: options
                .selected
                .iter()
                .filter(|(p, _)| options.paths.contains(p))
                .map(|(p, s)| (p.display().to_string(), *s))
                .collect(),
            capped,
            secrets: options.secrets.clone(),
        },
        sysctl: sysctl?,
        kernel_modules_implied: runtime::observe_implied(&loaded),
        kernel_modules: loaded.into_keys().collect(),
        nftables,
        sysfs,
        disks,
        packages,
        units: units?,
        users,
        groups,
        files,
    })
}

/// Those of `paths` that are not there under the root (nor a link to follow): a
/// `--path` naming nothing is most likely a typo, and is said, not recorded as empty.
pub fn missing_paths(sys: &System, paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter(|p| matches!(sys.entry(p), Ok(crate::system::fs::Entry::Missing)))
        .cloned()
        .collect()
}

/// The tree's own name (its /etc/hostname) under `--root`, the kernel's on the live host.
fn hostname(sys: &System) -> String {
    if !sys.is_live() {
        return sys
            .read_file(Path::new("/etc/hostname"))
            .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
            .unwrap_or_default();
    }
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Snapshot {
    /// Pretty JSON with a final newline, as `converge snapshot` writes it.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a snapshot always serialises");
        text.push('\n');
        text
    }

    /// Parses a snapshot read from `file`; every problem is located in it.
    pub fn from_json(file: &Path, text: &str) -> Result<Snapshot, SnapshotError> {
        // The header first, so a snapshot of another version (or another JSON file) gets that
        // said instead of a complaint about some field deep inside.
        #[derive(Deserialize)]
        struct Header {
            format: Option<serde_json::Value>,
            version: Option<serde_json::Value>,
        }
        let located = |e: serde_json::Error, what: &str| {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            Diagnostic::at(
                Location {
                    file: file.into(),
                    line: e.line().max(1),
                    col: e.column().max(1),
                },
                text,
                format!("{what}: {message}"),
            )
        };
        let header: Header = serde_json::from_str(text)
            .map_err(|e| located(e, "not a converge snapshot (expected a JSON object)"))?;
        let at_start = |message: String| {
            Diagnostic::at(
                Location {
                    file: file.into(),
                    line: 1,
                    col: 1,
                },
                text,
                message,
            )
        };
        if header.format.as_ref().and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(at_start(format!(
                "not a converge snapshot: expected \"format\": \"{FORMAT}\" (make one with `converge snapshot -o FILE`)"
            ))
            .into());
        }
        let version = header.version.as_ref().and_then(|v| v.as_u64());
        if version != Some(u64::from(VERSION)) {
            let found = header
                .version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into());
            return Err(at_start(format!(
                "snapshot version {found} is not supported: this converge reads version {VERSION}"
            ))
            .into());
        }
        let snap: Snapshot =
            serde_json::from_str(text).map_err(|e| located(e, "invalid snapshot"))?;
        for path in snap.files.keys() {
            if let Err(why) = check_path(path) {
                // The key's own line: serde_json keeps no positions once parsed.
                let quoted = serde_json::to_string(path).expect("a string serialises");
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with(&format!("{quoted}:")))
                    .map_or(1, |i| i + 1);
                let col = text
                    .lines()
                    .nth(line - 1)
                    .map_or(1, |l| l.len() - l.trim_start().len() + 1);
                let location = Location {
                    file: file.into(),
                    line,
                    col,
                };
                return Err(Diagnostic::at(
                    location,
                    text,
                    format!(
                        "invalid snapshot: file path {quoted} {why}: expected a clean absolute path"
                    ),
                )
                .into());
            }
        }
        Ok(snap)
    }

    /// Marks the files matching `patterns` (and the default ones) secret, their text
    /// dropped: `--secret` holds for a snapshot read from a file as for one taken now.
    pub fn keep_secret(&mut self, patterns: &[String]) -> Result<(), SnapshotError> {
        let matcher = files::SecretMatcher::new(patterns)?;
        for (path, entry) in &mut self.files {
            if matcher.is_secret(Path::new(path)) {
                entry.secret = true;
                entry.content = None;
            }
        }
        Ok(())
    }

    /// Makes a path that is secret in either snapshot secret in both, its text dropped:
    /// a `--secret` given for one side holds on the other, whichever was taken how.
    pub fn share_secrets(a: &mut Snapshot, b: &mut Snapshot) {
        let secret: Vec<String> = a
            .files
            .iter()
            .chain(b.files.iter())
            .filter(|(_, e)| e.secret)
            .map(|(p, _)| p.clone())
            .collect();
        for path in secret {
            for side in [&mut *a, &mut *b] {
                if let Some(e) = side.files.get_mut(&path) {
                    e.secret = true;
                    e.content = None;
                }
            }
        }
    }

    /// Whether any file's text is recorded although the file is not world-readable.
    pub fn has_private_content(&self) -> bool {
        self.files
            .values()
            .any(|f| f.private && f.content.is_some())
    }

    /// Reads and parses the snapshot file at `path`.
    pub fn load(path: &Path) -> Result<Snapshot, SnapshotError> {
        let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Snapshot::from_json(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Snapshot {
        Snapshot {
            format: FORMAT.into(),
            version: VERSION,
            host: HostInfo {
                hostname: "h".into(),
                root: "/".into(),
                kernel: "6.1".into(),
                cmdline: None,
                size: None,
                taken: 1,
                paths: vec!["/etc".into()],
                os_family: String::new(),
                selected: BTreeMap::new(),
                capped: Vec::new(),
                secrets: Vec::new(),
            },
            sysctl: BTreeMap::new(),
            kernel_modules: Default::default(),
            sysfs: BTreeMap::new(),
            disks: BTreeMap::new(),
            kernel_modules_implied: BTreeMap::new(),
            nftables: None,
            packages: BTreeMap::new(),
            units: BTreeMap::new(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            files: BTreeMap::new(),
        }
    }

    #[test]
    fn only_clean_absolute_paths_pass() {
        assert_eq!(check_path("/etc/nginx/nginx.conf"), Ok(()));
        assert_eq!(check_path("/etc/a b\"c"), Ok(()));
        let why = |p: &str| check_path(p).unwrap_err();
        assert_eq!(why("etc/x"), "is not absolute");
        assert_eq!(why("/"), "is the root itself");
        assert_eq!(why("/etc/../x"), "has a `..` component");
        assert_eq!(why("/etc/./x"), "has a `.` component");
        assert_eq!(
            why("/etc//x"),
            "has an empty component (`//` or a trailing `/`)"
        );
        assert_eq!(
            why("/etc/x/"),
            "has an empty component (`//` or a trailing `/`)"
        );
        assert_eq!(why("/etc/\0"), "holds a NUL byte");
        assert_eq!(
            why(&format!("/{}", "a".repeat(256))),
            "has a component longer than 255 bytes"
        );
        assert_eq!(why(&"/aaaa".repeat(1000)), "is longer than 4095 bytes");
    }

    #[test]
    fn round_trips_through_json() {
        let s = empty();
        let back = Snapshot::from_json(Path::new("s.json"), &s.to_json()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_files_are_located() {
        let f = Path::new("old.json");
        let e = Snapshot::from_json(
            f,
            "{\n  \"format\": \"converge-snapshot\",\n  \"version\": 1,\n  oops\n}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("old.json:4:3: not a converge snapshot"),
            "{e}"
        );
        let e = Snapshot::from_json(f, "{\"format\": \"x\"}").unwrap_err();
        assert!(
            e.to_string()
                .contains("expected \"format\": \"converge-snapshot\""),
            "{e}"
        );
        let e = Snapshot::from_json(f, "{\"format\": \"converge-snapshot\", \"version\": 9}")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("snapshot version 9 is not supported"),
            "{e}"
        );
        let mut text = empty().to_json();
        text = text.replace("\"kernel\"", "\"kernal\"");
        let e = Snapshot::from_json(f, &text).unwrap_err();
        assert!(e.to_string().contains("unknown field `kernal`"), "{e}");
        assert!(e.to_string().starts_with("old.json:"), "{e}");
    }
}
