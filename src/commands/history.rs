//! `converge history` and `converge rollback [RUN] [--check]`.

use std::fmt::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::bail;

use crate::cli::{ColorChoice, Format, RollbackArgs, StateArgs};
use converge::agent::config::{AgentConfig, ConfigError};
use converge::agent::held;
use converge::durable::{trust, StateLock};
use converge::engine::rollback;
use converge::history::{self, RunStatus};
use converge::pipeline;
use converge::report::human;
use converge::report::rollback::RestoreStatus;
use converge::system::{System, Timeouts};

/// The state dir and lock wait: `--state-dir`, else the agent config's, else the default;
/// and the config's command deadlines.
pub fn state_dir(args: &StateArgs) -> anyhow::Result<(PathBuf, std::time::Duration, Timeouts)> {
    let config = match AgentConfig::load(&args.config) {
        Ok(c) => c,
        Err(ConfigError::Missing(_)) => AgentConfig::for_source(""),
        Err(e) => return Err(e.into()),
    };
    Ok((
        args.state_dir.clone().unwrap_or(config.state_dir),
        config.lock_wait,
        config.timeouts,
    ))
}

/// Lists the runs, flagging one whose record cannot be read; always exits 0.
pub fn history(args: &StateArgs) -> anyhow::Result<i32> {
    let (dir, _, _) = state_dir(args)?;
    // Read without the lock, but believed no more than a run would: a record someone else
    // could write would make the listing (and the rollback an operator picks from it) lie.
    trust::check(&dir, true)?;
    let listed = history::list(&dir);
    if args.format == Format::Json {
        // The JSON stays a list of run records; a run that cannot be read is named on stderr.
        let mut runs = Vec::new();
        for l in listed {
            match l.summary {
                Ok(s) => runs.push(s),
                Err(e) => say!("converge: warning: run {} skipped: {e}", l.id),
            }
        }
        showln!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(0);
    }
    if listed.is_empty() {
        showln!("no runs in {} yet", dir.join(history::RUNS_DIR).display());
        return Ok(0);
    }
    let mut out = format!(
        "{:<26} {:<21} {:<12} {:>7} {:>6}  STATUS\n",
        "RUN", "STARTED", "BUNDLE", "CHANGED", "FAILED"
    );
    for l in &listed {
        let r = match &l.summary {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{:<26} {:<21} {:<12} {:>7} {:>6}  unreadable: {e}",
                    l.id, "-", "-", "-", "-"
                );
                continue;
            }
        };
        let bundle = if r.bundle.is_empty() {
            "-"
        } else {
            &r.bundle[..r.bundle.len().min(12)]
        };
        let mut status = r.status.word().to_owned();
        if let Some(reason) = &r.rollback_reason {
            let _ = write!(status, ": {}", reason.lines().next().unwrap_or(""));
        }
        if r.root != std::path::Path::new("/") {
            let _ = write!(status, " (root {})", r.root.display());
        }
        if let Some(message) = &r.message {
            let _ = write!(status, " {:?}", message.lines().next().unwrap_or(""));
        }
        let _ = writeln!(
            out,
            "{:<26} {:<21} {:<12} {:>7} {:>6}  {status}",
            r.id, r.started, bundle, r.changed, r.failed
        );
    }
    show!("{out}");
    Ok(0)
}

/// Undoes a run (or previews it), then probes the run's health checks; exit 0 nothing to
/// undo, 2 undone, 4 something could not be undone or a health check fails afterwards.
pub fn rollback(args: &RollbackArgs, color: ColorChoice) -> anyhow::Result<i32> {
    let (dir, lock_wait, timeouts) = state_dir(&args.state)?;
    let mut sys = System::new(&args.root)?;
    sys.set_timeouts(timeouts);
    // A run must not change the host while its last changes are being undone.
    let _lock = StateLock::acquire(&dir, Some(lock_wait))?;
    let mut past = history::load(&dir, args.run.as_deref())?;
    if past.summary.root != sys.root() {
        bail!(
            "run {} converged {}, not {}: pass --root {}",
            past.summary.id,
            past.summary.root.display(),
            sys.root().display(),
            past.summary.root.display()
        );
    }
    // Looked at before anything is written: a path or live state someone changed since the
    // run stops the whole rollback unless --force, so the host is never left half rolled
    // back by it.
    let preview = rollback::preview(&sys, past.recorded(), args.force);
    let already = past.summary.status == RunStatus::RolledBack
        && preview.restored.iter().all(|r| {
            matches!(
                r.status,
                RestoreStatus::Unchanged | RestoreStatus::NotRolledBack
            )
        });
    let refused = preview.refused().count();
    let mut rb = if args.check {
        preview
    } else if refused > 0 {
        print_rollback(&preview, args.state.format, color)?;
        bail!(
            "rollback of run {} refused: {refused} {} changed since the run (listed above); nothing was changed. `converge rollback --force` restores {}, keeping what is there now in the run's history",
            past.summary.id,
            if refused == 1 { "resource" } else { "resources" },
            if refused == 1 { "it" } else { "them" },
        );
    } else {
        let checks = past.summary.health.clone();
        let rb = pipeline::roll_back(&sys, &mut past, "by hand".into(), &checks)?;
        // Undone on purpose: the agent must not put the same bundle back on the next tick.
        if !past.summary.bundle.is_empty() && sys.is_live() {
            held::save(
                &dir,
                &held::HeldBundle {
                    bundle: past.summary.bundle.clone(),
                    run: past.summary.id.clone(),
                    reason: "rolled back by hand".into(),
                    at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                },
            )?;
            past.summary.held = true;
            past.save()?;
        }
        rb
    };
    rb.already_rolled_back = already;
    print_rollback(&rb, args.state.format, color)?;
    // Something left as the run made it (a failure, or a change converge does not undo),
    // or a host that fails its health checks afterwards, is not "undone": the caller must
    // look.
    let failed = !rb.complete()
        || !rb.healthy()
        || rb
            .restored
            .iter()
            .any(|r| r.status == RestoreStatus::NotRolledBack);
    let acted = rb
        .restored
        .iter()
        .any(|r| r.status == RestoreStatus::Restored)
        || !rb.services.is_empty();
    Ok(match (failed, acted) {
        (true, _) => 4,
        (false, true) => 2,
        (false, false) => 0,
    })
}

fn print_rollback(
    rb: &converge::report::rollback::Rollback,
    format: Format,
    color: ColorChoice,
) -> anyhow::Result<()> {
    match format {
        Format::Json => showln!("{}", serde_json::to_string_pretty(rb)?),
        Format::Human => {
            let mut out = String::new();
            let style = human::Style::new(super::run::use_color(color));
            human::rollback_block(&mut out, rb, style);
            if !rb.preview {
                out.push_str(&human::rollback_summary(rb, style));
                out.push('\n');
            }
            show!("{out}");
        }
    }
    Ok(())
}
