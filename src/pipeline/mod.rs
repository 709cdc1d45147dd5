//! One run, whoever asks for it: a [`Request`] (source, roles, vars, facts, mode, root)
//! becomes a [`Report`]. `check`, `apply` and the agent call [`run`]; `render` calls
//! [`plan`], `validate` and `publish` call [`validate`], so every
//! command turns a source into a plan the same way.
//!
//! The stages: take the run lock when the run writes (apply on the live host, or any run
//! that keeps state), obtain a source tree (read in place or fetched and verified), pick the
//! roles (`role::classify`), load, render and plan them, converge the plan (with the notify
//! journal on the live host), and record the run when it comes from the agent's settings.

pub mod journal;
pub mod plan_cache;
mod preview;
pub mod record;
mod rollback;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::agent::config::AgentConfig;
use crate::agent::held;
use crate::bundle;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::durable::{LockError, StateLock};
use crate::engine;
use crate::history::Recorder;
use crate::plan::{self, Plan, PlanOptions};
use crate::render::Renderer;
use crate::report::{Mode, Report, SourceFreshness};
use crate::role::{self, classify, vars, SourceTree};
use crate::system::{System, SystemError};
use plan_cache::PlanFrom;
use record::RunRecord;
pub use rollback::roll_back;
pub use source::Source;

/// Restart and reload requests not carried out yet, in the state dir.
pub(crate) const NOTIFY_JOURNAL_FILE: &str = "pending-notify.json";

/// Everything one run needs to know.
#[derive(Debug, Clone)]
pub struct Request {
    /// Check or apply.
    pub mode: Mode,
    /// The tree to converge; `/` is the running machine.
    pub root: PathBuf,
    /// Where the roles come from, as [`Source::detect`] found it.
    pub source: Source,
    /// Roles asked for; empty: the settings' roles, else `nodes.toml`.
    pub roles: Vec<String>,
    /// Variable overrides (`--var`), above the settings' `[vars]`.
    pub vars: Map<String, Value>,
    /// Facts for rendering and classification.
    pub facts: Value,
    /// The agent settings: state dir, lock wait, trusted keys, fetch limits, record
    /// targets, and the host's roles and vars. A source tree named on the command line gets
    /// the defaults with only the state dir set, so neither roles nor vars of the agent
    /// config apply to it.
    pub settings: AgentConfig,
    /// Write `last-run.json`, the metrics textfile and the report POST, and honour a
    /// rolled-back bundle (runs from the agent's settings; an admin's run of a checkout
    /// leaves the agent's record alone).
    pub record: bool,
    /// Keep the run in the run history (`<state_dir>/runs`), for `converge rollback`.
    pub history: bool,
    /// Apply even a bundle that was rolled back on this host (`converge apply --force`).
    pub force: bool,
    /// Use and keep cached plans (`<state_dir>/plan-cache`); off: plan from the source.
    pub plan_cache: bool,
}

impl Request {
    /// The agent's own run of `root`: the source, roles and vars of its settings, recorded and
    /// kept in the history, as the timer, `converge agent` and bootstrap's first run do it.
    pub fn agent_run(root: &Path, settings: &AgentConfig, facts: Value) -> Request {
        Request {
            mode: Mode::Apply,
            root: root.to_path_buf(),
            source: Source::detect(&settings.source, !settings.trusted_keys.is_empty()),
            roles: Vec::new(),
            vars: Map::new(),
            facts,
            settings: settings.clone(),
            record: true,
            history: true,
            force: false,
            plan_cache: settings.plan_cache,
        }
    }
}

/// Why a run could not run at all (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The root to converge is unusable.
    #[error(transparent)]
    Root(#[from] SystemError),
    /// Another run holds the lock, or the state dir is unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
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
    /// A value of the agent config cannot be used, at its place in the file.
    #[error("{at}")]
    Setting {
        /// The value's place and what is wrong with it.
        at: Box<Diagnostic>,
        /// What kind of failure it is, as the unlocated error would name it.
        kind: &'static str,
    },
}

