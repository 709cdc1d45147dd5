//! The Prometheus textfile (node_exporter's textfile collector) written after each run.

use std::fmt::Write;

use super::{Mode, Report};

/// What the metrics say about where the roles came from.
#[derive(Debug, Clone, Default)]
pub struct SourceMetrics {
    /// Seconds since the bundle in use was fetched (0 for a local source tree).
    pub bundle_age_seconds: f64,
    /// The source could not be read or served bad content; the last known good was used.
    pub stale: bool,
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
    }
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
        );
        let text = render(&RunMetrics {
            mode: Mode::Apply,
            report: Some(&report),
            exit_code: report.exit_code(),
            duration_seconds: 1.5,
            finished_unix: 1000.0,
            source: SourceMetrics {
                bundle_age_seconds: 60.0,
                stale: true,
            },
        });
        for line in [
            "# TYPE converge_last_run_timestamp_seconds gauge",
            "converge_last_run_timestamp_seconds{mode=\"apply\"} 1000",
            "converge_last_run_duration_seconds{mode=\"apply\"} 1.5",
            "converge_last_run_exit_code{mode=\"apply\"} 6",
            "converge_resources{mode=\"apply\",state=\"total\"} 3",
            "converge_resources{mode=\"apply\",state=\"changed\"} 1",
            "converge_resources{mode=\"apply\",state=\"failed\"} 1",
            "converge_drift_detected{mode=\"apply\"} 1",
            "converge_bundle_age_seconds{mode=\"apply\"} 60",
            "converge_source_stale{mode=\"apply\"} 1",
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
        });
        assert!(failed
            .lines()
            .any(|l| l == "converge_last_run_exit_code{mode=\"check\"} 1"));
        assert!(failed
            .lines()
            .any(|l| l == "converge_last_run_timestamp_seconds{mode=\"check\"} 2000"));
        assert!(!failed.contains("converge_resources"), "{failed}");
    }
}
