//! Capture reproduces the effect, not only the files: a captured file that takes effect only
//! through an action gets that action in the role, guarded so that it runs when the file is
//! newer than what the action produced, and commented with why. Where the command is not
//! installed the file has nothing to take effect through (no GRUB on a host that boots
//! otherwise, no locales package) and the exec does nothing. A service's configuration
//! notifies the service; unit files need nothing here, since converge itself runs
//! `systemctl daemon-reload` after changing one.

use super::{CapturedRole, ExecItem, ServiceItem};
use crate::snapshot::Snapshot;

/// The exec that updates apt's package lists; captured packages come after it.
pub(super) const APT_UPDATE: &str = "apt-update";

/// A file whose change takes effect through a command.
struct Action {
    /// The exec's name.
    name: &'static str,
    /// The program that makes the file take effect: without it there is nothing to run.
    program: &'static str,
    /// Whether a captured path is one this action makes take effect.
    matches: fn(&str) -> bool,
    command: &'static str,
    /// What the command writes: it runs while an input is newer than this (or it is missing).
    output: &'static str,
    /// Every input, for the guard (missing ones are skipped).
    inputs: &'static [&'static str],
    why: &'static str,
    /// Said in the role's header too.
    note: Option<&'static str>,
}

const ACTIONS: &[Action] = &[
    Action {
        name: "locale-gen",
        program: "locale-gen",
        matches: |p| p == "/etc/locale.gen",
        command: "locale-gen",
        output: "/usr/lib/locale/locale-archive",
        inputs: &["/etc/locale.gen"],
        why: "locales are compiled from /etc/locale.gen by locale-gen; the file alone changes nothing",
        note: None,
    },
    Action {
        name: "ldconfig",
        program: "ldconfig",
        matches: |p| p == "/etc/ld.so.conf" || p.starts_with("/etc/ld.so.conf.d/"),
        command: "ldconfig",
        output: "/etc/ld.so.cache",
        inputs: &["/etc/ld.so.conf", "/etc/ld.so.conf.d"],
        why: "the dynamic linker reads /etc/ld.so.cache, which ldconfig builds from the ld.so.conf files",
        note: None,
    },
    Action {
        name: APT_UPDATE,
        program: "apt-get",
        matches: |p| {
            p == "/etc/apt/sources.list"
                || ["/etc/apt/sources.list.d/", "/etc/apt/trusted.gpg.d/", "/etc/apt/keyrings/"]
                    .iter()
                    .any(|d| p.starts_with(d))
        },
        // The lists directory is touched so that an update that fetched nothing new still
        // satisfies the guard.
        command: "apt-get update -q && touch /var/lib/apt/lists",
        output: "/var/lib/apt/lists",
        inputs: &[
            "/etc/apt/sources.list",
            "/etc/apt/sources.list.d",
            "/etc/apt/trusted.gpg.d",
            "/etc/apt/keyrings",
        ],
        why: "a new or changed apt source offers its packages only once the package lists are updated; captured packages come after this",
        note: None,
    },
    Action {
        name: "update-grub",
        program: "update-grub",
        matches: |p| p == "/etc/default/grub" || p.starts_with("/etc/default/grub.d/"),
        command: "update-grub",
        output: "/boot/grub/grub.cfg",
        inputs: &["/etc/default/grub", "/etc/default/grub.d"],
        why: "GRUB reads /boot/grub/grub.cfg, which update-grub builds from /etc/default/grub; a reboot is needed for the kernel command line to change",
        note: Some("/etc/default/grub is captured with update-grub: a reboot is needed before the new kernel command line holds"),
    },
];

/// Services that reread their configuration on `systemctl reload`; others are restarted.
const RELOADABLE: &[&str] = &[
    "ssh",
    "nginx",
    "apache2",
    "haproxy",
    "postgresql",
    "rsyslog",
    "named",
    "postfix",
    "dovecot",
    "squid",
    "varnish",
    "cron",
    "fail2ban",
];

/// The guard: succeeds (the command is skipped) where the program is not installed, and
/// while `output` exists and no input is newer than it.
fn guard(action: &Action) -> String {
    format!(
        "! command -v {program} >/dev/null || {{ test -e {out} && test -z \"$(find {inputs} -newer {out} 2>/dev/null)\"; }}",
        program = action.program,
        out = action.output,
        inputs = action.inputs.join(" ")
    )
}

/// Adds the actions and notifications the captured files need.
pub(super) fn add(role: &mut CapturedRole, old: &Snapshot) {
    for action in ACTIONS {
        let after: Vec<String> = role
            .files
            .iter()
            .map(|f| ("file", &f.path))
            .chain(role.symlinks.iter().map(|s| ("symlink", &s.path)))
            .filter(|(_, p)| (action.matches)(p))
            .map(|(kind, p)| format!("{kind}:{p}"))
            .collect();
        if after.is_empty() {
            continue;
        }
        if let Some(note) = action.note {
            role.after_apply(note.to_owned());
        }
        role.execs.push(ExecItem {
            name: action.name.to_owned(),
            command: action.command.to_owned(),
            unless: guard(action),
            after,
            comment: format!(
                "{}; it runs when one of them is newer than {}, and does nothing where {} is not installed",
                action.why, action.output, action.program
            ),
        });
    }
    notify_services(role, old);
}

/// A captured file under a service's configuration notifies the service: the package that
/// owns it runs a unit of its name, or its directory in /etc (or /etc/default) is named
/// after one.
fn notify_services(role: &mut CapturedRole, old: &Snapshot) {
    let mut notified: Vec<String> = Vec::new();
    for f in &mut role.files {
        if f.path.starts_with("/etc/systemd/") {
            f.comment
                .push_str("; a unit file: converge runs systemctl daemon-reload after changing it");
            continue;
        }
        let package = old
            .files
            .get(&f.path)
            .and_then(|e| e.package.as_deref())
            .map(|p| p.split(':').next().unwrap_or(p));
        let rest = f.path.strip_prefix("/etc/").unwrap_or("");
        let dir = match rest.split_once('/') {
            Some(("default", name)) => Some(name),
            Some((dir, _)) => Some(dir),
            None => None,
        };
        let Some(service) = [package, dir]
            .into_iter()
            .flatten()
            .find(|name| runs(old, name))
        else {
            continue;
        };
        f.notify.push(format!("service:{service}"));
        f.comment.push_str(&format!(
            "; {service} reads it: notified so the change takes effect"
        ));
        if !notified.iter().any(|s| s == service) {
            notified.push(service.to_owned());
        }
    }
    for service in notified {
        let reload = RELOADABLE.contains(&service.as_str());
        match role.services.iter_mut().find(|s| s.name == service) {
            Some(s) => s.reload_on_notify = reload,
            None => role.services.push(ServiceItem {
                name: service.clone(),
                enabled: None,
                masked: None,
                state: None,
                reload_on_notify: reload,
                comment: format!(
                    "{} when its captured configuration changes",
                    if reload { "reloaded" } else { "restarted" }
                ),
            }),
        }
    }
}

/// Whether OLD has a service unit `name` that is not masked (a service can run).
fn runs(old: &Snapshot, name: &str) -> bool {
    old.units
        .get(&format!("{name}.service"))
        .is_some_and(|u| u.state != "masked" && !name.contains('@'))
}
