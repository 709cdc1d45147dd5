//! Units: enablement and masks of services (and of the timers, sockets and path units that
//! start them), and whether they run when both hosts ran systemd.

use super::{describe, CapturedRole, ServiceItem};
use crate::compare::{Difference, Presence};
use crate::snapshot::{FileType, Snapshot, UnitEntry};

/// Whether `[[service]]` can declare the unit: a plain service, timer, socket or path unit,
/// not a template's instance.
fn declarable(name: &str) -> bool {
    [".service", ".timer", ".socket", ".path"]
        .iter()
        .any(|s| name.ends_with(s))
        && !name.contains('@')
}

/// Unit file states `[[service]]` can set: the rest follow from other units or from files.
fn settable(state: &str) -> bool {
    matches!(state, "enabled" | "disabled" | "masked")
}

/// What `[[service]]` says to make a unit look like `o`.
fn item(name: &str, o: &UnitEntry, comment: String) -> ServiceItem {
    let running = o
        .active
        .as_deref()
        .map(|a| matches!(a, "active" | "reloading" | "activating"));
    ServiceItem {
        name: name.trim_end_matches(".service").to_owned(),
        enabled: match o.state.as_str() {
            "enabled" => Some(true),
            "disabled" => Some(false),
            _ => None,
        },
        masked: Some(o.state == "masked"),
        state: running.map(|r| if r { "running" } else { "stopped" }),
        reload_on_notify: false,
        comment,
    }
}

pub(super) fn difference(role: &mut CapturedRole, old: &Snapshot, new: &Snapshot, d: &Difference) {
    let name = &d.id;
    if !declarable(name) {
        if d.presence != Presence::OnlyInB {
            role.note(format!(
                "unit {name}: [[service]] manages plain service, timer, socket and path units only ({})",
                describe(d)
            ));
        }
        return;
    }
    let Some(o) = old.units.get(name) else {
        role.note(format!("unit {name}: only on {}", role.new_name));
        return;
    };
    // A static unit (a timer's service) follows from its file, captured with the files.
    let own_file = old
        .files
        .contains_key(&format!("/etc/systemd/system/{name}"));
    if o.state == "static" && own_file {
        return;
    }
    if !settable(&o.state) {
        role.note(format!(
            "unit {name}: {} on {} cannot be set by a role",
            o.state, role.old_name
        ));
        return;
    }
    let comment = match new.units.get(name) {
        Some(n) => format!(
            "{}: {}{}; {}: {}{}",
            role.old_name,
            o.state,
            active(o),
            role.new_name,
            n.state,
            active(n)
        ),
        None => format!(
            "{}: {}; no such unit on {} yet",
            role.old_name, o.state, role.new_name
        ),
    };
    let mut svc = item(name, o, comment);
    let new_masked = new.units.get(name).is_some_and(|n| n.state == "masked");
    if o.state != "masked" && !new_masked {
        svc.masked = None;
    }
    // Without a running systemd on both sides the state is not part of the difference.
    if new
        .units
        .get(name)
        .and_then(|n| n.active.as_ref())
        .is_none()
    {
        svc.state = None;
    }
    role.services.push(svc);
}

fn active(u: &UnitEntry) -> String {
    u.active
        .as_deref()
        .map(|a| format!(", {a}"))
        .unwrap_or_default()
}

/// Without NEW: services whose enablement differs from the distribution's preset, and masks.
pub(super) fn beyond_presets(role: &mut CapturedRole, old: &Snapshot) {
    for (name, u) in &old.units {
        if !declarable(name) {
            continue;
        }
        // Debian masks some units itself, in /lib (hwclock, rc, x11-common...): only an
        // admin's mask in /etc/systemd/system counts.
        let admin_mask = old
            .files
            .get(&format!("/etc/systemd/system/{name}"))
            .is_some_and(|f| f.target.as_deref() == Some("/dev/null"));
        // A unit an admin wrote into /etc/systemd/system (no package's file) is captured as
        // a file; the preset said nothing about it, so its enablement is the admin's too.
        let admin_unit = old
            .files
            .get(&format!("/etc/systemd/system/{name}"))
            .is_some_and(|f| f.kind == FileType::File && f.package.is_none());
        let differs = matches!(
            (u.state.as_str(), u.preset.as_deref()),
            ("enabled", Some("disabled")) | ("disabled", Some("enabled"))
        ) || (u.state == "masked" && admin_mask)
            || (u.state == "enabled" && admin_unit);
        if differs {
            let comment = format!(
                "{} on {}; the preset says {}",
                u.state,
                role.old_name,
                u.preset.as_deref().unwrap_or("nothing")
            );
            let mut svc = item(name, u, comment);
            svc.state = None;
            if u.state != "masked" {
                svc.masked = None;
            }
            role.services.push(svc);
        }
    }
}
