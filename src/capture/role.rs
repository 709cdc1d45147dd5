//! The captured role as data, and its TOML text: grouped by kind, one comment per entry saying
//! where its value came from.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use crate::resource::Kind;
use crate::snapshot::{FileType, Snapshot};

/// A kernel setting to set (live only: OLD's own sysctl.d files are captured as files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlItem {
    /// The dotted key.
    pub key: String,
    /// OLD's value, multi-value keys space-separated.
    pub value: String,
    /// Where the value came from.
    pub comment: String,
}

/// A group with its gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupItem {
    /// Name.
    pub name: String,
    /// gid on OLD.
    pub gid: u32,
    /// Below 1000: created as a system group.
    pub system: bool,
    /// Where it came from.
    pub comment: String,
}

/// A user with its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserItem {
    /// Login name.
    pub name: String,
    /// uid on OLD.
    pub uid: u32,
    /// Primary group name.
    pub group: String,
    /// Supplementary groups, when they are to be set.
    pub groups: Option<Vec<String>>,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// GECOS field.
    pub gecos: String,
    /// Below 1000: created as a system user.
    pub system: bool,
    /// Where it came from.
    pub comment: String,
}

/// A package to install (pinned and held at a version), or to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageItem {
    /// Name.
    pub name: String,
    /// The version to pin and hold.
    pub version: Option<String>,
    /// Remove it (`--remove-extra`).
    pub absent: bool,
    /// Captured apt configuration it needs first.
    pub after: Vec<String>,
    /// Where it came from.
    pub comment: String,
}

/// A directory with its owner, group and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryItem {
    /// Absolute path.
    pub path: String,
    /// Owner name.
    pub owner: String,
    /// Group name.
    pub group: String,
    /// Octal mode.
    pub mode: String,
    /// Where it came from.
    pub comment: String,
}

/// A file whose content is copied into `files/ROLE/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileItem {
    /// Absolute path.
    pub path: String,
    /// Owner name.
    pub owner: String,
    /// Group name.
    pub group: String,
    /// Octal mode.
    pub mode: String,
    /// OLD's content.
    pub content: Vec<u8>,
    /// Not world-readable on OLD: never shown in diffs.
    pub sensitive: bool,
    /// Where it came from.
    pub comment: String,
}

/// A symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkItem {
    /// Absolute path.
    pub path: String,
    /// Target as stored on OLD.
    pub target: String,
    /// Where it came from.
    pub comment: String,
}

/// A service's enablement and, when both hosts ran systemd, whether it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceItem {
    /// Name without `.service`.
    pub name: String,
    /// Enabled at boot.
    pub enabled: Option<bool>,
    /// Masked.
    pub masked: Option<bool>,
    /// `running` or `stopped`.
    pub state: Option<&'static str>,
    /// Where it came from.
    pub comment: String,
}

/// Everything a capture decided, ready to be written.
#[derive(Debug, Clone, Default)]
pub struct CapturedRole {
    /// The role's name.
    pub name: String,
    /// How OLD is named in comments.
    pub old_name: String,
    /// How NEW is named in comments (`the defaults` without NEW).
    pub new_name: String,
    header: Vec<String>,
    /// What was seen but not captured, and why.
    pub notes: Vec<String>,
    /// `[sysctl]`.
    pub sysctl: Vec<SysctlItem>,
    /// `[[group]]`.
    pub groups: Vec<GroupItem>,
    /// `[[user]]`.
    pub users: Vec<UserItem>,
    /// `[[package]]`.
    pub packages: Vec<PackageItem>,
    /// `[[directory]]`.
    pub directories: Vec<DirectoryItem>,
    /// `[[file]]`.
    pub files: Vec<FileItem>,
    /// `[[symlink]]`.
    pub symlinks: Vec<SymlinkItem>,
    /// `[[absent]]`: path and comment.
    pub absent: Vec<(String, String)>,
    /// `[[service]]`.
    pub services: Vec<ServiceItem>,
}

/// `old.json (host db1, taken 2026-01-02T03:04:05Z)`.
fn described(s: &Snapshot, file: &str) -> String {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.host.taken);
    let host = if s.host.hostname.is_empty() {
        s.host.root.clone()
    } else {
        s.host.hostname.clone()
    };
    format!(
        "{file} (host {host}, taken {})",
        humantime::format_rfc3339_seconds(when)
    )
}

