//! Field by field comparison of each kind of snapshot entry.

use std::collections::BTreeMap;

use super::{zip, Difference, FieldDiff, Kind, Presence};
use crate::resource::change::{text_diff, DiffSummary};
use crate::resource::sysctl::tokens;
use crate::snapshot::{
    FileEntry, FileType, GroupEntry, PackageEntry, SysctlEntry, UnitEntry, UserEntry,
};
use crate::system::procfs::SysctlAccess;
use crate::system::systemd::UNIT_DIRS;

/// The directory whose links `systemctl enable` and `mask` manage: compared as units.
const ADMIN_UNIT_DIR: &str = "/etc/systemd/system/";

pub(super) fn push(
    out: &mut Vec<Difference>,
    kind: Kind,
    id: &str,
    presence: Presence,
    fields: Vec<FieldDiff>,
) {
    out.push(Difference {
        kind,
        id: id.to_owned(),
        presence,
        fields,
        diff: None,
        summary: None,
    });
}

/// Fields of a one-sided entry, shown on the side that has it.
pub(super) fn one_sided(fields: Vec<(&str, String)>, in_a: bool) -> Vec<FieldDiff> {
    fields
        .into_iter()
        .map(|(f, v)| {
            if in_a {
                FieldDiff::new(f, v, None)
            } else {
                FieldDiff::new(f, None, v)
            }
        })
        .collect()
}

/// Compares two entries' fields; `Changed` when any differs.
fn changed(
    out: &mut Vec<Difference>,
    kind: Kind,
    id: &str,
    a: Vec<(&str, String)>,
    b: Vec<(&str, String)>,
) {
    let fields: Vec<FieldDiff> = a
        .into_iter()
        .zip(b)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((f, x), (_, y))| FieldDiff::new(f, x, y))
        .collect();
    if !fields.is_empty() {
        push(out, kind, id, Presence::Changed, fields);
    }
}

