//! A run's one-line account in the journal: what it did to how many resources, from which
//! bundle and how fresh that bundle was, and its exit code.

use super::record::SourceStatus;
use crate::report::{Mode, Report};

/// `apply: 16 resources, 2 changed, 0 failed; bundle 9eb1fa… "deploy 42" (fresh); exit 2`,
/// with the whole bundle id, as the record and the metrics name it.
pub fn summary(report: &Report, source: Option<&SourceStatus>) -> String {
    let s = &report.summary;
    let mode = match report.mode {
        Mode::Check => "check",
        Mode::Apply => "apply",
    };
    let mut line = format!(
        "{mode}: {} resource{}, {} {}, {} failed",
        s.total,
        if s.total == 1 { "" } else { "s" },
        s.changed,
        match report.mode {
            Mode::Check => "would change",
            Mode::Apply => "changed",
        },
        s.failed
    );
    if s.failed_notifications > 0 {
        line.push_str(&format!(
            ", {} restart/reload failed",
            s.failed_notifications
        ));
    }
    match source {
        Some(src) if !src.bundle_id.is_empty() => {
            line.push_str(&format!("; bundle {}", src.bundle_id));
            if let Some(message) = &src.message {
                line.push_str(&format!(" \"{message}\""));
            }
            line.push_str(&format!(" ({})", src.freshness));
        }
        Some(src) => line.push_str(&format!("; source {} ({})", src.url, src.freshness)),
        None => {}
    }
    line.push_str(&format!("; exit {}", report.exit_code()));
    line
}

/// Logs the summary: at info, or at warning when something failed or the source could not
/// be used (so `journalctl -p warning` shows every run that needs a look), with each
/// failure in a field.
pub fn log_summary(report: &Report, source: Option<&SourceStatus>) {
    let line = summary(report, source);
    let code = report.exit_code();
    let (bundle, freshness) =
        source.map_or(("", ""), |s| (s.bundle_id.as_str(), s.freshness.as_str()));
    let fell_back = source.is_some_and(|s| s.freshness.fell_back());
    let failed: Vec<String> = report
        .resources
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| format!("{}: {}", r.id, r.error.as_deref().unwrap_or("")))
        .chain(
            report
                .notifications
                .iter()
                .filter(|n| n.error.is_some())
                .map(|n| {
                    format!(
                        "{} {}: {}",
                        n.action.verb(),
                        n.service,
                        n.error.as_deref().unwrap_or("")
                    )
                }),
        )
        .collect();
    if failed.is_empty() && code & 4 == 0 && !fell_back {
        tracing::info!(exit_code = code, bundle, freshness, "{line}");
    } else {
        tracing::warn!(exit_code = code, bundle, freshness, failures = %failed.join("; "), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SourceFreshness;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_summary_names_the_bundle_and_its_freshness() {
        let report = Report::new(Mode::Apply, UNIX_EPOCH, Duration::ZERO, Vec::new());
        let source = SourceStatus {
            url: "https://config.example.com/bundle/".into(),
            bundle_id: "9eb1fa3c2d10aa55bb66cc77dd88ee99ff0011223344556677889900aabbccdd".into(),
            freshness: SourceFreshness::Fresh,
            reason: None,
            fetched_objects: 3,
            bundle_age_seconds: 0,
            created: None,
            signer: None,
            message: Some("deploy 42".into()),
            track: None,
            rollout: None,
            expired: false,
        };
        assert_eq!(
            summary(&report, Some(&source)),
            "apply: 0 resources, 0 changed, 0 failed; bundle 9eb1fa3c2d10aa55bb66cc77dd88ee99ff0011223344556677889900aabbccdd \"deploy 42\" (fresh); exit 0"
        );
        let tree = SourceStatus {
            url: "/srv/roles".into(),
            bundle_id: String::new(),
            freshness: SourceFreshness::Local,
            message: None,
            ..source
        };
        assert_eq!(
            summary(&report, Some(&tree)),
            "apply: 0 resources, 0 changed, 0 failed; source /srv/roles (local); exit 0"
        );
    }
}
