//! The `converge` binary: parse, set up logging, dispatch, map the outcome to an exit code.

/// `eprintln!` that never panics: a closed or broken stderr must not turn a run's outcome
/// into a crash (exit 101) after its work is done.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `print!` that never panics: a reader gone from stdout (`| head -0`) ends the output, not
/// the command, whose work is done and whose exit code stands.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// `println!` that never panics (see `show!`).
macro_rules! showln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;
mod commands;

use std::io::IsTerminal;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use converge::diagnostics::{Diagnostic, Diagnostics};
use converge::pipeline::RunError;
use converge::report::Mode;

fn main() {
    // clap exits 2 on a usage error, which here would read as "changes made": use 1.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    init_logging(&cli);
    let result = match &cli.command {
        Command::Check(args) => commands::run::run(args, Mode::Check, cli.color),
        Command::Apply(args) => commands::run::run(args, Mode::Apply, cli.color),
        Command::Facts(args) => commands::facts::run(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Render(args) => commands::render::run(args),
        Command::Agent(args) => commands::agent::run(args),
        Command::Publish(args) => commands::publish::run(args),
        Command::Rollout(args) => commands::rollout::run(args),
        Command::Keygen(args) => commands::keys::run(args),
        Command::History(args) => commands::history::history(args),
        Command::Rollback(args) => commands::history::rollback(args, cli.color),
        Command::Snapshot(args) => commands::snapshot::run(args),
        Command::Compare(args) => commands::compare::run(args, cli.color),
        Command::Capture(args) => commands::capture::run(args),
        Command::Bootstrap(args) => commands::bootstrap::run(args, cli.color),
        Command::Status(args) => commands::status::status(args),
        Command::Pause(args) => commands::status::pause(args),
        Command::Resume(args) => commands::status::resume(args),
        Command::Fleet(args) => commands::fleet::run(args),
        Command::Generate(args) => commands::generate::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            report_error(&e);
            std::process::exit(1);
        }
    }
}

/// Located errors print in full (each headed `file:line:col: message`); any other error
/// prints its own message, once. The library's errors spell out their cause themselves
/// (`state dir /x: Permission denied`) and the commands add no context that hides one, so
/// the printer never walks the chain of sources: that is what keeps a cause from showing
/// twice.
fn report_error(e: &anyhow::Error) {
    if let Some(findings) = e.downcast_ref::<commands::Findings>() {
        for d in &findings.errors.0 {
            say!("error: {d}");
        }
        say!("{}", findings.summary);
        return;
    }
    match located(e) {
        Some(ds) => {
            for d in &ds.0 {
                say!("error: {d}");
            }
            let n = ds.0.len();
            say!(
                "converge: {n} error{}; nothing was changed",
                if n == 1 { "" } else { "s" }
            );
        }
        None => say!("converge: error: {e}"),
    }
}

/// The located errors `e` carries, if it is made of them.
fn located(e: &anyhow::Error) -> Option<Diagnostics> {
    if let Some(ds) = e.downcast_ref::<Diagnostics>() {
        return Some(ds.clone());
    }
    if let Some(d) = e.downcast_ref::<Diagnostic>() {
        return Some(d.clone().into());
    }
    match e.downcast_ref::<RunError>() {
        Some(RunError::Input(ds)) => Some(ds.clone()),
        Some(RunError::Setting { at, .. }) => Some((**at).clone().into()),
        _ => None,
    }
}

fn init_logging(cli: &Cli) {
    // The agent loop and runs under systemd are read in the journal afterwards: there a run's
    // summary, new bundles and changes (info) belong in the log; interactive runs print
    // their report instead.
    let unattended =
        matches!(cli.command, Command::Agent(_)) || std::env::var_os("JOURNAL_STREAM").is_some();
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) if unattended => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| {
            let filter = EnvFilter::new(default);
            if unattended || cli.verbose > 0 {
                return filter;
            }
            // The report on stdout already tells each outcome; stderr keeps the rest.
            filter.add_directive(
                format!("{}=off", converge::outcome_log::OUTCOMES)
                    .parse()
                    .expect("a valid directive"),
            )
        })
        // Handlebars logs every helper call with its parameters' values at debug: variables
        // (passwords from --var or [vars]) must never reach a log, whatever the level.
        .add_directive("handlebars=off".parse().expect("a valid directive"));
    // Under systemd (a unit's stdout/stderr is the journal) log natively to journald, with
    // fields and priorities intact.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            tracing_subscriber::registry()
                .with(filter)
                .with(journald.with_syslog_identifier("converge".into()))
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        // Its own complaint about a failed write would go to the same broken stderr.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .without_time()
        .init();
}

/// Stderr for log lines, where a write that fails (a closed pipe, a reader gone) is dropped:
/// a run must never stop at a log line, least of all between a failed health check and the
/// rollback it starts.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
