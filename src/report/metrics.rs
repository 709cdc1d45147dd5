//! The Prometheus textfile (node_exporter's textfile collector) written after each run.

use std::fmt::Write;

use super::preview::CandidatePreview;
use super::{Mode, Report};

/// What the metrics say about where the roles came from.
#[derive(Debug, Clone, Default)]
pub struct SourceMetrics {
    /// Seconds since the bundle in use was fetched (0 for a local source tree).
    pub bundle_age_seconds: f64,
    /// The source could not be read or served bad content; the last known good was used.
    pub stale: bool,
    /// The bundle in use; `None` for a local source tree or a run that read no source.
    pub bundle: Option<BundleMetrics>,
    /// The source offers only expired content, or the bundle in use is past its `expires`.
    pub expired: bool,
    /// Which bundle of a rollout the host runs; `None` for a local source tree.
    pub rollout: Option<RolloutMetrics>,
}

/// A host's place in a rollout, as `converge_rollout_track` and `converge_rollout_bucket`.
#[derive(Debug, Clone, Default)]
pub struct RolloutMetrics {
    /// `stable` or `candidate`.
    pub track: &'static str,
    /// The candidate the source's rollout file names; empty when none (or no rollout was
    /// read this run).
    pub candidate: String,
    /// The host's bucket for that candidate, 0 to 99.99.
    pub bucket: Option<f64>,
}

/// The bundle in use, as labels of `converge_bundle_info`.
#[derive(Debug, Clone, Default)]
pub struct BundleMetrics {
    /// Bundle id (sha256 of its manifest).
    pub id: String,
    /// Key id of the trusted key that signed it; empty when unverified.
    pub signer: String,
    /// What the publisher said it is; empty when nothing was said.
    pub message: String,
    /// When it was published (unix seconds), when known.
    pub created_unix: Option<f64>,
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One run as the textfile shows it.
#[derive(Debug, Clone)]
pub struct RunMetrics<'a> {
    /// Check or apply: every sample is labelled with it.
    pub mode: Mode,
    /// The run's report; `None` when the run could not run at all (exit 1).
    pub report: Option<&'a Report>,
    /// The run's exit code.
    pub exit_code: i32,
    /// The whole run, fetching the bundle included.
    pub duration_seconds: f64,
    /// When the run ended (unix seconds).
    pub finished_unix: f64,
    /// Where the roles came from.
    pub source: SourceMetrics,
    /// What the rollout's candidate would do here, when this host checked it.
    pub preview: Option<&'a CandidatePreview>,
}

const PAUSED: &str = "paused";
const PAUSED_HELP: &str =
    "1 when agent runs are paused for maintenance (converge pause) and change nothing.";

