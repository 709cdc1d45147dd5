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

/// A home's shell file that only one side has, byte for byte the copy of `/etc/skel` that
/// `useradd -m` (or a `[[user]]`) made on that side: whether a home was made with the
/// skeleton is not a tuning; an edited one still differs from the skeleton and shows.
pub(super) fn from_skel(
    path: &str,
    entry: &FileEntry,
    files: &BTreeMap<String, FileEntry>,
) -> bool {
    let rest = match path.strip_prefix("/root/") {
        Some(rest) => rest,
        None => match path.strip_prefix("/home/").and_then(|p| p.split_once('/')) {
            Some((_, rest)) => rest,
            None => return false,
        },
    };
    entry.kind == FileType::File
        && entry.sha256.is_some()
        && files
            .get(&format!("/etc/skel/{rest}"))
            .is_some_and(|skel| skel.kind == FileType::File && skel.sha256 == entry.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: &str) -> FileEntry {
        FileEntry {
            kind: FileType::File,
            owner: "root".into(),
            group: "root".into(),
            mode: "0644".into(),
            target: None,
            size: Some(1),
            sha256: Some(sha.into()),
            content: None,
            secret: false,
            private: false,
            package: None,
            conffile_modified: None,
        }
    }

    #[test]
    fn a_home_file_copied_from_the_skeleton_is_not_a_tuning() {
        let files = BTreeMap::from([("/etc/skel/.bashrc".to_owned(), file("aa"))]);
        assert!(from_skel("/home/app/.bashrc", &file("aa"), &files));
        assert!(from_skel("/root/.bashrc", &file("aa"), &files));
        assert!(
            !from_skel("/home/app/.bashrc", &file("bb"), &files),
            "edited"
        );
        assert!(!from_skel("/home/app/.profile", &file("aa"), &files));
        assert!(!from_skel("/etc/app/.bashrc", &file("aa"), &files));
    }
}