/// Both sides, one side or none, each reported the same way for every kind.
fn report<V>(
    out: &mut Vec<Difference>,
    kind: Kind,
    id: &str,
    a: Option<&V>,
    b: Option<&V>,
    fields: impl Fn(&V) -> Vec<(&'static str, String)>,
) {
    match (a, b) {
        (Some(x), Some(y)) => changed(out, kind, id, fields(x), fields(y)),
        (Some(x), None) => push(out, kind, id, Presence::OnlyInA, one_sided(fields(x), true)),
        (None, Some(y)) => push(
            out,
            kind,
            id,
            Presence::OnlyInB,
            one_sided(fields(y), false),
        ),
        (None, None) => {}
    }
}

/// Keys of one network interface: they exist where the interface does, which is hardware,
/// not tuning; their values are compared where both hosts have the interface.
fn per_interface(key: &str) -> bool {
    let parts: Vec<&str> = key.splitn(5, '.').collect();
    matches!(parts.as_slice(), ["net", "ipv4" | "ipv6", "conf" | "neigh", iface, _] if !matches!(*iface, "all" | "default"))
}

/// Only settings are compared: read-only keys are reports and write-only keys triggers.
pub(super) fn sysctl(
    a: &BTreeMap<String, SysctlEntry>,
    b: &BTreeMap<String, SysctlEntry>,
    out: &mut Vec<Difference>,
) {
    zip(a, b, |key, x, y| {
        let settable = |e: &SysctlEntry| e.access == SysctlAccess::ReadWrite;
        let (x, y) = (x.filter(|e| settable(e)), y.filter(|e| settable(e)));
        let shown = |e: &SysctlEntry| e.value.as_deref().map(|v| tokens(v).join(" "));
        match (x, y) {
            (Some(x), Some(y)) if shown(x) != shown(y) => {
                push(
                    out,
                    Kind::Sysctl,
                    key,
                    Presence::Changed,
                    vec![FieldDiff::new("value", shown(x), shown(y))],
                );
            }
            (Some(x), None) if !per_interface(key) && !b.contains_key(key) => {
                push(
                    out,
                    Kind::Sysctl,
                    key,
                    Presence::OnlyInA,
                    vec![FieldDiff::new("value", shown(x), None)],
                );
            }
            (None, Some(y)) if !per_interface(key) && !a.contains_key(key) => {
                push(
                    out,
                    Kind::Sysctl,
                    key,
                    Presence::OnlyInB,
                    vec![FieldDiff::new("value", None, shown(y))],
                );
            }
            _ => {}
        }
    });
}

pub(super) fn packages(
    a: &BTreeMap<String, PackageEntry>,
    b: &BTreeMap<String, PackageEntry>,
    out: &mut Vec<Difference>,
) {
    zip(a, b, |name, x, y| {
        report(out, Kind::Package, name, x, y, |p| {
            vec![
                ("version", p.version.clone()),
                ("arch", p.arch.clone()),
                ("held", p.held.to_string()),
                ("manual", p.manual.to_string()),
            ]
        })
    });
}

pub(super) fn units(
    a: &BTreeMap<String, UnitEntry>,
    b: &BTreeMap<String, UnitEntry>,
    out: &mut Vec<Difference>,
) {
    zip(a, b, |name, x, y| {
        // Whether a service (or the timer, socket or path unit that starts one) runs is
        // compared when both hosts ran systemd; other unit types (mounts, devices, targets
        // pulled in by them) come and go by themselves.
        let both_ran =
            x.is_some_and(|u| u.active.is_some()) && y.is_some_and(|u| u.active.is_some());
        let compare_active = both_ran
            && [".service", ".timer", ".socket", ".path"]
                .iter()
                .any(|s| name.ends_with(s));
        report(out, Kind::Unit, name, x, y, |u| {
            let mut f = vec![("state", u.state.clone())];
            if compare_active {
                let running = matches!(
                    u.active.as_deref(),
                    Some("active" | "reloading" | "activating")
                );
                f.push(("running", running.to_string()));
            }
            f
        })
    });
}

pub(super) fn users(
    a: &BTreeMap<String, UserEntry>,
    b: &BTreeMap<String, UserEntry>,
    out: &mut Vec<Difference>,
) {
    zip(a, b, |name, x, y| {
        report(out, Kind::User, name, x, y, |u| {
            vec![
                ("uid", u.uid.to_string()),
                ("group", u.group.clone()),
                ("comment", u.comment.clone()),
                ("home", u.home.clone()),
                ("shell", u.shell.clone()),
            ]
        })
    });
}

pub(super) fn groups(
    a: &BTreeMap<String, GroupEntry>,
    b: &BTreeMap<String, GroupEntry>,
    out: &mut Vec<Difference>,
) {
    zip(a, b, |name, x, y| {
        report(out, Kind::Group, name, x, y, |g| {
            let mut members = g.members.clone();
            members.sort();
            let members = if members.is_empty() {
                "(none)".to_owned()
            } else {
                members.join(", ")
            };
            vec![("gid", g.gid.to_string()), ("members", members)]
        })
    });
}

/// Links that `systemctl enable` (aliases, `.wants/`) and `mask` (to /dev/null) made, and
/// the `.wants/` directories holding them: the unit's state already says all of it.
pub fn is_unit_link(path: &str, entry: &FileEntry) -> bool {
    // `systemctl enable|disable` of a unit with a SysV script also runs update-rc.d, which
    // renames /etc/rcN.d/S01x to K01x: the same enablement, told the old way.
    if entry.kind == FileType::Symlink && is_rc_dir(path) {
        return true;
    }
    let Some(rest) = path.strip_prefix(ADMIN_UNIT_DIR) else {
        return false;
    };
    match entry.kind {
        FileType::Symlink => entry.target.as_deref().is_some_and(|t| {
            t == "/dev/null" || UNIT_DIRS.iter().any(|d| t.starts_with(&format!("{d}/")))
        }),
        FileType::Directory => {
            [".wants", ".requires", ".upholds"]
                .iter()
                .any(|s| rest.ends_with(s))
                && !rest.contains('/')
        }
        _ => false,
    }
}

/// Whether `path` is an entry of /etc/rc0.d ... /etc/rc6.d or /etc/rcS.d.
fn is_rc_dir(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/etc/rc") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() > 4
        && matches!(b[0], b'0'..=b'6' | b'S')
        && &rest[1..4] == ".d/"
        && !rest[4..].contains('/')
}

/// What a file's content looks like in a field: by hash, for secrets and private files.
fn content_field(f: &FileEntry) -> String {
    match (&f.sha256, f.size) {
        (Some(h), _) => format!("sha256 {}", &h[..h.len().min(12)]),
        (None, Some(size)) => format!("{size} bytes, not read"),
        (None, None) => "unreadable".into(),
    }
}

fn file_fields(f: &FileEntry) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("type", format!("{:?}", f.kind).to_lowercase()),
        ("owner", f.owner.clone()),
        ("group", f.group.clone()),
        ("mode", f.mode.clone()),
    ];
    if let Some(t) = &f.target {
        v.push(("target", t.clone()));
    }
    v
}

fn shows_text(f: &FileEntry) -> bool {
    !f.private && !f.secret && f.content.is_some()
}

