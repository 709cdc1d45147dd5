//! The pull agent: lock, fetch and verify the bundle (or fall back to the last known good),
//! classify, converge, and leave a report and metrics behind.

pub mod bootstrap;
pub mod classify;
pub mod config;
pub mod held;
pub mod record;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::bundle::{self, Freshness, SyncOptions, TrustedKey};
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::durable::{self, FileSpec, LockError, StateLock};
use crate::engine;
use crate::history::{self, Recorder};
use crate::plan::{self, Plan, PlanOptions};
use crate::render::Renderer;
use crate::report::metrics::{self, RunMetrics, SourceMetrics};
use crate::report::{Mode, Report};
use crate::role::{self, vars, SourceTree};
use crate::system::System;
use config::AgentConfig;
use record::{RunRecord, SourceStatus};

/// Restart and reload requests not carried out yet, in the state dir.
pub const NOTIFY_JOURNAL_FILE: &str = "pending-notify.json";
/// Name of the last apply's record in the state dir.
pub const LAST_RUN_FILE: &str = "last-run.json";
/// Name of the last check's record in the state dir: a check never overwrites what the
/// last apply recorded.
pub const LAST_CHECK_FILE: &str = "last-check.json";

/// What a run was asked to do beyond the config.
#[derive(Debug, Clone)]
pub struct Request {
    /// Check or apply.
    pub mode: Mode,
    /// Roles from the command line; empty: the config's, else `nodes.toml`.
    pub roles: Vec<String>,
    /// `--var` overrides, above the config's `[vars]`.
    pub overrides: Map<String, Value>,
    /// Facts for rendering and classification.
    pub facts: Value,
    /// Apply even a bundle that was rolled back on this host (`converge apply --force`).
    pub force: bool,
}

