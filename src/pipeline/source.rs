//! Where a run's roles come from: a source tree read in place, or a bundle fetched and
//! verified into the state dir (with the last known good as fallback).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::record::SourceStatus;
use super::RunError;
use crate::agent::config::{AgentConfig, FetchConfig};
use crate::bundle::{self, Freshness, Peeked, SyncOptions, TrustedKey};
use crate::diagnostics::Diagnostics;
use crate::durable::StateLock;
use crate::report::{Mode, SourceFreshness};
use crate::role::SourceTree;

/// A source as a run sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A source tree (a directory with `roles/`), read in place: nothing to verify it against.
    Tree(PathBuf),
    /// A published bundle (directory, `file://` or `http(s)://`), synced and verified.
    Bundle(String),
}

impl Source {
    /// The one place that tells a source tree from a bundle. With `verified_only` (trusted
    /// keys are configured) a tree cannot count, since it carries no signature: it is
    /// treated as a bundle location, which then fails verification.
    pub fn detect(text: &str, verified_only: bool) -> Source {
        let local = Path::new(text);
        if !verified_only && !text.contains("://") && local.join("roles").is_dir() {
            Source::Tree(local.to_path_buf())
        } else {
            Source::Bundle(text.to_owned())
        }
    }

    /// A directory that is neither a tree nor a published bundle (a typo on the command
    /// line): `Some(reason)`. URLs and trees are never refused here.
    pub fn not_a_source(&self) -> Option<String> {
        let Source::Bundle(text) = self else {
            return None;
        };
        if text.contains("://") || Path::new(text).join(bundle::MANIFEST_FILE).is_file() {
            return None;
        }
        Some(format!(
            "{text}: neither a source tree (no roles/ directory) nor a published bundle (no {})",
            bundle::MANIFEST_FILE
        ))
    }
}

/// The source tree for this run and, for records, how it was obtained. A check never changes
/// the agent's bundles: what it fetches lives in a scratch dir held by the returned guard.
pub(super) fn obtain(
    source: &Source,
    settings: &AgentConfig,
    lock: Option<&StateLock>,
    mode: Mode,
    host: &HostView,
) -> Result<(SourceTree, Option<SourceStatus>, Option<Peeked>), RunError> {
    match source {
        Source::Tree(dir) => {
            let tree = SourceTree::open(dir).map_err(Diagnostics::from)?;
            let status = SourceStatus {
                url: dir.display().to_string(),
                bundle_id: String::new(),
                freshness: SourceFreshness::Local,
                reason: None,
                fetched_objects: 0,
                bundle_age_seconds: 0,
                created: None,
                signer: None,
                message: None,
                track: None,
                rollout: None,
                expired: false,
            };
            Ok((tree, Some(status), None))
        }
        Source::Bundle(text) => {
            if let Some(reason) = source.not_a_source() {
                let reason = reason.strip_prefix(&format!("{text}: ")).unwrap_or(&reason);
                if let Some(at) = settings.error_at("source", text, format!("source is {reason}")) {
                    return Err(RunError::Setting {
                        at: Box::new(at),
                        kind: "invalid_source",
                    });
                }
            }
            let lock = lock.expect("a run from a bundle holds the state-dir lock");
            let (dir, status, scratch) = fetch(text, settings, lock, mode, host)?;
            if status.freshness.fell_back() {
                tracing::warn!(
                    source = %bundle::RedactedUrl(text),
                    reason = status.reason.as_deref().unwrap_or(""),
                    "using the last known good bundle"
                );
            }
            let tree = SourceTree::open(&dir).map_err(Diagnostics::from)?;
            Ok((tree, Some(status), scratch))
        }
    }
}