pub(super) fn files(
    a: &BTreeMap<String, FileEntry>,
    b: &BTreeMap<String, FileEntry>,
    labels: (&str, &str),
    out: &mut Vec<Difference>,
) {
    zip(a, b, |path, x, y| {
        let x = x.filter(|e| !is_unit_link(path, e));
        let y = y.filter(|e| !is_unit_link(path, e));
        match (x, y) {
            (Some(x), Some(y)) => {
                let mut fields: Vec<FieldDiff> = Vec::new();
                let (fx, fy) = (file_fields(x), file_fields(y));
                for key in ["type", "owner", "group", "mode", "target"] {
                    let get = |f: &[(&str, String)]| {
                        f.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
                    };
                    let (vx, vy) = (get(&fx), get(&fy));
                    if vx != vy {
                        fields.push(FieldDiff::new(key, vx, vy));
                    }
                }
                let (mut diff, mut summary) = (None, None);
                // Files past the read cap are known by size only.
                let unread = x.sha256.is_none() && y.sha256.is_none();
                if x.kind == FileType::File
                    && y.kind == FileType::File
                    && (x.sha256 != y.sha256 || (unread && x.size != y.size))
                    && !super::crontab::same_table(path, x, y)
                {
                    if shows_text(x) && shows_text(y) {
                        (diff, summary) =
                            unified(path, x.content.as_deref(), y.content.as_deref(), labels);
                    } else {
                        fields.push(FieldDiff::new(
                            "content",
                            content_field(x),
                            content_field(y),
                        ));
                    }
                }
                if !fields.is_empty() || diff.is_some() || summary.is_some() {
                    out.push(Difference {
                        kind: Kind::File,
                        id: path.to_owned(),
                        presence: Presence::Changed,
                        fields,
                        diff,
                        summary,
                    });
                }
            }
            (Some(e), None) | (None, Some(e))
                if super::scope::from_skel(path, e, if x.is_some() { a } else { b }) => {}
            (Some(e), None) | (None, Some(e)) => {
                let in_a = x.is_some();
                let mut fields = one_sided(file_fields(e), in_a);
                let (diff, summary) = if shows_text(e) {
                    let (ca, cb) = if in_a {
                        (e.content.as_deref(), None)
                    } else {
                        (None, e.content.as_deref())
                    };
                    unified(path, ca, cb, labels)
                } else {
                    if e.kind == FileType::File {
                        fields.extend(one_sided(vec![("content", content_field(e))], in_a));
                    }
                    (None, None)
                };
                out.push(Difference {
                    kind: Kind::File,
                    id: path.to_owned(),
                    presence: if in_a {
                        Presence::OnlyInA
                    } else {
                        Presence::OnlyInB
                    },
                    fields,
                    diff,
                    summary,
                });
            }
            (None, None) => {}
        }
    });
}

/// The diff A → B of a text file, or, past the caps check's diffs keep, its summary.
pub(super) fn unified(
    path: &str,
    a: Option<&str>,
    b: Option<&str>,
    labels: (&str, &str),
) -> (Option<String>, Option<DiffSummary>) {
    let headers = (
        format!("{path} ({})", labels.0),
        format!("{path} ({})", labels.1),
    );
    match text_diff(a.unwrap_or(""), b.unwrap_or(""), (&headers.0, &headers.1)) {
        Ok(text) => (Some(text), None),
        Err(summary) => (None, Some(summary)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_keys_are_recognised() {
        assert!(per_interface("net.ipv4.conf.eth0.rp_filter"));
        assert!(per_interface("net.ipv6.neigh.ens3.retrans_time"));
        assert!(!per_interface("net.ipv4.conf.all.rp_filter"));
        assert!(!per_interface("net.core.somaxconn"));
    }

    #[test]
    fn enablement_links_belong_to_units() {
        let link = |t: &str| FileEntry {
            kind: FileType::Symlink,
            owner: "root".into(),
            group: "root".into(),
            mode: "0777".into(),
            target: Some(t.into()),
            size: None,
            sha256: None,
            content: None,
            secret: false,
            private: false,
            package: None,
            conffile_modified: None,
        };
        let wants = "/etc/systemd/system/multi-user.target.wants/nginx.service";
        assert!(is_unit_link(
            wants,
            &link("/lib/systemd/system/nginx.service")
        ));
        assert!(is_unit_link(
            "/etc/systemd/system/x.service",
            &link("/dev/null")
        ));
        assert!(!is_unit_link(
            "/etc/systemd/system/x.service",
            &link("/opt/x.service")
        ));
        assert!(!is_unit_link("/etc/nginx/x", &link("/dev/null")));
        assert!(is_unit_link(
            "/etc/rc2.d/K01nginx",
            &link("../init.d/nginx")
        ));
        assert!(!is_unit_link(
            "/etc/rcx.d/K01nginx",
            &link("../init.d/nginx")
        ));
    }
}
