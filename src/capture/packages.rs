//! Packages: versions pinned and held, missing manual packages installed, extras removed on
//! request.

use super::{describe, CapturedRole, PackageItem};
use crate::compare::{Difference, Presence};
use crate::snapshot::Snapshot;

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
                role.packages.push(PackageItem {
                    name: name.clone(),
                    version: Some(o.version.clone()),
                    absent: false,
                    after: Vec::new(),
                    comment: format!(
                        "{why}; {} has {}{}",
                        role.new_name,
                        n.version,
                        if n.held { " held" } else { "" }
                    ),
                });
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
            role.packages.push(PackageItem {
                name: name.clone(),
                version: o.held.then(|| o.version.clone()),
                absent: false,
                after: Vec::new(),
                comment: format!(
                    "installed by an admin on {} ({}{}); missing on {}",
                    role.old_name,
                    o.version,
                    if o.held { ", held" } else { "" },
                    role.new_name
                ),
            });
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
        role.packages.push(PackageItem {
            name: name.clone(),
            version: p.held.then(|| p.version.clone()),
            absent: false,
            after: Vec::new(),
            comment: if p.held {
                format!("held at {} on {}", p.version, role.old_name)
            } else {
                format!("installed by name on {} ({})", role.old_name, p.version)
            },
        });
    }
}
