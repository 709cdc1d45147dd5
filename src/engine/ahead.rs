//! Validation ahead of the run: every file the run would change that has a `validate`
//! command is put to it before the run's first write, so a refused file leaves the whole run
//! unapplied, not the rest of its bundle live (and going live at the next restart).

use crate::plan::Plan;
use crate::resource::ResourceError;
use crate::system::System;

/// The first planned item whose `validate` refuses the change it would make, and why. An
/// item with a requirement that changes in this run is left to its check in the run, which
/// sees that change made (a validate that reads a file the run writes first).
pub(super) fn refused(plan: &Plan, sys: &System) -> Option<(usize, ResourceError)> {
    let mut changes: Vec<Option<bool>> = vec![None; plan.items.len()];
    for (i, item) in plan.items.iter().enumerate() {
        if !item.resource.validates() {
            continue;
        }
        let waits = plan.requires.of(i).any(|r| {
            // An error observing it counts as a change: the run decides what it means.
            *changes[r].get_or_insert_with(|| {
                plan.items[r]
                    .resource
                    .would_change(sys, false)
                    .unwrap_or(true)
            })
        });
        if waits {
            continue;
        }
        // Other errors show up again in the run, in their place.
        if let Err(e @ ResourceError::ValidationFailed { .. }) =
            item.resource.would_change(sys, true)
        {
            return Some((i, e));
        }
    }
    None
}
