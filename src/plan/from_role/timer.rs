//! `[[timer]]`: a scheduled job as one declaration. It plans what an admin would write by
//! hand: the service unit that runs the job and the timer unit that schedules it, as
//! ordinary file resources in /etc/systemd/system (their diffs, backups, rollback and
//! `--root` are the file path's), and the timer's state as `service:NAME.timer` (enabled,
//! started exactly as a `[[service]]` of that name would be). The service itself is neither
//! enabled nor started: the timer starts it. A masked timer is stopped and disabled first,
//! then its unit file gives way to the mask (`systemctl mask` refuses to replace a file).
//!
//! Both unit files must pass `systemd-analyze verify` before they replace anything, and a
//! setting systemd would ignore (a calendar expression it cannot parse, an unknown key) is
//! refused too, not only what makes verify fail: a job that silently never runs is the
//! failure to avoid.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::services::{unit_name_ok, UNIT_DIR};
use super::{control_character, Builder, Common};
use crate::resource::absent::AbsentResource;
use crate::resource::file::FileResource;
use crate::resource::service::{exec_program, RunState, ServiceResource, OTHER_UNIT_SUFFIXES};
use crate::resource::symlink::SymlinkResource;
use crate::resource::{AnyResource, Kind, ResourceId};
use crate::role::model::{ServiceState, TimerEnsure, TimerSpec};
use crate::role::Role;

/// The check both unit files must pass: verify's verdict, and no setting of the checked
/// file that systemd says it ignores. `{path}` is spelled with safe characters only.
pub(crate) const VERIFY: &str = "out=$(systemd-analyze verify --man=no {path} 2>&1); rc=$?; \
    printf '%s\\n' \"$out\"; test $rc = 0 && ! printf '%s\\n' \"$out\" | grep -F {path}: | grep -q ignoring";

