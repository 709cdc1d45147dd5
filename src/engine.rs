//! One run: observe → diff → (apply) for every planned resource, in order, into a [`Report`],
//! then the restarts and reloads that changed resources asked for, the health checks, and a
//! rollback of the run's changes when a check fails after them.

mod ahead;
mod notify;
pub use ahead::Verdict;
pub mod rollback;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{Instant, SystemTime};

use crate::history::{backup, Prior, Recorder, RunStatus, ServiceAction};
use crate::plan::{Plan, Planned};
use crate::report::{Mode, NotifyAction, NotifyStatus, Outcome, Report, Status};
use crate::resource::{Change, ResourceError, ResourceId};
use crate::system::{Applying, System};

/// The `validate` commands of `plan` run against `sys` as a fresh apply would run them
/// before its first write, worded as check words them; writes nothing but the commands' temp
/// files. Each verdict with the index of its item in the plan.
pub(crate) fn validate_ahead(plan: &Plan, sys: &System) -> Vec<(usize, Verdict)> {
    ahead::verdicts(plan, sys, false, false)
}

/// How a run goes besides its plan and host: whether it writes, where it keeps restart and
/// reload requests, and which history record keeps what it replaces.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// Check or apply.
    pub mode: Mode,
    /// Where restart and reload requests are kept until carried out: when a run dies after
    /// changing a file but before restarting its service, the next run still restarts it
    /// (its files are in sync by then, so nothing else would).
    pub journal: Option<&'a Path>,
    /// The run's record in the run history, keeping what each change replaces. Without one,
    /// an apply on the live host keeps its backups in a temp dir, for a rollback within the
    /// run.
    pub recorder: Option<&'a Recorder>,
}

impl RunOptions<'_> {
    /// A run in `mode` with no journal and outside the run history.
    pub fn new(mode: Mode) -> RunOptions<'static> {
        RunOptions {
            mode,
            journal: None,
            recorder: None,
        }
    }
}

/// Converges `plan` on `sys`. In [`Mode::Check`] no writing handle exists, so nothing changes.
/// A restart, reload or health check failing after changes rolls them back.
pub fn run(plan: &Plan, sys: &System, opts: RunOptions<'_>) -> Report {
    let mode = opts.mode;
    let notifier = match opts.journal {
        Some(j) => notify::Notifier::resume(j, plan, mode),
        None => notify::Notifier::default(),
    };
    let temporary;
    let recorder = match opts.recorder {
        Some(recorder) => {
            // Kept with the run (written with its first change), so that undoing it by
            // hand, or finishing its interrupted rollback, probes the host the way this run
            // would have.
            if let Err(e) = recorder.update(|s| s.health = plan.health.clone()) {
                tracing::warn!(error = %e, "cannot record the run's health checks");
            }
            Some(recorder)
        }
        None => {
            temporary = (mode == Mode::Apply && sys.is_live())
                .then(Recorder::temporary)
                .and_then(|r| {
                    r.map_err(
                        |e| tracing::warn!(error = %e, "no temp dir for backups; no rollback"),
                    )
                    .ok()
                });
            temporary.as_ref()
        }
    };
    converge(plan, sys, mode, notifier, recorder)
}

/// Keeps what `item` is about to change, written ahead of the change; returns the change's
/// line in the run's journal, and what it kept.
fn keep_prior(
    recorder: &Recorder,
    sys: &System,
    item: &Planned,
    change: &Change,
) -> Result<(usize, Prior), ResourceError> {
    recorder
        .begin()
        .map_err(|e| ResourceError::Backup(e.to_string()))?;
    let prior = backup::capture(sys, &item.id, item.path(), change, &recorder.blobs())
        .map_err(|e| ResourceError::Backup(e.to_string()))?;
    let line = recorder
        .record(&prior)
        .map_err(|e| ResourceError::Backup(e.to_string()))?;
    crate::durable::crash::point("recorded");
    Ok((line, prior))
}

