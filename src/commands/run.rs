//! `converge check` and `converge apply`: one code path, apply adds the writes.

use std::io::IsTerminal;

use anyhow::bail;

use super::Origin;
use crate::cli::{ColorChoice, Format, RunArgs};
use converge::agent::{self, Request};
use converge::durable::StateLock;
use converge::engine;
use converge::history::{Recorder, DEFAULT_KEEP_RUNS};
use converge::plan::PlanOptions;
use converge::report::{human, json, Mode, Report};
use converge::role::vars;
use converge::system::System;

/// Runs check or apply; returns the detailed exit code.
pub fn run(args: &RunArgs, mode: Mode, color: ColorChoice) -> anyhow::Result<i32> {
    let mut sys = System::new(&args.root)?;
    let facts = super::facts(args.source.facts.as_deref(), sys.root())?;
    let overrides = super::overrides(&args.source.vars)?;
    let report = match super::origin(&args.source, args.state_dir.as_ref())? {
        Origin::Tree(tree) => {
            if !args.trusted_keys.is_empty() {
                bail!(
                    "--trusted-key: {} is a source tree, which carries no signature; publish it and pass the bundle as --source",
                    tree.root().display()
                );
            }
            // The agent config's roles and [vars] hold for a source tree as they do for a
            // bundle: `--source DIR` swaps where roles come from, not which ones apply.
            let host = super::host_config(&args.source.config)?;
            let wanted = match &host {
                Some(c) if args.source.roles.is_empty() => c.roles.clone(),
                _ => args.source.roles.clone(),
            };
            let roles = super::tree_roles(&tree, &wanted, &facts)?;
            let mut all = host
                .as_ref()
                .map(|c| vars::table_to_json(&c.vars))
                .unwrap_or_default();
            vars::merge(&mut all, &overrides);
            let plan = super::plan(&tree, &roles, &all, &facts, PlanOptions::default())?;
            match (&args.state_dir, mode) {
                // A tree converged by hand keeps a history only where it is told to.
                (Some(dir), Mode::Apply) => {
                    let _lock = StateLock::acquire(dir, Some(std::time::Duration::from_secs(10)))?;
                    let recorder = Recorder::new(dir, DEFAULT_KEEP_RUNS, "", sys.root());
                    engine::run_recorded(&plan, &sys, mode, None, &recorder)
                }
                _ => engine::run(&plan, &sys, mode),
            }
        }
        Origin::Agent(mut config) => {
            sys.set_timeouts(config.timeouts);
            config
                .trusted_keys
                .extend(args.trusted_keys.iter().cloned());
            let request = Request {
                mode,
                roles: args.source.roles.clone(),
                overrides,
                facts,
                force: args.force,
            };
            let finished = agent::run_once(&config, &sys, &request)?;
            if let Some(source) = &finished.record.source {
                if let Some(reason) = &source.reason {
                    eprintln!(
                        "converge: source {} is {}: {reason}; used the last known good bundle {}",
                        source.url, source.freshness, source.bundle_id
                    );
                }
            }
            finished.report
        }
    };
    print_report(&report, args.format, color);
    Ok(report.exit_code())
}

/// Prints a report in the chosen format.
pub fn print_report(report: &Report, format: Format, color: ColorChoice) {
    let out = match format {
        Format::Json => json::render(report),
        Format::Human => human::render(report, human::Style::new(use_color(color))),
    };
    print!("{out}");
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
