//! The captured role as data, and its TOML text: grouped by kind, one comment per entry saying
//! where its value came from.

use std::collections::BTreeSet;
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
    /// OLD's cached .deb to install it from, when no source of OLD offers its version.
    pub deb: Option<PackageFileItem>,
}

/// A package file of OLD's apt cache, shipped in `files/ROLE/...` with the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFileItem {
    /// Its path on OLD, in apt's cache.
    pub path: String,
    /// Its bytes, read from OLD and checked against the snapshot's sha256.
    pub content: Vec<u8>,
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
    /// Services to restart or reload when it changes (`service:NAME`).
    pub notify: Vec<String>,
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
    /// A notification reloads it instead of restarting it.
    pub reload_on_notify: bool,
    /// Where it came from.
    pub comment: String,
}

/// A kernel module to keep loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelModuleItem {
    /// The module's name.
    pub name: String,
    /// Where it came from.
    pub comment: String,
}

/// A table of the nftables ruleset, managed whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftablesItem {
    /// `inet`, `ip`...
    pub family: String,
    /// The table's name.
    pub table: String,
    /// Its body as nft printed it on OLD.
    pub content: String,
    /// Where it came from.
    pub comment: String,
}

/// A guarded command that makes a captured file take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecItem {
    /// Its id in the role (`exec:NAME`).
    pub name: String,
    /// What it runs.
    pub command: String,
    /// Skipped while this guard succeeds.
    pub unless: String,
    /// The captured files it acts on.
    pub after: Vec<String>,
    /// Why it is there.
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
    /// What the role needs besides being applied (a reboot).
    pub after_apply: Vec<String>,
    /// `[sysctl]`.
    pub sysctl: Vec<SysctlItem>,
    /// `[sysfs]`: the same shape, keys relative to /sys.
    pub sysfs: Vec<SysctlItem>,
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
    /// `[[timer]]`.
    pub timers: Vec<super::TimerItem>,
    /// `[[exec]]`: what makes captured files take effect.
    pub execs: Vec<ExecItem>,
    /// `[[kernel_module]]`.
    pub kernel_modules: Vec<KernelModuleItem>,
    /// `[[nftables]]`.
    pub nftables: Vec<NftablesItem>,
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

    /// Says in the header what a captured item needs besides the apply.
    pub fn after_apply(&mut self, text: String) {
        self.after_apply.push(text);
    }

    /// Whether anything is declared at all.
    pub fn is_empty(&self) -> bool {
        self.sysctl.is_empty()
            && self.sysfs.is_empty()
            && self.groups.is_empty()
            && self.users.is_empty()
            && self.packages.is_empty()
            && self.directories.is_empty()
            && self.files.is_empty()
            && self.symlinks.is_empty()
            && self.absent.is_empty()
            && self.services.is_empty()
            && self.timers.is_empty()
            && self.execs.is_empty()
            && self.kernel_modules.is_empty()
            && self.nftables.is_empty()
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
        // Packages come after the captured apt configuration, and after the lists it
        // names were updated.
        let apt_update = self
            .execs
            .iter()
            .filter(|e| e.name == super::effects::APT_UPDATE)
            .map(|e| format!("exec:{}", e.name));
        let apt_first: Vec<String> = apt_files.into_iter().chain(apt_update).collect();
        for p in self.packages.iter_mut().filter(|p| !p.absent) {
            p.after = apt_first.clone();
        }
        self.sysctl.sort_by(|a, b| a.key.cmp(&b.key));
        self.sysfs.sort_by(|a, b| a.key.cmp(&b.key));
        self.groups.sort_by(|a, b| a.name.cmp(&b.name));
        self.users.sort_by(|a, b| a.name.cmp(&b.name));
        self.packages.sort_by(|a, b| a.name.cmp(&b.name));
        self.directories.sort_by(|a, b| a.path.cmp(&b.path));
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        self.symlinks.sort_by(|a, b| a.path.cmp(&b.path));
        self.absent.sort();
        self.services.sort_by(|a, b| a.name.cmp(&b.name));
        self.execs.sort_by(|a, b| a.name.cmp(&b.name));
        self.kernel_modules.sort_by(|a, b| a.name.cmp(&b.name));
        self.nftables
            .sort_by(|a, b| (&a.family, &a.table).cmp(&(&b.family, &b.table)));
    }

    /// A `[sysctl]` or `[sysfs]` table of live values, each with its comment.
    fn live_table(&self, items: &[SysctlItem], files: &str) -> toml_edit::Table {
        let mut table = toml_edit::Table::new();
        table.decor_mut().set_prefix(comments(&[
            "",
            &format!(
                "Live values only (persist = false), as on {}: where {} keeps them across",
                self.old_name, self.old_name
            ),
            &format!("reboots, {files}"),
        ]));
        for s in items {
            let mut value = toml_edit::InlineTable::new();
            value.insert("value", sysctl_value(&s.value));
            value.insert("persist", false.into());
            table.insert(&s.key, toml_edit::value(value));
            if let Some(mut key) = table.key_mut(&s.key) {
                key.leaf_decor_mut().set_prefix(comments(&[&s.comment]));
            }
        }
        table
    }

    /// Every file whose content goes into `files/`: the `[[file]]`s and the timers' units.
    pub fn contents(&self) -> impl Iterator<Item = &FileItem> {
        let units = self.timers.iter().flat_map(|t| [&t.timer, &t.service]);
        self.files.iter().chain(units)
    }

    /// Where a captured file's content goes, relative to the source's `files/`.
    pub fn source_path(&self, path: &str) -> String {
        format!("{}/{}", self.name, path.trim_start_matches('/'))
    }

    /// The role as TOML for people, written through a TOML writer so no value from a
    /// snapshot can end a string or a comment early and add a declaration of its own.
    pub fn to_toml(&self) -> String {
        let mut doc = toml_edit::DocumentMut::new();
        for (name, items, files) in [
            (
                "sysctl",
                &self.sysctl,
                "its sysctl.d file is captured below as a [[file]].",
            ),
            (
                "sysfs",
                &self.sysfs,
                "its tmpfiles.d files and udev rules are captured below as [[file]]s.",
            ),
        ] {
            if !items.is_empty() {
                doc.insert(name, toml_edit::Item::Table(self.live_table(items, files)));
            }
        }
        let mut kinds = Entries::default();
        for g in &self.groups {
            let t = kinds.push(Kind::Group, &g.comment);
            t.insert("name", toml_edit::value(&g.name));
            t.insert("gid", toml_edit::value(i64::from(g.gid)));
            if g.system {
                t.insert("system", toml_edit::value(true));
            }
        }
        for u in &self.users {
            let t = kinds.push(Kind::User, &u.comment);
            t.insert("name", toml_edit::value(&u.name));
            t.insert("uid", toml_edit::value(i64::from(u.uid)));
            t.insert("group", toml_edit::value(&u.group));
            if let Some(groups) = &u.groups {
                t.insert("groups", toml_edit::value(strings(groups)));
            }
            t.insert("home", toml_edit::value(&u.home));
            t.insert("shell", toml_edit::value(&u.shell));
            t.insert("comment", toml_edit::value(&u.gecos));
            if u.system {
                t.insert("system", toml_edit::value(true));
            }
        }
        for p in &self.packages {
            let t = kinds.push(Kind::Package, &p.comment);
            t.insert("name", toml_edit::value(&p.name));
            if p.absent {
                t.insert("ensure", toml_edit::value("absent"));
            }
            match (&p.deb, &p.version) {
                // The file is the version.
                (Some(deb), _) => {
                    t.insert("source", toml_edit::value(self.source_path(&deb.path)));
                }
                (None, Some(v)) => {
                    t.insert("version", toml_edit::value(v));
                }
                (None, None) => {}
            }
            if !p.after.is_empty() {
                t.insert("after", toml_edit::value(strings(&p.after)));
            }
        }
        for d in &self.directories {
            let t = kinds.push(Kind::Directory, &d.comment);
            t.insert("path", toml_edit::value(&d.path));
            t.insert("owner", toml_edit::value(&d.owner));
            t.insert("group", toml_edit::value(&d.group));
            t.insert("mode", toml_edit::value(&d.mode));
        }
        for f in &self.files {
            let source = self.source_path(&f.path);
            let t = kinds.push(Kind::File, &f.comment);
            t.insert("path", toml_edit::value(&f.path));
            t.insert("source", toml_edit::value(source));
            t.insert("owner", toml_edit::value(&f.owner));
            t.insert("group", toml_edit::value(&f.group));
            t.insert("mode", toml_edit::value(&f.mode));
            if f.sensitive {
                t.insert("sensitive", toml_edit::value(true));
            }
            if !f.notify.is_empty() {
                t.insert("notify", toml_edit::value(strings(&f.notify)));
            }
        }
        for s in &self.symlinks {
            let t = kinds.push(Kind::Symlink, &s.comment);
            t.insert("path", toml_edit::value(&s.path));
            t.insert("target", toml_edit::value(&s.target));
        }
        for (path, comment) in &self.absent {
            let t = kinds.push(Kind::Absent, comment);
            t.insert("path", toml_edit::value(path));
        }
        for s in &self.services {
            let t = kinds.push(Kind::Service, &s.comment);
            t.insert("name", toml_edit::value(&s.name));
            if let Some(m) = s.masked {
                t.insert("masked", toml_edit::value(m));
            }
            if let Some(e) = s.enabled {
                t.insert("enabled", toml_edit::value(e));
            }
            if let Some(state) = s.state {
                t.insert("state", toml_edit::value(state));
            }
            if s.reload_on_notify {
                t.insert("reload_on_notify", toml_edit::value(true));
            }
        }
        for m in &self.kernel_modules {
            let t = kinds.push(Kind::KernelModule, &m.comment);
            t.insert("name", toml_edit::value(&m.name));
        }
        for n in &self.nftables {
            let t = kinds.push(Kind::Nftables, &n.comment);
            t.insert("family", toml_edit::value(&n.family));
            t.insert("table", toml_edit::value(&n.table));
            t.insert("content", toml_edit::value(&n.content));
        }
        for e in &self.execs {
            let t = kinds.push(Kind::Exec, &e.comment);
            t.insert("name", toml_edit::value(&e.name));
            t.insert("command", toml_edit::value(&e.command));
            t.insert("unless", toml_edit::value(&e.unless));
            t.insert("after", toml_edit::value(strings(&e.after)));
        }
        for (kind, tables) in kinds.0 {
            doc.insert(kind.name(), toml_edit::Item::ArrayOfTables(tables));
        }
        if let Some(timers) = super::timers::tables(self) {
            doc.insert("timer", toml_edit::Item::ArrayOfTables(timers));
        }
        let mut header = self.header.clone();
        if !self.after_apply.is_empty() {
            header.push(String::new());
            header.push("After applying:".into());
            header.extend(self.after_apply.iter().map(|n| format!("  - {n}")));
        }
        if !self.notes.is_empty() {
            header.push(String::new());
            header.push("Seen but not captured:".into());
            header.extend(self.notes.iter().map(|n| format!("  - {n}")));
        }
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut out = comments(&header);
        out.push_str(&doc.to_string());
        out
    }
}