/// Notes what change `line` left at `item`'s path, or of the live state it changed
/// (`prior` names it), so that a later rollback can tell the run's own content from an edit
/// made since. Best effort: without it, a rollback keeps a copy of what it restores over a
/// path, and restores a live state as it finds it.
fn note_left(
    recorder: &Recorder,
    sys: &System,
    item: &Planned,
    change: &Change,
    (line, prior): &(usize, Prior),
) {
    use crate::history::LeftState;
    let sensitive = item.resource.sensitive();
    // A file whose content the change wrote is known by the change's own digest: no need
    // to read it back.
    let written = change.content.as_ref().and_then(|c| c.after.clone());
    let state = match (item.path(), written, item.id.kind) {
        (Some(_), Some(d), crate::resource::Kind::File) => Ok(LeftState::File {
            sha256: d.sha256,
            size: d.size,
        }),
        (Some(path), _, _) => LeftState::of(sys, path),
        (None, _, _) => match backup::live_state(sys, prior) {
            Ok(Some(state)) => Ok(LeftState::Live { state }),
            Ok(None) => return,
            Err(e) => Err(e),
        },
    };
    let line = *line;
    let noted = state.map_err(|e| e.to_string()).and_then(|state| {
        let left = crate::history::Left {
            change: line,
            state,
            sensitive,
        };
        recorder.left(&left).map_err(|e| e.to_string())
    });
    if let Err(error) = noted {
        tracing::warn!(resource = %item.id, %error, "cannot note what the change left");
    }
}

