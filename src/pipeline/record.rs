//! `last-run.json`: what the last run did, for people, monitoring and `converge` itself.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::agent::config::AgentConfig;
use crate::durable::{self, FileSpec};
use crate::report::metrics::{self, BundleMetrics, RunMetrics, SourceMetrics};
use crate::report::{Mode, Report, SourceFreshness};

/// Name of the last apply's record in the state dir.
pub const LAST_RUN_FILE: &str = "last-run.json";
/// Name of the last check's record in the state dir: a check never overwrites what the
/// last apply recorded.
pub(crate) const LAST_CHECK_FILE: &str = "last-check.json";

/// Where the roles of a run came from.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// The source as configured.
    pub url: String,
    /// The bundle id used (sha256 of its manifest); empty for a local source tree.
    pub bundle_id: String,
    /// `fresh`, `unchanged`, `stale`, `refused`, `held` or `local`.
    pub freshness: SourceFreshness,
    /// Why the source was stale or refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Objects downloaded by this run.
    pub fetched_objects: usize,
    /// Seconds since the bundle in use was fetched.
    pub bundle_age_seconds: u64,
    /// When the bundle was published (its manifest's `created`, RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The trusted key that signed it (key id); absent when no signature was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// What the publisher said the bundle is (`publish --message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whose bundle this is: `stable`, or `candidate` of a rollout; absent for a source tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track: Option<crate::bundle::Track>,
    /// What the source's rollout file chose for this host in this run: track, bucket,
    /// candidate, share, halted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::bundle::Choice>,
    /// The source offers only expired content, or the bundle in use is past its `expires`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// One run, as written to `last-run.json` (and POSTed to `report_url`) with its report.
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
    /// Whether the plan was `cached` (read back from an earlier run with the same inputs)
    /// or `built` from the source; absent when the plan cache was not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<super::plan_cache::PlanFrom>,
    /// The exit code of the run.
    pub exit_code: i32,
    /// Why the run could not run at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is (`unreachable`, `signature_invalid`, `lock_held`,
    /// `invalid_input`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// What the rollout's candidate would change or fail on here, checked read-only after
    /// the run, while this host is not on it (fleet preview).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<crate::report::preview::CandidatePreview>,
}

/// A record as written, with the run's report (mode, summary, every resource) borrowed
/// from the run, not copied into the record: with thousands of diffs it is the largest
/// thing a run holds.
#[derive(Serialize)]
struct Written<'a> {
    #[serde(flatten)]
    record: &'a RunRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a Report>,
}

impl RunRecord {
    /// A record of a run on the host named in `facts`, started at `started`, that has not
    /// finished yet (exit code 1 until it does).
    pub fn start(facts: &Value, started: SystemTime) -> RunRecord {
        let host = facts
            .get("hostname")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        RunRecord {
            version: env!("CARGO_PKG_VERSION"),
            host,
            started: humantime::format_rfc3339_seconds(started).to_string(),
            finished: String::new(),
            source: None,
            roles: Vec::new(),
            plan: None,
            exit_code: 1,
            error: None,
            error_kind: None,
            candidate: None,
        }
    }

    /// Completes the record with the run's report, or with why it could not run.
    pub fn finish(&mut self, result: &Result<Report, super::RunError>) {
        self.finished = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        match result {
            Ok(report) => {
                self.exit_code = report.exit_code();
            }
            Err(e) => {
                self.error = Some(e.to_string());
                self.error_kind = Some(e.kind());
            }
        }
    }
}

/// Marks an agent run that did nothing because the host is paused: the metrics textfile
/// says `converge_paused 1` beside the last real run's samples; `last-run.json` stays the
/// last real run's.
pub fn keep_paused(config: &AgentConfig, mode: Mode) {
    let path = config.metrics_path(mode);
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let text = metrics::paused(&existing, mode);
    if let Some(dir) = path.parent() {
        let _ = durable::ensure_dir(dir, 0o755);
    }
    if let Err(e) = durable::write_file(&path, text.as_bytes(), &FileSpec::mode(0o644)) {
        tracing::warn!("cannot write the metrics textfile {}: {e}", path.display());
    }
}