/// How comments name the two sides: their host names, else their file names, else OLD/NEW.
fn labels(old: (&Snapshot, &str), new: Option<(&Snapshot, &str)>) -> (String, String) {
    let base = |f: &str| {
        Path::new(f)
            .file_name()
            .map_or_else(|| f.to_owned(), |n| n.to_string_lossy().into_owned())
    };
    let Some(new) = new else {
        let name = if old.0.host.hostname.is_empty() {
            base(old.1)
        } else {
            old.0.host.hostname.clone()
        };
        return (name, "the defaults".to_owned());
    };
    let (a, b) = (&old.0.host.hostname, &new.0.host.hostname);
    if !a.is_empty() && !b.is_empty() && a != b {
        return (a.clone(), b.clone());
    }
    let (a, b) = (base(old.1), base(new.1));
    if a != b {
        (a, b)
    } else {
        ("OLD".to_owned(), "NEW".to_owned())
    }
}

impl CapturedRole {
    pub(super) fn new(
        name: &str,
        old: &Snapshot,
        old_file: &str,
        against: Option<(&Snapshot, &str)>,
    ) -> CapturedRole {
        let (old_name, new_name) = labels((old, old_file), against);
        let mut header = vec![format!("Role \"{name}\", written by `converge capture`.")];
        header.push(format!("{old_name} (OLD): {}", described(old, old_file)));
        match against {
            Some((new, new_file)) => {
                header.push(format!("{new_name} (NEW): {}", described(new, new_file)));
                header.push(format!(
                    "It makes {new_name} match {old_name} on everything that differs. Values come"
                ));
                header.push(format!(
                    "from {old_name}; each comment says what {new_name} has instead."
                ));
            }
            None => {
                header.push(
                    "Against the defaults that can be known: edited conffiles, files no".into(),
                );
                header.push(
                    "package owns, held and manually installed packages, units enabled".into(),
                );
                header.push(
                    "beyond their presets, and accounts in adduser's range (1000-59999).".into(),
                );
            }
        }
        CapturedRole {
            name: name.to_owned(),
            old_name,
            new_name,
            header,
            ..CapturedRole::default()
        }
    }

    /// Records something seen but not captured.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// Whether anything is declared at all.
    pub fn is_empty(&self) -> bool {
        self.sysctl.is_empty()
            && self.groups.is_empty()
            && self.users.is_empty()
            && self.packages.is_empty()
            && self.directories.is_empty()
            && self.files.is_empty()
            && self.symlinks.is_empty()
            && self.absent.is_empty()
            && self.services.is_empty()
    }

    /// Adds the parent directories the captured paths need and orders packages after the
    /// captured apt configuration; sorts every list for a stable, readable file.
    pub(super) fn finish(&mut self, old: &Snapshot, new: Option<&Snapshot>) {
        let mut declared: BTreeSet<String> =
            self.directories.iter().map(|d| d.path.clone()).collect();
        let paths: Vec<String> = self
            .files
            .iter()
            .map(|f| f.path.clone())
            .chain(self.symlinks.iter().map(|s| s.path.clone()))
            .chain(self.directories.iter().map(|d| d.path.clone()))
            .collect();
        for path in paths {
            for parent in Path::new(&path).ancestors().skip(1) {
                let p = parent.to_string_lossy().into_owned();
                if p == "/" || declared.contains(&p) {
                    continue;
                }
                let Some(entry) = old.files.get(&p).filter(|e| e.kind == FileType::Directory)
                else {
                    continue;
                };
                let exists_on_new = match new {
                    Some(new) => new
                        .files
                        .get(&p)
                        .is_some_and(|e| e.kind == FileType::Directory),
                    // Without NEW: a package's directory is there once the package is.
                    None => entry.package.is_some(),
                };
                if exists_on_new {
                    continue;
                }
                declared.insert(p.clone());
                self.directories.push(DirectoryItem {
                    path: p,
                    owner: entry.owner.clone(),
                    group: entry.group.clone(),
                    mode: entry.mode.clone(),
                    comment: format!("parent of {path}; missing on {}", self.new_name),
                });
            }
        }
        let apt_files: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.path.starts_with("/etc/apt/"))
            .map(|f| format!("file:{}", f.path))
            .collect();
        for p in self.packages.iter_mut().filter(|p| !p.absent) {
            p.after = apt_files.clone();
        }
        self.sysctl.sort_by(|a, b| a.key.cmp(&b.key));
        self.groups.sort_by(|a, b| a.name.cmp(&b.name));
        self.users.sort_by(|a, b| a.name.cmp(&b.name));
        self.packages.sort_by(|a, b| a.name.cmp(&b.name));
        self.directories.sort_by(|a, b| a.path.cmp(&b.path));
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        self.symlinks.sort_by(|a, b| a.path.cmp(&b.path));
        self.absent.sort();
        self.services.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Where a captured file's content goes, relative to the source's `files/`.
    pub fn source_path(&self, path: &str) -> String {
        format!("{}/{}", self.name, path.trim_start_matches('/'))
    }

