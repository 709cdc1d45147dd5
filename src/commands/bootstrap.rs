//! `converge bootstrap`: prints each step as it is done, the first run's changes, and where
//! to look next.

use std::path::Path;

use crate::cli::{BootstrapArgs, ColorChoice, Format};
use converge::agent::bootstrap::{self, BootstrapError, Options, Step};
use converge::agent::config::ConfigError;
use converge::agent::record::LAST_RUN_FILE;
use converge::bundle::RedactedUrl;
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
        println!("{mark} {}: {}", s.subject, s.detail);
        for line in s.diff.iter().flat_map(|d| d.lines()) {
            println!("    {line}");
        }
    };
    let outcome = bootstrap::apply(prepared, &sys, facts, &mut print_step)?;
    let report = &outcome.run.report;
    if report.summary.changed > 0 || report.summary.failed > 0 {
        println!();
        super::run::print_report(report, Format::Human, color);
    }
    // Under --root, paths are shown as the booted image will see them.
    let shown = |p: &Path| {
        let rel = p.strip_prefix(sys.root()).unwrap_or(p);
        Path::new("/").join(rel).display().to_string()
    };
    let state = outcome.config.state_dir.as_path();
    println!();
    match (outcome.changed, sys.is_live()) {
        (false, _) => {
            println!("bootstrap: nothing to change; this host was already set up like this")
        }
        (true, true) => println!(
            "bootstrap: done; this host now converges to {} every 30 minutes",
            RedactedUrl(&opts.source)
        ),
        (true, false) => println!(
            "bootstrap: done; {} converges to {} from its first boot",
            sys.root().display(),
            RedactedUrl(&opts.source)
        ),
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
    println!("next:");
    for (hint, what) in hints {
        println!("  {hint:width$}   {what}");
    }
    let code = report.exit_code();
    Ok(match (code, outcome.changed) {
        (0, true) => 2,
        (code, _) => code,
    })
}

/// Input errors print located, each with its line, as every other command prints them.
fn located(e: BootstrapError) -> anyhow::Error {
    match e {
        BootstrapError::Config(ConfigError::Invalid(d)) => d.into(),
        e => e.into(),
    }
}
