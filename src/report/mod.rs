//! The result of a run as one value; printers in `human` and `json` render it.

pub mod human;
pub mod json;
pub mod metrics;
pub mod preview;
pub mod rollback;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::diagnostics::Location;
use crate::health::{HealthOutcome, HealthStatus};
use crate::resource::{Change, ResourceId};

/// Whether a run only looked or also changed things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Observe and diff only.
    Check,
    /// Converge.
    Apply,
}

/// How one resource ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to do.
    InSync,
    /// Check mode: it would change.
    Pending,
    /// Apply mode: it changed.
    Changed,
    /// It could not be observed or converged.
    Failed,
    /// Not attempted because something it depends on failed.
    Skipped,
}

/// One resource's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The resource.
    pub id: ResourceId,
    /// The role that declared it (shared with the plan).
    pub role: Arc<str>,
    /// Where it was declared, written `roles/web.toml:12:1` (its file shared with the plan;
    /// text only when the report is written, not held per resource).
    #[serde(serialize_with = "as_text")]
    pub origin: Location,
    /// How it ended.
    pub status: Status,
    /// What changed or would change.
    // Boxed: most outcomes of a run are in sync, and an inline change would make every one
    // of them (thousands, all held until the report is written) twice the size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Box<Change>>,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is, e.g. `missing_parent`, `command_failed`, `timeout`,
    /// or `skipped` when a dependency failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// Remarks that hold whether or not it changed (e.g. what `--root` cannot manage).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A value as its `Display` text.
fn as_text<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// What a notified service gets at the end of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyAction {
    /// `systemctl try-restart`.
    Restart,
    /// `systemctl reload` (the service asked for `reload_on_notify`).
    Reload,
}

impl NotifyAction {
    /// The verb for human output.
    pub fn verb(self) -> &'static str {
        match self {
            NotifyAction::Restart => "restart",
            NotifyAction::Reload => "reload",
        }
    }
}

/// How a notification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyStatus {
    /// Check mode: it would happen.
    Pending,
    /// Apply mode: it happened.
    Done,
    /// Not needed; the note says why (started in this run, not running, `--root`).
    NotNeeded,
    /// The service itself did not converge, so it was left alone.
    Skipped,
    /// The restart or reload failed.
    Failed,
}

/// One restart or reload, requested by resources that changed, done once at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// The service.
    pub service: ResourceId,
    /// Restart or reload.
    pub action: NotifyAction,
    /// The changed resources that asked for it, in run order.
    pub notified_by: Vec<NotifiedBy>,
    /// How it ended.
    pub status: NotifyStatus,
    /// Why it was not needed or skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is (`timeout`, `command_failed`...), as for resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
}

/// Who asked for a restart or reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifiedBy {
    /// A resource of this run that changed.
    Resource(ResourceId),
    /// A run that ended before carrying out its request (kept in the notify journal).
    EarlierRun,
}

impl std::fmt::Display for NotifiedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifiedBy::Resource(id) => id.fmt(f),
            NotifiedBy::EarlierRun => f.write_str("pending:earlier-run"),
        }
    }
}

impl Serialize for NotifiedBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// All resources.
    pub total: usize,
    /// In sync.
    pub in_sync: usize,
    /// Changed (apply) or pending (check).
    pub changed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped after a failed dependency.
    pub skipped: usize,
    /// Restarts and reloads that failed: not resources, so not in `failed`, but failures of
    /// the run all the same.
    pub failed_notifications: usize,
}

/// Everything one run did or would do.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Check or apply.
    pub mode: Mode,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// How long it took.
    pub duration_ms: u64,
    /// Counts by status.
    pub summary: Summary,
    /// Every resource, in the order it converged.
    pub resources: Vec<Outcome>,
    /// Restarts and reloads at the end of the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
    /// Health checks, after the restarts and reloads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<HealthOutcome>,
    /// The rollback that a failing health check started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<rollback::Rollback>,
    /// The bundle in use was rolled back on this host earlier; the run converges the last
    /// good bundle instead (`stand_in`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<rollback::HeldBundle>,
    /// The bundle the run checked or applied; absent for a source tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleUsed>,
    /// While `held`: the last good bundle the run converged instead, so that a held host
    /// still repairs drift. `None` when no such bundle is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stand_in: Option<String>,
    /// Why apply refused the run as a whole (a file its `validate` rejected): nothing of it
    /// is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Which bundle a run used, and how fresh it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleUsed {
    /// Bundle id (sha256 of its manifest).
    pub id: String,
    /// `fresh`, `unchanged`, `stale`, `refused` or `held`.
    pub freshness: SourceFreshness,
}

