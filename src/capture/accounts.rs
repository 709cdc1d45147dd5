//! Users and groups with their ids; supplementary groups as the exact list OLD has.

use super::{CapturedRole, GroupItem, UserItem};
use crate::compare::{Difference, Presence};
use crate::snapshot::Snapshot;

/// The ids adduser hands out to people and services an admin adds (adduser.conf).
const ADMIN_IDS: std::ops::RangeInclusive<u32> = 1000..=59999;

/// The groups that list `user` as a member, sorted.
fn memberships(s: &Snapshot, user: &str) -> Vec<String> {
    s.groups
        .iter()
        .filter(|(_, g)| g.members.iter().any(|m| m == user))
        .map(|(n, _)| n.clone())
        .collect()
}

fn user_item(role: &CapturedRole, old: &Snapshot, name: &str, comment: String) -> Option<UserItem> {
    let u = old.users.get(name)?;
    Some(UserItem {
        name: name.to_owned(),
        uid: u.uid,
        group: u.group.clone(),
        groups: Some(memberships(old, name)),
        home: u.home.clone(),
        shell: u.shell.clone(),
        gecos: u.comment.clone(),
        system: u.uid < *ADMIN_IDS.start(),
        comment: if comment.is_empty() {
            format!("as on {}", role.old_name)
        } else {
            comment
        },
    })
}

pub(super) fn user(role: &mut CapturedRole, old: &Snapshot, new: &Snapshot, d: &Difference) {
    match d.presence {
        Presence::OnlyInB => role.note(format!(
            "user {}: only on {} (a role never removes users it was not told to)",
            d.id, role.new_name
        )),
        Presence::OnlyInA | Presence::Changed => {
            let comment = if d.presence == Presence::OnlyInA {
                format!("only on {}", role.old_name)
            } else {
                let fields: Vec<String> = d
                    .fields
                    .iter()
                    .map(|f| format!("{} {}", f.field, f.b.as_deref().unwrap_or("-")))
                    .collect();
                format!("{} has {}", role.new_name, fields.join(", "))
            };
            if let Some(mut item) = user_item(role, old, &d.id, comment) {
                // Memberships are set only where they differ, so the role stays small.
                if d.presence == Presence::Changed
                    && memberships(new, &d.id) == memberships(old, &d.id)
                {
                    item.groups = None;
                }
                upsert_user(role, item);
            }
        }
    }
}

fn upsert_user(role: &mut CapturedRole, item: UserItem) {
    match role.users.iter_mut().find(|u| u.name == item.name) {
        Some(u) => {
            if item.groups.is_some() {
                u.groups = item.groups;
            }
        }
        None => role.users.push(item),
    }
}

pub(super) fn group(role: &mut CapturedRole, old: &Snapshot, new: &Snapshot, d: &Difference) {
    let name = &d.id;
    match d.presence {
        Presence::OnlyInB => {
            role.note(format!("group {name}: only on {}", role.new_name));
            return;
        }
        Presence::OnlyInA | Presence::Changed => {}
    }
    let g = &old.groups[name];
    let gid_differs = new.groups.get(name).is_none_or(|n| n.gid != g.gid);
    if gid_differs {
        role.groups.push(GroupItem {
            name: name.clone(),
            gid: g.gid,
            system: g.gid < *ADMIN_IDS.start(),
            comment: match new.groups.get(name) {
                Some(n) => format!("gid {} on {}", n.gid, role.new_name),
                None => format!("only on {}", role.old_name),
            },
        });
    }
    // Members are set through each user's exact list of groups.
    let before: Vec<String> = new
        .groups
        .get(name)
        .map(|n| n.members.clone())
        .unwrap_or_default();
    let changed: Vec<&String> = g
        .members
        .iter()
        .filter(|m| !before.contains(m))
        .chain(before.iter().filter(|m| !g.members.contains(m)))
        .collect();
    for member in changed {
        if !old.users.contains_key(member.as_str()) {
            role.note(format!(
                "group {name}: member {member} has no account on {}",
                role.old_name
            ));
            continue;
        }
        let comment = format!("memberships differ on {}", role.new_name);
        if let Some(item) = user_item(role, old, member, comment) {
            upsert_user(role, item);
        }
    }
}

/// Without NEW: the accounts an admin added (ids adduser hands out), with their groups.
pub(super) fn beyond_defaults(role: &mut CapturedRole, old: &Snapshot) {
    for (name, g) in &old.groups {
        if ADMIN_IDS.contains(&g.gid) {
            role.groups.push(GroupItem {
                name: name.clone(),
                gid: g.gid,
                system: false,
                comment: format!("added on {}", role.old_name),
            });
        }
    }
    let names: Vec<String> = old
        .users
        .iter()
        .filter(|(_, u)| ADMIN_IDS.contains(&u.uid))
        .map(|(n, _)| n.clone())
        .collect();
    for name in names {
        let comment = format!("added on {}", role.old_name);
        if let Some(item) = user_item(role, old, &name, comment) {
            role.users.push(item);
        }
    }
}