fn converge(
    plan: &Plan,
    sys: &System,
    mode: Mode,
    mut notifier: notify::Notifier,
    recorder: Option<&Recorder>,
) -> Report {
    let started = SystemTime::now();
    let clock = Instant::now();
    let applying = Applying::by_the_engine();
    let host = match mode {
        Mode::Apply => Some(sys.host(&applying)),
        Mode::Check => None,
    };
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(plan.items.len());
    // Check shows each refusal in its place; apply refuses the whole run before it writes.
    let mut ahead = match mode {
        Mode::Apply => ahead::refused(plan, sys),
        Mode::Check => None,
    };
    // The file whose validate refused the run: nothing after it is converged.
    let mut refused_by: Option<ResourceId> = ahead.as_ref().map(|(i, _)| plan.items[*i].id.clone());
    // Plan order is the same in check and apply, so both keep the same diffs.
    let mut diff_budget = crate::resource::change::MAX_RUN_DIFFS;
    for (i, item) in plan.items.iter().enumerate() {
        let blocked = plan
            .requires
            .of(i)
            .find(|&r| matches!(outcomes[r].status, Status::Failed | Status::Skipped));
        let mut outcome = Outcome {
            id: item.id.clone(),
            role: item.role.clone(),
            origin: item.at.clone(),
            status: Status::InSync,
            change: None,
            error: None,
            error_kind: None,
            notes: item.resource.notes(sys),
        };
        if let Some(e) = ahead.take_if(|(at, _)| *at == i).map(|(_, e)| e) {
            tracing::info!(resource = %item.id, error = %e, "refused by its validate: the run is refused");
            outcome.status = Status::Failed;
            outcome.error = Some(e.to_string());
            outcome.error_kind = Some(e.kind());
        } else if let Some(r) = blocked {
            outcome.status = Status::Skipped;
            outcome.error = Some(format!("skipped: {} did not converge", outcomes[r].id));
            outcome.error_kind = Some("skipped");
            tracing::warn!(target: crate::outcome_log::OUTCOMES, resource = %item.id, "skipped {}: {} did not converge", item.id, outcomes[r].id);
        } else if let Some(by) = &refused_by {
            outcome.status = Status::Skipped;
            outcome.error = Some(format!(
                "not applied: {by} failed validation, so the run is refused"
            ));
            outcome.error_kind = Some("refused");
        } else {
            let mut recorded = None;
            // Check writes none of the changes a validate may read, so a validate that comes
            // after one is judged by apply in its place, as apply does; check says so.
            let unjudged = mode == Mode::Check
                && item.resource.validates()
                && ahead::inputs(plan, i).any(|r| outcomes[r].status == Status::Pending);
            let converged = notifier
                .before(item, host.as_ref())
                .map_err(Into::into)
                .and_then(|()| {
                    let Some(pending) = item.resource.pending(sys)? else {
                        return Ok(None);
                    };
                    if unjudged {
                        outcome.notes.push(
                            "validated by apply in its place, after the changes it comes after"
                                .into(),
                        );
                    } else {
                        pending.validate(sys, host.is_some())?;
                    }
                    let Some(host) = host.as_ref() else {
                        return Ok(Some(pending.into_change()));
                    };
                    if let Some(r) = recorder {
                        recorded = Some(keep_prior(r, sys, item, pending.change())?);
                    }
                    pending.apply(host).map(Some)
                });
            match converged {
                Ok(None) => tracing::debug!(resource = %item.id, "in sync"),
                Ok(Some(mut change)) => {
                    if mode == Mode::Apply {
                        crate::durable::crash::point("changed");
                    }
                    if let (Some(r), Some(recorded)) = (recorder, &recorded) {
                        note_left(r, sys, item, &change, recorded);
                    }
                    outcome.status = match mode {
                        Mode::Apply => Status::Changed,
                        Mode::Check => Status::Pending,
                    };
                    // The message says which resource: `journalctl -u converge` shows the
                    // message, not the fields.
                    tracing::info!(target: crate::outcome_log::OUTCOMES, resource = %item.id, action = change.action.verb(), "{} {}", match mode {
                        Mode::Apply => "changed",
                        Mode::Check => "would change",
                    }, item.id);
                    notifier.changed(item, sys);
                    if let Some(content) = change.content.as_mut() {
                        content.within(&mut diff_budget);
                    }
                    outcome.change = Some(Box::new(change));
                }
                Err(e) => {
                    // A failure is a warning in the journal (`journalctl -p warning`).
                    tracing::warn!(target: crate::outcome_log::OUTCOMES, resource = %item.id, error = %e, "failed {}: {e}", item.id);
                    if mode == Mode::Apply && matches!(e, ResourceError::ValidationFailed { .. }) {
                        // Checked in the run (it needed an earlier change of the run made):
                        // what the run wrote so far is undone with the rest of it.
                        refused_by = Some(item.id.clone());
                    }
                    outcome.status = Status::Failed;
                    outcome.error = Some(e.to_string());
                    outcome.error_kind = Some(e.kind());
                }
            }
        }
        outcomes.push(outcome);
    }
    let notifications = match refused_by {
        Some(_) => {
            notifier.abandon();
            Vec::new()
        }
        None => notifier.finish(plan, &outcomes, sys, host.as_ref()),
    };
    let acted = notifications
        .iter()
        .any(|n| n.status == NotifyStatus::Done)
        .then(Instant::now);
    let after = crate::health::After {
        acted,
        changed: acted.is_some() || outcomes.iter().any(|o| o.status == Status::Changed),
    };
    if let Some(recorder) = recorder {
        // Kept before the health checks, which may take long: a run killed during them has
        // restarted services with the new configuration, and the run that continues it
        // (finding nothing left to restart) must still act on them if it rolls back.
        let kept = recorder.update(|s| add_acted(&mut s.services, &notifications));
        if let Err(e) = kept {
            tracing::warn!(error = %e, "cannot record the run's restarts and reloads");
        }
    }
    // After the restarts and reloads, so the checks see the services as the run left them.
    // The probes only look, so check mode runs them too and reports the host's state.
    let health = crate::health::run_all(&plan.health, sys, after);
    let mut report = Report::new(mode, started, clock.elapsed(), outcomes)
        .with_notifications(notifications)
        .with_health(health);
    report.refused = refused_by.map(|by| format!("{by} failed validation"));
    if let (Some(recorder), Some(host)) = (recorder, host.as_ref()) {
        finish_recorded(plan, host, recorder, &mut report);
    }
    report
}

/// Adds the restarts and reloads `notifications` carried out or tried to `services` (which
/// holds those of a killed run this one continues): one action per unit, restart beating
/// reload. A failed one is kept too: after its files are put back, the unit must act again,
/// on the old configuration (a failed restart left it down).
fn add_acted(services: &mut Vec<ServiceAction>, notifications: &[crate::report::Notification]) {
    for n in notifications
        .iter()
        .filter(|n| matches!(n.status, NotifyStatus::Done | NotifyStatus::Failed))
    {
        let unit = crate::resource::service::unit_name(&n.service.name);
        match services.iter_mut().find(|s| s.unit == unit) {
            Some(s) if s.action == NotifyAction::Reload => s.action = n.action,
            Some(_) => {}
            None => services.push(ServiceAction {
                unit,
                action: n.action,
            }),
        }
    }
}