/// The unit text `[[timer]]` writes, worked out from its keys.
#[derive(Debug, Default)]
struct Schedule {
    description: Option<String>,
    on_calendar: Vec<String>,
    /// `(key, duration)` pairs: `OnBootSec`, `OnActiveSec`, `OnUnitActiveSec`.
    relative: Vec<(&'static str, Duration)>,
    persistent: Option<bool>,
    randomized_delay: Option<Duration>,
    accuracy: Option<Duration>,
}

impl Schedule {
    fn timer_text(&self, name: &str) -> String {
        let mut out = String::from("[Unit]\n");
        out += &format!("Description={}\n", description(&self.description, name));
        out += "\n[Timer]\n";
        for c in &self.on_calendar {
            out += &format!("OnCalendar={c}\n");
        }
        for (key, d) in &self.relative {
            out += &format!("{key}={}\n", span(*d));
        }
        if let Some(p) = self.persistent {
            out += &format!("Persistent={p}\n");
        }
        if let Some(d) = self.randomized_delay {
            out += &format!("RandomizedDelaySec={}\n", span(d));
        }
        if let Some(d) = self.accuracy {
            out += &format!("AccuracySec={}\n", span(d));
        }
        out += "\n[Install]\nWantedBy=timers.target\n";
        out
    }
}

fn description(given: &Option<String>, name: &str) -> String {
    given
        .clone()
        .unwrap_or_else(|| format!("{name} (scheduled job)"))
}

/// A duration as systemd reads a time span (`1h 30m`, `500ms`).
fn span(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The oneshot service that runs `command`. `%` is doubled so that systemd's specifiers
/// (`%h`, `%i`...) never rewrite the command the role wrote (`date +%F` stays as written).
fn service_text(
    name: &str,
    description_: &Option<String>,
    command: &str,
    user: Option<&str>,
) -> String {
    let mut out = String::from("[Unit]\n");
    out += &format!("Description={}\n", description(description_, name));
    out += "\n[Service]\nType=oneshot\n";
    out += &format!("ExecStart={}\n", command.replace('%', "%%"));
    if let Some(user) = user {
        out += &format!("User={user}\n");
    }
    out
}

impl Builder<'_> {
    pub(super) fn timers(&mut self, role: &Role) {
        for spec in &role.spec.timer {
            self.timer(role, spec);
        }
    }

    fn timer(&mut self, role: &Role, spec: &Spanned<TimerSpec>) {
        let s = spec.get_ref();
        let offset = spec.span().start;
        let raw = s.name.get_ref();
        let name = raw.strip_suffix(".timer").unwrap_or(raw).to_owned();
        let typed = OTHER_UNIT_SUFFIXES
            .iter()
            .chain(&[".service"])
            .any(|suffix| name.ends_with(suffix));
        if !unit_name_ok(&name) || typed {
            self.errors.push(role.error_at(
                s.name.span().start,
                format!("invalid timer name '{}': expected a unit name without its type, such as \"backup\" (units backup.timer and backup.service)", raw.escape_debug()),
            ));
            return;
        }
        let Ok(timeout) = self.timeout(role, s.timeout.as_ref()) else {
            return;
        };
        let timer_unit = format!("{name}.timer");
        let timer_path = PathBuf::from(format!("{UNIT_DIR}/{timer_unit}"));
        let service_path = PathBuf::from(format!("{UNIT_DIR}/{name}.service"));
        let state_id = ResourceId::new(Kind::Service, timer_unit.clone());
        let timer_state = |enabled, state, masked| ServiceResource {
            name: timer_unit.clone(),
            enabled,
            masked,
            state,
            reload_on_notify: false,
            unit_provider: None,
            timeout,
        };
        if s.ensure == TimerEnsure::Absent {
            if let Some(offending) = self.present_only_key(s) {
                self.errors.push(role.error_at(
                    offset,
                    format!("timer '{name}': {offending} only goes with ensure = \"present\" (an absent timer is stopped, disabled and its unit files removed)"),
                ));
                return;
            }
            let stop = timer_state(Some(false), Some(RunState::Stopped), None);
            self.push(role, Common::new(offset, &s.after), stop);
            for path in [timer_path, service_path] {
                let common = Common {
                    implicit_after: vec![state_id.clone()],
                    ..Common::new(offset, &[])
                };
                self.push(role, common, AbsentResource { path, force: false });
            }
            return;
        }
        let masked = s.masked == Some(true);
        let wants_up = s.enabled == Some(true) || s.state == Some(ServiceState::Running);
        if masked && wants_up {
            self.errors.push(role.error_at(
                offset,
                format!("timer '{name}': masked = true contradicts enabled = true or state = \"running\""),
            ));
            return;
        }
        let Some(service_id) = self.job_service(role, s, &name, &service_path) else {
            return;
        };
        if masked {
            if let Some(t) = &s.timer {
                self.errors.push(role.error_at(
                    t.span().start,
                    format!("timer '{name}': masked = true cannot go with a timer unit: the mask is a link at {}, where the unit file would be", timer_path.display()),
                ));
                return;
            }
            // Stopped and disabled while its unit file is there to say what to stop; then
            // the mask takes the file's place (the file kept in the run's backup). The
            // service stays, to run the job by hand.
            let stop = timer_state(Some(false), Some(RunState::Stopped), None);
            let common = Common {
                implicit_after: vec![service_id],
                ..Common::new(offset, &[])
            };
            self.push(role, common, stop);
            let mask = SymlinkResource {
                path: timer_path,
                target: PathBuf::from("/dev/null"),
                force: false,
                managed_ancestor: Default::default(),
            };
            let common = Common {
                implicit_after: vec![state_id],
                ..Common::new(offset, &[])
            };
            self.push(role, common, mask);
            return;
        }
        let Some(timer_file) = self.timer_unit(role, s, &name, &timer_path, &service_id) else {
            return;
        };
        let state = timer_state(
            s.enabled.or(Some(true)),
            Some(match s.state {
                Some(ServiceState::Stopped) => RunState::Stopped,
                _ => RunState::Running,
            }),
            s.masked,
        );
        let common = Common {
            implicit_after: vec![service_id, timer_file],
            ..Common::new(offset, &[])
        };
        self.push(role, common, state);
    }

    /// The first key that describes a present job, for an absent one that names it.
    fn present_only_key(&self, s: &TimerSpec) -> Option<&'static str> {
        let keys = [
            ("enabled = true", s.enabled == Some(true)),
            (
                "state = \"running\"",
                s.state == Some(ServiceState::Running),
            ),
            ("masked", s.masked.is_some()),
            ("description", s.description.is_some()),
            ("on_calendar", s.on_calendar.is_some()),
            ("on_boot", s.on_boot.is_some()),
            ("on_active", s.on_active.is_some()),
            ("on_unit_active", s.on_unit_active.is_some()),
            ("persistent", s.persistent.is_some()),
            ("randomized_delay", s.randomized_delay.is_some()),
            ("accuracy", s.accuracy.is_some()),
            ("command", s.command.is_some()),
            ("user", s.user.is_some()),
            ("service", s.service.is_some()),
            ("timer", s.timer.is_some()),
            ("sensitive", s.sensitive),
        ];
        keys.iter().find(|(_, given)| *given).map(|(key, _)| *key)
    }