/// The textfile after an agent run that did nothing because the host is paused: the last
/// real run's samples kept as they were, `converge_paused` set to 1.
pub fn paused(existing: &str, mode: Mode) -> String {
    let name = format!("converge_{PAUSED}");
    let mut out: String = existing
        .lines()
        .filter(|l| {
            let sample = l
                .strip_prefix(&name)
                .is_some_and(|r| r.starts_with(['{', ' ']));
            let about = [format!("# HELP {name} "), format!("# TYPE {name} ")]
                .iter()
                .any(|p| l.starts_with(p.as_str()));
            !sample && !about
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let mode = match mode {
        Mode::Check => "check",
        Mode::Apply => "apply",
    };
    let _ = writeln!(out, "# HELP {name} {PAUSED_HELP}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name}{{mode=\"{mode}\"}} 1");
    out
}

/// Renders the textfile for a finished run, including one that could not run: monitoring
/// must see every run, not keep showing the last good one.
pub fn render(run: &RunMetrics) -> String {
    let mode = match run.mode {
        Mode::Check => "check",
        Mode::Apply => "apply",
    };
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP converge_{name} {help}");
        let _ = writeln!(out, "# TYPE converge_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "converge_{name}{labels} {value}");
        }
    };
    let m = format!("{{mode=\"{mode}\"}}");
    metric(
        "last_run_timestamp_seconds",
        "When the last run finished (unix time).",
        "gauge",
        &[(&m, run.finished_unix)],
    );
    metric(
        "last_run_duration_seconds",
        "How long the last run took, fetching the bundle included.",
        "gauge",
        &[(&m, run.duration_seconds)],
    );
    metric(
        "last_run_exit_code",
        "Exit code of the last run: 0 in sync, 2 changes, 4 failures, 6 both, 1 could not run.",
        "gauge",
        &[(&m, f64::from(run.exit_code))],
    );
    if let Some(report) = run.report {
        let s = &report.summary;
        let labels: Vec<String> = ["total", "in_sync", "changed", "failed", "skipped"]
            .iter()
            .map(|state| format!("{{mode=\"{mode}\",state=\"{state}\"}}"))
            .collect();
        let counts = [s.total, s.in_sync, s.changed, s.failed, s.skipped];
        let samples: Vec<(&str, f64)> = labels
            .iter()
            .zip(counts)
            .map(|(l, c)| (l.as_str(), c as f64))
            .collect();
        metric(
            "resources",
            "Resources of the last run by outcome (changed: made in apply, pending in check).",
            "gauge",
            &samples,
        );
        metric(
            "notifications_failed",
            "Restarts and reloads that failed in the last run (not counted in converge_resources).",
            "gauge",
            &[(&m, s.failed_notifications as f64)],
        );
        metric(
            "drift_detected",
            "1 when the last run found the host out of sync with its roles.",
            "gauge",
            // A failed or skipped resource is not known to be in sync either (a file its
            // validate refused differs from its role).
            &[(&m, f64::from(u8::from(s.in_sync < s.total)))],
        );
        metric(
            "health_checks_failed",
            "Health checks that failed in the last run (before any rollback).",
            "gauge",
            &[(&m, report.failed_health().count() as f64)],
        );
        metric(
            "rolled_back",
            "1 when the last run's changes were rolled back after a failing health check.",
            "gauge",
            &[(
                &m,
                f64::from(u8::from(
                    report.rollback.as_ref().is_some_and(|r| !r.preview),
                )),
            )],
        );
        metric(
            "bundle_held",
            "1 when the current bundle was rolled back on this host and is not applied again (the host stays on its last good state).",
            "gauge",
            &[(&m, f64::from(u8::from(report.held.is_some())))],
        );
        if let Some(held) = &report.held {
            let info = format!("{{mode=\"{mode}\",id=\"{}\"}}", label(&held.bundle));
            metric(
                "bundle_held_info",
                "The bundle this host holds back after rolling it back (while it is held).",
                "gauge",
                &[(&info, 1.0)],
            );
        }
    }
    if let Some(preview) = run.preview {
        let labels = format!(
            "{{mode=\"{mode}\",candidate=\"{}\"}}",
            label(&preview.candidate)
        );
        metric(
            "candidate_pending",
            "Resources the rollout's candidate bundle would change on this host (fleet preview, while the host is not on it).",
            "gauge",
            &[(&labels, preview.pending as f64)],
        );
        metric(
            "candidate_failed",
            "Resources of the rollout's candidate bundle that would fail on this host (1 when it could not be checked at all).",
            "gauge",
            &[(&labels, preview.failed as f64)],
        );
    }
    metric(PAUSED, PAUSED_HELP, "gauge", &[(&m, 0.0)]);
    metric(
        "bundle_age_seconds",
        "Age of the bundle the last run used, since it was fetched.",
        "gauge",
        &[(&m, run.source.bundle_age_seconds)],
    );
    metric(
        "source_stale",
        "1 when the source was unreachable or refused and the last known good bundle was used.",
        "gauge",
        &[(&m, f64::from(u8::from(run.source.stale)))],
    );
    metric(
        "source_expired",
        "1 when the source offers only expired content (a manifest or rollout file past its expires), or the bundle in use has expired: the publisher has stopped re-signing, or a mirror is frozen.",
        "gauge",
        &[(&m, f64::from(u8::from(run.source.expired)))],
    );
    if let Some(r) = &run.source.rollout {
        let labels = format!(
            "{{mode=\"{mode}\",track=\"{}\",candidate=\"{}\"}}",
            r.track,
            label(&r.candidate)
        );
        metric(
            "rollout_track",
            "Which bundle of a rollout the last run converged: track is stable or candidate; candidate names the candidate the source's rollout file offers (empty when none).",
            "gauge",
            &[(&labels, 1.0)],
        );
        if let Some(bucket) = r.bucket {
            let labels = format!("{{mode=\"{mode}\",candidate=\"{}\"}}", label(&r.candidate));
            metric(
                "rollout_bucket",
                "This host's bucket (0 to 99.99, after its rollout_wariness) for the candidate: the host is on the candidate when it is below the rollout's percent.",
                "gauge",
                &[(&labels, bucket)],
            );
        }
    }
    if let Some(bundle) = &run.source.bundle {
        let info = format!(
            "{{mode=\"{mode}\",id=\"{}\",signer=\"{}\",message=\"{}\"}}",
            label(&bundle.id),
            label(&bundle.signer),
            label(&bundle.message)
        );
        metric(
            "bundle_info",
            "The bundle the last run used: its id, the key that signed it and its publish message.",
            "gauge",
            &[(&info, 1.0)],
        );
        if let Some(created) = bundle.created_unix {
            metric(
                "bundle_created_timestamp_seconds",
                "When the bundle the last run used was published (unix time).",
                "gauge",
                &[(&m, created)],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Outcome, Status};
    use crate::resource::Kind;
    use crate::resource::ResourceId;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn textfile_has_help_type_and_samples() {
        let outcome = |status| Outcome {
            id: ResourceId::new(Kind::File, "/x"),
            role: "r".into(),
            origin: crate::diagnostics::Location {
                file: std::path::Path::new("roles/r.toml").into(),
                line: 1,
                col: 1,
            },
            status,
            change: None,
            error: None,
            error_kind: None,
            notes: Vec::new(),
        };
        let report = Report::new(
            Mode::Apply,
            UNIX_EPOCH,
            Duration::from_millis(1500),
            vec![
                outcome(Status::InSync),
                outcome(Status::Changed),
                outcome(Status::Failed),
            ],
        )
        .with_notifications(vec![crate::report::Notification {
            service: ResourceId::new(Kind::Service, "nginx"),
            action: crate::report::NotifyAction::Reload,
            notified_by: Vec::new(),
            status: crate::report::NotifyStatus::Failed,
            note: None,
            error: Some("nginx: [emerg] unknown directive".into()),
            error_kind: Some("command_failed"),
        }]);
        let text = render(&RunMetrics {
            mode: Mode::Apply,
            report: Some(&report),
            exit_code: report.exit_code(),
            duration_seconds: 1.5,
            finished_unix: 1000.0,
            source: SourceMetrics {
                bundle_age_seconds: 60.0,
                stale: true,
                bundle: Some(BundleMetrics {
                    id: "9eb1fa".into(),
                    signer: "A6835A2538371116".into(),
                    message: "deploy \"v2\" \\ web".into(),
                    created_unix: Some(1_764_075_600.0),
                }),
                expired: true,
                rollout: Some(RolloutMetrics {
                    track: "candidate",
                    candidate: "c0ffee".into(),
                    bucket: Some(7.25),
                }),
            },
            preview: None,
        });
        for line in [
            "converge_source_expired{mode=\"apply\"} 1",
            "converge_rollout_track{mode=\"apply\",track=\"candidate\",candidate=\"c0ffee\"} 1",
            "converge_rollout_bucket{mode=\"apply\",candidate=\"c0ffee\"} 7.25",
            "# TYPE converge_last_run_timestamp_seconds gauge",
            "converge_last_run_timestamp_seconds{mode=\"apply\"} 1000",
            "converge_last_run_duration_seconds{mode=\"apply\"} 1.5",
            "converge_last_run_exit_code{mode=\"apply\"} 6",
            "converge_resources{mode=\"apply\",state=\"total\"} 3",
            "converge_resources{mode=\"apply\",state=\"changed\"} 1",
            "converge_resources{mode=\"apply\",state=\"failed\"} 1",
            "converge_notifications_failed{mode=\"apply\"} 1",
            "converge_drift_detected{mode=\"apply\"} 1",
            "converge_bundle_age_seconds{mode=\"apply\"} 60",
            "converge_source_stale{mode=\"apply\"} 1",
            "converge_bundle_info{mode=\"apply\",id=\"9eb1fa\",signer=\"A6835A2538371116\",message=\"deploy \\\"v2\\\" \\\\ web\"} 1",
            "converge_bundle_created_timestamp_seconds{mode=\"apply\"} 1764075600",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // A run that could not run still says when, how, and that it failed.
        let failed = render(&RunMetrics {
            mode: Mode::Check,
            report: None,
            exit_code: 1,
            duration_seconds: 0.25,
            finished_unix: 2000.0,
            source: SourceMetrics::default(),
            preview: None,
        });
        assert!(failed
            .lines()
            .any(|l| l == "converge_last_run_exit_code{mode=\"check\"} 1"));
        assert!(failed
            .lines()
            .any(|l| l == "converge_last_run_timestamp_seconds{mode=\"check\"} 2000"));
        assert!(!failed.contains("converge_resources"), "{failed}");

        // A paused run keeps the last run's samples and flips only the pause.
        assert!(
            text.contains("converge_paused{mode=\"apply\"} 0\n"),
            "{text}"
        );
        let paused_text = paused(&text, Mode::Apply);
        assert_eq!(
            paused_text.matches("converge_paused").count(),
            3,
            "{paused_text}"
        );
        assert!(
            paused_text.ends_with("converge_paused{mode=\"apply\"} 1\n"),
            "{paused_text}"
        );
        assert!(paused_text.contains("converge_resources{mode=\"apply\",state=\"changed\"} 1\n"));
        assert_eq!(paused(&paused_text, Mode::Apply), paused_text);
        assert!(!text.contains("converge_bundle_held_info"), "{text}");
    }

    #[test]
    fn a_candidate_preview_has_its_counts_under_the_candidate_id() {
        let report = Report::new(Mode::Apply, UNIX_EPOCH, Duration::ZERO, Vec::new());
        let preview = CandidatePreview::unchecked(
            "c0ffee",
            "templates/app.hbs:1:1: ...".into(),
            "invalid_input",
        );
        let text = render(&RunMetrics {
            mode: Mode::Apply,
            report: Some(&report),
            exit_code: 0,
            duration_seconds: 1.0,
            finished_unix: 1000.0,
            source: SourceMetrics::default(),
            preview: Some(&preview),
        });
        assert!(
            text.contains("converge_candidate_pending{mode=\"apply\",candidate=\"c0ffee\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("converge_candidate_failed{mode=\"apply\",candidate=\"c0ffee\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn a_held_bundle_is_named() {
        let mut report = Report::new(Mode::Apply, UNIX_EPOCH, Duration::ZERO, Vec::new());
        report.held = Some(crate::report::rollback::HeldBundle {
            bundle: "c0ffee".into(),
            run: "r1".into(),
            reason: "health check web failed".into(),
            at: "2026-12-07T10:00:00Z".into(),
        });
        let text = render(&RunMetrics {
            mode: Mode::Apply,
            report: Some(&report),
            exit_code: 0,
            duration_seconds: 1.0,
            finished_unix: 1000.0,
            source: SourceMetrics::default(),
            preview: None,
        });
        assert!(
            text.contains("converge_bundle_held{mode=\"apply\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("converge_bundle_held_info{mode=\"apply\",id=\"c0ffee\"} 1\n"),
            "{text}"
        );
    }
}
