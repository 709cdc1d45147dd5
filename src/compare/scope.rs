//! Snapshots of different scopes: only where both looked is compared, and that is said, so a
//! file outside one side's scope never reads as missing there.

use std::collections::BTreeMap;

use crate::snapshot::scope::Scope;
use crate::snapshot::{FileEntry, FileType, Snapshot};

fn scope(s: &Snapshot) -> Scope<'_> {
    Scope::new(&s.host.paths, &s.host.selected)
}

fn same_scope(a: &Snapshot, b: &Snapshot) -> bool {
    let set = |s: &Snapshot| {
        s.host
            .paths
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    set(a) == set(b) && a.host.selected == b.host.selected
}

/// Both sides' files, each kept only where the other side looked too; `None` when both
/// looked at the same places.
pub(super) fn overlap(
    a: &Snapshot,
    b: &Snapshot,
) -> Option<(BTreeMap<String, FileEntry>, BTreeMap<String, FileEntry>)> {
    if same_scope(a, b) {
        return None;
    }
    let within = |files: &BTreeMap<String, FileEntry>, other: &Snapshot| {
        let other = scope(other);
        files
            .iter()
            .filter(|(p, e)| other.covers(p, e.kind == FileType::Directory))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect()
    };
    Some((within(&a.files, b), within(&b.files, a)))
}

/// What the reader must know about the comparison's scope: different paths on each side
/// (only the overlap is compared), and caps either snapshot hit.
pub fn notes(a: &Snapshot, b: &Snapshot, labels: (&str, &str)) -> Vec<String> {
    let mut out = Vec::new();
    if !same_scope(a, b) {
        let described = |s: &Snapshot| {
            s.host
                .paths
                .iter()
                .map(|p| match s.host.selected.get(p) {
                    Some(sel) => format!("{p} ({})", sel.as_str()),
                    None => p.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!(
            "the snapshots cover different files ({}: {}; {}: {}): only files both would have recorded are compared",
            labels.0,
            described(a),
            labels.1,
            described(b)
        ));
    }
    for (s, label) in [(a, labels.0), (b, labels.1)] {
        for cap in &s.host.capped {
            out.push(format!("{label}: {cap}"));
        }
    }
    out
}
