//! `sync`: bring the host's state dir to the source's bundle, or keep the last known good.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::cache::{BundleRecord, StateDir, SyncState};
use super::error::BundleError;
use super::fetch::{Fetcher, ManifestFetch};
use super::follow::{self, RolloutHost};
use super::manifest::{rfc3339_micros, FileEntry, Manifest, MAX_CLOCK_SKEW};
use super::rollout::{self, Choice, Track};
use super::signature::{self, TrustedKey};
use super::source::Source;
use super::MANIFEST_FILE;
use crate::durable::StateLock;

/// Default limit for a whole fetch: a run against a source that never finishes answering
/// falls back to the last known good well within a minute.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(45);

/// How a sync talks to its source and what it trusts.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Empty: signatures are not checked. Non-empty: a signature by one of these is required.
    pub trusted_keys: Vec<TrustedKey>,
    /// Limit for establishing a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Limit for one whole request, body included.
    pub request_timeout: Duration,
    /// Limit for the whole fetch (every request, retry and backoff); past it the sync falls
    /// back to the last known good.
    pub deadline: Duration,
    /// Extra attempts after a transient failure (connect, timeout, 5xx, truncated body).
    pub retries: u32,
    /// First backoff delay; doubled on each retry, with up to 25% jitter.
    pub backoff: Duration,
    /// `User-Agent` header, so server logs show which agent version polls.
    pub user_agent: String,
    /// The host a rollout file at the source chooses a bundle for; `None`: the rollout file
    /// is not read and the stable `manifest.json` is followed, as by agents that predate it.
    pub rollout_host: Option<RolloutHost>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            trusted_keys: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            deadline: DEFAULT_DEADLINE,
            retries: 3,
            backoff: Duration::from_millis(500),
            user_agent: concat!("converge/", env!("CARGO_PKG_VERSION")).to_string(),
            rollout_host: None,
        }
    }
}

/// How fresh the returned bundle is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// A new bundle was verified and is now current.
    Fresh {
        /// Objects downloaded (the rest were already in the local store).
        fetched_objects: usize,
    },
    /// The source still serves the current bundle.
    Unchanged,
    /// The source could not be read; this is the last known good.
    Stale {
        /// What failed, naming the URL or path.
        reason: String,
    },
    /// The source served content that failed verification; this is the last known good.
    Refused {
        /// What failed verification.
        reason: String,
    },
}

/// The verified bundle to use for this run, and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    /// Directory holding `roles/`, `templates/`, `files/`, `nodes.toml`.
    pub bundle_dir: PathBuf,
    /// Bundle id (sha256 of its manifest).
    pub id: String,
    /// Whether this is new, unchanged, or a fallback.
    pub freshness: Freshness,
    /// When this bundle was first fetched onto this host.
    pub fetched_at: SystemTime,
    /// The trusted key that signed it (key id), when a signature was verified.
    pub signer: Option<String>,
    /// Whose bundle this is: the stable one or a rollout's candidate.
    pub track: Track,
    /// What the source's rollout file chose for this host, when this sync read one and
    /// converges its choice.
    pub rollout: Option<Box<Choice>>,
    /// The source offers only expired content, or the bundle in use is past its `expires`:
    /// the source is not being re-signed (a frozen mirror, a publisher that stopped).
    pub expired: bool,
}

impl SyncOutcome {
    /// Time since this bundle was fetched (the "bundle age" metric).
    pub fn bundle_age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.fetched_at)
            .unwrap_or_default()
    }
}

/// Sync `state_dir` from `source`; on failure fall back to the last known good bundle.
///
/// Errors only when nothing usable exists: the state dir cannot be opened, the first
/// sync on this host fails, or keys are configured and no kept bundle is known to be
/// signed by one of them.
/// Takes the state dir's lock for the sync, waiting as long as another run holds it; a run
/// that holds it already calls [`sync_locked`].
pub fn sync(
    source: &Source,
    state_dir: &Path,
    opts: &SyncOptions,
) -> Result<SyncOutcome, BundleError> {
    let lock = StateLock::acquire(state_dir, None)?;
    sync_locked(source, &lock, opts)
}

