//! `[[health]]` checks: does the host still work after the run? Each probe is read-only, so
//! check mode runs it too; a failure after a run that changed something starts a rollback.

mod probe;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use probe::Probe;

use crate::resource::{Kind, ResourceId};
use crate::system::System;

/// Time limit of one attempt when the role does not say.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts after a failed first one when the role does not say.
pub(crate) const DEFAULT_RETRIES: u32 = 3;
/// Pause between attempts when the role does not say.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Wait after the run's restarts and reloads before the first attempt, when the role does not
/// say. `systemctl reload` returns once the signal is sent; nginx, for one, starts its new
/// workers a little later, and until then the old configuration answers.
pub(crate) const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
/// Passes in a row that make a check pass after a change, when the role does not say: one
/// answer can still come from the old state, a pass that holds over a window cannot.
pub(crate) const DEFAULT_PASSES: u32 = 3;

fn default_settle() -> Duration {
    DEFAULT_SETTLE
}

fn default_passes() -> u32 {
    DEFAULT_PASSES
}

/// The longest one attempt may take.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest pause between attempts.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(600);
/// The longest wait after the run's restarts and reloads before the first attempt.
pub(crate) const MAX_SETTLE: Duration = Duration::from_secs(600);
/// The most passes in a row a check may ask for.
pub(crate) const MAX_PASSES: u32 = 100;
/// The most attempts after a failed first one.
pub(crate) const MAX_RETRIES: u32 = 100;
/// The longest a check may hold a run with every attempt failing: a run waits for its health
/// checks before it can roll back, and a check (which probes too) must end.
pub(crate) const MAX_TOTAL: Duration = Duration::from_secs(3600);

/// One health check as planned (and as kept with a run, to probe again after undoing it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Its name; the id is `health:NAME`.
    pub name: String,
    /// What it probes.
    pub probe: Probe,
    /// Limit of one attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts after a failed first one.
    pub retries: u32,
    /// Pause between attempts.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Wait after the run's restarts and reloads before the first attempt.
    #[serde(with = "humantime_serde", default = "default_settle")]
    pub settle: Duration,
    /// Passes in a row needed after a change.
    #[serde(default = "default_passes")]
    pub passes: u32,
    /// Services it watches (names without `.service`).
    pub services: Vec<String>,
    /// The role that declared it.
    pub role: String,
    /// `roles/web.toml:30:1`.
    pub origin: String,
}

/// How a health check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The probe succeeded.
    Passed,
    /// Every attempt failed.
    Failed,
    /// It was not run; the note says why.
    NotRun,
}

/// One health check's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthOutcome {
    /// `health:NAME`.
    pub id: ResourceId,
    /// The role that declared it.
    pub role: String,
    /// What it probes, e.g. `GET http://127.0.0.1/healthz → 200`.
    pub probe: String,
    /// Services it watches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// How it ended.
    pub status: HealthStatus,
    /// Attempts made.
    pub attempts: u32,
    /// What the last attempt saw: success, or why it failed (with the end of any output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What kind of failure the last attempt's was (`http_status`, `connect`, `timeout`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
}

/// What the run did just before its checks: how long they wait, and how long a pass must hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct After {
    /// When the run's last restart or reload returned, if it carried one out.
    pub acted: Option<Instant>,
    /// The run changed the host (a resource, a restart or a reload, or undoing a run).
    pub changed: bool,
}

impl After {
    /// A run that changed nothing: one pass is enough, nothing to wait for.
    pub fn nothing() -> After {
        After::default()
    }
}

