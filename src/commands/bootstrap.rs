//! `converge bootstrap`: prints each step as it is done, the first run's changes, and where
//! to look next.

use std::path::Path;

use crate::cli::{BootstrapArgs, ColorChoice, Format};
use converge::agent::config::ConfigError;
use converge::bootstrap::{self, BootstrapError, Options, Step};
use converge::bundle::RedactedUrl;
use converge::pipeline::record::LAST_RUN_FILE;
use converge::system::System;

/// Sets the host (or the tree under `--root`) up; returns the detailed exit code.
pub fn run(args: &BootstrapArgs, color: ColorChoice) -> anyhow::Result<i32> {
    let sys = System::new(&args.root)?;
    let facts = super::facts(None, sys.root())?;
    let opts = Options {
        source: args.source.clone(),
        roles: args.roles.clone(),
        keys: args.keys.clone(),
        vars: args.vars.clone(),
    };
    let prepared = bootstrap::prepare(&opts, &sys, &facts).map_err(located)?;
    if !prepared.verified() {
        say!(
            "converge: warning: no --key: bundles from {} are applied without a signature check; \
             anyone who can change what it serves can run commands as root here",
            RedactedUrl(&opts.source)
        );
    }
    let mut print_step = |s: &Step| {
        let mark = if s.changed { "+" } else { "=" };
        showln!("{mark} {}: {}", s.subject, s.detail);
        for line in s.diff.iter().flat_map(|d| d.lines()) {
            showln!("    {line}");
        }
    };
    let outcome = match bootstrap::apply(prepared, &sys, facts, &mut print_step) {
        Ok(outcome) => outcome,
        Err(e) => {
            say!("converge: error: {e}");
            say!(
                "bootstrap: this host is NOT set up: the steps printed above were done, the \
                 rest was not (converge.timer is not running it); run the same bootstrap again"
            );
            return Ok(NOT_SET_UP);
        }
    };
    if let Some(run) = &outcome.run {
        let report = &run.report;
        if report.summary.changed > 0 || report.summary.failed > 0 || report.rollback.is_some() {
            showln!();
            super::run::print_report(report, Format::Human, color);
        }
    }
    // Under --root, paths are shown as the booted image will see them.
    let shown = |p: &Path| {
        let rel = p.strip_prefix(sys.root()).unwrap_or(p);
        Path::new("/").join(rel).display().to_string()
    };
    let state = outcome.config.state_dir.as_path();
    showln!();
    let converging = if sys.is_live() {
        format!(
            "this host now converges to {} every 30 minutes",
            RedactedUrl(&opts.source)
        )
    } else {
        format!(
            "{} converges to {} from its first boot",
            sys.root().display(),
            RedactedUrl(&opts.source)
        )
    };
    match first_run(&outcome) {
        FirstRun::SourceDown(reason) => {
            say!(
                "converge: warning: set up; first run failed: source unreachable ({reason}); \
                 the timer will retry"
            );
            showln!("bootstrap: set up, but the first run could not reach the source; {converging}, starting with the next run");
        }
        FirstRun::RolledBack { bundle, reason } => showln!(
            "bootstrap: set up, but the first run was rolled back: {reason}; the host is held \
             on its last good state and bundle {bundle} is not applied again; {converging}, \
             and takes the next bundle you publish"
        ),
        FirstRun::Failed(n) => showln!(
            "bootstrap: set up, but the first run had {n} failure{}; {converging}, and each \
             run retries",
            if n == 1 { "" } else { "s" }
        ),
        FirstRun::Converged if !outcome.changed => {
            showln!("bootstrap: nothing to change; this host was already set up like this")
        }
        FirstRun::Converged => showln!("bootstrap: done; {converging}"),
    }
    let hints = [
        (
            "journalctl -u converge.service".to_owned(),
            "what each run did",
        ),
        (
            shown(&state.join(LAST_RUN_FILE)),
            "the last run's record (roles, bundle, every change)",
        ),
        (
            shown(&outcome.config.metrics_path(converge::report::Mode::Apply)),
            "metrics for node_exporter's textfile collector",
        ),
        (
            "systemctl list-timers converge.timer".to_owned(),
            "when the next run is",
        ),
        (
            "converge check".to_owned(),
            "what would change now (changes nothing)",
        ),
    ];
    let width = hints.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    showln!("next:");
    for (hint, what) in hints {
        showln!("  {hint:width$}   {what}");
    }
    // cloud-init (and any provisioning tool) counts an instance failed on a non-zero exit:
    // the host is set up and the timer converges it, whatever its first run did.
    Ok(0)
}

/// Exit code when bootstrap stopped after its first write: the host is not managed.
/// (Stopping before it exits 1, with nothing changed.)
pub const NOT_SET_UP: i32 = 3;

/// How the first run went, for the closing line.
enum FirstRun {
    /// Converged the bundle from the source.
    Converged,
    /// The source was not reached: why.
    SourceDown(String),
    /// The bundle was rolled back (now, or on an earlier run) and is held.
    RolledBack { bundle: String, reason: String },
    /// Resources (or restarts) failed: how many.
    Failed(usize),
}

fn first_run(outcome: &bootstrap::Outcome) -> FirstRun {
    if let Some(reason) = &outcome.source_down {
        return FirstRun::SourceDown(reason.clone());
    }
    let Some(run) = &outcome.run else {
        return FirstRun::Converged;
    };
    let bundle: String = run
        .record
        .source
        .as_ref()
        .map(|s| s.bundle_id.chars().take(12).collect())
        .unwrap_or_default();
    let report = &run.report;
    if let Some(r) = report.rollback.as_ref().filter(|r| !r.preview) {
        return FirstRun::RolledBack {
            bundle,
            reason: r.reason.clone(),
        };
    }
    if let Some(h) = &report.held {
        return FirstRun::RolledBack {
            bundle,
            reason: format!("it was rolled back here before ({})", h.reason),
        };
    }
    match report.summary.failed + report.summary.skipped {
        0 => FirstRun::Converged,
        n => FirstRun::Failed(n),
    }
}

/// Input errors print located, each with its line, as every other command prints them.
fn located(e: BootstrapError) -> anyhow::Error {
    match e {
        BootstrapError::Config(ConfigError::Invalid(d)) => d.into(),
        e => e.into(),
    }
}