/// [`sync`] into the state dir whose lock `lock` is.
pub fn sync_locked(
    source: &Source,
    lock: &StateLock,
    opts: &SyncOptions,
) -> Result<SyncOutcome, BundleError> {
    let state = StateDir::open(lock)?;
    let current = state.current();
    resolve(source, &state, opts, current, None)
}

/// A bundle read for a look only (`converge check`): its own scratch space, released on drop.
pub struct Peeked {
    /// What a sync would have used, without making it current.
    pub outcome: SyncOutcome,
    /// Holds a bundle fetched for this look; `outcome.bundle_dir` is inside it.
    scratch: Option<TempDir>,
}

impl Peeked {
    /// The scratch state dir a new bundle was fetched into for this look, for [`adopt`];
    /// `None` when the look used what the state dir holds.
    pub fn scratch(&self) -> Option<&Path> {
        self.scratch.as_ref().map(TempDir::path)
    }
}

/// Like [`sync`], but leaves the state dir as it found it: a new bundle is fetched and
/// materialised in a scratch dir that goes away with the returned value, nothing is switched
/// and no sync state is saved. Objects already in the store are linked, not fetched again.
///
/// The state dir's bundles count only when they came from the same `source`: a look at
/// another source (staging, from a prod host) has no last known good and no replay floor
/// there, so it cannot be refused for being older than prod, nor fall back to prod.
///
/// Takes the state dir's lock for the look (the fallback reads its bundles), waiting as long
/// as another run holds it; a run that holds it already calls [`peek_locked`].
pub fn peek(source: &Source, state_dir: &Path, opts: &SyncOptions) -> Result<Peeked, BundleError> {
    let lock = StateLock::acquire(state_dir, None)?;
    peek_locked(source, &lock, opts)
}

/// [`peek`] at the state dir whose lock `lock` is.
pub fn peek_locked(
    source: &Source,
    lock: &StateLock,
    opts: &SyncOptions,
) -> Result<Peeked, BundleError> {
    let state = StateDir::open(lock)?;
    let same_source = state
        .load_state()
        .is_none_or(|s| s.source == source.to_string());
    let current = state.current().filter(|_| same_source);
    let scratch = state.scratch_dir()?;
    let scratch_state = StateDir::scratch(scratch.path())?;
    let outcome = resolve(source, &state, opts, current, Some(&scratch_state))?;
    let used_scratch = outcome.bundle_dir.starts_with(scratch.path());
    Ok(Peeked {
        outcome,
        scratch: used_scratch.then_some(scratch),
    })
}

/// Takes the objects of the bundle verified into the scratch state dir `scratch` (by a
/// [`sync`] there) into the store of `state_dir`, so the sync that follows there downloads
/// only the manifest: a bundle checked before it is used is fetched once. `id` names the
/// bundle where the scratch dir has no current one (a [`peek`] fetches without switching).
/// Returns how many of its objects the store now holds.
pub fn adopt(state_dir: &Path, scratch: &Path, id: Option<&str>) -> Result<usize, BundleError> {
    let lock = StateLock::acquire(state_dir, None)?;
    adopt_locked(&lock, scratch, id)
}

/// [`adopt`] into the state dir whose lock `lock` is.
pub fn adopt_locked(
    lock: &StateLock,
    scratch: &Path,
    id: Option<&str>,
) -> Result<usize, BundleError> {
    let state = StateDir::open(lock)?;
    let checked = StateDir::scratch(scratch)?;
    let id = checked.current().or_else(|| id.map(str::to_owned));
    let Some(manifest) = id.and_then(|id| checked.manifest(&id)) else {
        return Ok(0);
    };
    state.link_objects_from(&checked, &manifest);
    state.sync_objects()?;
    Ok(manifest
        .files
        .values()
        .filter(|e| state.has_object(&e.sha256, e.size))
        .count())
}

