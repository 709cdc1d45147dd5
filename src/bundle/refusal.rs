//! Bundles that verified but cannot be used on this host: which kept bundle stands in for
//! one, and remembering the refusal so the source serving it again is refused unread.

use std::time::{Duration, UNIX_EPOCH};

use super::cache::{RefusedBundle, StateDir, SyncState};
use super::error::BundleError;
use super::source::Source;
use super::sync::{is_trusted, secs, Freshness, SyncOptions, SyncOutcome};
use crate::durable::StateLock;

/// The kept bundle to converge instead of `bad`, a bundle from `source` that verified but
/// cannot be planned on this host: `current` unless that is `bad`, else `previous`; with keys
/// configured, only one signed by a trusted key. Reads only. `None` when nothing qualifies,
/// or when the state dir follows another source (a check of staging on a prod host has no
/// stand-in).
pub fn stand_in(
    source: &Source,
    lock: &StateLock,
    bad: &str,
    opts: &SyncOptions,
) -> Result<Option<SyncOutcome>, BundleError> {
    let state = StateDir::open(lock)?;
    let saved = state.load_state();
    if saved
        .as_ref()
        .is_some_and(|s| s.source != source.to_string())
    {
        return Ok(None);
    }
    let kept = [state.current(), state.previous()]
        .into_iter()
        .flatten()
        .filter(|id| id != bad);
    for id in kept {
        let record = saved.as_ref().and_then(|s| s.record(&id));
        let signer = record.as_ref().and_then(|r| r.signer.as_deref());
        if !opts.trusted_keys.is_empty() && !signer.is_some_and(|k| is_trusted(opts, k)) {
            continue;
        }
        let signer = signer.map(str::to_owned);
        let track = saved
            .as_ref()
            .filter(|s| s.id == id)
            .map(|s| s.track)
            .unwrap_or_default();
        let fetched_at = record.map_or_else(
            || state.fetched_at(&id),
            |r| UNIX_EPOCH + Duration::from_secs(r.fetched_at),
        );
        return Ok(Some(SyncOutcome {
            bundle_dir: state.bundle_dir(&id),
            id,
            freshness: Freshness::Refused {
                reason: format!("bundle {bad} cannot be used"),
            },
            fetched_at,
            signer,
            track,
            rollout: None,
            expired: false,
        }));
    }
    Ok(None)
}

/// Makes the kept bundle `kept` current again and remembers `bad` as refused for `reason`, so
/// later polls refuse it without downloading or planning it until the source serves another.
pub fn refuse(lock: &StateLock, bad: &str, kept: &str, reason: &str) -> Result<(), BundleError> {
    let state = StateDir::open(lock)?;
    let saved = state.load_state();
    let record = saved.as_ref().and_then(|s| s.record(kept));
    // The track is known only for the bundle sync.json describes; a kept `previous` is
    // counted as stable.
    let saved_track = saved
        .as_ref()
        .filter(|s| s.id == kept)
        .map(|s| s.track)
        .unwrap_or_default();
    state.reset_to(kept)?;
    let s = SyncState {
        source: saved.map(|s| s.source).unwrap_or_default(),
        id: kept.to_string(),
        // No validator: the next poll reads the manifest and recognises the refused bundle.
        etag: None,
        signer: record.as_ref().and_then(|r| r.signer.clone()),
        fetched_at: record.map_or_else(|| secs(state.fetched_at(kept)), |r| r.fetched_at),
        previous: None,
        track: saved_track,
        refused: Some(RefusedBundle {
            id: bad.to_string(),
            reason: reason.to_string(),
        }),
    };
    state.save_state(&s)?;
    tracing::warn!(refused = bad, current = kept, "{reason}");
    Ok(())
}
