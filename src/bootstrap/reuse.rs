//! The bundle bootstrap checks before its first write is the one its first run uses: the
//! check's fetch is kept and handed to the state dir, and a host set up before is checked
//! against its own cache with a conditional GET. A source that is down is told apart from
//! one that serves something untrusted.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::bundle::{self, BundleError, Freshness, Peeked, SyncOptions};
use crate::durable::StateLock;
use crate::pipeline::{self, RunError};

/// What the check before the first write found at the source.
pub(super) enum Checked {
    /// A source tree, read in place.
    Tree,
    /// A fresh host: the bundle, fetched and verified into this scratch state dir.
    Fetched(TempDir),
    /// A host set up before: the bundle as its state dir sees it (unchanged, or new in a
    /// scratch dir the value holds).
    Peeked(Peeked),
    /// The source could not be reached; why.
    Unreachable(String),
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Checked::Tree => f.write_str("Tree"),
            Checked::Fetched(dir) => f.debug_tuple("Fetched").field(&dir.path()).finish(),
            Checked::Peeked(p) => f.debug_tuple("Peeked").field(&p.outcome.id).finish(),
            Checked::Unreachable(why) => f.debug_tuple("Unreachable").field(why).finish(),
        }
    }
}

/// Whether `e` means the source is down (no answer, a server error, a body cut short), as
/// opposed to serving something that cannot be trusted or does not exist. A missing bundle
/// (404) is most likely a wrong URL, so it is refused like bad content.
pub(super) fn is_source_down(e: &BundleError) -> bool {
    match e {
        BundleError::Unreachable { .. } | BundleError::Truncated { .. } => true,
        BundleError::HttpStatus { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Fetches and verifies the bundle at `source` for the check: on a host whose state dir
/// (whose lock bootstrap holds) holds bundles already, as `converge check` would (a conditional GET, objects it holds
/// linked, the state dir left as it is); on a fresh host, into a scratch state dir of its
/// own. Returns the check's outcome and the verified bundle's directory.
pub(super) fn fetch_scratch(
    source: &str,
    opts: &SyncOptions,
    held: Option<&StateLock>,
) -> Result<(Checked, PathBuf), RunError> {
    if let Some(lock) = held.filter(|l| l.dir().join("objects").is_dir()) {
        let parsed = bundle::Source::parse(source)?;
        let peeked = bundle::peek_locked(&parsed, lock, opts)?;
        return match &peeked.outcome.freshness {
            Freshness::Fresh { .. } | Freshness::Unchanged => {
                let dir = peeked.outcome.bundle_dir.clone();
                Ok((Checked::Peeked(peeked), dir))
            }
            // Down: the kept bundle is what the run would converge; check that one.
            Freshness::Stale { reason } => Ok((
                Checked::Unreachable(reason.clone()),
                peeked.outcome.bundle_dir.clone(),
            )),
            Freshness::Refused { reason } => Err(RunError::Bundle(BundleError::NoTrustedBundle {
                kept: "the kept bundle is not what was asked for".into(),
                reason: reason.clone(),
            })),
        };
    }
    let (scratch, dir) = pipeline::source::fetch_scratch(source, opts)?;
    Ok((Checked::Fetched(scratch), dir))
}

/// Hands the bundle the check fetched to the state dir, so the first run fetches only its
/// manifest. Best effort: what is not handed over is downloaded as usual.
pub(super) fn adopt(checked: &Checked, state_dir: &Path, held: Option<&StateLock>) {
    // A host set up before whose source has a new bundle: the look fetched it into a scratch
    // dir of its own, as a fresh host's check does.
    let (scratch, id) = match checked {
        Checked::Fetched(scratch) => (Some(scratch.path()), None),
        Checked::Peeked(peeked) => (peeked.scratch(), Some(peeked.outcome.id.as_str())),
        Checked::Tree | Checked::Unreachable(_) => (None, None),
    };
    if let Some(scratch) = scratch {
        let adopted = match held {
            Some(lock) => bundle::adopt_locked(lock, scratch, id),
            None => bundle::adopt(state_dir, scratch, id),
        };
        if let Err(e) = adopted {
            tracing::debug!("the checked bundle is fetched again: {e}");
        }
    }
}