/// Syncs the bundle at `text` into the state dir; the verified tree and how it was had.
fn fetch(
    text: &str,
    settings: &AgentConfig,
    lock: &StateLock,
    mode: Mode,
    host: &HostView,
) -> Result<(PathBuf, SourceStatus, Option<Peeked>), RunError> {
    let source = bundle::Source::parse(text)
        .map_err(|e| RunError::in_setting(settings, "source", text, e.into()))?;
    let mut opts = sync_options(settings)?;
    opts.rollout_host = Some(rollout_host(settings, lock, host));
    let (outcome, scratch) = match mode {
        Mode::Apply => (bundle::sync_locked(&source, lock, &opts)?, None),
        Mode::Check => {
            let peeked = bundle::peek_locked(&source, lock, &opts)?;
            (peeked.outcome.clone(), Some(peeked))
        }
    };
    if opts.trusted_keys.is_empty() {
        tracing::warn!(
            source = %source,
            bundle = %outcome.id,
            "bundle {} from {source} is used UNVERIFIED: no trusted key is configured, so whoever can change the source or its traffic controls this host (set trusted_keys in agent.toml or pass --trusted-key FILE)",
            outcome.id
        );
    }
    let (freshness, reason, fetched_objects) = match &outcome.freshness {
        Freshness::Fresh { fetched_objects } => (SourceFreshness::Fresh, None, *fetched_objects),
        Freshness::Unchanged => (SourceFreshness::Unchanged, None, 0),
        Freshness::Stale { reason } => (SourceFreshness::Stale, Some(reason.clone()), 0),
        Freshness::Refused { reason } => (SourceFreshness::Refused, Some(reason.clone()), 0),
    };
    let age = SystemTime::now()
        .duration_since(outcome.fetched_at)
        .unwrap_or(Duration::ZERO);
    let status = SourceStatus {
        url: bundle::RedactedUrl(text).to_string(),
        bundle_id: outcome.id.clone(),
        reason,
        fetched_objects,
        bundle_age_seconds: age.as_secs(),
        ..published(&outcome, freshness)
    };
    Ok((outcome.bundle_dir, status, scratch))
}

/// What a run knows of its host before it has a bundle: the tree it converges and its facts.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostView<'a> {
    /// The tree converged (`/` for the running machine).
    pub root: &'a Path,
    /// The host's facts.
    pub facts: &'a serde_json::Value,
}

/// Who this host is to a rollout: its machine id (the tree's etc/machine-id, else its host
/// name), and its wariness: agent.toml's, else what `nodes.toml` of the bundle it runs now
/// gives it (the bundle it is about to fetch is not known yet, so a change there counts from
/// the run after it arrives).
fn rollout_host(settings: &AgentConfig, lock: &StateLock, host: &HostView) -> bundle::RolloutHost {
    let hostname = host
        .facts
        .get("hostname")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let wariness = settings.rollout_wariness.or_else(|| {
        let dir = bundle::current_dir(lock)?;
        let tree = SourceTree::open(&dir).ok()?;
        let w = crate::role::classify::rollout_wariness(&tree, host.facts)?;
        bundle::Wariness::new(w).ok()
    });
    bundle::RolloutHost {
        machine_id: crate::agent::schedule::identity_in(host.root, hostname),
        wariness,
        candidate_preview: false,
    }
}

/// The candidate `candidate` of the rollout at the bundle source `text`, fetched and
/// verified into scratch space under the state dir (nothing made current, no rollout file
/// kept), for the fleet preview: its tree, and the guard that removes it.
pub(super) fn peek_candidate(
    text: &str,
    settings: &AgentConfig,
    lock: &StateLock,
    host: &HostView,
    candidate: &str,
) -> Result<(SourceTree, Peeked), Unchecked> {
    let source = bundle::Source::parse(text).map_err(RunError::from)?;
    let mut opts = sync_options(settings)?;
    opts.rollout_host = Some(bundle::RolloutHost {
        candidate_preview: true,
        ..rollout_host(settings, lock, host)
    });
    let peeked = bundle::peek_locked(&source, lock, &opts).map_err(RunError::from)?;
    let outcome = &peeked.outcome;
    let unfetched = |error: String| Unchecked {
        error,
        kind: "unreachable",
    };
    match &outcome.freshness {
        Freshness::Fresh { .. } | Freshness::Unchanged if outcome.id == candidate => {}
        // A sync that failed falls back to a kept bundle: never preview that instead.
        Freshness::Stale { reason } | Freshness::Refused { reason } => {
            return Err(unfetched(format!(
                "the candidate could not be had: {reason}"
            )));
        }
        _ => {
            return Err(unfetched(format!(
                "the source's rollout names {} as the candidate now, not {candidate}",
                outcome.id
            )))
        }
    }
    let tree =
        SourceTree::open(&outcome.bundle_dir).map_err(|e| RunError::Input(Diagnostics::from(e)))?;
    Ok((tree, peeked))
}

/// Why a candidate could not be checked at all.
#[derive(Debug)]
pub(super) struct Unchecked {
    /// What went wrong, in full.
    pub error: String,
    /// Its kind, as a run's `error_kind`.
    pub kind: &'static str,
}

