//! Turning what OLD has into a role: every difference from NEW (or, without NEW, from the
//! defaults that can be known) becomes a declaration that makes NEW match OLD. The values
//! come from OLD's snapshot, taken by the same observers check uses, so the role is in sync
//! on OLD by construction.

mod accounts;
mod effects;
mod files;
mod packages;
mod role;
mod runtime;
mod services;
mod sysfs;
mod timers;

use std::path::{Path, PathBuf};

use crate::compare::{self, Difference, IgnoreList, Kind, Presence};
use crate::snapshot::Snapshot;

pub use role::{
    CapturedRole, DirectoryItem, ExecItem, FileItem, GroupItem, KernelModuleItem, NftablesItem,
    PackageFileItem, PackageItem, ServiceItem, SymlinkItem, SysctlItem, UserItem,
};
pub use timers::TimerItem;

/// What to capture.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The role's name (`web`, `db/pg`).
    pub role: &'a str,
    /// OLD: the host to copy from, and how to name it in comments.
    pub from: (&'a Snapshot, &'a str),
    /// NEW: the host to make match; `None` captures what differs from the known defaults.
    pub against: Option<(&'a Snapshot, &'a str)>,
    /// Also remove packages (and files) NEW has that OLD lacks.
    pub remove_extra: bool,
    /// What compare would not report either.
    pub ignore: &'a IgnoreList,
}

/// Errors capturing a role.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The role would be written outside a source tree's `roles/`.
    #[error("{0}: the role must be written as SRC/roles/NAME.toml, so its files can go to SRC/files/NAME/")]
    NotInRoles(PathBuf),
    /// The role name does not match the file it goes to.
    #[error("--role {role} does not match {path} (expected SRC/roles/{role}.toml)")]
    NameMismatch {
        /// The name given.
        role: String,
        /// The output path.
        path: PathBuf,
    },
    /// The role or its files are there already, maybe edited by hand.
    #[error("{0} exists (maybe edited by hand since it was captured): pass --force to replace it")]
    Exists(PathBuf),
    /// Something other than a directory (a link, planted or not) is where capture writes.
    #[error("{0} is not a directory (a link or a file): capture writes only into real directories under the source")]
    NotADirectory(PathBuf),
    /// A path from the snapshot that no file may be written under.
    #[error("file path {path:?} {why}: refusing to write anything")]
    BadPath {
        /// The path as the snapshot has it.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// OLD and NEW run different distribution families, whose packages differ in name,
    /// version and config layout.
    #[error("{old} is a {old_family} host and {new} a {new_family} host: package names, versions and config layouts differ between the families, so a role captured from one would not make the other match (compare them with `converge compare`; capture against a host of the same family)")]
    AcrossFamilies {
        /// OLD's name.
        old: String,
        /// OLD's family.
        old_family: String,
        /// NEW's name.
        new: String,
        /// NEW's family.
        new_family: String,
    },
    /// Writing the role or its files failed.
    #[error("{path}: {source}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// The source tree a role file at `output` belongs to: `SRC` of `SRC/roles/NAME.toml`.
pub fn source_of(output: &Path, role: &str) -> Result<PathBuf, CaptureError> {
    let expected = Path::new("roles").join(format!("{role}.toml"));
    let mut src = output.to_path_buf();
    for _ in expected.components() {
        if !src.pop() {
            return Err(CaptureError::NotInRoles(output.to_path_buf()));
        }
    }
    if src.join(&expected) != output {
        if output.extension().is_some_and(|e| e == "toml")
            && output
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "roles")
        {
            return Err(CaptureError::NameMismatch {
                role: role.to_owned(),
                path: output.to_path_buf(),
            });
        }
        return Err(CaptureError::NotInRoles(output.to_path_buf()));
    }
    Ok(if src.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        src
    })
}

/// Decides every declaration of the role; nothing is written yet. OLD and NEW must be of
/// one distribution family (where both snapshots say).
pub fn capture(req: &Request) -> Result<CapturedRole, CaptureError> {
    let (old, old_name) = req.from;
    if let Some((new, new_name)) = req.against {
        let (a, b) = (&old.host.os_family, &new.host.os_family);
        if !a.is_empty() && !b.is_empty() && a != b {
            return Err(CaptureError::AcrossFamilies {
                old: old_name.to_owned(),
                old_family: a.clone(),
                new: new_name.to_owned(),
                new_family: b.clone(),
            });
        }
    }
    let mut role = CapturedRole::new(req.role, old, old_name, req.against);
    match req.against {
        Some((new, new_name)) => {
            let diffs = compare::compare(old, new, req.ignore, (old_name, new_name));
            for note in compare::notes(old, new, (old_name, new_name)) {
                role.note(note);
            }
            against(req, &mut role, old, new, &diffs);
        }
        None => defaults(req, &mut role, old),
    }
    timers::fold(&mut role);
    effects::add(&mut role, old);
    role.finish(old, req.against.map(|(s, _)| s));
    Ok(role)
}