/// Syncs (into `scratch` when given, else into `state`), falling back to the last known good.
fn resolve(
    source: &Source,
    state: &StateDir,
    opts: &SyncOptions,
    current: Option<String>,
    scratch: Option<&StateDir>,
) -> Result<SyncOutcome, BundleError> {
    match try_sync(source, state, opts, current.as_deref(), scratch) {
        Ok(outcome) => Ok(expire(outcome)),
        Err(err) => {
            let Some(current) = current else {
                tracing::warn!(source = %source, "no bundle available: {err}");
                return Err(err);
            };
            let mut reason = err.to_string();
            let kept = match last_known_good(state, &current, opts) {
                Ok(kept) => kept,
                Err(why) => {
                    let err = BundleError::NoTrustedBundle { kept: why, reason };
                    tracing::error!(source = %source, current = %current, "{err}");
                    return Err(err);
                }
            };
            if let Some(note) = &kept.note {
                reason = format!("{reason}; {note}");
            }
            let freshness = if err.is_bad_content() {
                tracing::debug!(source = %source, using = %kept.id, "refused bundle: {reason}");
                Freshness::Refused { reason }
            } else {
                tracing::debug!(source = %source, using = %kept.id, "using last known good bundle: {reason}");
                Freshness::Stale { reason }
            };
            let track = state
                .load_state()
                .filter(|s| s.id == kept.id)
                .map(|s| s.track)
                .unwrap_or_default();
            let expired = matches!(err, BundleError::Expired { .. });
            Ok(expire(SyncOutcome {
                bundle_dir: state.bundle_dir(&kept.id),
                fetched_at: kept.fetched_at,
                id: kept.id,
                freshness,
                signer: kept.signer,
                track,
                rollout: None,
                expired,
            }))
        }
    }
}

/// `outcome`, marked expired when its bundle's manifest is past its `expires`. The bundle is
/// still converged (the last known good keeps the host configured), but not as a fresh one.
fn expire(mut outcome: SyncOutcome) -> SyncOutcome {
    let Some(manifest) = super::cache::manifest_in(&outcome.bundle_dir) else {
        return outcome;
    };
    if let Err(why) = rollout::check_expiry(manifest.expires.as_deref(), SystemTime::now()) {
        outcome.expired = true;
        if matches!(
            outcome.freshness,
            Freshness::Unchanged | Freshness::Fresh { .. }
        ) {
            outcome.freshness = Freshness::Stale {
                reason: format!(
                    "bundle {} {why}; converging it as the last known good until the source publishes again",
                    outcome.id
                ),
            };
        }
    }
    outcome
}

/// A kept bundle a failed sync may fall back to.
struct Kept {
    id: String,
    fetched_at: SystemTime,
    signer: Option<String>,
    /// Set when this is not `current`, saying why.
    note: Option<String>,
}

/// The bundle to use when the source fails: `current`, unless keys are configured, in
/// which case the first of `current` and `previous` whose recorded signer is trusted now.
///
/// Without this, a bundle synced before keys were configured (unsigned), or signed by a
/// key since removed, would keep being applied as "last known good" for as long as the
/// source serves something bad. `Err` says why no kept bundle qualifies.
fn last_known_good(state: &StateDir, current: &str, opts: &SyncOptions) -> Result<Kept, String> {
    if opts.trusted_keys.is_empty() {
        let signer = state
            .load_state()
            .and_then(|s| s.record(current))
            .and_then(|r| r.signer);
        return Ok(Kept {
            id: current.to_string(),
            fetched_at: state.fetched_at(current),
            signer,
            note: None,
        });
    }
    let saved = state.load_state();
    let mut candidates = vec![("current", current.to_string())];
    candidates.extend(
        state
            .previous()
            .filter(|p| p != current)
            .map(|p| ("previous", p)),
    );
    let mut why = Vec::new();
    for (link, id) in candidates {
        let record = saved.as_ref().and_then(|s| s.record(&id));
        match record.as_ref().and_then(|r| r.signer.as_deref()) {
            Some(key) if is_trusted(opts, key) => {
                let record = record.as_ref().expect("a signer comes from a record");
                let note = (link != "current").then(|| {
                    format!(
                        "using previous bundle {id} signed by {key}: {}",
                        why.join("; ")
                    )
                });
                return Ok(Kept {
                    fetched_at: UNIX_EPOCH + Duration::from_secs(record.fetched_at),
                    signer: Some(key.to_owned()),
                    id,
                    note,
                });
            }
            Some(key) => why.push(format!(
                "{link} bundle {id} is signed by {key}, which is not trusted"
            )),
            None if record.is_some() => why.push(format!("{link} bundle {id} is unsigned")),
            None => why.push(format!("{link} bundle {id} has no recorded signer")),
        }
    }
    Err(why.join("; "))
}

