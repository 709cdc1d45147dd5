//! `converge check` and `converge apply`: one code path, apply adds the writes.

use std::io::IsTerminal;

use crate::cli::{ColorChoice, Format, RunArgs};
use converge::engine;
use converge::plan::PlanOptions;
use converge::report::{human, json, Mode};
use converge::system::System;

/// Runs check or apply; returns the detailed exit code.
pub fn run(args: &RunArgs, mode: Mode, color: ColorChoice) -> anyhow::Result<i32> {
    let sys = System::new(&args.root)?;
    let inputs = super::inputs(&args.source)?;
    let facts = super::facts(args.source.facts.as_deref(), sys.root())?;
    let plan = super::plan(&inputs, &facts, PlanOptions::default())?;
    let report = engine::run(&plan, &sys, mode);
    let out = match args.format {
        Format::Json => json::render(&report),
        Format::Human => human::render(&report, human::Style::new(use_color(color))),
    };
    print!("{out}");
    Ok(report.exit_code())
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
