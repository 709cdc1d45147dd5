//! `service`: a systemd service unit (or the timer, socket or path unit that starts one),
//! enabled or not, masked or not, running or stopped.

use std::time::Duration;

use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, PlanSlots};
use crate::system::services::{UnitStatus, UnitVerb};
use crate::system::{Host, System};

/// Whether a service should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RunState {
    /// Started.
    Running,
    /// Stopped.
    Stopped,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
        }
    }
}

/// Unit types other than `.service`. A role's `[[service]]` may name the ones that start a
/// service (`.timer`, `.socket`, `.path`); the library plans others itself only where it
/// must.
pub(crate) const OTHER_UNIT_SUFFIXES: &[&str] = &[
    ".socket",
    ".timer",
    ".target",
    ".mount",
    ".automount",
    ".path",
    ".slice",
    ".scope",
    ".device",
    ".swap",
];

/// The full unit name of the service called `name`: `nginx` → `nginx.service`; a name that
/// carries another unit type (`converge.timer`) is the unit itself.
pub(crate) fn unit_name(name: &str) -> String {
    if OTHER_UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_owned()
    } else {
        format!("{name}.service")
    }
}

/// The program an `ExecStart=`-style command line runs, when it names one by absolute path
/// (after systemd's prefixes `@-:+!`): a file the unit needs to exist.
pub(crate) fn exec_program(command_line: &str) -> Option<&str> {
    command_line
        .split_whitespace()
        .next()
        .map(|p| p.trim_start_matches(['@', '-', ':', '+', '!']))
        .filter(|p| p.starts_with('/'))
}

/// A managed systemd service; `None` settings are left as they are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceResource {
    /// Unit name without the `.service` suffix (`nginx`), or with its other type
    /// (`backup.timer`).
    pub name: String,
    /// Start at boot.
    pub enabled: Option<bool>,
    /// Masked.
    pub masked: Option<bool>,
    /// Running or stopped now (only on the running system).
    pub state: Option<RunState>,
    /// Reload rather than restart when notified.
    pub reload_on_notify: bool,
    /// The resource of this run that provides the unit file (filled in by the plan).
    pub unit_provider: Option<ResourceId>,
    /// The deadline of each `systemctl` change to it, its notified restart included, when
    /// the role sets one; else the host's.
    pub timeout: Option<Duration>,
}

/// What a service resource finds.
#[derive(Debug)]
pub struct ServiceLive {
    status: UnitStatus,
}

impl ServiceResource {
    /// `host` with this service's own deadline, when it has one.
    pub(crate) fn host_for<'a>(&self, host: &Host<'a>) -> Host<'a> {
        let mut timeouts = *host.timeouts();
        if let Some(t) = self.timeout {
            timeouts.service = t;
        }
        host.with_timeouts(timeouts)
    }

    /// The full unit name, e.g. `nginx.service` (see [`unit_name`]).
    pub fn unit(&self) -> String {
        unit_name(&self.name)
    }

    /// Masked as asked; enabling or starting a unit implies unmasking it, as `enable` cannot
    /// work on a masked unit and a role that says "running" means it.
    fn want_masked(&self) -> Option<bool> {
        self.masked.or_else(|| {
            (self.enabled == Some(true) || self.state == Some(RunState::Running)).then_some(false)
        })
    }

    /// Whether the role needs the unit to exist: enabling or starting it.
    fn needs_unit(&self, live: bool) -> bool {
        self.enabled == Some(true) || (live && self.state == Some(RunState::Running))
    }
}

/// What converging a service takes, worked out once from its live status: `diff` reports
/// these steps and `apply` carries out exactly them.
#[derive(Debug, Default)]
struct Steps {
    /// Masked now, and wanted.
    masked: Option<(bool, bool)>,
    /// Enabled now, and wanted.
    enabled: Option<(bool, bool)>,
    /// Active state now, and wanted.
    state: Option<(String, RunState)>,
}

impl ServiceResource {
    fn steps(&self, st: &UnitStatus) -> Steps {
        let mut steps = Steps::default();
        let masked = st.masked();
        if let Some(want) = self.want_masked() {
            if want != masked {
                steps.masked = Some((masked, want));
            }
        }
        if let Some(want) = self.enabled {
            // A unit this run has yet to create counts as disabled, which is what apply will
            // find once it exists, so check and apply print the same record.
            let now = if masked || st.not_found() {
                Some(false)
            } else {
                st.enabled()
            };
            if let Some(now) = now.filter(|now| *now != want) {
                steps.enabled = Some((now, want));
            }
        }
        // Offline (--root) nothing runs, so the state is not managed; see `notes`.
        if let (Some(want), Some(active)) = (self.state, &st.active) {
            let in_sync = match want {
                RunState::Running => matches!(active.as_str(), "active" | "reloading"),
                RunState::Stopped => matches!(active.as_str(), "inactive" | "failed"),
            };
            if !in_sync {
                steps.state = Some((active.clone(), want));
            }
        }
        steps
    }
}

impl ServiceResource {
    /// When the unit is still missing and a package of this run ships it: Debian packages
    /// enable and start their services from their install scripts, so apply, which looks
    /// at the service after the package is in, may find less to do than check shows.
    fn installed_by_package(&self, sys: &System) -> Option<String> {
        let package = self
            .unit_provider
            .as_ref()
            .filter(|p| p.kind == Kind::Package)?;
        let missing = sys.services().status(sys, &self.unit()).ok()?.not_found();
        missing.then(|| {
            format!(
                "{package} installs this unit in this run, and its install script may enable \
                 or start it itself: apply then shows only what is left to do"
            )
        })
    }
}