/// Why the run's changes must not stay: a restart or reload that failed (the service either
/// rejected the new configuration and runs the old one from memory, or is down), else a
/// failed health check. `None` when neither happened.
pub(crate) fn failure(report: &Report) -> Option<String> {
    let detail = |d: Option<&str>| d.map(|d| format!(": {d}")).unwrap_or_default();
    let notified = report
        .notifications
        .iter()
        .find(|n| n.status == NotifyStatus::Failed)
        .map(|n| {
            format!(
                "{} {} failed{}",
                n.service,
                n.action.verb(),
                detail(n.error.as_deref())
            )
        });
    notified.or_else(|| {
        report.failed_health().next().map(|h| {
            format!(
                "{} failed: {}{}",
                h.id,
                h.probe,
                detail(h.detail.as_deref())
            )
        })
    })
}

/// Whether the run vouches for the host as it left it: no restart or reload failed, and
/// health checks ran and all passed.
pub(crate) fn vouches(report: &Report) -> bool {
    failure(report).is_none()
        && !report.health.is_empty()
        && report
            .health
            .iter()
            .all(|h| h.status == crate::health::HealthStatus::Passed)
}

/// The resources the run's job changed: this run's, and those of the killed run it
/// continues, whose changes its record (and a rollback of it) covers too; each once.
fn job_changed(recorder: &Recorder, report: &Report) -> usize {
    let own: std::collections::BTreeSet<String> = report
        .resources
        .iter()
        .filter(|o| o.status == Status::Changed)
        .map(|o| o.id.to_string())
        .collect();
    let earlier = recorder
        .inherited()
        .iter()
        .filter(|r| !own.contains(*r))
        .count();
    report.summary.changed + earlier
}

/// Records how the run ended and, when a restart, reload or health check failed after
/// changes, undoes them.
fn finish_recorded(
    plan: &Plan,
    host: &crate::system::Host,
    recorder: &Recorder,
    report: &mut Report,
) {
    let services = recorder.summary().services;
    let failing = report.refused.clone().or_else(|| failure(report));
    let healthy = vouches(report);
    let changed = job_changed(recorder, report);
    let record = |status: RunStatus, reason: Option<String>| {
        let summary = &report.summary;
        let result = recorder.update(|s| {
            s.healthy = Some(healthy);
            s.finished = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
            s.changed = changed;
            s.failed = summary.failed + summary.failed_notifications;
            s.status = status;
            s.rollback_reason = reason;
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record the run in the history");
        }
    };
    let Some(reason) = failing.filter(|_| recorder.has_changes()) else {
        record(RunStatus::Finished, None);
        return;
    };
    tracing::warn!(%reason, "failure after changes: rolling back");
    // Marked first: a rollback killed half-way is finished by the next run.
    record(RunStatus::RollingBack, Some(reason.clone()));
    crate::durable::crash::point("rolling-back");
    let priors = match recorder.priors() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the run's backups; nothing rolled back");
            record(RunStatus::RollbackIncomplete, Some(reason));
            return;
        }
    };
    let left = recorder.lefts().unwrap_or_else(|e| {
        // Without it every path counts as possibly changed: kept before it is restored.
        tracing::warn!(error = %e, "cannot read what the run left");
        Default::default()
    });
    let id = recorder.id();
    let blobs = recorder.blobs();
    let recorded = rollback::Recorded {
        run: &id,
        priors: &priors,
        left: &left,
        blobs: &blobs,
    };
    let rollback = rollback::undo(
        host.system(),
        recorded,
        reason.clone(),
        &services,
        &plan.health,
    );
    let status = if rollback.complete() {
        RunStatus::RolledBack
    } else {
        RunStatus::RollbackIncomplete
    };
    record(status, Some(reason));
    report.rollback = Some(rollback);
}