    /// The role as TOML for people.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            let _ = writeln!(out, "# {line}");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "#\n# Seen but not captured:");
            for n in &self.notes {
                let _ = writeln!(out, "#   - {}", one_line(n));
            }
        }
        if !self.sysctl.is_empty() {
            let _ = writeln!(
                out,
                "\n# Live values only (persist = false), as on {}: where {} keeps them across",
                self.old_name, self.old_name
            );
            let _ = writeln!(
                out,
                "# reboots, its sysctl.d file is captured below as a [[file]]."
            );
            let _ = writeln!(out, "[sysctl]");
            for s in &self.sysctl {
                let _ = writeln!(out, "# {}", one_line(&s.comment));
                let _ = writeln!(
                    out,
                    "{} = {{ value = {}, persist = false }}",
                    q(&s.key),
                    sysctl_value(&s.value)
                );
            }
        }
        for g in &self.groups {
            entry(&mut out, Kind::Group, &g.comment);
            let _ = writeln!(out, "name = {}\ngid = {}", q(&g.name), g.gid);
            if g.system {
                let _ = writeln!(out, "system = true");
            }
        }
        for u in &self.users {
            entry(&mut out, Kind::User, &u.comment);
            let _ = writeln!(
                out,
                "name = {}\nuid = {}\ngroup = {}",
                q(&u.name),
                u.uid,
                q(&u.group)
            );
            if let Some(groups) = &u.groups {
                let list: Vec<String> = groups.iter().map(|g| q(g)).collect();
                let _ = writeln!(out, "groups = [{}]", list.join(", "));
            }
            let _ = writeln!(
                out,
                "home = {}\nshell = {}\ncomment = {}",
                q(&u.home),
                q(&u.shell),
                q(&u.gecos)
            );
            if u.system {
                let _ = writeln!(out, "system = true");
            }
        }
        for p in &self.packages {
            entry(&mut out, Kind::Package, &p.comment);
            let _ = writeln!(out, "name = {}", q(&p.name));
            if p.absent {
                let _ = writeln!(out, "ensure = \"absent\"");
            }
            if let Some(v) = &p.version {
                let _ = writeln!(out, "version = {}", q(v));
            }
            if !p.after.is_empty() {
                let list: Vec<String> = p.after.iter().map(|a| q(a)).collect();
                let _ = writeln!(out, "after = [{}]", list.join(", "));
            }
        }
        for d in &self.directories {
            entry(&mut out, Kind::Directory, &d.comment);
            let _ = writeln!(
                out,
                "path = {}\nowner = {}\ngroup = {}\nmode = {}",
                q(&d.path),
                q(&d.owner),
                q(&d.group),
                q(&d.mode)
            );
        }
        for f in &self.files {
            entry(&mut out, Kind::File, &f.comment);
            let _ = writeln!(
                out,
                "path = {}\nsource = {}\nowner = {}\ngroup = {}\nmode = {}",
                q(&f.path),
                q(&self.source_path(&f.path)),
                q(&f.owner),
                q(&f.group),
                q(&f.mode)
            );
            if f.sensitive {
                let _ = writeln!(out, "sensitive = true");
            }
        }
        for s in &self.symlinks {
            entry(&mut out, Kind::Symlink, &s.comment);
            let _ = writeln!(out, "path = {}\ntarget = {}", q(&s.path), q(&s.target));
        }
        for (path, comment) in &self.absent {
            entry(&mut out, Kind::Absent, comment);
            let _ = writeln!(out, "path = {}", q(path));
        }
        for s in &self.services {
            entry(&mut out, Kind::Service, &s.comment);
            let _ = writeln!(out, "name = {}", q(&s.name));
            if let Some(m) = s.masked {
                let _ = writeln!(out, "masked = {m}");
            }
            if let Some(e) = s.enabled {
                let _ = writeln!(out, "enabled = {e}");
            }
            if let Some(state) = s.state {
                let _ = writeln!(out, "state = {}", q(state));
            }
        }
        out
    }
}

fn entry(out: &mut String, kind: Kind, comment: &str) {
    let _ = writeln!(out, "\n[[{kind}]]\n# {}", one_line(comment));
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Comments are one line each: a newline in a value would end the comment early.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Integers as integers, anything else (multi-value keys) as a string.
fn sysctl_value(v: &str) -> String {
    match v.parse::<i64>() {
        Ok(n) if n.to_string() == v => n.to_string(),
        _ => q(v),
    }
}
