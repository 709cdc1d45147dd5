//! Files, links and directories: OLD's content copied into the source, with owner, group and
//! mode; the directories they need; extras removed on request.

use super::{CapturedRole, DirectoryItem, FileItem, SymlinkItem};
use crate::compare::{is_unit_link, Difference, IgnoreList, Kind, Presence};
use crate::snapshot::{FileEntry, FileType, Snapshot};

/// Without NEW, unowned files that maintainer scripts generate from what packages ship
/// (update-alternatives, update-ca-certificates, update-rc.d): the same on every host with
/// the same packages, so not a hand edit.
const GENERATED: &[&str] = &["/etc/alternatives/", "/etc/ssl/certs/", "/etc/rc"];

fn why_changed(role: &CapturedRole, o: &FileEntry, d: &Difference) -> String {
    let mut parts: Vec<String> = d
        .fields
        .iter()
        .map(|f| format!("{} {}", f.field, f.b.as_deref().unwrap_or("-")))
        .collect();
    if d.diff.is_some() || d.summary.is_some() {
        parts.push("other content".into());
    }
    let mut text = format!("{} has {}", role.new_name, parts.join(", "));
    if o.conffile_modified == Some(true) {
        if let Some(p) = &o.package {
            text = format!("edited conffile of {p} on {}; {text}", role.old_name);
        }
    }
    text
}

/// Declares `path` as it is on OLD.
fn declare(role: &mut CapturedRole, path: &str, o: &FileEntry, comment: String) {
    // A role cannot name such a path or link target (validate refuses control characters),
    // and one of them must not fail the capture of everything else.
    let target = o.target.as_deref().unwrap_or("");
    if path.chars().chain(target.chars()).any(char::is_control) {
        role.note(format!(
            "{path}: its path or link target holds a control character, which a role cannot name"
        ));
        return;
    }
    match o.kind {
        FileType::Directory => role.directories.push(DirectoryItem {
            path: path.to_owned(),
            owner: o.owner.clone(),
            group: o.group.clone(),
            mode: o.mode.clone(),
            comment,
        }),
        FileType::Symlink => role.symlinks.push(SymlinkItem {
            path: path.to_owned(),
            target: o.target.clone().unwrap_or_default(),
            comment,
        }),
        FileType::Other => role.note(format!("{path}: a device, socket or fifo")),
        FileType::File if o.secret => role.note(format!(
            "{path}: a secret, recorded by hash only: copy it from where such secrets live"
        )),
        FileType::File => match &o.content {
            Some(text) => role.files.push(FileItem {
                path: path.to_owned(),
                owner: o.owner.clone(),
                group: o.group.clone(),
                mode: o.mode.clone(),
                content: text.clone().into_bytes(),
                sensitive: o.private,
                notify: Vec::new(),
                comment: if o.private {
                    format!("{comment}; not world-readable on {}", role.old_name)
                } else {
                    comment
                },
            }),
            None if o.private => role.note(format!(
                "{path}: not world-readable on {}: its text is not in the snapshot (take it with --include-private to copy it)",
                role.old_name
            )),
            None => role.note(format!(
                "{path}: binary, unreadable or over {} KiB: its content is not in the snapshot",
                crate::snapshot::CONTENT_LIMIT / 1024
            )),
        },
    }
}

pub(super) fn difference(
    role: &mut CapturedRole,
    old: &Snapshot,
    d: &Difference,
    remove_extra: bool,
) {
    let path = &d.id;
    match d.presence {
        Presence::Changed => {
            let o = &old.files[path];
            let comment = why_changed(role, o, d);
            declare(role, path, o, comment);
        }
        Presence::OnlyInA => {
            let o = &old.files[path];
            let comment = format!("only on {}", role.old_name);
            declare(role, path, o, comment);
        }
        Presence::OnlyInB if remove_extra => role.absent.push((
            path.clone(),
            format!("only on {}; --remove-extra", role.new_name),
        )),
        Presence::OnlyInB => role.note(format!(
            "{path}: only on {} (pass --remove-extra to remove it)",
            role.new_name
        )),
    }
}

/// Without NEW: edited conffiles, and files and links no package owns.
pub(super) fn beyond_defaults(role: &mut CapturedRole, old: &Snapshot, ignore: &IgnoreList) {
    for (path, o) in &old.files {
        if ignore.ignores(Kind::File, path)
            || is_unit_link(path, o)
            || GENERATED.iter().any(|g| path.starts_with(g))
            || o.kind == FileType::Directory
        {
            continue;
        }
        if o.conffile_modified == Some(true) {
            let p = o.package.as_deref().unwrap_or("a package");
            let comment = format!("edited conffile of {p} on {}", role.old_name);
            declare(role, path, o, comment);
        } else if o.package.is_none() {
            let comment = format!("no package owns it on {}", role.old_name);
            declare(role, path, o, comment);
        }
    }
}