impl RunError {
    /// A stable name for what stopped the run, for JSON records (`error_kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::Root(e) => e.kind(),
            RunError::Lock(e) => e.kind(),
            RunError::Bundle(e) => e.kind(),
            RunError::Key { .. } => "trusted_key",
            RunError::Input(_) => "invalid_input",
            RunError::Setting { kind, .. } => kind,
        }
    }

    /// `error` about `value` of `key` in `settings`, at its place in agent.toml when it
    /// was written there.
    pub(crate) fn in_setting(
        settings: &AgentConfig,
        key: &str,
        value: &str,
        error: RunError,
    ) -> RunError {
        match settings.error_at(key, value, error.to_string()) {
            Some(at) => RunError::Setting {
                at: Box::new(at),
                kind: error.kind(),
            },
            None => error,
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    /// The report of the run.
    pub report: Report,
    /// The run's record (written to `last-run.json` when the request asks for it).
    pub record: RunRecord,
}

/// Runs one request: lock, source, roles, plan, converge, record. Errors that stop the run
/// before it converges are recorded too, so monitoring sees a host that cannot run.
pub fn run(req: &Request) -> Result<Finished, RunError> {
    run_with(req, None)
}

/// [`run`] under the state dir's lock the caller already holds: bootstrap takes it before
/// its first write, so no agent run can come between its writes and its first run.
pub fn run_holding(req: &Request, lock: StateLock) -> Result<Finished, RunError> {
    run_with(req, Some(lock))
}

fn run_with(req: &Request, held: Option<StateLock>) -> Result<Finished, RunError> {
    let started = SystemTime::now();
    let mut sys = System::new(&req.root)?;
    sys.set_timeouts(req.settings.timeouts);
    let live = sys.is_live();
    // The lock guards what runs share: the state dir (bundles, journal, records) and the
    // running machine. A run of a checkout on a private tree touches neither.
    let keeps_state = req.record || req.history || matches!(req.source, Source::Bundle(_));
    let writes_host = req.mode == Mode::Apply && live;
    let lock = if held.is_some() {
        held
    } else if keeps_state || writes_host {
        // 0711: others may pass through to the world-readable metrics/ (node_exporter), but
        // not list it; bundles and objects (which may carry secrets) are 0700 and run records
        // (which show diffs) 0600.
        let dir = &req.settings.state_dir;
        // A state dir that cannot be made is the setting's fault; a held lock is not.
        let in_setting = |e: LockError| match e {
            LockError::StateDir { .. } => {
                let shown = dir.display().to_string();
                RunError::in_setting(&req.settings, "state_dir", &shown, e.into())
            }
            e => e.into(),
        };
        crate::durable::ensure_dir(dir, 0o711).map_err(|source| {
            in_setting(LockError::StateDir {
                path: dir.clone(),
                source,
            })
        })?;
        let wait = Some(req.settings.lock_wait);
        Some(StateLock::acquire(&req.settings.state_dir, wait).map_err(in_setting)?)
    } else {
        None
    };
    let mut record = RunRecord::start(&req.facts, started);
    let result = converge(req, lock.as_ref(), &sys, &mut record);
    if let (Ok(report), Some(lock), true, Mode::Apply) = (&result, &lock, req.record, req.mode) {
        let in_sync = report.exit_code() == 0;
        record.candidate = preview::candidate(req, lock, &sys, &record, in_sync);
    }
    record.finish(&result);
    if req.record {
        record::keep(
            &req.settings,
            req.mode,
            started,
            &record,
            result.as_ref().ok(),
        );
    }
    let report = result?;
    Ok(Finished { report, record })
}

fn converge(
    req: &Request,
    lock: Option<&StateLock>,
    sys: &System,
    record: &mut RunRecord,
) -> Result<Report, RunError> {
    let settings = &req.settings;
    // A check's freshly fetched bundle lives in a scratch dir until `_scratch` is dropped.
    let host = source::HostView {
        root: &req.root,
        facts: &req.facts,
    };
    let (mut tree, status, _scratch) =
        source::obtain(&req.source, settings, lock, req.mode, &host)?;
    let bundle_id = status
        .as_ref()
        .map_or_else(String::new, |s| s.bundle_id.clone());
    record.source = status;
    let mut held = None;
    let mut stand_in = None;
    if req.record {
        if req.mode == Mode::Apply {
            if let Some(report) = rollback::finish_interrupted(settings, sys) {
                return Ok(report);
            }
            rollback::remember_missed(settings, sys);
        }
        // Remembered per bundle id; a source tree read in place has none, so nothing is held.
        held = held::load(&settings.state_dir)
            .filter(|h| !h.bundle.is_empty() && h.bundle == bundle_id);
        if let (Some(h), false) = (&held, req.force) {
            tracing::warn!(bundle = %h.bundle, run = %h.run, "bundle was rolled back here; not applying it again");
            let lock = lock.expect("a run from a bundle holds the state-dir lock");
            // The run the hold undid may have applied another bad bundle than the held one
            // (a failure blamed on an earlier run): that one is no stand-in either.
            let undone = crate::history::load(&settings.state_dir, Some(&h.run))
                .ok()
                .map(|past| past.summary.bundle)
                .filter(|b| *b != h.bundle);
            match source::stand_in_for_held(settings, lock, h, undone.as_deref())? {
                Some((good, status)) => {
                    tracing::warn!(bundle = %status.bundle_id, "converging the last good bundle instead");
                    stand_in = Some(status.bundle_id.clone());
                    tree = good;
                    record.source = Some(status);
                }
                // Nothing to converge instead: apply leaves the host alone, check shows how
                // the held bundle differs.
                None if req.mode == Mode::Apply => {
                    let mut report =
                        Report::new(req.mode, SystemTime::now(), Duration::ZERO, Vec::new());
                    report.held = held;
                    return Ok(report);
                }
                None => {}
            }
        }
    }
    let bundle_id = record
        .source
        .as_ref()
        .map_or_else(String::new, |s| s.bundle_id.clone());
    let (plan, roles) = match plan_tree_cached(req, &tree, &bundle_id, record) {
        Ok(planned) => planned,
        // A verified bundle that cannot be planned here (a broken template, a role missing
        // from nodes.toml) must not stop the host: converge the last known good and say so.
        Err(e) if is_current(&record.source) => {
            let status = record.source.clone().expect("a bundle has a status");
            let lock = lock.expect("a run from a bundle holds the state-dir lock");
            match source::fall_back_from_unplannable(settings, lock, req.mode, &status, &e, |t| {
                plan_tree(req, t)
            })? {
                Some((planned, kept)) => {
                    record.source = Some(kept);
                    planned
                }
                None => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let bundle_id = record
        .source
        .as_ref()
        .map_or_else(String::new, |s| s.bundle_id.clone());
    record.roles = roles;
    // The journal holds the live host's open restarts; a run on a tree has none of its own
    // and must not consume (or clear) them.
    let journal = sys
        .is_live()
        .then(|| settings.state_dir.join(NOTIFY_JOURNAL_FILE));
    // Only an apply goes into the history: a check changes nothing to roll back.
    let recorder = (req.history && req.mode == Mode::Apply).then(|| {
        let recorder = Recorder::new(
            &settings.state_dir,
            settings.keep_runs.get(),
            &bundle_id,
            sys.root(),
        );
        let message = record.source.as_ref().and_then(|s| s.message.clone());
        // Nothing is written yet for a fresh run; a continued one gets this run's message.
        if let Err(e) = recorder.update(|s| s.message = message) {
            tracing::warn!("cannot record the bundle's message: {e}");
        }
        recorder
    });
    let opts = engine::RunOptions {
        mode: req.mode,
        journal: journal.as_deref(),
        recorder: recorder.as_ref(),
    };
    let mut report = engine::run(&plan, sys, opts);
    if let Some(recorder) = &recorder {
        rollback::blame_unvouched(settings, sys, recorder, &mut report, &plan.health);
    }
    refuse_bundle(req, lock, record, &report)?;
    if !req.record {
        return Ok(report);
    }
    match &report.rollback {
        // Outside the history nothing is rolled back for good; converging the stand-in for
        // a held bundle, the hold stays on the held one.
        _ if recorder.is_none() || stand_in.is_some() => {
            report.held = held;
            report.stand_in = stand_in;
        }
        Some(rb) if !bundle_id.is_empty() => {
            crate::durable::crash::point("rolled-back");
            rollback::remember(settings, &bundle_id, &rb.run, &rb.reason)
        }
        Some(_) => {}
        None => held::clear(&settings.state_dir),
    }
    Ok(report)
}

/// A run refused as a whole leaves its bundle out of `current` (see
/// [`source::refuse_after_run`]); the record then names the bundle the host stays on.
fn refuse_bundle(
    req: &Request,
    lock: Option<&StateLock>,
    record: &mut RunRecord,
    report: &Report,
) -> Result<(), RunError> {
    let (Some(why), Mode::Apply, Some(lock)) = (&report.refused, req.mode, lock) else {
        return Ok(());
    };
    if !req.record || !is_current(&record.source) {
        return Ok(());
    }
    let status = record.source.clone().expect("a bundle has a status");
    if let Some(kept) = source::refuse_after_run(&req.settings, lock, &status, why)? {
        record.source = Some(kept);
    }
    Ok(())
}

/// A fetched bundle, fresh or unchanged (not already a stand-in for the source's).
fn is_current(status: &Option<record::SourceStatus>) -> bool {
    status.as_ref().is_some_and(|s| {
        !s.bundle_id.is_empty()
            && matches!(
                s.freshness,
                SourceFreshness::Fresh | SourceFreshness::Unchanged
            )
    })
}

/// Like [`plan_tree`], from the plan cache when the same inputs were planned before; the
/// record says which.
fn plan_tree_cached(
    req: &Request,
    tree: &SourceTree,
    bundle_id: &str,
    record: &mut RunRecord,
) -> Result<(Plan, Vec<String>), RunError> {
    let cache = match req.plan_cache {
        true => plan_cache::PlanCache::open(&req.settings.state_dir).map_err(LockError::from)?,
        false => None,
    };
    let Some(cache) = cache else {
        return plan_tree(req, tree);
    };
    let overrides = overrides(req);
    let key = plan_cache::PlanCache::key(&plan_cache::Inputs {
        tree,
        bundle_id,
        roles: &req.roles,
        settings_roles: &req.settings.roles,
        overrides: &overrides,
        facts: &req.facts,
        options: PlanOptions::default(),
    });
    let Some(key) = key else {
        return plan_tree(req, tree);
    };
    if let Some(planned) = cache.load(&key, tree) {
        record.plan = Some(PlanFrom::Cached);
        return Ok(planned);
    }
    let (plan, roles) = plan_tree(req, tree)?;
    cache.store(&key, &plan, &roles);
    record.plan = Some(PlanFrom::Built);
    Ok((plan, roles))
}

/// The settings' vars with the request's on top.
fn overrides(req: &Request) -> Map<String, Value> {
    let mut overrides = vars::table_to_json(&req.settings.vars);
    vars::merge(&mut overrides, &req.vars);
    overrides
}

/// The request's roles in `tree`, planned, and the roles.
fn plan_tree(req: &Request, tree: &SourceTree) -> Result<(Plan, Vec<String>), RunError> {
    let settings = &req.settings;
    if req.roles.is_empty() {
        let known = tree.role_names();
        if let Some(missing) = settings.roles.iter().find(|r| !known.contains(r)) {
            let message = format!("role '{missing}' not found: there is no roles/{missing}.toml");
            if let Some(at) = settings.error_at("roles", missing, message) {
                return Err(at.into());
            }
        }
    }
    let roles = classify::roles(tree, &req.roles, &settings.roles, &req.facts)?;
    let plan = plan(
        tree,
        &roles,
        &overrides(req),
        &req.facts,
        PlanOptions::default(),
    )?;
    Ok((plan, roles))
}

/// Loads `roles` from `tree` with `overrides` above their vars, renders with `facts`, plans.
pub fn plan(
    tree: &SourceTree,
    roles: &[String],
    overrides: &Map<String, Value>,
    facts: &Value,
    options: PlanOptions,
) -> Result<Plan, Diagnostics> {
    let mut set = role::load_deferred(tree, roles, overrides)?;
    let renderer = Arc::new(Mutex::new(Renderer::new(&tree.templates_dir())));
    plan::build(tree, &mut set, facts, &renderer, options)
}

/// Plans each of `roles` on its own (with its includes, so unrelated roles never conflict)
/// and checks `nodes.toml`; returns how many resources were planned, or every error found,
/// each once.
pub fn validate(
    tree: &SourceTree,
    roles: &[String],
    overrides: &Map<String, Value>,
    facts: &Value,
) -> Result<usize, Diagnostics> {
    let mut seen = std::collections::BTreeSet::new();
    let mut errors = Diagnostics::default();
    let mut keep = |found: Diagnostics, errors: &mut Diagnostics| {
        for d in found.0 {
            if seen.insert(d.to_string()) {
                errors.push(d);
            }
        }
    };
    let renderer = Renderer::new(&tree.templates_dir());
    let partials = renderer.partial_errors();
    let renderer = Arc::new(Mutex::new(renderer));
    // One pass over all roles reports each parse error and include cycle once.
    if let Err(ds) = role::load(tree, roles, overrides) {
        keep(ds, &mut errors);
    }
    keep(classify::check_tree(tree), &mut errors);
    let mut resources = 0;
    for name in roles {
        // Roles that failed to load were reported above.
        let Ok(mut set) = role::load(tree, std::slice::from_ref(name), overrides) else {
            continue;
        };
        match plan::build(tree, &mut set, facts, &renderer, PlanOptions::default()) {
            Ok(p) => resources += p.items.len(),
            Err(ds) => keep(ds, &mut errors),
        }
    }
    // The tree as a whole: a broken partial is an error even where no role uses it yet;
    // where one does, its planning error already says so.
    for d in partials.0 {
        if !errors.0.iter().any(|e| e.location == d.location) {
            errors.push(d);
        }
    }
    errors.into_result(resources)
}

/// Runs the `validate` commands of each of `roles` (planned on its own, as [`validate`]
/// plans it) against the tree of `sys`, as a fresh apply there would before its first write:
/// every refusal is an error at its declaration. Returns notes on the files apply checks only
/// after earlier changes of the run (their validate may read what those write).
pub fn validate_against(
    tree: &SourceTree,
    roles: &[String],
    overrides: &Map<String, Value>,
    facts: &Value,
    sys: &System,
) -> Result<Vec<String>, Diagnostics> {
    let mut seen = std::collections::BTreeSet::new();
    let mut errors = Diagnostics::default();
    let mut notes = Vec::new();
    for name in roles {
        let plan = plan(
            tree,
            std::slice::from_ref(name),
            overrides,
            facts,
            PlanOptions::default(),
        )?;
        for (i, verdict) in engine::validate_ahead(&plan, sys) {
            let item = &plan.items[i];
            match verdict {
                engine::Verdict::Refused(e) => {
                    let text = format!("{}: {} {e}", item.at, item.id);
                    if seen.insert(text.clone()) {
                        errors.push(Diagnostic::new(text));
                    }
                }
                engine::Verdict::AfterEarlierChanges => {
                    let text = format!(
                        "{}: {} is checked by apply in its place, after the changes it comes after",
                        item.at, item.id
                    );
                    if seen.insert(text.clone()) {
                        notes.push(text);
                    }
                }
            }
        }
    }
    errors.into_result(notes)
}

impl From<Diagnostic> for RunError {
    fn from(d: Diagnostic) -> Self {
        RunError::Input(d.into())
    }
}
