//! What a run does about earlier rollbacks: finish one that was interrupted, remember a
//! rolled-back bundle so that it is not applied again until a new one arrives, and blame a
//! failure seen by a run that changed nothing on the run that caused it.

use std::time::{Duration, SystemTime};

use crate::agent::config::AgentConfig;
use crate::agent::held;
use crate::engine;
use crate::history::{self, Recorder};
use crate::report::{Mode, Report};
use crate::system::System;

/// Remembers that `bundle` was rolled back by `run`, and why.
pub(super) fn remember(config: &AgentConfig, bundle: &str, run: &str, reason: &str) {
    let h = held::HeldBundle {
        bundle: bundle.to_owned(),
        run: run.to_owned(),
        reason: reason.to_owned(),
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    if let Err(e) = held::save(&config.state_dir, &h) {
        tracing::warn!(error = %e, "cannot remember the rolled-back bundle");
        return;
    }
    // Marked after the memory is written: a kill in between leaves the run unmarked, and
    // the next run remembers the bundle again (see `remember_missed`).
    let marked = history::load(&config.state_dir, Some(run)).and_then(|mut past| {
        past.summary.held = true;
        past.save()
    });
    if let Err(e) = marked {
        tracing::warn!(error = %e, "cannot mark the rolled-back run as remembered");
    }
}

/// A run killed after its rollback but before it remembered its bundle: remembered now, so
/// the agent does not apply the same bundle once more.
pub(super) fn remember_missed(config: &AgentConfig, sys: &System) {
    let Ok(past) = history::load(&config.state_dir, None) else {
        return;
    };
    let s = &past.summary;
    let rolled_back = matches!(
        s.status,
        history::RunStatus::RolledBack | history::RunStatus::RollbackIncomplete
    );
    if rolled_back && !s.held && !s.bundle.is_empty() && s.root == sys.root() {
        tracing::warn!(run = %s.id, "a rolled-back run did not remember its bundle; remembering it");
        let reason = s.rollback_reason.clone().unwrap_or_default();
        remember(config, &s.bundle, &s.id, &reason);
    }
}

/// A rollback killed half-way is finished before anything else: its run's changes are put
/// back (restoring is idempotent), its services acted on again, and its bundle remembered.
pub(super) fn finish_interrupted(config: &AgentConfig, sys: &System) -> Option<Report> {
    // Not necessarily the newest run: a by-hand rollback of an older run may be the one.
    let mut past = history::load_unfinished(&config.state_dir, sys.root())?;
    if past.summary.status != history::RunStatus::RollingBack {
        return None;
    }
    tracing::warn!(run = %past.summary.id, "finishing a rollback that was interrupted");
    let reason = past.summary.rollback_reason.clone().unwrap_or_default();
    let checks = past.summary.health.clone();
    let rollback = undo(sys, &mut past, reason.clone(), &checks);
    if !past.summary.bundle.is_empty() {
        remember(config, &past.summary.bundle, &past.summary.id, &reason);
    }
    let mut report = Report::new(Mode::Apply, SystemTime::now(), Duration::ZERO, Vec::new());
    report.rollback = Some(rollback);
    Some(report)
}

/// A run that changed nothing has nothing of its own to undo. A failure it sees (a failing
/// health check, a restart an earlier run left open failing) is the doing of the newest run
/// whose changes are still in place and that no health check has passed since: that run is
/// rolled back, as it would have been had its own checks seen the failure. A run whose
/// checks all pass vouches for that run instead.
pub(super) fn blame_unvouched(
    config: &AgentConfig,
    sys: &System,
    recorder: &Recorder,
    report: &mut Report,
    checks: &[crate::health::HealthCheck],
) {
    if recorder.has_changes() || report.rollback.is_some() {
        return;
    }
    let Some(mut past) = newest_in_place(config, sys) else {
        return;
    };
    if past.summary.healthy != Some(false) {
        return;
    }
    let Some(failure) = engine::failure(report) else {
        if engine::vouches(report) {
            past.summary.healthy = Some(true);
            if let Err(e) = past.save() {
                tracing::warn!(error = %e, "cannot record that the last run's changes are healthy");
            }
        }
        return;
    };
    let reason = format!(
        "{failure} (seen after run {}, which changed nothing since)",
        past.summary.id
    );
    tracing::warn!(run = %past.summary.id, %reason, "a run that changed nothing failed: rolling back the run that did");
    // Healthy again means what this run's checks, which saw the failure, say after the undo
    // (they wait for the restarts and reloads to settle); the blamed run may have had none.
    let checks = if checks.is_empty() {
        past.summary.health.clone()
    } else {
        checks.to_vec()
    };
    match roll_back(sys, &mut past, reason, &checks) {
        Ok(rollback) => report.rollback = Some(rollback),
        Err(e) => {
            tracing::warn!(error = %e, "cannot mark the run as rolling back; not rolling it back")
        }
    }
}

/// Rolls `past` back for `reason`, probing `checks` afterwards, and records how that ended.
/// It is marked as rolling back first, as a run's own rollback is, so a kill half-way is
/// finished by the next run; when that mark cannot be written nothing is undone.
pub fn roll_back(
    sys: &System,
    past: &mut history::PastRun,
    reason: String,
    checks: &[crate::health::HealthCheck],
) -> Result<crate::report::rollback::Rollback, history::HistoryError> {
    past.summary.status = history::RunStatus::RollingBack;
    past.summary.rollback_reason = Some(reason.clone());
    past.save()?;
    Ok(undo(sys, past, reason, checks))
}

/// Undoes `past` (marked as rolling back) and records how that ended.
fn undo(
    sys: &System,
    past: &mut history::PastRun,
    reason: String,
    checks: &[crate::health::HealthCheck],
) -> crate::report::rollback::Rollback {
    let rollback =
        engine::rollback::undo(sys, past.recorded(), reason, &past.summary.services, checks);
    past.summary.status = if rollback.complete() {
        history::RunStatus::RolledBack
    } else {
        history::RunStatus::RollbackIncomplete
    };
    if let Err(e) = past.save() {
        tracing::warn!(error = %e, "cannot record the finished rollback");
    }
    rollback
}

/// The newest run on this root whose changes are still in place: finished, neither rolled
/// back nor left for the next run to finish.
fn newest_in_place(config: &AgentConfig, sys: &System) -> Option<history::PastRun> {
    let runs = history::list(&config.state_dir);
    let newest = runs
        .iter()
        .rev()
        .filter_map(|listed| listed.summary.as_ref().ok())
        .find(|s| s.root == sys.root())?;
    if newest.status != history::RunStatus::Finished {
        return None;
    }
    history::load(&config.state_dir, Some(&newest.id)).ok()
}
