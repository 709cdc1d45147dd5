//! Validation ahead of the run: every file the run would change that has a `validate`
//! command is put to it before the run's first write, so a refused file leaves the whole run
//! unapplied, not the rest of its bundle live (and going live at the next restart).

use crate::plan::Plan;
use crate::resource::ResourceError;
use crate::system::System;

/// What validating one planned item ahead of the run found.
#[derive(Debug)]
pub enum Verdict {
    /// Its validate refuses the change it would make.
    Refused(ResourceError),
    /// It is `after` something the run changes, so its validate may read what that change
    /// writes: apply checks it in its place, after that change.
    AfterEarlierChanges,
}

/// The verdicts on the items whose change a `validate` must accept (by index in the plan),
/// stopping at the first refusal with `first_only`. Errors other than a refusal are left to
/// the run, which reports them in their place. `applying` words the refusals.
pub(super) fn verdicts(
    plan: &Plan,
    sys: &System,
    applying: bool,
    first_only: bool,
) -> Vec<(usize, Verdict)> {
    let mut found = Vec::new();
    let mut changes: Vec<Option<bool>> = vec![None; plan.items.len()];
    for (i, item) in plan.items.iter().enumerate() {
        if !item.resource.validates() {
            continue;
        }
        let waits = inputs(plan, i).any(|r| {
            // An error observing it counts as a change: the run decides what it means.
            *changes[r].get_or_insert_with(|| {
                plan.items[r]
                    .resource
                    .pending(sys)
                    .map_or(true, |p| p.is_some())
            })
        });
        if waits {
            found.push((i, Verdict::AfterEarlierChanges));
            continue;
        }
        let verdict = item
            .resource
            .pending(sys)
            .and_then(|pending| match pending {
                Some(p) => p.validate(sys, applying),
                None => Ok(()),
            });
        if let Err(e @ ResourceError::ValidationFailed { .. }) = verdict {
            found.push((i, Verdict::Refused(e)));
            if first_only {
                break;
            }
        }
    }
    found
}

/// The items of the run whose changes item `i`'s validate may read: what it is `after`,
/// except a directory made above it (the new content goes to a temp file, not there).
pub(super) fn inputs(plan: &Plan, i: usize) -> impl Iterator<Item = usize> + '_ {
    let item = &plan.items[i];
    let above = move |r: &usize| {
        let made = plan.items[*r].resource.makes_directory();
        made.zip(item.path()).is_some_and(|(d, p)| p.starts_with(d))
    };
    plan.requires.of(i).filter(move |r| !above(r))
}

/// The first planned item whose `validate` refuses the change apply would make, and why.
pub(super) fn refused(plan: &Plan, sys: &System) -> Option<(usize, ResourceError)> {
    verdicts(plan, sys, true, true)
        .into_iter()
        .find_map(|(i, v)| match v {
            Verdict::Refused(e) => Some((i, e)),
            Verdict::AfterEarlierChanges => None,
        })
}
