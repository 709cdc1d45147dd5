//! What a rollback did: each change undone (or why not), the services acted on again, and the
//! health checks after it.

use serde::{Deserialize, Serialize};

use crate::health::HealthOutcome;
use crate::report::NotifyAction;

/// How one change fared in a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStatus {
    /// Put back as it was (or, in a preview, would be).
    Restored,
    /// It already was as before the run.
    Unchanged,
    /// converge does not undo this kind of change; the note says why.
    NotRolledBack,
    /// Restoring it failed.
    Failed,
    /// Changed since the run: not restored without `--force`, so nothing was changed.
    Refused,
}

/// One change of the run, undone or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restore {
    /// The resource, e.g. `file:/etc/nginx/nginx.conf`.
    pub resource: String,
    /// How it went.
    pub status: RestoreStatus,
    /// Why it was not rolled back, what failed, or what was not kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a failed restore, what kind of failure it was (`timeout`, `io`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// For a file, what restoring it changes: the live content → the content before the
    /// run (a preview and a refusal show it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<crate::resource::ContentChange>,
}

/// A restart or reload done again once the old configuration is back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRestore {
    /// `nginx.service`.
    pub unit: String,
    /// `restart` or `reload`.
    pub action: NotifyAction,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is (`timeout`, `command_failed`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
}

/// Everything a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollback {
    /// The run whose changes were undone.
    pub run: String,
    /// What started it: the failing check and what it saw, or "by hand".
    pub reason: String,
    /// Only a preview (`converge rollback --check`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub preview: bool,
    /// The run was rolled back before and nothing is left to undo.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_rolled_back: bool,
    /// Every change of the run, newest first.
    pub restored: Vec<Restore>,
    /// Services restarted or reloaded afterwards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceRestore>,
    /// The health checks run again afterwards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<HealthOutcome>,
}

impl Rollback {
    /// Whether everything that can be undone was, and every service action succeeded.
    pub fn complete(&self) -> bool {
        !self
            .restored
            .iter()
            .any(|r| matches!(r.status, RestoreStatus::Failed | RestoreStatus::Refused))
            && !self.services.iter().any(|s| s.error.is_some())
    }

    /// The changes refused because their paths changed since the run.
    pub fn refused(&self) -> impl Iterator<Item = &Restore> {
        self.restored
            .iter()
            .filter(|r| r.status == RestoreStatus::Refused)
    }

    /// Whether no health check failed after it.
    pub fn healthy(&self) -> bool {
        !self
            .health
            .iter()
            .any(|h| h.status == crate::health::HealthStatus::Failed)
    }
}

/// A bundle that was rolled back on this host: the agent keeps the host on its last good
/// state instead of applying it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBundle {
    /// The bundle id (sha256 of its manifest).
    pub bundle: String,
    /// The run that was rolled back.
    pub run: String,
    /// The failing health check and what it saw.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}
