//! One run: observe → diff → (apply) for every planned resource, in order, into a [`Report`].

use std::time::{Instant, SystemTime};

use crate::plan::Plan;
use crate::report::{Mode, Outcome, Report, Status};
use crate::system::System;

/// Converges `plan` on `sys`. In [`Mode::Check`] no writing handle exists, so nothing changes.
pub fn run(plan: &Plan, sys: &System, mode: Mode) -> Report {
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
        };
        if let Some(&r) = blocked {
            outcome.status = Status::Skipped;
            outcome.error = Some(format!("skipped: {} did not converge", outcomes[r].id));
            tracing::info!(resource = %item.id, "skipped: a dependency failed");
        } else {
            match item.resource.converge(sys, host.as_ref()) {
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
    Report::new(mode, started, clock.elapsed(), outcomes)
}
