//! What differs between two snapshots, kind by kind, without noise: the ignore list drops
//! values that change by themselves and a host's identity, and timestamps are never recorded.

mod crontab;
mod entries;
pub mod ignore;
pub mod render;
mod runtime;
mod scope;
mod sized;
mod sysfs;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::resource::change::{keep_within, DiffSummary, MAX_RUN_DIFFS};
use crate::snapshot::Snapshot;
pub use entries::is_unit_link;
pub use ignore::IgnoreList;
pub use scope::notes;
pub(crate) use sysfs::disk_label;

/// The kinds of state a snapshot records, in the order compare reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A kernel setting.
    Sysctl,
    /// A loaded kernel module.
    #[serde(rename = "kernel_module")]
    KernelModule,
    /// A tuned attribute under /sys.
    Sysfs,
    /// A table of the nftables ruleset (`FAMILY/TABLE`).
    Nftables,
    /// A parameter of the kernel command line.
    #[serde(rename = "kernel_cmdline")]
    KernelCmdline,
    /// An installed package.
    Package,
    /// A systemd unit.
    Unit,
    /// A user.
    User,
    /// A group.
    Group,
    /// A file, directory or link.
    File,
}

impl Kind {
    /// The name used in output and ignore files.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sysctl => "sysctl",
            Kind::KernelModule => "kernel_module",
            Kind::Sysfs => "sysfs",
            Kind::Nftables => "nftables",
            Kind::KernelCmdline => "kernel_cmdline",
            Kind::Package => "package",
            Kind::Unit => "unit",
            Kind::User => "user",
            Kind::Group => "group",
            Kind::File => "file",
        }
    }
}

/// Which side has the thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presence {
    /// Both, with different values.
    Changed,
    /// Only the first snapshot (A).
    OnlyInA,
    /// Only the second snapshot (B).
    OnlyInB,
}

/// One property that differs: A's value, then B's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    /// The property, e.g. `mode`.
    pub field: String,
    /// Its value in A (`None`: not there).
    pub a: Option<String>,
    /// Its value in B.
    pub b: Option<String>,
}

impl FieldDiff {
    pub(crate) fn new(
        field: &str,
        a: impl Into<Option<String>>,
        b: impl Into<Option<String>>,
    ) -> Self {
        FieldDiff {
            field: field.to_owned(),
            a: a.into(),
            b: b.into(),
        }
    }
}

/// One difference between the snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What kind of thing differs.
    pub kind: Kind,
    /// Its identity: the key, package, unit, account name or path.
    pub id: String,
    /// Which side has it.
    pub presence: Presence,
    /// The properties that differ (for one-sided things: what the side that has it says).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
    /// A unified diff A → B of a text file's content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// What stands in for a diff too large or too slow to show, as in check's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<DiffSummary>,
}

/// Every difference between `a` and `b` that the ignore list does not drop, by kind and id.
/// Files are compared where both snapshots looked ([`notes`] says when that is not
/// everywhere). `labels` name A and B in diff headers.
pub fn compare(
    a: &Snapshot,
    b: &Snapshot,
    ignore: &IgnoreList,
    labels: (&str, &str),
) -> Vec<Difference> {
    let mut out = Vec::new();
    entries::sysctl(&a.sysctl, &b.sysctl, &mut out);
    runtime::kernel_modules(a, b, &mut out);
    runtime::nftables(a, b, labels, &mut out);
    runtime::cmdline(a, b, &mut out);
    sysfs::differences(a, b, &mut out);
    entries::packages(&a.packages, &b.packages, &mut out);
    entries::units(&a.units, &b.units, &mut out);
    entries::users(&a.users, &b.users, &mut out);
    entries::groups(&a.groups, &b.groups, &mut out);
    match scope::overlap(a, b) {
        Some((fa, fb)) => entries::files(&fa, &fb, labels, &mut out),
        None => entries::files(&a.files, &b.files, labels, &mut out),
    }
    out.retain(|d| !ignore.ignores(d.kind, &d.id) && !sized_by_kernel(d, a, b));
    out.sort_by(|x, y| (x.kind, &x.id).cmp(&(y.kind, &y.id)));
    // As in a run's report: thousands of whole-file diffs would drown the rest.
    let mut budget = MAX_RUN_DIFFS;
    for d in &mut out {
        keep_within(
            &mut d.diff,
            &mut d.summary,
            &mut budget,
            "the comparison's diffs",
        );
    }
    out
}

/// A kernel setting both sides hold at what their kernel computed for their machine: they
/// differ because the machines do, not because anyone tuned them.
fn sized_by_kernel(d: &Difference, a: &Snapshot, b: &Snapshot) -> bool {
    if d.kind != Kind::Sysctl || d.presence != Presence::Changed {
        return false;
    }
    [a, b].iter().all(|s| {
        let value = s.sysctl.get(&d.id).and_then(|e| e.value.as_deref());
        match (value, &s.host.size) {
            (Some(v), Some(size)) => sized::computed(&d.id, v, size) == Some(true),
            _ => false,
        }
    })
}

/// Walks two maps in key order and calls `both`, `only_a` or `only_b` for each key.
fn zip<'m, V>(
    a: &'m BTreeMap<String, V>,
    b: &'m BTreeMap<String, V>,
    mut visit: impl FnMut(&'m str, Option<&'m V>, Option<&'m V>),
) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        visit(k, a.get(k), b.get(k));
    }
}