/// The `[[kind]]` arrays of a role, in the order they were first pushed.
#[derive(Default)]
struct Entries(Vec<(Kind, toml_edit::ArrayOfTables)>);

impl Entries {
    /// A new `[[kind]]` table, preceded by its comment.
    fn push(&mut self, kind: Kind, comment: &str) -> &mut toml_edit::Table {
        let at = match self.0.iter().position(|(k, _)| *k == kind) {
            Some(at) => at,
            None => {
                self.0.push((kind, toml_edit::ArrayOfTables::new()));
                self.0.len() - 1
            }
        };
        let mut table = toml_edit::Table::new();
        table.decor_mut().set_prefix(comments(&["", comment]));
        let tables = &mut self.0[at].1;
        tables.push(table);
        let last = tables.len() - 1;
        tables.get_mut(last).expect("just pushed")
    }
}

fn strings(list: &[String]) -> toml_edit::Array {
    list.iter().map(String::as_str).collect()
}

/// Comment lines (`# text`; an empty line for `""`), each made safe: a control character
/// from a snapshot (a newline in a host name) is escaped, so it cannot end the comment and
/// start a declaration.
pub(super) fn comments(lines: &[&str]) -> String {
    let mut out = String::new();
    for line in lines {
        if line.is_empty() {
            out.push('\n');
            continue;
        }
        out.push_str("# ");
        out.push_str(&escape_controls(line));
        out.push('\n');
    }
    out
}

/// `text` with every control character written as an escape (`\n`, `\u{1b}`).
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Integers as integers, anything else (multi-value keys) as a string.
fn sysctl_value(v: &str) -> toml_edit::Value {
    match v.parse::<i64>() {
        Ok(n) if n.to_string() == v => n.into(),
        _ => v.into(),
    }
}