impl HealthCheck {
    /// `health:NAME`.
    pub fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Health, self.name.clone())
    }

    /// Probes until it passes or the retries run out. After a change it first waits out
    /// `settle` (counted from the last restart or reload) and passes only when `passes`
    /// attempts in a row succeed; a failure breaks the streak and counts against `retries`.
    /// Under `--root` nothing runs: the services of a tree are not running anywhere.
    pub fn run(&self, sys: &System, after: After) -> HealthOutcome {
        let mut outcome = HealthOutcome {
            id: self.id(),
            role: self.role.clone(),
            probe: self.probe.to_string(),
            services: self.services.clone(),
            status: HealthStatus::NotRun,
            attempts: 0,
            detail: None,
            error_kind: None,
        };
        if !sys.is_live() {
            outcome.detail = Some("not run under --root (nothing runs in a tree)".into());
            return outcome;
        }
        if let Some(acted) = after.acted {
            std::thread::sleep(self.settle.saturating_sub(acted.elapsed()));
        }
        let needed = if after.changed { self.passes.max(1) } else { 1 };
        let (mut streak, mut failures) = (0, 0);
        loop {
            outcome.attempts += 1;
            match self.probe.attempt(sys, self.timeout) {
                Ok(seen) => {
                    streak += 1;
                    outcome.status = HealthStatus::Passed;
                    outcome.detail = Some(seen);
                    outcome.error_kind = None;
                    if streak >= needed {
                        return outcome;
                    }
                }
                Err(failure) => {
                    let why = &failure.why;
                    // The last attempt's failure is the check's: a warning; earlier ones
                    // may still be followed by a pass.
                    if outcome.attempts > self.retries {
                        tracing::warn!(target: crate::outcome_log::OUTCOMES, check = %self.name, attempt = outcome.attempts, %why, "health check {} failed: {why}", self.name);
                    } else {
                        tracing::info!(target: crate::outcome_log::OUTCOMES, check = %self.name, attempt = outcome.attempts, %why, "health check {}: attempt {} failed: {why}", self.name, outcome.attempts);
                    }
                    streak = 0;
                    failures += 1;
                    outcome.status = HealthStatus::Failed;
                    outcome.detail = Some(failure.why);
                    outcome.error_kind = Some(failure.kind);
                    if failures > self.retries {
                        return outcome;
                    }
                }
            }
            std::thread::sleep(self.interval);
        }
    }
}

/// Runs every check in order.
pub(crate) fn run_all(checks: &[HealthCheck], sys: &System, after: After) -> Vec<HealthOutcome> {
    checks.iter().map(|c| c.run(sys, after)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(probe: Probe, retries: u32) -> HealthCheck {
        HealthCheck {
            name: "t".into(),
            probe,
            timeout: Duration::from_secs(2),
            retries,
            interval: Duration::from_millis(10),
            settle: Duration::ZERO,
            passes: 3,
            services: vec![],
            role: "r".into(),
            origin: "roles/r.toml:1:1".into(),
        }
    }

    #[test]
    fn a_failing_probe_is_retried_then_reported_with_its_output() {
        let sys = System::new(Path::new("/")).unwrap();
        let out =
            check(Probe::Command("echo not yet >&2; exit 1".into()), 2).run(&sys, After::nothing());
        assert_eq!(out.status, HealthStatus::Failed);
        assert_eq!(out.attempts, 3);
        assert_eq!(out.detail.as_deref(), Some("exited with status 1: not yet"));
        assert_eq!(out.error_kind, Some("command_failed"));
        let out = check(Probe::Command("true".into()), 2).run(&sys, After::nothing());
        assert_eq!((out.status, out.attempts), (HealthStatus::Passed, 1));
        assert_eq!(out.error_kind, None);
    }

    #[test]
    fn after_a_change_a_pass_counts_only_when_it_holds() {
        let sys = System::new(Path::new("/")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        // Passes once (the old state still answering), then fails from then on.
        let script = format!("test ! -e {0} && touch {0}", seen.display());
        let changed = After {
            acted: Some(Instant::now()),
            changed: true,
        };
        let out = check(Probe::Command(script.clone()), 1).run(&sys, changed);
        assert_eq!((out.status, out.attempts), (HealthStatus::Failed, 3));
        std::fs::remove_file(&seen).unwrap();
        let out = check(Probe::Command(script), 1).run(&sys, After::nothing());
        assert_eq!((out.status, out.attempts), (HealthStatus::Passed, 1));
        let out = check(Probe::Command("true".into()), 1).run(&sys, changed);
        assert_eq!((out.status, out.attempts), (HealthStatus::Passed, 3));
    }

    #[test]
    fn nothing_runs_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let sys = System::new(dir.path()).unwrap();
        let out = check(Probe::Command("exit 1".into()), 0).run(&sys, After::nothing());
        assert_eq!(out.status, HealthStatus::NotRun);
        assert_eq!(out.attempts, 0);
    }

    #[test]
    fn tcp_probes_connect_or_say_why_not() {
        let sys = System::new(Path::new("/")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let out = check(Probe::Tcp(addr.clone()), 0).run(&sys, After::nothing());
        assert_eq!(out.status, HealthStatus::Passed, "{out:?}");
        drop(listener);
        let out = check(Probe::Tcp(addr.clone()), 0).run(&sys, After::nothing());
        assert_eq!(out.status, HealthStatus::Failed);
        assert_eq!(out.error_kind, Some("connect"));
        assert!(
            out.detail
                .as_deref()
                .unwrap()
                .starts_with(&format!("cannot connect to {addr}: ")),
            "{out:?}"
        );
    }
}