    /// The service unit of the job, from `command` or `service`; its file's id.
    fn job_service(
        &mut self,
        role: &Role,
        s: &TimerSpec,
        name: &str,
        path: &std::path::Path,
    ) -> Option<ResourceId> {
        let offset = s.name.span().start;
        match (&s.command, &s.service) {
            (Some(_), Some(unit)) | (None, Some(unit))
                if s.command.is_some() || s.user.is_some() =>
            {
                let key = if s.command.is_some() {
                    "command"
                } else {
                    "user"
                };
                self.errors.push(role.error_at(
                    unit.span().start,
                    format!("timer '{name}': {key} and service exclude each other (the service unit's text says what runs, and as whom)"),
                ));
                None
            }
            (_, Some(unit)) => {
                let what = format!("service unit of timer '{name}'");
                let id = self.unit_file(role, unit, path, what, None, Some(VERIFY.to_owned()))?;
                if s.sensitive {
                    self.hide_last();
                }
                Some(id)
            }
            (None, None) => {
                self.errors.push(role.error_at(
                    offset,
                    format!("timer '{name}' needs the job: command = \"...\" or service = {{ content | template | source }}"),
                ));
                None
            }
            (Some(command), None) => {
                let text = command.get_ref();
                if let Some(problem) = line_problem(text) {
                    self.errors.push(role.error_at(
                        command.span().start,
                        format!("timer '{name}': invalid command: {problem}; expected one command line, as ExecStart= takes it"),
                    ));
                    return None;
                }
                let user = match &s.user {
                    Some(u) if !user_name_ok(u.get_ref()) => {
                        self.errors.push(role.error_at(
                            u.span().start,
                            format!("timer '{name}': invalid user '{}': expected a user name such as \"backup\"", u.get_ref().escape_debug()),
                        ));
                        return None;
                    }
                    u => u.as_ref().map(|u| u.get_ref().as_str()),
                };
                let description = self.one_line(role, name, "description", &s.description)?;
                let unit = service_text(name, &description, text, user);
                let mut file = FileResource::system(path.to_path_buf(), unit);
                file.validate = Some(VERIFY.to_owned());
                // The program the job runs (verify looks for it) and the user it runs as,
                // when this run makes them.
                let program = exec_program(text).map(|p| ResourceId::new(Kind::File, p));
                let runs_as = user.map(|u| ResourceId::new(Kind::User, u));
                let common = Common {
                    implicit_after: program.into_iter().chain(runs_as).collect(),
                    ..Common::new(command.span().start, &s.after)
                };
                self.push(role, common, file);
                if s.sensitive {
                    self.hide_last();
                }
                Some(ResourceId::new(Kind::File, path.to_string_lossy()))
            }
        }
    }

    /// The timer unit, from the schedule keys or `timer`; its file's id. It follows the
    /// service's unit file, and a change to it restarts the timer so the new schedule holds.
    fn timer_unit(
        &mut self,
        role: &Role,
        s: &TimerSpec,
        name: &str,
        path: &std::path::Path,
        service_file: &ResourceId,
    ) -> Option<ResourceId> {
        let timer_unit = format!("{name}.timer");
        if let Some(unit) = &s.timer {
            if let Some(key) = self.schedule_key(s) {
                self.errors.push(role.error_at(
                    unit.span().start,
                    format!("timer '{name}': {key} and timer exclude each other (the timer unit's text holds the schedule)"),
                ));
                return None;
            }
            let what = format!("timer unit of timer '{name}'");
            let id = self.unit_file(
                role,
                unit,
                path,
                what,
                Some(timer_unit.as_str()),
                Some(VERIFY.to_owned()),
            )?;
            self.follow_last(service_file);
            return Some(id);
        }
        let schedule = self.schedule(role, s, name)?;
        let mut file = FileResource::system(path.to_path_buf(), schedule.timer_text(name));
        file.validate = Some(VERIFY.to_owned());
        let common = Common {
            implicit_after: vec![service_file.clone()],
            ..Common::new(s.name.span().start, &[])
        };
        self.push(role, common, file);
        self.notify_unit(role, s.name.span().start, &timer_unit);
        Some(ResourceId::new(Kind::File, path.to_string_lossy()))
    }

    /// The resource just pushed goes after `id` too.
    /// Makes the unit file just planned sensitive: its command line can carry a secret, so
    /// its text stays out of diffs, logs, reports and systemd's verify output, and the file
    /// and its backups are root's alone (systemd reads units as root).
    fn hide_last(&mut self) {
        if let Some(item) = self.items.last_mut() {
            if let AnyResource::File(f) = &mut item.resource {
                f.sensitive = true;
                f.ownership.mode = Some(0o600);
            }
            if let Some(r) = &mut item.rendered {
                r.sensitive = true;
            }
        }
    }

    fn follow_last(&mut self, id: &ResourceId) {
        if let Some(item) = self.items.last_mut() {
            item.edges_mut().implicit_after.push(id.clone());
        }
    }

