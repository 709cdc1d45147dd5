//! Parent directories must exist, or be managed by a `[[directory]]` of the same run.
//!
//! converge does not create missing parents on its own: a typo in a path would silently grow
//! a new tree, and check could not report exactly what apply does when several resources
//! share a missing parent. A parent that a directory resource manages converges first.

use std::path::Path;

use super::{ManagedParent, ResourceError};
use crate::system::fs::Entry;
use crate::system::System;

/// Ok when every ancestor of `path` exists, up to the nearest `managed` one.
pub fn ensure(sys: &System, path: &Path, managed: &ManagedParent) -> Result<(), ResourceError> {
    let managed = managed.get();
    let mut outermost_missing = None;
    for ancestor in path.ancestors().skip(1) {
        if Some(ancestor) == managed {
            return Ok(());
        }
        if ancestor == Path::new("/") || sys.entry(ancestor)? != Entry::Missing {
            break;
        }
        outermost_missing = Some(ancestor);
    }
    match outermost_missing {
        Some(missing) => Err(ResourceError::MissingParent {
            path: path.to_path_buf(),
            missing: missing.to_path_buf(),
        }),
        None => Ok(()),
    }
}
