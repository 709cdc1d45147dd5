//! Tuned attributes under /sys as `[sysfs]` keys with OLD's values. A disk's key names
//! NEW's disk of the same label (the disk holding `/` on both), so a role captured from a
//! vda host sets the nvme0n1 host's root disk.

use super::role::{CapturedRole, SysctlItem};
use crate::compare::{Difference, Presence};
use crate::resource::sysfs::{check_key, check_value};
use crate::snapshot::Snapshot;

pub(super) fn difference(role: &mut CapturedRole, old: &Snapshot, new: &Snapshot, d: &Difference) {
    if d.presence == Presence::OnlyInB {
        role.note(format!(
            "sysfs {}: only {} has it (a kernel difference)",
            d.id, role.new_name
        ));
        return;
    }
    let Some(value) = old.sysfs.get(&d.id) else {
        return;
    };
    let key = match crate::compare::disk_label(&d.id) {
        None => d.id.clone(),
        Some(label) => match new.disks.get(label) {
            Some(disk) => {
                d.id.replacen(&format!("block/@{label}/"), &format!("block/{disk}/"), 1)
            }
            None => {
                role.note(format!(
                    "sysfs {}: {} has no disk {label}; not captured",
                    d.id, role.new_name
                ));
                return;
            }
        },
    };
    // A snapshot is input anyone may have edited: only what a role may declare is written.
    if let Err(why) = check_key(&key)
        .map(drop)
        .and_then(|()| check_value(&key, value))
    {
        role.note(format!("sysfs {}: not captured: {why}", d.id));
        return;
    }
    let comment = match d.fields.first().and_then(|f| f.b.as_ref()) {
        Some(v) => format!("{} has {v}", role.new_name),
        None => format!("{} has no such attribute", role.new_name),
    };
    let comment = match old
        .disks
        .get(crate::compare::disk_label(&d.id).unwrap_or_default())
    {
        Some(disk) => format!("{comment}; {disk} on {}", role.old_name),
        None => comment,
    };
    role.sysfs.push(SysctlItem {
        key,
        value: value.clone(),
        comment,
    });
}