impl Resource for ServiceResource {
    type Live = ServiceLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Service, self.name.clone())
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint::no_path()
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<ServiceLive, ResourceError> {
        let status = sys.services().status(sys, &self.unit())?;
        // A unit nothing in this run will create fails now, so check does not promise an
        // enable or start that apply cannot do.
        if status.not_found()
            && self.needs_unit(sys.services().runs_units(sys))
            && self.unit_provider.is_none()
        {
            return Err(ResourceError::UnitNotFound {
                unit: self.unit(),
                hint: "no unit file, and nothing in this run provides one (give the service a \
                       `unit`, or declare the package that ships it and name it in `after`)"
                    .into(),
            });
        }
        Ok(ServiceLive { status })
    }

    fn diff(&self, live: &ServiceLive) -> Option<Change> {
        let steps = self.steps(&live.status);
        let starts = matches!(steps.state, Some((_, RunState::Running)));
        let mut fields = Vec::new();
        if let Some((now, want)) = steps.masked {
            let text = |b: bool| Some(b.to_string());
            fields.push(FieldChange::new("masked", text(now), text(want)));
        }
        if let Some((now, want)) = steps.enabled {
            let name = |on: bool| Some(if on { "enabled" } else { "disabled" }.to_owned());
            fields.push(FieldChange::new("enabled", name(now), name(want)));
        }
        if let Some((now, want)) = steps.state {
            fields.push(FieldChange::new(
                "state",
                Some(now),
                Some(want.as_str().to_owned()),
            ));
        }
        (!fields.is_empty()).then(|| Change {
            starts,
            ..Change::fields(Action::Update, fields)
        })
    }

    fn apply(
        &self,
        host: &Host,
        live: &ServiceLive,
        _change: &Change,
    ) -> Result<(), ResourceError> {
        let steps = self.steps(&live.status);
        let starts = matches!(steps.state, Some((_, RunState::Running)));
        if live.status.not_found() && (self.enabled == Some(true) || starts) {
            let from = self.unit_provider.as_ref();
            return Err(ResourceError::UnitNotFound {
                unit: self.unit(),
                hint: match from {
                    Some(id) => format!("{id} converged but did not provide it"),
                    None => "no unit file".into(),
                },
            });
        }
        let unit = self.unit();
        let services = host.system().services();
        let host = &self.host_for(host);
        let systemctl = |verb| services.act(host, verb, &unit);
        // Unmask before enable/start can work; mask last, after disable/stop.
        if let Some((_, false)) = steps.masked {
            systemctl(UnitVerb::Unmask)?;
        }
        if let Some((_, want)) = steps.enabled {
            let verb = if want {
                UnitVerb::Enable
            } else {
                UnitVerb::Disable
            };
            systemctl(verb)?;
        }
        if let Some((_, want)) = steps.state {
            let verb = match want {
                RunState::Running => UnitVerb::Start,
                RunState::Stopped => UnitVerb::Stop,
            };
            systemctl(verb)?;
        }
        if let Some((_, true)) = steps.masked {
            systemctl(UnitVerb::Mask)?;
        }
        Ok(())
    }

    fn notes(&self, sys: &System) -> Vec<String> {
        match self.state {
            Some(state) if !sys.is_live() => vec![format!(
                "state = \"{}\" is not managed under --root (nothing runs in a tree)",
                state.as_str()
            )],
            Some(state) if !sys.services().runs_units(sys) => vec![format!(
                "state = \"{}\" is not managed: systemd is not running here (no \
                 /run/systemd/system); enablement is managed in the unit files",
                state.as_str()
            )],
            _ => self.installed_by_package(sys).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(load: &str, active: Option<&str>, file_state: &str) -> ServiceLive {
        ServiceLive {
            status: UnitStatus {
                load: load.into(),
                active: active.map(Into::into),
                file_state: file_state.into(),
                main_pid: None,
            },
        }
    }

    fn svc() -> ServiceResource {
        ServiceResource {
            name: "web".into(),
            enabled: Some(true),
            masked: None,
            state: Some(RunState::Running),
            reload_on_notify: false,
            unit_provider: None,
            timeout: None,
        }
    }

    #[test]
    fn a_command_lines_program_is_its_absolute_first_word() {
        assert_eq!(
            exec_program("-/usr/local/bin/x --all"),
            Some("/usr/local/bin/x")
        );
        assert_eq!(exec_program("true"), None);
        assert_eq!(exec_program("  "), None);
    }

    #[test]
    fn a_name_with_a_unit_type_is_the_unit_itself() {
        assert_eq!(unit_name("nginx"), "nginx.service");
        assert_eq!(unit_name("converge.timer"), "converge.timer");
    }

    #[test]
    fn running_enabled_unit_is_in_sync() {
        assert_eq!(svc().diff(&live("loaded", Some("active"), "enabled")), None);
    }

    #[test]
    fn masked_unit_is_unmasked_enabled_and_started() {
        let change = svc()
            .diff(&live("masked", Some("inactive"), "masked"))
            .unwrap();
        let names: Vec<&str> = change.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["masked", "enabled", "state"]);
        assert!(change.starts);
    }

    #[test]
    fn static_units_never_flap_and_offline_state_is_ignored() {
        assert_eq!(svc().diff(&live("loaded", None, "static")), None);
    }
}
