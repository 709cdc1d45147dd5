//! One run: observe → diff → (apply) for every planned resource, in order, into a [`Report`],
//! then the restarts and reloads that changed resources asked for.

mod notify;

use std::path::Path;
use std::time::{Instant, SystemTime};

use crate::plan::Plan;
use crate::report::{Mode, Outcome, Report, Status};
use crate::system::System;

/// Converges `plan` on `sys`. In [`Mode::Check`] no writing handle exists, so nothing changes.
pub fn run(plan: &Plan, sys: &System, mode: Mode) -> Report {
    converge(plan, sys, mode, notify::Notifier::default())
}

/// Like [`run`], keeping restart and reload requests in `journal` until they are carried
/// out: when a run dies after changing a file but before restarting its service, the next
/// run still restarts it (its files are in sync by then, so nothing else would).
pub fn run_with_journal(plan: &Plan, sys: &System, mode: Mode, journal: &Path) -> Report {
    converge(
        plan,
        sys,
        mode,
        notify::Notifier::resume(journal, plan, mode),
    )
}

fn converge(plan: &Plan, sys: &System, mode: Mode, mut notifier: notify::Notifier) -> Report {
    let started = SystemTime::now();
    let clock = Instant::now();
    let host = match mode {
        Mode::Apply => Some(sys.host()),
        Mode::Check => None,
    };
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(plan.items.len());
    for item in &plan.items {
        let blocked = item
            .requires
            .iter()
            .find(|&&r| matches!(outcomes[r].status, Status::Failed | Status::Skipped));
        let mut outcome = Outcome {
            id: item.id.clone(),
            role: item.role.clone(),
            origin: item.origin.clone(),
            status: Status::InSync,
            change: None,
            error: None,
            notes: item.resource.notes(sys),
        };
        if let Some(&r) = blocked {
            outcome.status = Status::Skipped;
            outcome.error = Some(format!("skipped: {} did not converge", outcomes[r].id));
            tracing::info!(resource = %item.id, "skipped: a dependency failed");
        } else {
            let converged = notifier
                .before(item, host.as_ref())
                .map_err(Into::into)
                .and_then(|()| item.resource.converge(sys, host.as_ref()));
            match converged {
                Ok(None) => tracing::debug!(resource = %item.id, "in sync"),
                Ok(Some(change)) => {
                    outcome.status = match mode {
                        Mode::Apply => Status::Changed,
                        Mode::Check => Status::Pending,
                    };
                    tracing::info!(resource = %item.id, action = change.action.verb(), "{}", match mode {
                        Mode::Apply => "changed",
                        Mode::Check => "would change",
                    });
                    notifier.changed(item);
                    outcome.change = Some(change);
                }
                Err(e) => {
                    // The report carries the error; the log line is for -v and the journal.
                    tracing::info!(resource = %item.id, error = %e, "failed");
                    outcome.status = Status::Failed;
                    outcome.error = Some(e.to_string());
                }
            }
        }
        outcomes.push(outcome);
    }
    let notifications = notifier.finish(plan, &outcomes, sys, host.as_ref());
    Report::new(mode, started, clock.elapsed(), outcomes).with_notifications(notifications)
}