/// Writes `last-run.json` and the metrics textfile, and POSTs the record when configured.
/// Failures here are logged, never fatal: the run itself already happened.
pub fn keep(
    config: &AgentConfig,
    mode: Mode,
    started: SystemTime,
    record: &RunRecord,
    report: Option<&Report>,
) {
    let json = serde_json::to_vec_pretty(&Written { record, report }).expect("records serialize");
    let last_run = config.state_dir.join(match mode {
        Mode::Apply => LAST_RUN_FILE,
        Mode::Check => LAST_CHECK_FILE,
    });
    if let Err(e) = durable::write_file(&last_run, &json, &FileSpec::mode(0o600)) {
        tracing::warn!("cannot write the run record {}: {e}", last_run.display());
    }
    let source = record.source.as_ref();
    let finished = SystemTime::now();
    let text = metrics::render(&RunMetrics {
        mode,
        report,
        exit_code: record.exit_code,
        duration_seconds: finished
            .duration_since(started)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64(),
        finished_unix: finished
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as f64,
        source: SourceMetrics {
            bundle_age_seconds: source.map_or(0.0, |s| s.bundle_age_seconds as f64),
            stale: source.is_some_and(|s| s.freshness.fell_back()),
            expired: source.is_some_and(|s| s.expired),
            rollout: source.and_then(|s| {
                let track = s.track?;
                let choice = s.rollout.as_ref();
                Some(metrics::RolloutMetrics {
                    track: track.as_str(),
                    candidate: choice.and_then(|c| c.candidate.clone()).unwrap_or_default(),
                    bucket: choice.and_then(|c| c.bucket).map(|b| b.as_percent()),
                })
            }),
            bundle: source
                .filter(|s| !s.bundle_id.is_empty())
                .map(|s| BundleMetrics {
                    id: s.bundle_id.clone(),
                    signer: s.signer.clone().unwrap_or_default(),
                    message: s.message.clone().unwrap_or_default(),
                    created_unix: s
                        .created
                        .as_deref()
                        .and_then(|c| humantime::parse_rfc3339(c).ok())
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as f64),
                }),
        },
        preview: record.candidate.as_ref(),
    });
    let path = config.metrics_path(mode);
    if let Some(dir) = path.parent() {
        // World-readable, unlike the state dir around it: node_exporter reads it as its own,
        // unprivileged user. A failure shows in the write below.
        let _ = durable::ensure_dir(dir, 0o755);
    }
    if let Err(e) = durable::write_output(&path, text.as_bytes(), &FileSpec::mode(0o644)) {
        tracing::warn!("cannot write the metrics textfile {}: {e}", path.display());
    }
    if let Some(url) = &config.report_url {
        let sent = reqwest::blocking::Client::builder()
            .timeout(config.fetch.timeout)
            .connect_timeout(config.fetch.connect_timeout)
            .build()
            .and_then(|c| {
                c.post(url)
                    .header("content-type", "application/json")
                    .body(json)
                    .send()
            })
            .and_then(|r| r.error_for_status());
        let url = crate::bundle::RedactedUrl(url);
        match sent {
            Ok(_) => tracing::debug!(%url, "report sent"),
            Err(e) => tracing::warn!(%url, error = %e.without_url(), "cannot send the report"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root (container tier, scripts/test)"]
    fn a_metrics_file_that_is_a_device_is_written_to_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let tmp = tempfile::tempdir().unwrap();
        let null = tmp.path().join("null");
        // The same device as /dev/null, made here so the machine's own is never at stake.
        nix::sys::stat::mknod(
            &null,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        let mut config = AgentConfig::for_source("/srv/src");
        config.state_dir = tmp.path().join("state");
        config.metrics_file = Some(null.clone());
        let now = SystemTime::now();
        keep(
            &config,
            Mode::Apply,
            now,
            &RunRecord::start(&serde_json::json!({}), now),
            None,
        );
        let meta = std::fs::symlink_metadata(&null).unwrap();
        assert!(meta.file_type().is_char_device(), "{meta:?}");
        let entries: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["null"], "no temp file left next to it");
    }
}