impl From<RunError> for Unchecked {
    fn from(e: RunError) -> Unchecked {
        Unchecked {
            error: e.to_string(),
            kind: e.kind(),
        }
    }
}

/// Fetches the bundle at `text` with `opts` into a scratch dir of its own, never the
/// agent's bundle cache, and verifies it: the scratch dir (removed when dropped) and the
/// bundle's directory in it. For a look at a bundle that must change nothing (render,
/// bootstrap's check before its first write).
pub fn fetch_scratch(
    text: &str,
    opts: &SyncOptions,
) -> Result<(tempfile::TempDir, PathBuf), RunError> {
    let source = bundle::Source::parse(text)?;
    let scratch = tempfile::Builder::new()
        .prefix("converge-scratch-")
        .tempdir()
        .map_err(|e| bundle::BundleError::io(std::env::temp_dir(), e))?;
    let outcome = bundle::sync(&source, scratch.path(), opts)?;
    match outcome.freshness {
        Freshness::Fresh { .. } | Freshness::Unchanged => Ok((scratch, outcome.bundle_dir)),
        // An empty scratch dir has no bundle to fall back to; never converge from one.
        Freshness::Stale { reason } | Freshness::Refused { reason } => {
            Err(RunError::Bundle(bundle::BundleError::NoTrustedBundle {
                kept: "none in scratch space".into(),
                reason,
            }))
        }
    }
}

/// How these settings fetch: their trusted keys (loaded) and limits.
pub fn sync_options(settings: &AgentConfig) -> Result<SyncOptions, RunError> {
    let mut trusted_keys = Vec::new();
    for path in &settings.trusted_keys {
        let key = TrustedKey::from_file(path).map_err(|e| {
            let error = RunError::Key {
                path: path.clone(),
                reason: e.to_string(),
            };
            RunError::in_setting(settings, "trusted_keys", &path.display().to_string(), error)
        })?;
        trusted_keys.push(key);
    }
    Ok(fetch_options(trusted_keys, &settings.fetch))
}

/// Fetch limits of `fetch`, with `trusted_keys` as the keys a bundle must be signed by.
pub(crate) fn fetch_options(trusted_keys: Vec<TrustedKey>, fetch: &FetchConfig) -> SyncOptions {
    SyncOptions {
        trusted_keys,
        connect_timeout: fetch.connect_timeout,
        request_timeout: fetch.timeout,
        retries: fetch.retries,
        deadline: fetch.deadline,
        ..SyncOptions::default()
    }
}

/// When the bundle from the source cannot be planned, the kept bundle to converge instead,
/// planned by `plan`, with the status that says so. An apply also makes it current again and
/// marks the bad bundle refused. `None` when no kept bundle plans either: then the fault is
/// not the bundle's (a `--role` typo, a bad `[vars]` in agent.toml) and the run reports the
/// error.
pub(super) fn fall_back_from_unplannable<T>(
    settings: &AgentConfig,
    lock: &StateLock,
    mode: Mode,
    status: &SourceStatus,
    error: &RunError,
    plan: impl Fn(&SourceTree) -> Result<T, RunError>,
) -> Result<Option<(T, SourceStatus)>, RunError> {
    let source = bundle::Source::parse(&settings.source)?;
    let opts = sync_options(settings)?;
    let Some(kept) = bundle::stand_in(&source, lock, &status.bundle_id, &opts)? else {
        return Ok(None);
    };
    let Ok(tree) = SourceTree::open(&kept.bundle_dir) else {
        return Ok(None);
    };
    let Ok(planned) = plan(&tree) else {
        return Ok(None);
    };
    let first = error.to_string();
    let first = first.lines().next().unwrap_or_default();
    let reason = format!(
        "bundle {} cannot be planned on this host: {first}; converging the last known good {}",
        status.bundle_id, kept.id
    );
    if mode == Mode::Apply {
        bundle::refuse(lock, &status.bundle_id, &kept.id, &reason)?;
    }
    Ok(Some((planned, refused_status(status, &kept, reason))))
}

