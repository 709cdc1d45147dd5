//! Timers: a job OLD runs from its own timer and service units (both captured files in
//! /etc/systemd/system) becomes one `[[timer]]` with those units' text, instead of two files
//! and a `[[service]]` of the timer. A timer whose units come from a package, or whose files
//! did not differ, stays a `[[service]] name = "NAME.timer"` for its enablement.

use super::{CapturedRole, FileItem};
use crate::resource::service::exec_program;

/// Where an admin's unit files live, and where `[[timer]]` writes them.
const UNIT_DIR: &str = "/etc/systemd/system";

/// A scheduled job: the timer's state and the text of both its units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerItem {
    /// The job's name (units NAME.timer and NAME.service).
    pub name: String,
    /// The timer starts at boot.
    pub enabled: Option<bool>,
    /// `running` or `stopped`, when both hosts ran systemd.
    pub state: Option<&'static str>,
    /// OLD's `NAME.timer`.
    pub timer: FileItem,
    /// OLD's `NAME.service`.
    pub service: FileItem,
    /// Files of the role the job's service runs (its `ExecStart=` programs).
    pub after: Vec<String>,
    /// Where it came from.
    pub comment: String,
}

/// Folds each timer whose two unit files the role captured into one [`TimerItem`].
pub(super) fn fold(role: &mut CapturedRole) {
    let mut i = 0;
    while i < role.services.len() {
        let s = &role.services[i];
        let Some(name) = s.name.strip_suffix(".timer").map(str::to_owned) else {
            i += 1;
            continue;
        };
        let at = |files: &[FileItem], unit: &str| {
            let path = format!("{UNIT_DIR}/{name}.{unit}");
            files.iter().position(|f| f.path == path)
        };
        let both = at(&role.files, "timer").is_some() && at(&role.files, "service").is_some();
        if !both || s.masked == Some(true) {
            i += 1;
            continue;
        }
        let s = role.services.remove(i);
        let timer = role
            .files
            .remove(at(&role.files, "timer").expect("found above"));
        let service = role
            .files
            .remove(at(&role.files, "service").expect("found above"));
        let after = programs(&service.content)
            .filter(|p| role.files.iter().any(|f| &f.path == p))
            .map(|p| format!("file:{p}"))
            .collect();
        role.timers.push(TimerItem {
            name,
            enabled: s.enabled,
            state: s.state,
            timer,
            service,
            after,
            comment: s.comment,
        });
    }
    role.timers.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The absolute programs a service unit's `Exec*=` lines run.
fn programs(unit: &[u8]) -> impl Iterator<Item = String> + '_ {
    let text = std::str::from_utf8(unit).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Exec"))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v))
        .filter_map(exec_program)
        .map(str::to_owned)
}

/// The `[[timer]]` tables, their units' text from the role's files.
pub(super) fn tables(role: &CapturedRole) -> Option<toml_edit::ArrayOfTables> {
    if role.timers.is_empty() {
        return None;
    }
    let mut out = toml_edit::ArrayOfTables::new();
    for t in &role.timers {
        let mut table = toml_edit::Table::new();
        table
            .decor_mut()
            .set_prefix(super::role::comments(&["", &t.comment]));
        table.insert("name", toml_edit::value(&t.name));
        if let Some(e) = t.enabled {
            table.insert("enabled", toml_edit::value(e));
        }
        if let Some(state) = t.state {
            table.insert("state", toml_edit::value(state));
        }
        for (key, file) in [("timer", &t.timer), ("service", &t.service)] {
            let mut unit = toml_edit::InlineTable::new();
            unit.insert("source", role.source_path(&file.path).into());
            table.insert(key, toml_edit::value(unit));
        }
        if !t.after.is_empty() {
            let after: toml_edit::Array = t.after.iter().map(String::as_str).collect();
            table.insert("after", toml_edit::value(after));
        }
        // A job's unit that only root could read on OLD may hold a secret in its command.
        if t.service.sensitive {
            table.insert("sensitive", toml_edit::value(true));
        }
        out.push(table);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_services_programs_are_its_absolute_exec_paths() {
        let unit = b"[Service]\nExecStartPre=-/usr/local/bin/prep x\nExecStart=/usr/local/bin/backup --all\nExecStopPost=true\n";
        let found: Vec<String> = programs(unit).collect();
        assert_eq!(found, ["/usr/local/bin/prep", "/usr/local/bin/backup"]);
    }
}