/// Every difference from NEW becomes a declaration with OLD's value.
fn against(
    req: &Request,
    role: &mut CapturedRole,
    old: &Snapshot,
    new: &Snapshot,
    diffs: &[Difference],
) {
    for d in diffs {
        match d.kind {
            Kind::Sysctl => sysctl(role, old, d),
            Kind::KernelModule => runtime::kernel_module(role, d),
            Kind::Sysfs => sysfs::difference(role, old, new, d),
            Kind::Nftables => runtime::nftables(role, old, d),
            Kind::KernelCmdline => runtime::cmdline(role, d),
            Kind::Package => packages::difference(role, old, new, d, req.remove_extra),
            Kind::Unit => services::difference(role, old, new, d),
            Kind::User => accounts::user(role, old, new, d),
            Kind::Group => accounts::group(role, old, new, d),
            Kind::File => files::difference(role, old, d, req.remove_extra),
        }
    }
}

/// Without NEW: what an admin changed from what Debian installs.
fn defaults(req: &Request, role: &mut CapturedRole, old: &Snapshot) {
    for cap in &old.host.capped {
        role.note(format!("{}: {cap}", role.old_name));
    }
    role.note("kernel settings: not captured without --against (their defaults cannot be known from one host; sysctl.d files are captured as files)".into());
    role.note("sysfs attributes: not captured without --against (their defaults cannot be known from one host; tmpfiles.d and udev rules are captured as files)".into());
    role.note("kernel modules and the nftables ruleset: captured only against NEW (what the kernel loads or holds by default cannot be known from one host)".into());
    packages::beyond_defaults(role, old);
    services::beyond_presets(role, old);
    accounts::beyond_defaults(role, old);
    files::beyond_defaults(role, old, req.ignore);
}

/// A difference's fields in one line: `version 1.0-1 → 2.0-1, held true → false`.
fn describe(d: &Difference) -> String {
    let fields: Vec<String> = d
        .fields
        .iter()
        .map(|f| {
            let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            format!("{} {} → {}", f.field, side(&f.a), side(&f.b))
        })
        .collect();
    fields.join(", ")
}

fn sysctl(role: &mut CapturedRole, old: &Snapshot, d: &Difference) {
    match d.presence {
        Presence::Changed | Presence::OnlyInA => {
            let Some(value) = old.sysctl.get(&d.id).and_then(|e| e.value.clone()) else {
                role.note(format!(
                    "sysctl {}: {} could not read it",
                    d.id, role.old_name
                ));
                return;
            };
            let new_value = d.fields.first().and_then(|f| f.b.clone());
            role.sysctl.push(SysctlItem {
                key: d.id.clone(),
                value: crate::resource::sysctl::tokens(&value).join(" "),
                comment: match new_value {
                    Some(v) => format!("{} has {v}", role.new_name),
                    None => format!("{} has no such key", role.new_name),
                },
            });
        }
        Presence::OnlyInB => role.note(format!(
            "sysctl {}: only {} has it (a kernel or module difference)",
            d.id, role.new_name
        )),
    }
}

/// A captured role written into a temp source tree inside SRC, not yet in place: plan it
/// from [`Staged::tree`], then [`Staged::commit`] it; dropped, it leaves nothing behind.
#[derive(Debug)]
pub struct Staged {
    dir: Option<tempfile::TempDir>,
    src: PathBuf,
    name: String,
    force: bool,
    /// SRC did not exist before: removed again unless the role is committed.
    made_src: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        drop(self.dir.take());
        if self.made_src {
            // Only if still empty: never anything someone else put there meanwhile.
            let _ = std::fs::remove_dir(&self.src);
        }
    }
}

/// Writes the role and each captured file's content (0600 for sensitive ones, 0644
/// otherwise) into a temp tree inside SRC, where `output` is SRC/roles/NAME.toml. Every path
/// is checked first, an existing role or files/NAME is refused without `force`, and no
/// link under SRC is followed: nothing outside the temp tree is written yet.
pub fn stage(role: &CapturedRole, output: &Path, force: bool) -> Result<Staged, CaptureError> {
    use crate::durable::{write_file, FileSpec};
    let src = source_of(output, &role.name)?;
    for f in role.contents() {
        crate::snapshot::check_path(&f.path).map_err(|why| CaptureError::BadPath {
            path: f.path.clone(),
            why,
        })?;
    }
    refuse_existing(output, &role.name, force)?;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaptureError::Write { path, source }
    };
    let made_src = !src.exists();
    std::fs::create_dir_all(&src).map_err(err(&src))?;
    let mut staged = Staged {
        dir: None,
        src,
        name: role.name.clone(),
        force,
        made_src,
    };
    // A capture killed half way left its staging tree behind; nothing else would take it.
    if let Err(e) = crate::durable::temp::sweep(&staged.src, crate::durable::temp::Sweep::Abandoned)
    {
        tracing::warn!(dir = %staged.src.display(), "could not remove a dead capture's temp dir: {e}");
    }
    let dir = crate::durable::temp::dir_in(&staged.src).map_err(err(&staged.src))?;
    let tree = staged.dir.insert(dir).path().to_path_buf();
    for f in role.contents() {
        let dest = tree.join("files").join(role.source_path(&f.path));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        let mode = if f.sensitive { 0o600 } else { 0o644 };
        write_file(&dest, &f.content, &FileSpec::mode(mode)).map_err(err(&dest))?;
    }
    for deb in role.packages.iter().filter_map(|p| p.deb.as_ref()) {
        let dest = tree.join("files").join(role.source_path(&deb.path));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        write_file(&dest, &deb.content, &FileSpec::mode(0o644)).map_err(err(&dest))?;
    }
    let role_file = tree.join(outputs(&role.name)[0].clone());
    if let Some(parent) = role_file.parent() {
        std::fs::create_dir_all(parent).map_err(err(parent))?;
    }
    write_file(
        &role_file,
        role.to_toml().as_bytes(),
        &FileSpec::mode(0o644),
    )
    .map_err(err(&role_file))?;
    Ok(staged)
}