/// Why a run could not run at all (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Another run holds the lock.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The state dir is unusable.
    #[error("state dir {path}: {source}")]
    StateDir {
        /// The state dir.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No verified bundle could be had: none fetched and no last known good.
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    /// A trusted key file is unusable.
    #[error("trusted key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Roles, templates or nodes.toml are invalid.
    #[error(transparent)]
    Input(#[from] Diagnostics),
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    /// The report of the run.
    pub report: Report,
    /// The record written to `last-run.json`.
    pub record: RunRecord,
}

/// One run: lock, sync, classify, converge, record. Errors that stop the run before it
/// converges are recorded too, so monitoring sees a host that cannot run.
pub fn run_once(config: &AgentConfig, sys: &System, req: &Request) -> Result<Finished, AgentError> {
    let started = SystemTime::now();
    // 0711: others may pass through to the world-readable metrics/ (node_exporter), but
    // not list it; bundles and objects (which may carry secrets) are 0700 and run records
    // (which show diffs) 0600.
    crate::durable::ensure_dir(&config.state_dir, 0o711).map_err(|source| {
        AgentError::StateDir {
            path: config.state_dir.clone(),
            source,
        }
    })?;
    let lock = StateLock::acquire(&config.state_dir, Some(config.lock_wait))?;
    let host = req
        .facts
        .get("hostname")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut record = RunRecord {
        version: env!("CARGO_PKG_VERSION"),
        host,
        started: humantime::format_rfc3339_seconds(started).to_string(),
        finished: String::new(),
        source: None,
        roles: Vec::new(),
        exit_code: 1,
        error: None,
        report: None,
    };
    let result = converge(config, &lock, sys, req, &mut record);
    record.finished = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    match result {
        Ok(report) => {
            record.exit_code = report.exit_code();
            record.report = Some(report.clone());
            publish(config, req.mode, started, &record, Some(&report));
            Ok(Finished { report, record })
        }
        Err(e) => {
            record.error = Some(e.to_string());
            publish(config, req.mode, started, &record, None);
            Err(e)
        }
    }
}

fn converge(
    config: &AgentConfig,
    lock: &StateLock,
    sys: &System,
    req: &Request,
    record: &mut RunRecord,
) -> Result<Report, AgentError> {
    let (tree_dir, mut status, _scratch) = fetch(config, lock, req.mode)?;
    if req.mode == Mode::Apply {
        if let Some(report) = finish_interrupted_rollback(config, sys) {
            record.source = Some(status);
            return Ok(report);
        }
    }
    // Remembered per bundle id; a source tree read in place has none, so nothing is held.
    let held = held::load(&config.state_dir)
        .filter(|h| !h.bundle.is_empty() && h.bundle == status.bundle_id);
    if let (Some(h), Mode::Apply, false) = (&held, req.mode, req.force) {
        tracing::warn!(bundle = %h.bundle, run = %h.run, "bundle was rolled back here; not applying it again");
        let mut report = Report::new(req.mode, SystemTime::now(), Duration::ZERO, Vec::new());
        report.held = held;
        record.source = Some(status);
        return Ok(report);
    }
    let (plan, roles) = match plan_bundle(config, req, &tree_dir) {
        Ok(planned) => planned,
        // A verified bundle that cannot be planned here (a broken template, a role missing
        // from nodes.toml) must not stop the host: converge the last known good and say so.
        Err(e) if matches!(status.freshness.as_str(), "fresh" | "unchanged") => {
            match fall_back_from_unplannable(config, lock, req, &status, &e)? {
                Some((planned, kept)) => {
                    status = kept;
                    planned
                }
                None => {
                    record.source = Some(status);
                    return Err(e);
                }
            }
        }
        Err(e) => {
            record.source = Some(status);
            return Err(e);
        }
    };
    if status.freshness == "stale" || status.freshness == "refused" {
        tracing::warn!(
            source = %config.source,
            reason = status.reason.as_deref().unwrap_or(""),
            "using the last known good bundle {}", status.bundle_id
        );
    }
    let bundle_id = status.bundle_id.clone();
    record.source = Some(status);
    record.roles = roles;
    // The journal holds the live host's open restarts; a run on a tree has none of its own
    // and must not consume (or clear) them.
    let journal = sys
        .is_live()
        .then(|| config.state_dir.join(NOTIFY_JOURNAL_FILE));
    let mut report = match (req.mode, &journal) {
        (Mode::Apply, _) => {
            let recorder = Recorder::new(
                &config.state_dir,
                config.keep_runs.get(),
                &bundle_id,
                sys.root(),
            );
            engine::run_recorded(&plan, sys, req.mode, journal.as_deref(), &recorder)
        }
        (Mode::Check, Some(journal)) => engine::run_with_journal(&plan, sys, req.mode, journal),
        (Mode::Check, None) => engine::run(&plan, sys, req.mode),
    };
    if req.mode == Mode::Apply {
        match &report.rollback {
            Some(rb) if !bundle_id.is_empty() => remember(config, &bundle_id, &rb.run, &rb.reason),
            Some(_) => {}
            None => held::clear(&config.state_dir),
        }
    } else {
        report.held = held;
    }
    Ok(report)
}

/// A plan and the roles it was made from.
type Planned = (Plan, Vec<String>);

/// Picks the roles (`--role`, the config's, else `nodes.toml`), loads, renders and plans.
fn plan_bundle(
    config: &AgentConfig,
    req: &Request,
    tree_dir: &Path,
) -> Result<Planned, AgentError> {
    let tree = SourceTree::open(tree_dir).map_err(Diagnostics::from)?;
    let roles = if !req.roles.is_empty() {
        req.roles.clone()
    } else if !config.roles.is_empty() {
        config.roles.clone()
    } else {
        let nodes = tree.root().join(classify::NODES_FILE);
        let text = std::fs::read_to_string(&nodes).map_err(|e| {
            Diagnostics::from(Diagnostic::new(format!(
                "no roles configured and the bundle has no {} ({e})",
                classify::NODES_FILE
            )))
        })?;
        let file = Path::new(classify::NODES_FILE);
        classify::roles_for_checked(file, &text, &req.facts, &tree.role_names())?
    };
    let mut overrides = vars::table_to_json(&config.vars);
    vars::merge(&mut overrides, &req.overrides);
    let set = role::load(&tree, &roles, &overrides)?;
    let mut renderer = Renderer::new(&tree.templates_dir())?;
    let plan = plan::build(
        &tree,
        &set,
        &req.facts,
        &mut renderer,
        PlanOptions::default(),
    )?;
    Ok((plan, roles))
}

/// When the bundle from the source cannot be planned, the kept bundle to converge instead,
/// planned, with the status that says so. An apply also makes it current again and marks
/// the bad bundle refused. `None` when no kept bundle plans either: then the fault is not the
/// bundle's (a `--role` typo, a bad `[vars]` in agent.toml) and the run reports the error.
fn fall_back_from_unplannable(
    config: &AgentConfig,
    lock: &StateLock,
    req: &Request,
    status: &SourceStatus,
    error: &AgentError,
) -> Result<Option<(Planned, SourceStatus)>, AgentError> {
    let source = bundle::Source::parse(&config.source)?;
    let opts = sync_options(config)?;
    let Some(kept) = bundle::stand_in(&source, lock, &status.bundle_id, &opts)? else {
        return Ok(None);
    };
    let Ok(planned) = plan_bundle(config, req, &kept.bundle_dir) else {
        return Ok(None);
    };
    let first = error.to_string();
    let first = first.lines().next().unwrap_or_default();
    let reason = format!(
        "bundle {} cannot be planned on this host: {first}; converging the last known good {}",
        status.bundle_id, kept.id
    );
    if req.mode == Mode::Apply {
        bundle::refuse(lock, &status.bundle_id, &kept.id, &reason)?;
    }
    let kept_status = SourceStatus {
        url: status.url.clone(),
        bundle_id: kept.id.clone(),
        freshness: "refused".into(),
        reason: Some(reason),
        fetched_objects: status.fetched_objects,
        bundle_age_seconds: kept.bundle_age().as_secs(),
    };
    Ok(Some((planned, kept_status)))
}

fn remember(config: &AgentConfig, bundle: &str, run: &str, reason: &str) {
    let h = held::HeldBundle {
        bundle: bundle.to_owned(),
        run: run.to_owned(),
        reason: reason.to_owned(),
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    if let Err(e) = held::save(&config.state_dir, &h) {
        tracing::warn!(error = %e, "cannot remember the rolled-back bundle");
    }
}

/// A rollback killed half-way is finished before anything else: its run's changes are put
/// back (restoring is idempotent), its services acted on again, and its bundle remembered.
fn finish_interrupted_rollback(config: &AgentConfig, sys: &System) -> Option<Report> {
    let mut past = history::load(&config.state_dir, None).ok()?;
    if past.summary.status != history::RunStatus::RollingBack || past.summary.root != sys.root() {
        return None;
    }
    tracing::warn!(run = %past.summary.id, "finishing a rollback that was interrupted");
    let reason = past.summary.rollback_reason.clone().unwrap_or_default();
    let rollback = engine::rollback::undo(
        sys,
        &past.summary.id,
        reason.clone(),
        &past.priors,
        &past.blobs,
        &past.summary.services,
    );
    past.summary.status = if rollback.complete() {
        history::RunStatus::RolledBack
    } else {
        history::RunStatus::RollbackIncomplete
    };
    if let Err(e) = past.save() {
        tracing::warn!(error = %e, "cannot record the finished rollback");
    }
    if !past.summary.bundle.is_empty() {
        remember(config, &past.summary.bundle, &past.summary.id, &reason);
    }
    let mut report = Report::new(Mode::Apply, SystemTime::now(), Duration::ZERO, Vec::new());
    report.rollback = Some(rollback);
    Some(report)
}

/// The verified source tree for this run and how it was obtained. A check never changes the
/// agent's bundles: what it fetches lives in a scratch dir held by the returned guard.
fn fetch(
    config: &AgentConfig,
    lock: &StateLock,
    mode: Mode,
) -> Result<(PathBuf, SourceStatus, Option<bundle::Peeked>), AgentError> {
    let local = Path::new(&config.source);
    // A source tree cannot be verified: with trusted keys set, only signed bundles count.
    if config.trusted_keys.is_empty() && local.join("roles").is_dir() {
        // An admin's own source tree: read in place, nothing to verify against.
        let status = SourceStatus {
            url: config.source.clone(),
            bundle_id: String::new(),
            freshness: "local".into(),
            reason: None,
            fetched_objects: 0,
            bundle_age_seconds: 0,
        };
        return Ok((local.to_path_buf(), status, None));
    }
    let source = bundle::Source::parse(&config.source)?;
    let opts = sync_options(config)?;
    let (outcome, guard) = match mode {
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
        Freshness::Fresh { fetched_objects } => ("fresh", None, *fetched_objects),
        Freshness::Unchanged => ("unchanged", None, 0),
        Freshness::Stale { reason } => ("stale", Some(reason.clone()), 0),
        Freshness::Refused { reason } => ("refused", Some(reason.clone()), 0),
    };
    let age = SystemTime::now()
        .duration_since(outcome.fetched_at)
        .unwrap_or(Duration::ZERO);
    let status = SourceStatus {
        url: config.source.clone(),
        bundle_id: outcome.id.clone(),
        freshness: freshness.into(),
        reason,
        fetched_objects,
        bundle_age_seconds: age.as_secs(),
    };
    Ok((outcome.bundle_dir, status, guard))
}

/// How this config fetches: its trusted keys (loaded) and limits.
fn sync_options(config: &AgentConfig) -> Result<SyncOptions, AgentError> {
    let mut trusted_keys = Vec::new();
    for path in &config.trusted_keys {
        let key = TrustedKey::from_file(path).map_err(|e| AgentError::Key {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        trusted_keys.push(key);
    }
    Ok(SyncOptions {
        trusted_keys,
        connect_timeout: config.fetch.connect_timeout,
        request_timeout: config.fetch.timeout,
        retries: config.fetch.retries,
        deadline: config.fetch.deadline,
        ..SyncOptions::default()
    })
}

/// Writes `last-run.json` and the metrics textfile, and POSTs the record when configured.
/// Failures here are logged, never fatal: the run itself already happened.
fn publish(
    config: &AgentConfig,
    mode: Mode,
    started: SystemTime,
    record: &RunRecord,
    report: Option<&Report>,
) {
    let json = serde_json::to_vec_pretty(record).expect("records serialize");
    let last_run = config.state_dir.join(match mode {
        Mode::Apply => LAST_RUN_FILE,
        Mode::Check => LAST_CHECK_FILE,
    });
    if let Err(e) = durable::write_file(&last_run, &json, &FileSpec::mode(0o600)) {
        tracing::warn!("cannot write the run record {}: {e}", last_run.display());
    }
    let source = record.source.as_ref();
    let finished = SystemTime::now();
    let text = metrics::render(&RunMetrics {
        mode,
        report,
        exit_code: record.exit_code,
        duration_seconds: finished
            .duration_since(started)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64(),
        finished_unix: finished
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as f64,
        source: SourceMetrics {
            bundle_age_seconds: source.map_or(0.0, |s| s.bundle_age_seconds as f64),
            stale: source.is_some_and(|s| s.freshness == "stale" || s.freshness == "refused"),
        },
    });
    let path = config.metrics_path(mode);
    if let Some(dir) = path.parent() {
        // World-readable, unlike the state dir around it: node_exporter reads it as its own,
        // unprivileged user. A failure shows in the write below.
        let _ = durable::ensure_dir(dir, 0o755);
    }
    if let Err(e) = durable::write_file(&path, text.as_bytes(), &FileSpec::mode(0o644)) {
        tracing::warn!("cannot write the metrics textfile {}: {e}", path.display());
    }
    if let Some(url) = &config.report_url {
        let sent = reqwest::blocking::Client::builder()
            .timeout(config.fetch.timeout)
            .connect_timeout(config.fetch.connect_timeout)
            .build()
            .and_then(|c| {
                c.post(url)
                    .header("content-type", "application/json")
                    .body(json)
                    .send()
            })
            .and_then(|r| r.error_for_status());
        match sent {
            Ok(_) => tracing::debug!(%url, "report sent"),
            Err(e) => tracing::warn!(%url, error = %e, "cannot send the report"),
        }
    }
}