    /// A key of the schedule that is set, for a declaration that gives the timer's text.
    fn schedule_key(&self, s: &TimerSpec) -> Option<&'static str> {
        [
            ("on_calendar", s.on_calendar.is_some()),
            ("on_boot", s.on_boot.is_some()),
            ("on_active", s.on_active.is_some()),
            ("on_unit_active", s.on_unit_active.is_some()),
            ("persistent", s.persistent.is_some()),
            ("randomized_delay", s.randomized_delay.is_some()),
            ("accuracy", s.accuracy.is_some()),
        ]
        .iter()
        .find(|(_, given)| *given)
        .map(|(key, _)| *key)
    }

    /// The schedule keys, each checked where it is written.
    fn schedule(&mut self, role: &Role, s: &TimerSpec, name: &str) -> Option<Schedule> {
        let mut schedule = Schedule {
            description: self.one_line(role, name, "description", &s.description)?,
            persistent: s.persistent,
            ..Schedule::default()
        };
        if let Some(c) = &s.on_calendar {
            for expr in &c.get_ref().0 {
                if let Some(problem) = line_problem(expr) {
                    self.errors.push(role.error_at(
                        c.span().start,
                        format!("timer '{name}': invalid on_calendar: {problem}; expected a calendar expression such as \"daily\" or \"*-*-* 02:30:00\""),
                    ));
                    return None;
                }
                schedule.on_calendar.push(expr.trim().to_owned());
            }
        }
        let relative = [
            ("on_boot", "OnBootSec", &s.on_boot),
            ("on_active", "OnActiveSec", &s.on_active),
            ("on_unit_active", "OnUnitActiveSec", &s.on_unit_active),
        ];
        for (key, unit_key, value) in relative {
            if let Some(d) = self.duration(role, name, key, value)? {
                schedule.relative.push((unit_key, d));
            }
        }
        if schedule.on_calendar.is_empty() && schedule.relative.is_empty() {
            self.errors.push(role.error_at(
                s.name.span().start,
                format!("timer '{name}' needs a schedule: on_calendar, on_boot, on_active or on_unit_active (or the timer unit's text as timer = {{ ... }})"),
            ));
            return None;
        }
        schedule.randomized_delay =
            self.duration(role, name, "randomized_delay", &s.randomized_delay)?;
        schedule.accuracy = self.duration(role, name, "accuracy", &s.accuracy)?;
        Some(schedule)
    }

    /// A duration key: `Some(None)` when unset, `None` after a located error.
    fn duration(
        &mut self,
        role: &Role,
        name: &str,
        key: &str,
        value: &Option<Spanned<String>>,
    ) -> Option<Option<Duration>> {
        let Some(v) = value else {
            return Some(None);
        };
        // Zero is systemd's own "at once" (OnBootSec=0, RandomizedDelaySec=0).
        let any = super::duration::Limits {
            zero: true,
            max: None,
        };
        match super::duration::read(v.get_ref(), any, "\"30s\", \"15m\" or \"1h\"") {
            Ok(d) => Some(Some(d)),
            Err(expected) => {
                self.errors.push(role.error_at(
                    v.span().start,
                    format!(
                        "timer '{name}': invalid {key} '{}': {expected}",
                        v.get_ref().escape_debug()
                    ),
                ));
                None
            }
        }
    }

    /// A text key that goes on one line of a unit: `Some(None)` when unset.
    fn one_line(
        &mut self,
        role: &Role,
        name: &str,
        key: &str,
        value: &Option<Spanned<String>>,
    ) -> Option<Option<String>> {
        let Some(v) = value else {
            return Some(None);
        };
        if let Some(problem) = control_character(v.get_ref()) {
            self.errors.push(role.error_at(
                v.span().start,
                format!("timer '{name}': invalid {key}: {problem}; expected one line of text"),
            ));
            return None;
        }
        Some(Some(v.get_ref().clone()))
    }
}

/// What keeps `text` from being one value on one line of a unit, if anything.
fn line_problem(text: &str) -> Option<String> {
    control_character(text).or_else(|| text.trim().is_empty().then(|| "is empty".to_owned()))
}

/// A user name as `useradd` accepts it (or a numeric id).
fn user_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nightly_job_is_a_oneshot_service_and_a_timer() {
        let schedule = Schedule {
            on_calendar: vec!["*-*-* 02:30:00".into()],
            persistent: Some(true),
            randomized_delay: Some(Duration::from_secs(1800)),
            ..Schedule::default()
        };
        assert_eq!(
            schedule.timer_text("backup"),
            "[Unit]\nDescription=backup (scheduled job)\n\n[Timer]\nOnCalendar=*-*-* 02:30:00\n\
             Persistent=true\nRandomizedDelaySec=30m\n\n[Install]\nWantedBy=timers.target\n"
        );
        assert_eq!(
            service_text(
                "backup",
                &Some("Nightly".into()),
                "/bin/sh -c 'date +%F'",
                Some("backup")
            ),
            "[Unit]\nDescription=Nightly\n\n[Service]\nType=oneshot\n\
             ExecStart=/bin/sh -c 'date +%%F'\nUser=backup\n"
        );
    }
}
