//! Runtime kernel state: modules loaded by hand, the nftables ruleset, the kernel command
//! line.

use std::collections::{BTreeMap, BTreeSet};

use super::entries::{one_sided, push, unified};
use super::{Difference, FieldDiff, Kind, Presence};
use crate::snapshot::Snapshot;

/// A module loaded on one side only, unless that side says it is its hardware's driver or
/// another module's dependency (loaded modules have nothing else worth comparing).
pub(super) fn kernel_modules(a: &Snapshot, b: &Snapshot, out: &mut Vec<Difference>) {
    for name in a.kernel_modules.symmetric_difference(&b.kernel_modules) {
        let in_a = a.kernel_modules.contains(name);
        let side = if in_a { a } else { b };
        if side.kernel_modules_implied.contains_key(name) {
            continue;
        }
        let presence = if in_a {
            Presence::OnlyInA
        } else {
            Presence::OnlyInB
        };
        let fields = one_sided(vec![("state", "loaded".to_owned())], in_a);
        push(out, Kind::KernelModule, name, presence, fields);
    }
}

/// Tables of the ruleset, by `FAMILY/TABLE`, with a diff of their bodies; only when both
/// sides could read their ruleset.
pub(super) fn nftables(
    a: &Snapshot,
    b: &Snapshot,
    labels: (&str, &str),
    out: &mut Vec<Difference>,
) {
    let (Some(ta), Some(tb)) = (&a.nftables, &b.nftables) else {
        return;
    };
    let ids: BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    for id in ids {
        let (x, y) = (ta.get(id), tb.get(id));
        let presence = match (x, y) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(_), Some(_)) => Presence::Changed,
            (Some(_), None) => Presence::OnlyInA,
            (None, _) => Presence::OnlyInB,
        };
        let (diff, summary) = unified(
            &format!("nftables {id}"),
            x.map(String::as_str),
            y.map(String::as_str),
            labels,
        );
        out.push(Difference {
            kind: Kind::Nftables,
            id: id.clone(),
            presence,
            fields: Vec::new(),
            diff,
            summary,
        });
    }
}

/// The command line's parameters: `name` → its value (`""` for a bare flag); a
/// parameter given twice keeps its last value, as the kernel does.
pub(crate) fn parameters(cmdline: &str) -> BTreeMap<&str, &str> {
    cmdline
        .split_whitespace()
        .map(|word| word.split_once('=').unwrap_or((word, "")))
        .collect()
}

/// Kernel command line parameters set on one side, or set differently; only when both
/// sides recorded it.
pub(super) fn cmdline(a: &Snapshot, b: &Snapshot, out: &mut Vec<Difference>) {
    let (Some(ca), Some(cb)) = (&a.host.cmdline, &b.host.cmdline) else {
        return;
    };
    let (pa, pb) = (parameters(ca), parameters(cb));
    let names: BTreeSet<&&str> = pa.keys().chain(pb.keys()).collect();
    for name in names {
        let shown = |v: Option<&&str>| {
            v.map(|v| {
                if v.is_empty() {
                    "(set)".to_owned()
                } else {
                    (*v).to_owned()
                }
            })
        };
        let (x, y) = (shown(pa.get(*name)), shown(pb.get(*name)));
        let presence = match (&x, &y) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(_), Some(_)) => Presence::Changed,
            (Some(_), None) => Presence::OnlyInA,
            (None, _) => Presence::OnlyInB,
        };
        push(
            out,
            Kind::KernelCmdline,
            name,
            presence,
            vec![FieldDiff::new("value", x, y)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_split_into_names_and_values() {
        let p = parameters("BOOT_IMAGE=/vmlinuz root=UUID=ab-cd ro quiet transparent_hugepage=never mitigations=off quiet");
        assert_eq!(p["root"], "UUID=ab-cd");
        assert_eq!(p["ro"], "");
        assert_eq!(p["transparent_hugepage"], "never");
        assert_eq!(p.len(), 6);
    }
}
