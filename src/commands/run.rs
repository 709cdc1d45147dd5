//! `converge check` and `converge apply`: one code path, apply adds the writes.

use std::io::IsTerminal;
use std::time::SystemTime;

use crate::cli::{ColorChoice, Format, RunArgs};
use converge::agent::config::AgentConfig;
use converge::agent::{pause, schedule};
use converge::pipeline;
use converge::pipeline::record;
use converge::report::{human, json, BundleUsed, Mode, Report};

/// Runs check or apply; returns the detailed exit code.
pub fn run(args: &RunArgs, mode: Mode, color: ColorChoice) -> anyhow::Result<i32> {
    let request = super::request(args, mode)?;
    if args.splay && schedule::started_by_timer() {
        wait_for_slot(&request.settings);
    }
    // An agent run (the agent config's source) on a paused host changes nothing; a run an
    // operator points at a source, and every check, still goes on.
    if mode == Mode::Apply && args.source.source.is_none() {
        if let Some(p) = pause::in_force(&request.settings.state_dir, SystemTime::now()) {
            record::keep_paused(&request.settings, mode);
            tracing::info!(until = %p.until, reason = p.reason.as_deref().unwrap_or(""), "paused {}: this run changes nothing", p.describe());
            showln!(
                "apply: paused {}: this run changes nothing (converge resume ends the pause)",
                p.describe()
            );
            return Ok(0);
        }
    }
    let mut finished = pipeline::run(&request)?;
    finished.report.bundle = finished
        .record
        .source
        .as_ref()
        .filter(|s| !s.bundle_id.is_empty())
        .map(|s| BundleUsed {
            id: s.bundle_id.clone(),
            freshness: s.freshness,
        });
    if let Some(source) = &finished.record.source {
        if let Some(reason) = &source.reason {
            say!(
                "converge: source {} is {}: {reason}; used the last known good bundle {}",
                source.url,
                source.freshness,
                source.bundle_id
            );
        }
    }
    // Under systemd the journal gets the run's account; at a terminal the report is it.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        converge::pipeline::journal::log_summary(&finished.report, finished.record.source.as_ref());
    }
    print_report(&finished.report, args.format, color);
    Ok(finished.report.exit_code())
}

/// Waits this host's offset inside the splay: the timer fires on the same calendar on every
/// host, and the offset, fixed by the host's identity, spreads the fleet's runs (and their
/// fetches) over the window. No lock is held while waiting.
fn wait_for_slot(settings: &AgentConfig) {
    let identity = schedule::identity(&schedule::hostname());
    let wait = schedule::offset(&identity, settings.interval, settings.splay);
    if wait.is_zero() {
        return;
    }
    // Whole milliseconds: the offset is drawn in them, and the log line stays short.
    let shown = std::time::Duration::from_millis(wait.as_millis() as u64);
    tracing::info!(
        splay = %humantime::format_duration(settings.splay),
        wait = %humantime::format_duration(shown),
        "started by the timer: waiting {} (this host's offset inside the {} splay) before the run",
        humantime::format_duration(shown),
        humantime::format_duration(settings.splay)
    );
    std::thread::sleep(wait);
}

/// Prints a report in the chosen format.
pub fn print_report(report: &Report, format: Format, color: ColorChoice) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match format {
        Format::Json => json::write(report, &mut out),
        Format::Human => human::write(report, human::Style::new(use_color(color)), &mut out),
    };
    // A closed pipe (`| head`) is not an error of the run.
    let _ = written.and_then(|()| std::io::Write::flush(&mut out));
}

/// Whether stdout gets ANSI colours.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
        }
    }
}
