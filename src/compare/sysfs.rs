//! Tuned attributes under /sys. Disks compare by label (`root`, `disk1`...), so the disk
//! holding `/` is compared with its counterpart whatever the kernel calls it; a disk only
//! one host has is hardware, not tuning, and is not reported.

use super::{zip, Difference, FieldDiff, Kind, Presence};
use crate::snapshot::Snapshot;

/// The disk label of a `block/@LABEL/...` key.
pub(crate) fn disk_label(key: &str) -> Option<&str> {
    key.strip_prefix("block/@")?.split('/').next()
}

pub(super) fn differences(a: &Snapshot, b: &Snapshot, out: &mut Vec<Difference>) {
    zip(&a.sysfs, &b.sysfs, |key, x, y| {
        let label = disk_label(key);
        let (presence, mut fields) = match (x, y) {
            (Some(x), Some(y)) if x != y => (
                Presence::Changed,
                vec![FieldDiff::new("value", x.clone(), y.clone())],
            ),
            (Some(x), None) if label.is_none() => (
                Presence::OnlyInA,
                vec![FieldDiff::new("value", x.clone(), None)],
            ),
            (None, Some(y)) if label.is_none() => (
                Presence::OnlyInB,
                vec![FieldDiff::new("value", None, y.clone())],
            ),
            _ => return,
        };
        if let Some(label) = label {
            let (da, db) = (a.disks.get(label), b.disks.get(label));
            if da != db {
                fields.push(FieldDiff::new("disk", da.cloned(), db.cloned()));
            }
        }
        out.push(Difference {
            kind: Kind::Sysfs,
            id: key.to_owned(),
            presence,
            fields,
            diff: None,
            summary: None,
        });
    });
}
