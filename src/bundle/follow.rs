//! The host's side of a rollout: reading and verifying `rollout.json`, refusing replays and
//! expired files, and remembering the last one accepted in the state dir.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::cache::StateDir;
use super::error::BundleError;
use super::fetch::{Fetcher, ManifestFetch};
use super::manifest::rfc3339_micros;
use super::rollout::{self, Rollout, Wariness, ROLLOUT_FILE, ROLLOUT_SIGNATURE_FILE};
use super::sync::{is_trusted, signed_by, SyncOptions};
use crate::durable::{self, FileSpec};

/// Who is syncing, for a rollout's choice of bundle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutHost {
    /// The host's stable identity (its machine id, else its host name).
    pub machine_id: String,
    /// How eager the host is to take a candidate, when set.
    pub wariness: Option<Wariness>,
    /// Take the candidate whatever the bucket: the fleet preview of a host not on it, which
    /// only checks it (in scratch space, with nothing made current).
    pub candidate_preview: bool,
}

/// The last rollout file accepted from a source, as kept in the state dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Followed {
    source: String,
    etag: Option<String>,
    signer: Option<String>,
    rollout: Rollout,
}

/// The rollout the source serves now, verified (signature when keys are configured, not
/// older than the last one accepted from this source, not in the future, not expired);
/// `None` when the source has no rollout file. With `keep`, an accepted file becomes the
/// floor for the next sync.
pub(super) fn read(
    fetcher: &Fetcher,
    state: &StateDir,
    source_name: &str,
    opts: &SyncOptions,
    keep: bool,
) -> Result<Option<Rollout>, BundleError> {
    let url = fetcher.url(ROLLOUT_FILE);
    // Without a trusted signer on record, a kept file vouches for nothing once keys are set.
    let followed = load(state).filter(|f| {
        f.source == source_name
            && (opts.trusted_keys.is_empty()
                || f.signer.as_deref().is_some_and(|k| is_trusted(opts, k)))
    });
    let etag = followed.as_ref().and_then(|f| f.etag.as_deref());
    let fetched = match read_verified(fetcher, etag, opts) {
        // rollout.json.minisig is written just before rollout.json: a read in between sees
        // the new signature over the old file. Read both once more before calling it
        // tampering.
        Err(BundleError::SignatureInvalid { mismatch: true, .. }) => {
            read_verified(fetcher, None, opts)?
        }
        // An object store without list permission answers 403 for a key it does not hold:
        // for a host that never followed a rollout from this source that is "no rollout".
        // A host that did follow one must not quietly leave it (or a halt) for manifest.json.
        Err(BundleError::RolloutForbidden { .. }) if followed.is_none() => {
            tracing::debug!(%url, "403 for the rollout file, and none followed here: no rollout");
            Fetched::Missing
        }
        other => other?,
    };
    let now = SystemTime::now();
    let (rollout, changed) = match fetched {
        Fetched::Missing => return Ok(None),
        Fetched::NotModified => {
            let f = followed.expect("a conditional request needs a kept file");
            (f.rollout.clone(), None)
        }
        Fetched::Body {
            rollout,
            etag,
            signer,
        } => {
            let created = rollout
                .created_at()
                .map_err(|reason| malformed(&url, reason))?;
            if rollout::in_future(created, now) {
                return Err(BundleError::RolloutInFuture {
                    url,
                    created: rollout.created.clone(),
                    now: rfc3339_micros(now),
                });
            }
            if let Some(last) = &followed {
                let last_created = last.rollout.created_at().ok();
                let newer = last_created.is_none_or(|l| created > l);
                // The same file read again (a source without ETags) is no replay.
                if !newer && last.rollout != rollout {
                    return Err(BundleError::RolloutOlder {
                        url,
                        created: rollout.created.clone(),
                        current_created: last.rollout.created.clone(),
                    });
                }
            }
            let keep_it = Followed {
                source: source_name.to_owned(),
                etag,
                signer,
                rollout: rollout.clone(),
            };
            (rollout, Some(keep_it))
        }
    };
    rollout::check_expiry(rollout.expires.as_deref(), now)
        .map_err(|reason| BundleError::Expired { url, reason })?;
    if let (true, Some(f)) = (keep, changed) {
        save(state, &f)?;
    }
    Ok(Some(rollout))
}

enum Fetched {
    Missing,
    NotModified,
    Body {
        rollout: Rollout,
        etag: Option<String>,
        signer: Option<String>,
    },
}

fn read_verified(
    fetcher: &Fetcher,
    etag: Option<&str>,
    opts: &SyncOptions,
) -> Result<Fetched, BundleError> {
    let url = fetcher.url(ROLLOUT_FILE);
    let (bytes, etag) = match fetcher.rollout(etag)? {
        None => return Ok(Fetched::Missing),
        Some(ManifestFetch::NotModified) => return Ok(Fetched::NotModified),
        Some(ManifestFetch::Body { bytes, etag }) => (bytes, etag),
    };
    let rollout = Rollout::parse(&bytes).map_err(|reason| malformed(&url, reason))?;
    let signer = if opts.trusted_keys.is_empty() {
        None
    } else {
        Some(signed_by(fetcher, &bytes, ROLLOUT_SIGNATURE_FILE, opts)?)
    };
    Ok(Fetched::Body {
        rollout,
        etag,
        signer,
    })
}

fn malformed(url: &str, reason: String) -> BundleError {
    BundleError::RolloutMalformed {
        url: url.to_owned(),
        reason,
    }
}

fn load(state: &StateDir) -> Option<Followed> {
    let bytes = std::fs::read(state.root().join(ROLLOUT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn save(state: &StateDir, followed: &Followed) -> Result<(), BundleError> {
    let mut bytes = serde_json::to_vec_pretty(followed).expect("state serialises");
    bytes.push(b'\n');
    let path = state.root().join(ROLLOUT_FILE);
    durable::write_file(&path, &bytes, &FileSpec::mode(0o600))
        .map_err(|e| BundleError::io(&path, e))
}
