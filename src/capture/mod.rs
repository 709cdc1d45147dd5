//! Turning what OLD has into a role: every difference from NEW (or, without NEW, from the
//! defaults that can be known) becomes a declaration that makes NEW match OLD. The values
//! come from OLD's snapshot, taken by the same observers check uses, so the role is in sync
//! on OLD by construction.

mod accounts;
mod files;
mod packages;
mod role;
mod services;

use std::path::{Path, PathBuf};

use crate::compare::{self, Difference, IgnoreList, Kind, Presence};
use crate::snapshot::Snapshot;

pub use role::{
    CapturedRole, DirectoryItem, FileItem, GroupItem, PackageItem, ServiceItem, SymlinkItem,
    SysctlItem, UserItem,
};

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

/// Decides every declaration of the role; nothing is written yet.
pub fn capture(req: &Request) -> CapturedRole {
    let (old, old_name) = req.from;
    let mut role = CapturedRole::new(req.role, old, old_name, req.against);
    match req.against {
        Some((new, new_name)) => {
            let diffs = compare::compare(old, new, req.ignore, (old_name, new_name));
            against(req, &mut role, old, new, &diffs);
        }
        None => defaults(req, &mut role, old),
    }
    role.finish(old, req.against.map(|(s, _)| s));
    role
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
    role.note("kernel settings: not captured without --against (their defaults cannot be known from one host; sysctl.d files are captured as files)".into());
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

/// Writes the role to `output` (SRC/roles/NAME.toml) and each captured file's content to
/// SRC/files/NAME/PATH: 0600 for sensitive ones, 0644 otherwise.
pub fn write(role: &CapturedRole, output: &Path) -> Result<(), CaptureError> {
    use crate::durable::{write_file, FileSpec};
    let src = source_of(output, &role.name)?;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaptureError::Write { path, source }
    };
    for f in &role.files {
        let dest = src.join("files").join(role.source_path(&f.path));
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(err(dir))?;
        }
        let mode = if f.sensitive { 0o600 } else { 0o644 };
        write_file(&dest, &f.content, &FileSpec::mode(mode)).map_err(err(&dest))?;
    }
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).map_err(err(dir))?;
    }
    write_file(output, role.to_toml().as_bytes(), &FileSpec::mode(0o644)).map_err(err(output))
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