fn try_sync(
    source: &Source,
    state: &StateDir,
    opts: &SyncOptions,
    current: Option<&str>,
    scratch: Option<&StateDir>,
) -> Result<SyncOutcome, BundleError> {
    let source_name = source.to_string();
    // Signer records stay valid whatever the source; the ETag only for the same source.
    let recorded = state.load_state();
    let saved = recorded.clone().filter(|s| {
        Some(s.id.as_str()) == current && s.source == source_name && signer_ok(s, opts)
    });
    let fetcher = Fetcher::new(source, opts)?;
    let choice = match &opts.rollout_host {
        Some(host) => {
            follow::read(&fetcher, state, &source_name, opts, scratch.is_none())?.map(|r| {
                let choice = r.choose(&host.machine_id, host.wariness);
                match (&r.candidate, host.candidate_preview) {
                    (Some(c), true) => Choice {
                        track: Track::Candidate,
                        bundle: c.clone(),
                        ..choice
                    },
                    _ => choice,
                }
            })
        }
        None => None,
    };
    let track = choice.as_ref().map_or(Track::Stable, |c| c.track);
    let saved = saved.filter(|s| s.track == track);
    let etag = saved.as_ref().and_then(|s| s.etag.as_deref());
    let fetched = match fetch_verified(&fetcher, track, etag, opts) {
        // Publish writes the signature just before the manifest, so a poll landing in
        // between reads the old manifest with the new signature. Read both once more
        // before calling it tampering.
        Err(BundleError::SignatureInvalid {
            reason,
            mismatch: true,
            ..
        }) => {
            tracing::debug!(
                "signature mismatch ({reason}); re-reading in case a publish was in progress"
            );
            fetch_verified(&fetcher, track, None, opts)?
        }
        other => other?,
    };
    let manifest_url = fetcher.url(&track.manifest_path());
    let Some(Verified {
        bytes,
        manifest,
        etag,
        signer,
    }) = fetched
    else {
        let s = saved.expect("a conditional request needs saved state");
        tracing::debug!(id = %s.id, "manifest not modified");
        check_named(choice.as_ref(), &s.id, &manifest_url)?;
        return Ok(outcome(state, &s, Freshness::Unchanged, choice));
    };
    let id = hex::encode(Sha256::digest(&bytes));
    check_named(choice.as_ref(), &id, &manifest_url)?;

    if let Some(refused) = recorded
        .as_ref()
        .and_then(|r| r.refused.as_ref())
        .filter(|r| r.id == id)
    {
        return Err(BundleError::RefusedEarlier {
            url: fetcher.url(MANIFEST_FILE),
            id,
            reason: refused.reason.clone(),
        });
    }
    if current == Some(id.as_str()) && scratch.is_some() {
        let s = recorded
            .filter(|r| r.id == id)
            .unwrap_or_else(|| SyncState {
                source: source_name,
                id: id.clone(),
                etag,
                signer,
                fetched_at: secs(state.fetched_at(&id)),
                previous: None,
                refused: None,
                track,
            });
        return Ok(outcome(state, &s, Freshness::Unchanged, choice));
    }
    if current == Some(id.as_str()) {
        // Same bundle (a server without ETags, a local dir, or state lost in a crash):
        // just remember the new validator.
        let fetched_at = saved.map_or_else(|| secs(state.fetched_at(&id)), |s| s.fetched_at);
        let s = SyncState {
            source: source_name,
            id,
            etag,
            signer,
            fetched_at,
            // Looked up by the `previous` link rather than copied: after a crash between the
            // switch and the state write, the old top level is what describes `previous`.
            previous: state
                .previous()
                .and_then(|p| recorded.as_ref().and_then(|r| r.record(&p))),
            refused: recorded.as_ref().and_then(|r| r.refused.clone()),
            track,
        };
        state.save_state(&s)?;
        return Ok(outcome(state, &s, Freshness::Unchanged, choice));
    }

    check_not_in_future(&manifest, &manifest_url)?;
    rollout::check_expiry(manifest.expires.as_deref(), SystemTime::now()).map_err(|reason| {
        BundleError::Expired {
            url: manifest_url.clone(),
            reason,
        }
    })?;
    // A manifest the (newer, verified) rollout file names may be older than the current
    // bundle: that is how a halt or a smaller share sends a host back to the stable bundle.
    // Replays are refused one level up, where an older rollout file is refused.
    if let (Some(current), None) = (current, &choice) {
        check_not_older(
            state,
            current,
            recorded.as_ref(),
            &manifest,
            opts,
            &manifest_url,
        )?;
    }

    if let Some(scratch) = scratch {
        scratch.link_objects_from(state, &manifest);
        let fetched_objects = fetch_missing(&fetcher, scratch, &manifest)?;
        let bundle_dir = scratch.materialise(&id, &manifest, &bytes)?;
        tracing::info!(%id, signer = signer.as_deref().unwrap_or("none (unsigned)"), fetched_objects, "fetched bundle {id} for this check only; the agent's current bundle is unchanged");
        return Ok(SyncOutcome {
            bundle_dir,
            id,
            freshness: Freshness::Fresh { fetched_objects },
            fetched_at: SystemTime::now(),
            signer,
            track,
            rollout: choice.map(Box::new),
            expired: false,
        });
    }
    let fetched_objects = fetch_missing(&fetcher, state, &manifest)?;
    state.materialise(&id, &manifest, &bytes)?;
    state.switch(&id)?;
    // The old current is now `previous`; carry over what we know of its signer.
    let previous = current.map(|old| {
        recorded
            .as_ref()
            .and_then(|r| r.record(old))
            .unwrap_or_else(|| BundleRecord {
                id: old.to_string(),
                signer: None,
                fetched_at: secs(state.fetched_at(old)),
            })
    });
    let s = SyncState {
        source: source_name,
        id,
        etag,
        signer,
        fetched_at: secs(SystemTime::now()),
        previous,
        refused: None,
        track,
    };
    // Written after the switch: a crash before this line leaves state naming the old
    // bundle, so the next sync sends no ETag and re-reads the manifest. Safe, one GET.
    state.save_state(&s)?;
    if let Err(e) = state.gc() {
        tracing::warn!("garbage collection of old bundles failed: {e}");
    }
    tracing::info!(
        id = %s.id,
        signer = s.signer.as_deref().unwrap_or("none"),
        fetched_objects,
        files = manifest.files.len(),
        "new bundle {} (created {}, signed by {}{}): fetched {fetched_objects} objects, now current",
        s.id,
        manifest.created,
        s.signer.as_deref().unwrap_or("nobody: unverified"),
        manifest
            .message
            .as_deref()
            .map(|m| format!(", message \"{m}\""))
            .unwrap_or_default()
    );
    Ok(outcome(
        state,
        &s,
        Freshness::Fresh { fetched_objects },
        choice,
    ))
}

