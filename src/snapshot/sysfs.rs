//! Kernel attributes admins tune under /sys: transparent hugepages, KSM, and the queue
//! settings of each physical disk. Disks are named by role, not by kernel name, so that a
//! vda host and an nvme0n1 host compare: `root` is the disk holding `/`, `disk1`, `disk2`...
//! the other physical disks in kernel-name order.

use std::collections::BTreeMap;

use crate::system::sysfs::{running_kernel_attribute, running_kernel_disks};
use crate::system::SystemError;

/// Fixed attributes recorded when the kernel has them.
pub(crate) const KNOBS: &[&str] = &[
    "kernel/mm/transparent_hugepage/enabled",
    "kernel/mm/transparent_hugepage/defrag",
    "kernel/mm/ksm/run",
    "kernel/mm/ksm/pages_to_scan",
];

/// Queue attributes recorded for each physical disk.
pub(crate) const QUEUE: &[&str] = &["scheduler", "read_ahead_kb", "nr_requests"];

/// The label of the disk holding `/`.
pub(crate) const ROOT_DISK: &str = "root";

/// What a snapshot records of /sys: values by key (`block/@root/queue/scheduler` for a
/// disk's), and which disk each label stands for.
pub(super) type Observed = (BTreeMap<String, String>, BTreeMap<String, String>);

/// Labels for `disks`: the root disk is `root`, the others `disk1`, `disk2`... in order.
pub(crate) fn labels(disks: &[String], root: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut n = 0;
    for d in disks {
        if Some(d.as_str()) == root {
            out.insert(ROOT_DISK.to_owned(), d.clone());
        } else {
            n += 1;
            out.insert(format!("disk{n}"), d.clone());
        }
    }
    out
}

/// The running kernel's tuned attributes, whatever tree is observed.
pub(super) fn observe() -> Result<Observed, SystemError> {
    let mut values = BTreeMap::new();
    for knob in KNOBS {
        if let Some(v) = running_kernel_attribute(knob) {
            values.insert((*knob).to_owned(), v.value);
        }
    }
    let (disks, root) = running_kernel_disks()?;
    let disks = labels(&disks, root.as_deref());
    for (label, name) in &disks {
        for attr in QUEUE {
            if let Some(v) = running_kernel_attribute(&format!("block/{name}/queue/{attr}")) {
                values.insert(format!("block/@{label}/queue/{attr}"), v.value);
            }
        }
    }
    Ok((values, disks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_disk_is_labelled_root_and_the_others_numbered() {
        let disks = ["nvme0n1", "nvme1n1", "sda"].map(String::from);
        let got = labels(&disks, Some("nvme1n1"));
        let got: Vec<_> = got.iter().map(|(l, d)| format!("{l}={d}")).collect();
        assert_eq!(got, ["disk1=nvme0n1", "disk2=sda", "root=nvme1n1"]);
    }
}