/// Where a role goes in its source: `roles/NAME.toml` and `files/NAME`.
fn outputs(name: &str) -> [PathBuf; 2] {
    [
        Path::new("roles").join(format!("{name}.toml")),
        Path::new("files").join(name),
    ]
}

/// Refuses to write where a role or its files are already (unless `force`), and any link
/// or file in the way of the directories they go in.
pub fn refuse_existing(output: &Path, name: &str, force: bool) -> Result<(), CaptureError> {
    let src = source_of(output, name)?;
    for target in outputs(name) {
        if let Some(at) = real_dirs_to(&src, &target)? {
            if !force {
                return Err(CaptureError::Exists(at));
            }
        }
    }
    Ok(())
}

/// Checks that every directory from `src` down to `rel`'s parent is a real directory (or
/// missing), and returns the full path of `rel` when something is there.
fn real_dirs_to(src: &Path, rel: &Path) -> Result<Option<PathBuf>, CaptureError> {
    let mut at = src.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CaptureError::Write { path: at, source }),
        };
        if i + 1 == parts.len() {
            return Ok(Some(at));
        }
        if !meta.is_dir() {
            return Err(CaptureError::NotADirectory(at));
        }
    }
    Ok(None)
}

impl Staged {
    /// The temp source tree holding only the captured role and its files.
    pub fn tree(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("a staged role has its tree")
            .path()
    }

    /// Moves the role and its files into SRC: files/NAME first, the role file last, so a
    /// role never names files that are not there yet. With `force`, what was there is
    /// replaced (the old files/NAME is renamed aside first and removed at the end).
    pub fn commit(mut self) -> Result<(), CaptureError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaptureError::Write { path, source }
        };
        let [role_rel, files_rel] = outputs(&self.name);
        let staged_files = self.tree().join(&files_rel);
        for rel in [&files_rel, &role_rel] {
            let existing = real_dirs_to(&self.src, rel)?;
            if existing.is_some() && !self.force {
                return Err(CaptureError::Exists(self.src.join(rel)));
            }
            if let Some(parent) = self.src.join(rel).parent() {
                std::fs::create_dir_all(parent).map_err(err(parent))?;
                // Created just now, or there before: either way, not a link.
                real_dirs_to(&self.src, rel)?;
            }
        }
        let dest = self.src.join(&files_rel);
        let aside = match real_dirs_to(&self.src, &files_rel)? {
            Some(_) => {
                let trash = self.tree().join("replaced-files");
                std::fs::rename(&dest, &trash).map_err(err(&dest))?;
                Some(trash)
            }
            None => None,
        };
        if staged_files.exists() {
            std::fs::rename(&staged_files, &dest).map_err(err(&dest))?;
        }
        let role_file = self.src.join(&role_rel);
        // rename(2) replaces a link at the role's name instead of following it.
        if let Err(e) = std::fs::rename(self.tree().join(&role_rel), &role_file) {
            // Put files/NAME back as it was: all or nothing.
            let _ = std::fs::rename(&dest, &staged_files);
            if let Some(trash) = &aside {
                let _ = std::fs::rename(trash, &dest);
            }
            return Err(err(&role_file)(e));
        }
        for dir in [dest.parent(), role_file.parent()].into_iter().flatten() {
            crate::durable::sync_dir(dir).map_err(err(dir))?;
        }
        self.made_src = false;
        // Dropping the temp dir removes it, with the replaced files/NAME in it.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_go_under_roles_of_a_source() {
        assert_eq!(
            source_of(Path::new("src/roles/web.toml"), "web").unwrap(),
            Path::new("src")
        );
        assert_eq!(
            source_of(Path::new("roles/db/pg.toml"), "db/pg").unwrap(),
            Path::new(".")
        );
        assert!(matches!(
            source_of(Path::new("src/roles/web.toml"), "db"),
            Err(CaptureError::NameMismatch { .. })
        ));
        assert!(matches!(
            source_of(Path::new("/tmp/web.toml"), "web"),
            Err(CaptureError::NotInRoles(_))
        ));
    }
}
