//! `last-run.json`: what the last run did, for people, monitoring and `converge` itself.

use serde::Serialize;

use crate::report::Report;

/// Where the roles of a run came from.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// The source as configured.
    pub url: String,
    /// The bundle id used (sha256 of its manifest); empty for a local source tree.
    pub bundle_id: String,
    /// `fresh`, `unchanged`, `stale`, `refused` or `local`.
    pub freshness: String,
    /// Why the source was stale or refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Objects downloaded by this run.
    pub fetched_objects: usize,
    /// Seconds since the bundle in use was fetched.
    pub bundle_age_seconds: u64,
}

/// One run, as written to `last-run.json` (and POSTed to `report_url`).
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// converge's version.
    pub version: &'static str,
    /// Host name.
    pub host: String,
    /// When the run started (RFC 3339).
    pub started: String,
    /// When it finished (RFC 3339).
    pub finished: String,
    /// Where the roles came from (absent when the run failed before reading a source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStatus>,
    /// The roles applied.
    pub roles: Vec<String>,
    /// The exit code of the run.
    pub exit_code: i32,
    /// Why the run could not run at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run report: mode, summary, every resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
}
