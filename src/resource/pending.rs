//! A change observed and diffed, waiting to be applied: the one value check reports and
//! apply carries out, so the two cannot disagree about what a resource needs.

use std::fmt;

use super::{Change, Resource, ResourceError};
use crate::system::{Host, System};

type Validate<'a> = Box<dyn Fn(&System, &Change, bool) -> Result<(), ResourceError> + 'a>;
type Apply<'a> = Box<dyn FnOnce(&Host, &Change) -> Result<(), ResourceError> + 'a>;

/// What converging one resource would change, with the live state it was diffed from. It
/// only exists after observe and diff, and applying consumes it: apply makes exactly the
/// change check reports, never one it diffs anew.
pub struct Pending<'a> {
    change: Change,
    validate: Validate<'a>,
    apply: Apply<'a>,
}

impl<'a> Pending<'a> {
    /// Observes `resource` on `sys` and diffs it against what it wants; `None` when in sync.
    pub fn observe<R: Resource>(
        resource: &'a R,
        sys: &System,
    ) -> Result<Option<Pending<'a>>, ResourceError>
    where
        R::Live: 'a,
    {
        let live = resource.observe(sys)?;
        let Some(change) = resource.diff(&live) else {
            return Ok(None);
        };
        Ok(Some(Pending {
            change,
            validate: Box::new(move |sys, change, applying| {
                resource.validate(sys, change, applying)
            }),
            apply: Box::new(move |host, change| resource.apply(host, &live, change)),
        }))
    }

    /// The change.
    pub fn change(&self) -> &Change {
        &self.change
    }

    /// Puts the change to the resource's own check (`validate`), its error worded for apply
    /// when `applying`.
    pub fn validate(&self, sys: &System, applying: bool) -> Result<(), ResourceError> {
        (self.validate)(sys, &self.change, applying)
    }

    /// Makes the change on `host`; the change made.
    pub fn apply(self, host: &Host) -> Result<Change, ResourceError> {
        (self.apply)(host, &self.change)?;
        Ok(self.change)
    }

    /// The change, not made (check).
    pub(crate) fn into_change(self) -> Change {
        self.change
    }
}

impl fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("change", &self.change)
            .finish_non_exhaustive()
    }
}