/// How the roles a run used relate to its source: the one value records, reports, metrics
/// and the journal decide on, written as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFreshness {
    /// A source tree, read in place.
    Local,
    /// The bundle at the source, fetched by this run.
    Fresh,
    /// The bundle at the source, already kept from an earlier run.
    Unchanged,
    /// The source could not be reached; the last known good bundle stood in.
    Stale,
    /// The bundle at the source was refused; the last known good bundle stood in.
    Refused,
    /// The bundle at the source was rolled back on this host; the last good one stood in.
    Held,
}

impl SourceFreshness {
    /// The name records and reports write.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFreshness::Local => "local",
            SourceFreshness::Fresh => "fresh",
            SourceFreshness::Unchanged => "unchanged",
            SourceFreshness::Stale => "stale",
            SourceFreshness::Refused => "refused",
            SourceFreshness::Held => "held",
        }
    }

    /// The run could not use the bundle its source offers and fell back to a kept one
    /// (a held host's stand-in is a decision, not a fault, so it does not count).
    pub(crate) fn fell_back(self) -> bool {
        matches!(self, SourceFreshness::Stale | SourceFreshness::Refused)
    }
}

impl std::fmt::Display for SourceFreshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Report {
    /// Assembles a report and its summary.
    pub fn new(mode: Mode, started: SystemTime, took: Duration, resources: Vec<Outcome>) -> Self {
        let mut summary = Summary {
            total: resources.len(),
            ..Summary::default()
        };
        for r in &resources {
            match r.status {
                Status::InSync => summary.in_sync += 1,
                Status::Pending | Status::Changed => summary.changed += 1,
                Status::Failed => summary.failed += 1,
                Status::Skipped => summary.skipped += 1,
            }
        }
        Report {
            mode,
            started: humantime::format_rfc3339_seconds(started).to_string(),
            duration_ms: took.as_millis() as u64,
            summary,
            resources,
            notifications: Vec::new(),
            health: Vec::new(),
            rollback: None,
            held: None,
            bundle: None,
            stand_in: None,
            refused: None,
        }
    }

    /// Adds the health checks' outcomes.
    pub(crate) fn with_health(mut self, health: Vec<HealthOutcome>) -> Self {
        self.health = health;
        self
    }

    /// The health checks that failed.
    pub(crate) fn failed_health(&self) -> impl Iterator<Item = &HealthOutcome> {
        self.health
            .iter()
            .filter(|h| h.status == HealthStatus::Failed)
    }

    /// Adds the end-of-run notifications; a failed restart or reload is a failure of the
    /// run, counted apart from the resources.
    pub(crate) fn with_notifications(mut self, notifications: Vec<Notification>) -> Self {
        self.summary.failed_notifications = notifications
            .iter()
            .filter(|n| n.status == NotifyStatus::Failed)
            .count();
        self.notifications = notifications;
        self
    }

    /// Puppet's detailed exit codes: 0 in sync, 2 changes, 4 failures, 6 both. A restart or
    /// reload done (or pending in check) is a change even when every resource was in sync,
    /// as when it was left open by an earlier, interrupted run.
    pub fn exit_code(&self) -> i32 {
        if self.rollback.as_ref().is_some_and(|r| !r.preview)
            || (self.held.is_some() && self.mode == Mode::Apply)
        {
            // The run's changes are undone: nothing changed, and the run failed.
            return 4;
        }
        let mut code = 0;
        let acted = self
            .notifications
            .iter()
            .any(|n| matches!(n.status, NotifyStatus::Done | NotifyStatus::Pending));
        if self.summary.changed > 0 || acted {
            code |= 2;
        }
        if self.summary.failed + self.summary.skipped + self.summary.failed_notifications > 0
            || self.failed_health().next().is_some()
        {
            code |= 4;
        }
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_is_written_as_the_names_records_always_had() {
        use SourceFreshness::*;
        let all = [Local, Fresh, Unchanged, Stale, Refused, Held];
        let written: Vec<String> = all
            .iter()
            .map(|f| serde_json::to_string(f).unwrap())
            .collect();
        assert_eq!(
            written,
            [
                "\"local\"",
                "\"fresh\"",
                "\"unchanged\"",
                "\"stale\"",
                "\"refused\"",
                "\"held\""
            ]
        );
        for f in all {
            assert_eq!(format!("\"{f}\""), serde_json::to_string(&f).unwrap());
        }
        let fell_back: Vec<_> = all.into_iter().filter(|f| f.fell_back()).collect();
        assert_eq!(fell_back, [Stale, Refused]);
    }
}
