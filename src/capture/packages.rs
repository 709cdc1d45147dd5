//! Packages: versions pinned and held, missing manual packages installed, extras removed on
//! request. A version no source of OLD offers (a package file installed by hand, a version
//! the archives dropped) is installed from OLD's cached .deb, shipped with the role, when
//! OLD kept one; otherwise it is listed as not captured, never declared to fail apply.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{describe, CapturedRole, PackageFileItem, PackageItem};
use crate::compare::{Difference, Presence};
use crate::snapshot::{CachedDeb, PackageEntry, Snapshot};
use crate::system::System;

pub(super) fn difference(
    role: &mut CapturedRole,
    old: &Snapshot,
    new: &Snapshot,
    d: &Difference,
    remove_extra: bool,
) {
    let name = &d.id;
    match d.presence {
        Presence::Changed => {
            let (o, n) = (&old.packages[name], &new.packages[name]);
            if o.version != n.version || (o.held && !n.held) {
                let why = if o.held {
                    format!("{} has {} held", role.old_name, o.version)
                } else {
                    format!(
                        "{} has {} (not held: the role holds it there)",
                        role.old_name, o.version
                    )
                };
                let comment = format!(
                    "{why}; {} has {}{}",
                    role.new_name,
                    n.version,
                    if n.held { " held" } else { "" }
                );
                install(role, old, name, o, Some(o.version.clone()), comment);
            } else {
                role.note(format!(
                    "package {name}: {} (a role pins versions; it does not unhold or re-mark)",
                    describe(d)
                ));
            }
        }
        Presence::OnlyInA => {
            let o = &old.packages[name];
            if !o.manual && !o.held {
                role.note(format!(
                    "package {name}: on {} as a dependency only; it comes with what needs it",
                    role.old_name
                ));
                return;
            }
            let comment = format!(
                "installed by an admin on {} ({}{}); missing on {}",
                role.old_name,
                o.version,
                if o.held { ", held" } else { "" },
                role.new_name
            );
            install(
                role,
                old,
                name,
                o,
                o.held.then(|| o.version.clone()),
                comment,
            );
        }
        Presence::OnlyInB => {
            let n = &new.packages[name];
            if remove_extra && n.manual {
                role.packages.push(PackageItem {
                    name: name.clone(),
                    version: None,
                    absent: true,
                    after: Vec::new(),
                    comment: format!("only on {} ({}); --remove-extra", role.new_name, n.version),
                    deb: None,
                });
            } else if n.manual {
                role.note(format!(
                    "package {name}: only on {} (pass --remove-extra to remove it)",
                    role.new_name
                ));
            }
        }
    }
}

/// Without NEW: held packages at their version, and what an admin installed by name.
pub(super) fn beyond_defaults(role: &mut CapturedRole, old: &Snapshot) {
    for (name, p) in &old.packages {
        if !p.held && !p.manual {
            continue;
        }
        let comment = if p.held {
            format!("held at {} on {}", p.version, role.old_name)
        } else {
            format!("installed by name on {} ({})", role.old_name, p.version)
        };
        install(
            role,
            old,
            name,
            p,
            p.held.then(|| p.version.clone()),
            comment,
        );
    }
}

/// Declares `name` installed (at `version`, when given) as OLD has it. When no source of
/// OLD offers OLD's version, only OLD's cached .deb can reproduce it: the role installs
/// that file, or, without one, the header says why the package is not captured.
fn install(
    role: &mut CapturedRole,
    old: &Snapshot,
    name: &str,
    o: &PackageEntry,
    version: Option<String>,
    comment: String,
) {
    let mut item = PackageItem {
        name: name.to_owned(),
        version,
        absent: false,
        after: Vec::new(),
        comment,
        deb: None,
    };
    if o.offered != Some(false) {
        role.packages.push(item);
        return;
    }
    let unoffered = format!(
        "package {name} {}: no source configured on {} offers this version (a package file installed by hand, or a version its archive dropped)",
        o.version, role.old_name
    );
    let Some(cached) = &o.cached else {
        role.note(format!(
            "{unoffered}, and {} keeps no copy in apt's cache: not captured (put its .deb in files/ and declare it with `source`)",
            role.old_name
        ));
        return;
    };
    match read_cached(old, cached) {
        Ok(content) => {
            item.comment.push_str(&format!(
                "; no source of {} offers {}: installed from {}'s cached {}{}",
                role.old_name,
                o.version,
                role.old_name,
                cached.path,
                if o.held {
                    ""
                } else {
                    " (held by the role, as a package from a file is)"
                }
            ));
            item.deb = Some(PackageFileItem {
                path: cached.path.clone(),
                content,
            });
            role.packages.push(item);
        }
        Err(why) => role.note(format!(
            "{unoffered}; its cached copy {} cannot be shipped from here ({why}): not captured (run capture where that file is, or put it in files/ and declare it with `source`)",
            cached.path
        )),
    }
}

/// The bytes of OLD's cached .deb, read under the root OLD's snapshot was taken of (a
/// capture of `live`, or of a snapshot file on the host it came from), and only when they
/// are the ones the snapshot recorded.
fn read_cached(old: &Snapshot, cached: &CachedDeb) -> Result<Vec<u8>, String> {
    if cached.file_name().is_none() {
        return Err("not a .deb directly in apt's cache".into());
    }
    let sys = System::new(Path::new(&old.host.root)).map_err(|e| e.to_string())?;
    let mut f = sys
        .open_file(Path::new(&cached.path))
        .map_err(|e| e.to_string())?;
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Err("not a regular file".into());
    }
    let mut content = Vec::new();
    f.read_to_end(&mut content).map_err(|e| e.to_string())?;
    if hex::encode(Sha256::digest(&content)) != cached.sha256 {
        return Err("its content is not what the snapshot recorded".into());
    }
    Ok(content)
}
