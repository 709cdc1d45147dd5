//! Runtime kernel state: modules loaded by hand become `[[kernel_module]]`, tables of the
//! ruleset `[[nftables]]`; the kernel command line is said, not captured.

use super::{CapturedRole, KernelModuleItem, NftablesItem};
use crate::compare::{Difference, Presence};
use crate::snapshot::Snapshot;

pub(super) fn kernel_module(role: &mut CapturedRole, d: &Difference) {
    match d.presence {
        Presence::OnlyInA => {
            role.kernel_modules.push(KernelModuleItem {
                name: d.id.clone(),
                comment: format!(
                    "loaded on {} (not a driver of its hardware, nor needed by another module); not on {}",
                    role.old_name, role.new_name
                ),
            });
            role.note(format!(
                "kernel module {}: captured; [[kernel_module]] also keeps it loaded at boot with /etc/modules-load.d/converge-{}.conf, which a second compare shows",
                d.id, d.id
            ));
        }
        _ => role.note(format!(
            "kernel module {}: loaded on {} only (a [[kernel_module]] with ensure = \"absent\" would unload it)",
            d.id, role.new_name
        )),
    }
}

pub(super) fn nftables(role: &mut CapturedRole, old: &Snapshot, d: &Difference) {
    let Some((family, table)) = d.id.split_once('/') else {
        return;
    };
    match d.presence {
        Presence::Changed | Presence::OnlyInA => {
            let Some(body) = old.nftables.as_ref().and_then(|t| t.get(&d.id)) else {
                return;
            };
            role.nftables.push(NftablesItem {
                family: family.to_owned(),
                table: table.to_owned(),
                content: body.clone(),
                comment: if d.presence == Presence::Changed {
                    format!(
                        "the table as on {}; {} has other rules",
                        role.old_name, role.new_name
                    )
                } else {
                    format!(
                        "the table as on {}; {} has no such table",
                        role.old_name, role.new_name
                    )
                },
            });
            role.note(format!(
                "nftables {}: captured; [[nftables]] also keeps it for boot in /etc/nftables.d/converge-{family}-{table}.nft, which a second compare shows",
                d.id
            ));
        }
        Presence::OnlyInB => role.note(format!(
            "nftables {}: only on {} (left alone)",
            d.id, role.new_name
        )),
    }
}

pub(super) fn cmdline(role: &mut CapturedRole, d: &Difference) {
    let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
    let (a, b) = d
        .fields
        .first()
        .map(|f| (side(&f.a), side(&f.b)))
        .unwrap_or_default();
    role.note(format!(
        "kernel command line {}: {a} on {}, {b} on {}; not captured: the boot loader holds it (GRUB_CMDLINE_LINUX in /etc/default/grub, update-grub, then a reboot)",
        d.id, role.old_name, role.new_name
    ));
}
