//! `converge check` and `converge apply`: one code path, apply adds the writes.

use std::io::IsTerminal;

use crate::cli::{ColorChoice, Format, RunArgs};
use converge::pipeline;
use converge::report::{human, json, Mode, Report};

/// Runs check or apply; returns the detailed exit code.
pub fn run(args: &RunArgs, mode: Mode, color: ColorChoice) -> anyhow::Result<i32> {
    let request = super::request(args, mode)?;
    let finished = pipeline::run(&request)?;
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
    print_report(&finished.report, args.format, color);
    Ok(finished.report.exit_code())
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