/// Refuses a manifest that is not the bundle the rollout file names for the host's track.
fn check_named(choice: Option<&Choice>, id: &str, url: &str) -> Result<(), BundleError> {
    match choice {
        Some(c) if c.bundle != id => Err(BundleError::RolloutMismatch {
            url: url.to_owned(),
            track: c.track.as_str(),
            id: id.to_owned(),
            named: c.bundle.clone(),
        }),
        _ => Ok(()),
    }
}

/// A manifest that parsed and, when keys are configured, carries a trusted signature.
struct Verified {
    bytes: Vec<u8>,
    manifest: Manifest,
    etag: Option<String>,
    signer: Option<String>,
}

/// Read the manifest (conditionally when `etag` is given) and check its signature;
/// `None` when the server says it has not changed.
fn fetch_verified(
    fetcher: &Fetcher,
    track: Track,
    etag: Option<&str>,
    opts: &SyncOptions,
) -> Result<Option<Verified>, BundleError> {
    let name = track.manifest_path();
    let (bytes, etag) = match fetcher.manifest_at(&name, etag)? {
        ManifestFetch::NotModified => return Ok(None),
        ManifestFetch::Body { bytes, etag } => (bytes, etag),
    };
    let manifest = Manifest::parse(&bytes, &fetcher.url(&name))?;
    if opts.trusted_keys.is_empty() {
        return Ok(Some(Verified {
            bytes,
            manifest,
            etag,
            signer: None,
        }));
    }
    let signer = signed_by(fetcher, &bytes, &track.signature_path(), opts)?;
    Ok(Some(Verified {
        bytes,
        manifest,
        etag,
        signer: Some(signer),
    }))
}