/// The record of a run whose bundle was refused in favour of `kept`.
fn refused_status(
    status: &SourceStatus,
    kept: &bundle::SyncOutcome,
    reason: String,
) -> SourceStatus {
    SourceStatus {
        url: status.url.clone(),
        bundle_id: kept.id.clone(),
        reason: Some(reason),
        fetched_objects: status.fetched_objects,
        bundle_age_seconds: kept.bundle_age().as_secs(),
        ..published(kept, SourceFreshness::Refused)
    }
}

/// After apply refused the run of the bundle `status` names (a file its validate rejects):
/// the kept bundle before it becomes current again and the bad one is remembered as refused,
/// so it never counts as what the host runs. The kept bundle's status, or `None` when no
/// bundle is kept (the refused one then stays current, and every run refuses it again).
pub(super) fn refuse_after_run(
    settings: &AgentConfig,
    lock: &StateLock,
    status: &SourceStatus,
    why: &str,
) -> Result<Option<SourceStatus>, RunError> {
    let source = bundle::Source::parse(&settings.source)?;
    let opts = sync_options(settings)?;
    let Some(kept) = bundle::stand_in(&source, lock, &status.bundle_id, &opts)? else {
        return Ok(None);
    };
    let reason = format!(
        "bundle {} was refused on this host: {why}; the last known good {} stays current",
        status.bundle_id, kept.id
    );
    bundle::refuse(lock, &status.bundle_id, &kept.id, &reason)?;
    Ok(Some(refused_status(status, &kept, reason)))
}

/// While `held` is held, the kept bundle the host converges instead: the one before it,
/// unless that is `also_bad` (the bundle of the run the hold undid, when it was another).
/// `None` when no such bundle is kept.
pub(super) fn stand_in_for_held(
    settings: &AgentConfig,
    lock: &StateLock,
    held: &crate::agent::held::HeldBundle,
    also_bad: Option<&str>,
) -> Result<Option<(SourceTree, SourceStatus)>, RunError> {
    let source = bundle::Source::parse(&settings.source)?;
    let opts = sync_options(settings)?;
    let Some(kept) = bundle::stand_in(&source, lock, &held.bundle, &opts)? else {
        return Ok(None);
    };
    if also_bad == Some(kept.id.as_str()) {
        return Ok(None);
    }
    let Ok(tree) = SourceTree::open(&kept.bundle_dir) else {
        return Ok(None);
    };
    let status = SourceStatus {
        url: settings.source.clone(),
        bundle_id: kept.id.clone(),
        reason: Some(format!(
            "bundle {} was rolled back here in run {}; converging the last good bundle {}",
            held.bundle, held.run, kept.id
        )),
        fetched_objects: 0,
        bundle_age_seconds: kept.bundle_age().as_secs(),
        ..published(&kept, SourceFreshness::Held)
    };
    Ok(Some((tree, status)))
}

/// What a synced bundle says about itself (when published, by whom, as what), in a status
/// that is otherwise empty but for its `freshness`.
fn published(outcome: &bundle::SyncOutcome, freshness: SourceFreshness) -> SourceStatus {
    let manifest = bundle::manifest_in(&outcome.bundle_dir);
    SourceStatus {
        url: String::new(),
        bundle_id: String::new(),
        freshness,
        reason: None,
        fetched_objects: 0,
        bundle_age_seconds: 0,
        signer: outcome.signer.clone(),
        created: manifest.as_ref().map(|m| m.created.clone()),
        message: manifest.and_then(|m| m.message),
        track: Some(outcome.track),
        rollout: outcome.rollout.as_deref().cloned(),
        expired: outcome.expired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_read_in_place_unless_only_verified_bundles_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("roles")).unwrap();
        let text = dir.path().to_str().unwrap();
        assert_eq!(
            Source::detect(text, false),
            Source::Tree(dir.path().to_path_buf())
        );
        assert_eq!(Source::detect(text, true), Source::Bundle(text.into()));
        assert_eq!(Source::detect(text, false).not_a_source(), None);
    }

    #[test]
    fn a_directory_without_roles_or_manifest_is_no_source() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().to_str().unwrap();
        let reason = Source::detect(text, false).not_a_source().unwrap();
        assert!(
            reason.starts_with(&format!("{text}: neither a source tree")),
            "{reason}"
        );
        std::fs::write(dir.path().join(bundle::MANIFEST_FILE), "{}").unwrap();
        assert_eq!(Source::detect(text, false).not_a_source(), None);
        let url = Source::detect("https://cfg.example.com/b/", false);
        assert_eq!(url.not_a_source(), None);
    }
}
