//! Fleet preview: what a rollout's candidate bundle would do on a host that is not on it
//! yet, found by checking it read-only after the host's own run.

use serde::{Deserialize, Serialize};

use super::{Report, Status};

/// The candidate, as this host's check of it found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidatePreview {
    /// The candidate bundle id.
    pub candidate: String,
    /// Resources the candidate would change here.
    pub pending: usize,
    /// Resources of the candidate that would fail here (1 when it could not be checked at
    /// all, see `error`).
    pub failed: usize,
    /// Why the candidate could not be checked here at all: not fetched, not verified, or
    /// not planned (a template that fails on this host's facts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is (`invalid_input`, `signature_invalid`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// Each resource the candidate would change or fail on, with why it would fail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<PreviewedResource>,
}

/// One resource the candidate would change or fail on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewedResource {
    /// The resource, e.g. `file:/etc/app.conf`.
    pub id: String,
    /// `pending`, `failed` or `skipped`.
    pub status: String,
    /// Why it would fail or be skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CandidatePreview {
    /// The preview of `candidate` from the check `report` of it.
    pub fn from_check(candidate: &str, report: &Report) -> CandidatePreview {
        let s = &report.summary;
        CandidatePreview {
            candidate: candidate.to_owned(),
            pending: s.changed,
            failed: s.failed,
            error: None,
            error_kind: None,
            resources: report
                .resources
                .iter()
                .filter(|o| o.status != Status::InSync)
                .map(|o| PreviewedResource {
                    id: o.id.to_string(),
                    status: serde_json::to_value(o.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    error: o.error.clone(),
                })
                .collect(),
        }
    }

    /// The preview of a candidate that could not be checked here, and why.
    pub fn unchecked(candidate: &str, error: String, kind: &'static str) -> CandidatePreview {
        CandidatePreview {
            candidate: candidate.to_owned(),
            pending: 0,
            failed: 1,
            error: Some(error),
            error_kind: Some(kind.to_owned()),
            resources: Vec::new(),
        }
    }
}