/// The trusted key that signed `bytes`, by the detached signature `sig_name` at the source.
pub(super) fn signed_by(
    fetcher: &Fetcher,
    bytes: &[u8],
    sig_name: &str,
    opts: &SyncOptions,
) -> Result<String, BundleError> {
    let sig_url = fetcher.url(sig_name);
    let sig = fetcher
        .signature_at(sig_name)?
        .ok_or_else(|| BundleError::SignatureMissing {
            url: sig_url.clone(),
        })?;
    let text = String::from_utf8(sig).map_err(|_| BundleError::SignatureInvalid {
        url: sig_url.clone(),
        reason: "not UTF-8 text".into(),
        mismatch: false,
    })?;
    signature::verify(bytes, &text, &opts.trusted_keys, &sig_url)
}

/// Download every object the store lacks, verifying each before it gets its name.
fn fetch_missing(
    fetcher: &Fetcher,
    state: &StateDir,
    manifest: &Manifest,
) -> Result<usize, BundleError> {
    // Several paths may share one object; fetch it once.
    let mut wanted: BTreeMap<&str, (&str, &FileEntry)> = BTreeMap::new();
    for (path, entry) in &manifest.files {
        if !state.has_object(&entry.sha256, entry.size) {
            wanted.entry(entry.sha256.as_str()).or_insert((path, entry));
        }
    }
    for (sha, (path, entry)) in &wanted {
        let mut tmp = state.object_temp()?;
        let got = fetcher.object(sha, entry.size, tmp.as_file_mut())?;
        if got.sha256 != entry.sha256 || got.len != entry.size {
            return Err(BundleError::ObjectMismatch {
                url: fetcher.url(&format!("{}/{sha}", super::OBJECTS_DIR)),
                path: (*path).to_string(),
                expected: format!("sha256 {} size {}", entry.sha256, entry.size),
                actual: if got.len > entry.size {
                    format!("more than {} bytes", entry.size)
                } else {
                    format!("sha256 {} size {}", got.sha256, got.len)
                },
            });
        }
        state.commit_object(tmp, sha)?;
    }
    if !wanted.is_empty() {
        state.sync_objects()?;
    }
    Ok(wanted.len())
}

/// Refuse a manifest whose `created` is older than the current bundle's.
///
/// The signature covers `created`, so whoever serves an old signed manifest (an attacker
/// replaying one, a stale mirror or cache) cannot make it look newer; without this check
/// it verifies and would be applied as fresh, rolling the host back. A deliberate rollback
/// is done by republishing the old content, which gets a new `created`. Equal times are
/// accepted: two publishes within one second are both legitimate.
fn check_not_older(
    state: &StateDir,
    current: &str,
    recorded: Option<&SyncState>,
    manifest: &Manifest,
    opts: &SyncOptions,
    url: &str,
) -> Result<(), BundleError> {
    // With keys configured, a current recorded as unsigned (or signed by a key no longer
    // trusted) has a `created` nobody vouches for; one far in the future would lock out
    // every genuine update. Without a record (crash right after a switch, lost sync.json)
    // the check still runs: wrongly refusing is recoverable, a rollback may not be.
    let untrusted_current = recorded
        .and_then(|r| r.record(current))
        .is_some_and(|r| !r.signer.is_some_and(|k| is_trusted(opts, &k)));
    if !opts.trusted_keys.is_empty() && untrusted_current {
        return Ok(());
    }
    let Some(current_manifest) = state.manifest(current) else {
        // Damaged local state: refusing here would block updates until someone repairs it
        // by hand, while the new manifest is verified on its own merits anyway.
        tracing::warn!(
            current,
            "cannot read the current bundle's manifest; skipping the replay check"
        );
        return Ok(());
    };
    let (Ok(new), Ok(old)) = (manifest.created_at(), current_manifest.created_at()) else {
        // parse() already checked both; only a hand-made Manifest gets here.
        return Ok(());
    };
    // A current bundle dated far beyond the moment this host fetched it came from a wrong
    // clock (or from before hosts refused such manifests): as a floor it would refuse every
    // genuine publish until that date. Bounded by the host's clock, it blocks at most
    // MAX_CLOCK_SKEW after the fetch.
    let fetched = recorded.and_then(|r| r.record(current)).map_or_else(
        || state.fetched_at(current),
        |r| UNIX_EPOCH + Duration::from_secs(r.fetched_at),
    );
    let bound = fetched + MAX_CLOCK_SKEW;
    let (floor, current_created) = if old > bound {
        (
            bound,
            format!(
                "{}, counted as {} since it was fetched at {}",
                current_manifest.created,
                rfc3339_micros(bound),
                rfc3339_micros(fetched)
            ),
        )
    } else {
        (old, current_manifest.created)
    };
    // Strictly newer: publish dates every manifest after the one it replaces, so an equal
    // date is the same publish or a replay of one made within the same instant.
    if new <= floor {
        return Err(BundleError::OlderThanCurrent {
            url: url.to_string(),
            created: manifest.created.clone(),
            current_created,
        });
    }
    Ok(())
}

/// Refuses a manifest dated more than [`MAX_CLOCK_SKEW`] ahead of this host's clock: accepted,
/// it would become the floor that every later (correctly dated) publish fails against.
fn check_not_in_future(manifest: &Manifest, url: &str) -> Result<(), BundleError> {
    let now = SystemTime::now();
    match manifest.created_at() {
        Ok(created) if created > now + MAX_CLOCK_SKEW => Err(BundleError::CreatedInFuture {
            url: url.to_string(),
            created: manifest.created.clone(),
            now: rfc3339_micros(now),
        }),
        _ => Ok(()),
    }
}

/// A saved signer only counts if that key is still trusted; otherwise re-verify.
fn signer_ok(s: &SyncState, opts: &SyncOptions) -> bool {
    opts.trusted_keys.is_empty() || s.signer.as_deref().is_some_and(|k| is_trusted(opts, k))
}

pub(super) fn is_trusted(opts: &SyncOptions, key_id: &str) -> bool {
    opts.trusted_keys.iter().any(|k| k.key_id() == key_id)
}

fn outcome(
    state: &StateDir,
    s: &SyncState,
    freshness: Freshness,
    rollout: Option<Choice>,
) -> SyncOutcome {
    SyncOutcome {
        bundle_dir: state.bundle_dir(&s.id),
        id: s.id.clone(),
        freshness,
        fetched_at: UNIX_EPOCH + Duration::from_secs(s.fetched_at),
        signer: s.signer.clone(),
        track: s.track,
        rollout: rollout.map(Box::new),
        expired: false,
    }
}

pub(super) fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outcome for the bundle materialised in `dir` with a manifest expiring `expires`.
    fn outcome_in(dir: &Path, expires: SystemTime) -> SyncOutcome {
        let mut m = Manifest::new(BTreeMap::new());
        m.created = rfc3339_micros(expires - Duration::from_secs(60));
        m.expires = Some(rfc3339_micros(expires));
        std::fs::write(dir.join(super::super::cache::BUNDLE_MANIFEST), m.to_bytes()).unwrap();
        SyncOutcome {
            bundle_dir: dir.to_path_buf(),
            id: "ab".repeat(32),
            freshness: Freshness::Unchanged,
            fetched_at: UNIX_EPOCH,
            signer: None,
            track: Track::Stable,
            rollout: None,
            expired: false,
        }
    }

    #[test]
    fn a_bundle_in_use_past_its_expiry_is_still_used_but_not_as_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let past = SystemTime::now() - Duration::from_secs(10);
        let got = expire(outcome_in(dir.path(), past));
        assert!(got.expired);
        let Freshness::Stale { reason } = &got.freshness else {
            panic!("{:?}", got.freshness);
        };
        assert!(
            reason.starts_with(&format!(
                "bundle {} expired at {} (now ",
                "ab".repeat(32),
                rfc3339_micros(past)
            )),
            "{reason}"
        );
        assert!(reason
            .ends_with("converging it as the last known good until the source publishes again"));
        assert_eq!(got.bundle_dir, dir.path());

        let future = SystemTime::now() + Duration::from_secs(3600);
        let got = expire(outcome_in(dir.path(), future));
        assert!(!got.expired);
        assert_eq!(got.freshness, Freshness::Unchanged);
    }
}
