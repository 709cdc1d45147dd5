//! `converge bootstrap`: from a fresh host to a managed one in one idempotent step.
//!
//! It installs the trusted keys, writes the agent config, runs the first converge through the
//! agent's own run (lock, fetch, signature check, last-run.json, metrics), and enables the
//! timer. [`prepare`] checks everything that can be known first (arguments, timer, config,
//! the bundle verified and planned in scratch space) and writes nothing; [`apply`] then
//! does the steps. The keys, the config and the timer are ordinary resources the engine
//! converges (the one write path, with check and apply alike: [`check`] shows what
//! [`apply`] would change), so a second bootstrap with the same arguments changes nothing
//! and says so. Under `--root` every path is inside the tree (links
//! followed as the tree's own system would), and the timer is enabled offline, so an image
//! built that way boots managed.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

mod config_text;
mod reuse;

use reuse::Checked;

use crate::agent::config::{AgentConfig, ConfigError, DEFAULT_PATH};
use crate::bundle::{self, RedactedUrl, TrustedKey};
use crate::diagnostics::Diagnostics;
use crate::durable::StateLock;
use crate::engine;
use crate::pipeline::{self, Finished, Request, RunError, Source};
use crate::plan::{self as planning, Plan, PlanOptions};
use crate::report::{Mode, Report, SourceFreshness, Status};
use crate::resource::attrs::Ownership;
use crate::resource::content::Desired;
use crate::resource::directory::DirectoryResource;
use crate::resource::file::FileResource;
use crate::resource::service::{RunState, ServiceResource};
use crate::resource::{AnyResource, Kind, ResourceId};
use crate::role::vars::{self, AssignmentError};
use crate::role::{classify, SourceTree};
use crate::system::fs::Entry;
use crate::system::{System, SystemError};

/// Where bootstrap installs trusted public keys, inside the root.
pub(crate) const KEYS_DIR: &str = "/etc/converge/keys";
/// The unit that schedules runs.
pub(crate) const TIMER: &str = "converge.timer";

/// What bootstrap was asked to set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bundle's URL (or a directory / `file://` bundle).
    pub source: String,
    /// Roles for this host; none: `nodes.toml` in the bundle decides.
    pub roles: Vec<String>,
    /// Trusted public keys: key files, or a key's base64 line itself.
    pub keys: Vec<String>,
    /// Host variables, `KEY=VALUE`.
    pub vars: Vec<String>,
}

/// One thing bootstrap looked after, and whether it had to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it is about: a path, the source, a unit.
    pub subject: String,
    /// Whether this bootstrap changed it.
    pub changed: bool,
    /// What happened, in a few words.
    pub detail: String,
    /// How a file an admin may have edited changed (a unified diff).
    pub diff: Option<String>,
}

/// A finished bootstrap: the host is set up and the timer enabled.
#[derive(Debug)]
pub struct Outcome {
    /// The first converge; `None` when the source could not be reached for it.
    pub run: Option<Finished>,
    /// Why the first run did not converge the bundle from the source (unreachable, or only
    /// the kept bundle was converged); the timer retries.
    pub source_down: Option<String>,
    /// The agent config as it now is.
    pub config: AgentConfig,
    /// Whether anything changed: config, keys, the host, the timer.
    pub changed: bool,
    /// The engine's reports of bootstrap's own resources: the keys and the config (with
    /// the directories above them it made), then the timer.
    pub setup: Vec<Report>,
}

/// Why bootstrap stopped. Everything checked before the first write (arguments, timer,
/// config, bundle) stops it with nothing changed; a later error leaves the steps reported
/// before it done.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A `--key` is neither a readable key file nor a key.
    #[error("--key {arg}: {reason}")]
    Key {
        /// The argument as given.
        arg: String,
        /// Why it is not a key.
        reason: String,
    },
    /// A `--var` is not `KEY=VALUE`.
    #[error(transparent)]
    Var(#[from] AssignmentError),
    /// The source is not a URL or bundle converge can read.
    #[error("--source {}: {reason}", RedactedUrl(.url))]
    Source {
        /// The source as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// With `--key`: the bundle is not signed by a given key (or cannot be fetched at all);
    /// nothing was written.
    #[error("refusing {}: {reason}; nothing was changed", RedactedUrl(.url))]
    Refused {
        /// The source.
        url: String,
        /// What failed: the signature check, the fetch.
        reason: String,
    },
    /// The existing agent config cannot be edited.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading the host failed.
    #[error(transparent)]
    System(#[from] SystemError),
    /// One of bootstrap's own resources (a key, the agent config, the timer) did not
    /// converge.
    #[error("{id}: {error}")]
    Resource {
        /// The resource.
        id: ResourceId,
        /// Why, as the engine reported it.
        error: String,
    },
    /// The first run could not run at all (no verified bundle, bad roles, lock held).
    #[error(transparent)]
    Run(#[from] RunError),
    /// The bundle was refused (not signed by a trusted key, tampered) or the source was down,
    /// and an older kept bundle was converged instead: the host is not on what was asked for.
    #[error("the bundle at {} was not used ({freshness}): {reason}; the host converged its kept bundle instead, and bootstrap stopped before the timer", RedactedUrl(.url))]
    NotCurrent {
        /// The source.
        url: String,
        /// `refused` or `stale`.
        freshness: SourceFreshness,
        /// Why.
        reason: String,
    },
    /// The bundle (or source tree) cannot be planned for this host: no roles for it, or
    /// roles that do not render or plan with its facts and vars; nothing was written.
    #[error("{errors}\n{url} cannot be planned for this host; nothing was changed")]
    Unplannable {
        /// The source.
        url: String,
        /// Every error found.
        errors: Diagnostics,
    },
    /// The timer unit is not installed in the root.
    #[error(
        "{TIMER} is not installed{where_}: install the converge package first (it ships the unit)"
    )]
    NoTimer {
        /// ` in DIR` under `--root`.
        where_: String,
    },
}

/// Everything bootstrap will do, worked out and checked with nothing written yet.
#[derive(Debug)]
pub struct Prepared {
    keys: Vec<TrustedKey>,
    /// The agent config as it is now, if any.
    existing: Option<String>,
    /// The agent config as bootstrap will write it.
    text: String,
    /// That config, with its paths resolved inside the root for this run.
    config: AgentConfig,
    /// What the check before the first write found at the source.
    checked: Checked,
    /// The state dir's lock, held from the look at the kept bundles through the first run
    /// where a host was set up before (else an agent run could come between bootstrap's
    /// writes and its run); a fresh host has no state dir for anyone to hold.
    lock: Option<StateLock>,
}

impl Prepared {
    /// Whether bundles will be verified: trusted keys given now or configured before.
    pub fn verified(&self) -> bool {
        !self.config.trusted_keys.is_empty()
    }
}

/// Runs bootstrap on `sys` (the live host, or a tree under `--root`), reporting each step
/// to `on_step` as it is done.
pub fn run(
    opts: &Options,
    sys: &System,
    facts: Value,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Outcome, BootstrapError> {
    let prepared = prepare(opts, sys, &facts)?;
    apply(prepared, sys, facts, on_step)
}

/// Checks everything that can be known before the first write: the arguments, the timer,
/// the agent config bootstrap would write (and the paths it names, inside the root), and
/// the bundle itself, fetched and verified into scratch space and planned for this host.
/// Changes nothing.
pub fn prepare(opts: &Options, sys: &System, facts: &Value) -> Result<Prepared, BootstrapError> {
    let keys = opts
        .keys
        .iter()
        .map(|arg| read_key(arg))
        .collect::<Result<Vec<_>, _>>()?;
    let mut overrides = Map::new();
    for a in &opts.vars {
        vars::merge(&mut overrides, &vars::parse_assignment(a)?);
    }
    let local = Path::new(&opts.source);
    if !local.join("roles").is_dir() {
        bundle::Source::parse(&opts.source).map_err(|e| BootstrapError::Source {
            url: opts.source.clone(),
            reason: e.to_string(),
        })?;
    }
    if !keys.is_empty() && local.join("roles").is_dir() {
        return Err(BootstrapError::Source {
            url: opts.source.clone(),
            reason: "a source tree cannot be signed; publish it (`converge publish`) and serve the bundle".into(),
        });
    }
    timer_status(sys)?;

    let config_path = Path::new(DEFAULT_PATH);
    let shown = shown_path(sys, config_path);
    let existing = match sys.entry(config_path)? {
        crate::system::fs::Entry::Missing => None,
        _ => Some(String::from_utf8_lossy(&sys.read_file(config_path)?).into_owned()),
    };
    let key_paths: Vec<PathBuf> = keys.iter().map(key_path).collect();
    let edited = config_text::config_text(
        &shown,
        existing.as_deref(),
        &opts.source,
        &opts.roles,
        &key_paths,
        &overrides,
    )
    .map_err(ConfigError::from)?;
    let mut config = AgentConfig::parse(&shown, &edited.text)?;
    // A config with nothing set (the package's template) is replaced, not edited: no diff.
    let existing = existing.filter(|_| edited.edits);
    let text = edited.text;
    // The run's own files belong to the tree under --root, so the image boots with its
    // last known good bundle in place; links in the tree lead where they would on its
    // first boot, never out of it.
    if !sys.is_live() {
        config.state_dir = resolved(sys, &config.state_dir)?;
        config.metrics_file = match config.metrics_file.take() {
            Some(m) => Some(resolved(sys, &m)?),
            None => None,
        };
    }
    // Keys configured before (when none are given now) are the ones to verify against.
    let trusted = if keys.is_empty() {
        let configured = |path: &PathBuf| {
            let text = String::from_utf8_lossy(&sys.read_file(path)?).into_owned();
            TrustedKey::from_text(&text).map_err(|reason| BootstrapError::Key {
                arg: path.display().to_string(),
                reason,
            })
        };
        config
            .trusted_keys
            .iter()
            .map(configured)
            .collect::<Result<Vec<_>, _>>()?
    } else {
        keys.clone()
    };
    if !sys.is_live() {
        for path in &mut config.trusted_keys {
            *path = resolved(sys, path)?;
        }
    }
    // A host set up before: an agent run may hold the state dir. Wait for it as a run would
    // (`lock_wait`), before anything is written, and keep it through the first run.
    let lock = if config.state_dir.is_dir() {
        let wait = Some(config.lock_wait);
        Some(StateLock::acquire(&config.state_dir, wait).map_err(RunError::from)?)
    } else {
        None
    };
    let checked = check_bundle(&opts.source, &trusted, &config, facts, lock.as_ref())?;
    Ok(Prepared {
        keys,
        existing,
        text,
        config,
        checked,
        lock,
    })
}

/// Installs the keys, writes the config, runs the first converge and enables the timer,
/// as `prepared` says.
pub fn apply(
    prepared: Prepared,
    sys: &System,
    facts: Value,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Outcome, BootstrapError> {
    let (files, timer) = plans(&prepared, sys)?;
    let Prepared {
        keys,
        existing,
        text,
        config,
        checked,
        lock,
    } = prepared;
    let mut changed = false;
    let mut setup = Vec::new();
    let mut step = |subject: String, did: bool, detail: String, diff: Option<String>| {
        changed |= did;
        on_step(&Step {
            subject,
            changed: did,
            detail,
            diff,
        });
    };

    let report = engine::run(&files, sys, engine::RunOptions::new(Mode::Apply));
    for key in &keys {
        let path = key_path(key);
        let did = changed_in(&report, Kind::File, &path.to_string_lossy())?;
        let detail = if did { "installed" } else { "unchanged" };
        step(
            path.display().to_string(),
            did,
            format!("trusted key {}: {detail}", key.key_id()),
            None,
        );
    }

    let config_path = Path::new(DEFAULT_PATH);
    let did = changed_in(&report, Kind::File, DEFAULT_PATH)?;
    setup.push(report);
    let (detail, diff) = match (did, &existing) {
        (false, _) => ("agent config unchanged".to_owned(), None),
        (true, None) => ("agent config written".to_owned(), None),
        (true, Some(old)) => (
            "agent config updated".to_owned(),
            Some(
                similar::TextDiff::from_lines(old.as_str(), text.as_str())
                    .unified_diff()
                    .context_radius(2)
                    .header(DEFAULT_PATH, DEFAULT_PATH)
                    .to_string(),
            ),
        ),
    };
    step(config_path.display().to_string(), did, detail, diff);

    let request = Request::agent_run(sys.root(), &config, facts);
    reuse::adopt(&checked, &config.state_dir, lock.as_ref());
    let mut source_down = match &checked {
        Checked::Unreachable(reason) => Some(reason.clone()),
        _ => None,
    };
    let ran = match lock {
        Some(lock) => pipeline::run_holding(&request, lock),
        None => pipeline::run(&request),
    };
    let finished = match ran {
        Ok(finished) => Some(finished),
        // Set up all the same: the timer fetches again, so a first boot while the source
        // is down heals itself.
        Err(RunError::Bundle(e)) if source_down.is_some() => {
            step(
                config.source.clone(),
                false,
                format!("not reached: {e}; converge.timer retries"),
                None,
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(source) = finished.as_ref().and_then(|f| f.record.source.as_ref()) {
        match source.freshness {
            SourceFreshness::Refused => {
                return Err(BootstrapError::NotCurrent {
                    url: source.url.clone(),
                    freshness: source.freshness,
                    reason: source.reason.clone().unwrap_or_default(),
                })
            }
            SourceFreshness::Stale => {
                let reason = source.reason.clone().unwrap_or_default();
                let id: String = source.bundle_id.chars().take(12).collect();
                step(
                    source.url.clone(),
                    false,
                    format!("not reached: {reason}; converged the kept bundle {id}"),
                    None,
                );
                source_down = Some(reason);
            }
            freshness => {
                let id: String = source.bundle_id.chars().take(12).collect();
                let how = match (freshness, config.trusted_keys.is_empty()) {
                    (SourceFreshness::Local, _) => {
                        "a source tree, read in place (not verified)".to_owned()
                    }
                    (SourceFreshness::Fresh, false) => {
                        format!("bundle {id} fetched, signed by a trusted key")
                    }
                    (SourceFreshness::Fresh, true) => {
                        format!("bundle {id} fetched, NOT verified: no --key given")
                    }
                    (_, false) => format!("bundle {id} unchanged, signed by a trusted key"),
                    (_, true) => format!("bundle {id} unchanged, NOT verified: no --key given"),
                };
                step(
                    source.url.clone(),
                    freshness == SourceFreshness::Fresh,
                    how,
                    None,
                );
            }
        }
    }
    if let Some(finished) = &finished {
        let s = &finished.report.summary;
        step(
            "converge run".into(),
            s.changed > 0,
            format!(
                "roles {}: {} resources, {} changed, {} failed",
                finished.record.roles.join(", "),
                s.total,
                s.changed,
                s.failed
            ),
            None,
        );
    }

    let report = engine::run(&timer, sys, engine::RunOptions::new(Mode::Apply));
    let did = changed_in(&report, Kind::Service, TIMER)?;
    step(TIMER.into(), did, timer_detail(sys, &report), None);
    setup.push(report);
    Ok(Outcome {
        run: finished,
        source_down,
        config,
        changed,
        setup,
    })
}

/// What [`apply`] would do to bootstrap's own resources (the keys, the agent config with the
/// directories above them, the timer), as the engine checks them; changes nothing. The
/// first run's own changes are the bundle's: `converge check` shows them.
pub fn check(prepared: &Prepared, sys: &System) -> Result<Report, BootstrapError> {
    let mut resources = resources(prepared, sys)?;
    resources.extend(timer_resource());
    Ok(engine::run(
        &plan(resources),
        sys,
        engine::RunOptions::new(Mode::Check),
    ))
}

/// Bootstrap's own resources as two plans: the keys and the config, written before the
/// first run, and the timer, enabled after it.
fn plans(prepared: &Prepared, sys: &System) -> Result<(Plan, Plan), BootstrapError> {
    Ok((plan(resources(prepared, sys)?), plan(timer_resource())))
}

fn plan(resources: Vec<AnyResource>) -> Plan {
    planning::of_resources("converge bootstrap", resources)
        .expect("bootstrap's resources name no other resource, so they always order")
}

/// Each trusted key (0644) and the agent config (0600), root's, after the directories
/// above them that are missing (made 0755, as an admin would).
fn resources(prepared: &Prepared, sys: &System) -> Result<Vec<AnyResource>, BootstrapError> {
    let root_file = |path: PathBuf, text: String, mode: u32| FileResource {
        path,
        content: Desired::bytes(text.into_bytes()),
        ownership: Ownership {
            owner: Some("0".into()),
            group: Some("0".into()),
            mode: Some(mode),
            ..Ownership::default()
        },
        sensitive: false,
        managed_ancestor: Default::default(),
        validate: None,
    };
    let mut files: Vec<FileResource> = prepared
        .keys
        .iter()
        .map(|key| {
            let text = format!(
                "untrusted comment: minisign public key {}\n{}\n",
                key.key_id(),
                key.to_base64()
            );
            root_file(key_path(key), text, 0o644)
        })
        .collect();
    files.push(root_file(
        PathBuf::from(DEFAULT_PATH),
        prepared.text.clone(),
        0o600,
    ));
    let mut missing = std::collections::BTreeSet::new();
    for file in &files {
        for dir in file.path.ancestors().skip(1) {
            if dir == Path::new("/") || sys.entry(dir)? != Entry::Missing {
                break;
            }
            missing.insert(dir.to_path_buf());
        }
    }
    let mut out: Vec<AnyResource> = Vec::new();
    for path in missing {
        out.push(
            DirectoryResource {
                path,
                ownership: Ownership::default(),
                purge: false,
                keep: Default::default(),
                managed_ancestor: Default::default(),
            }
            .into(),
        );
    }
    out.extend(files.into_iter().map(AnyResource::from));
    Ok(out)
}

/// The timer, enabled and (where systemd runs) started.
fn timer_resource() -> Vec<AnyResource> {
    vec![AnyResource::from(ServiceResource {
        name: TIMER.into(),
        enabled: Some(true),
        masked: None,
        state: Some(RunState::Running),
        reload_on_notify: false,
        unit_provider: None,
        timeout: None,
    })]
}

/// Whether the engine changed the resource `kind:name` of `report`; its error when it
/// failed or was skipped.
fn changed_in(report: &Report, kind: Kind, name: &str) -> Result<bool, BootstrapError> {
    let id = ResourceId::new(kind, name);
    let outcome = report
        .resources
        .iter()
        .find(|o| o.id == id)
        .expect("every resource of a plan has an outcome");
    match outcome.status {
        Status::Failed | Status::Skipped => Err(BootstrapError::Resource {
            id,
            error: outcome.error.clone().unwrap_or_default(),
        }),
        status => Ok(status == Status::Changed),
    }
}

/// The timer's step, from what the engine did to it.
fn timer_detail(sys: &System, report: &Report) -> String {
    let did: Vec<&str> = report
        .resources
        .iter()
        .filter_map(|o| o.change.as_deref())
        .flat_map(|c| &c.fields)
        .filter_map(|f| match f.field.as_str() {
            "masked" => Some("unmasked"),
            "enabled" => Some("enabled"),
            "state" => Some("started"),
            _ => None,
        })
        .collect();
    // A tree, or a live host without a running systemd (a chroot baking an image): the
    // timer is enabled in the unit files and starts when the system boots.
    if !sys.services().runs_units(sys) {
        let detail = if did.is_empty() {
            "already enabled (offline: it starts when the image boots)"
        } else {
            "enabled offline: it starts when the image boots"
        };
        return detail.to_owned();
    }
    if did.is_empty() {
        "already enabled and active".to_owned()
    } else {
        format!("{}: converges every 30 minutes", did.join(" and "))
    }
}

/// Where bootstrap installs `key`, as the host sees it.
fn key_path(key: &TrustedKey) -> PathBuf {
    PathBuf::from(format!("{KEYS_DIR}/{}.pub", key.key_id()))
}

/// `path` as this machine reaches it: inside the tree under `--root` (for messages).
fn shown_path(sys: &System, path: &Path) -> PathBuf {
    if sys.is_live() {
        path.to_path_buf()
    } else {
        sys.root().join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// `path` (absolute, as the booted tree will see it) inside the tree, every link on the way
/// (the last one too) followed as the tree's own system would, so that nothing the run
/// writes below it can land outside the tree.
fn resolved(sys: &System, path: &Path) -> Result<PathBuf, SystemError> {
    let below = sys.host_path(&path.join("_"))?;
    Ok(below
        .shown()
        .parent()
        .expect("a path with a last component has a parent")
        .to_path_buf())
}

/// Fetches and verifies the bundle into scratch space (a source tree is read in place),
/// and plans the config's roles from it with this host's facts and the config's vars, so a
/// bundle not signed by a trusted key, or that this host cannot plan, changes nothing on the
/// host (not even the config the timer would then run with). A source that is down is no
/// reason to leave the host unmanaged: that is reported, not refused.
fn check_bundle(
    source: &str,
    keys: &[TrustedKey],
    config: &AgentConfig,
    facts: &Value,
    lock: Option<&StateLock>,
) -> Result<Checked, BootstrapError> {
    let (checked, dir) = match Source::detect(source, !keys.is_empty()) {
        Source::Tree(dir) => (Checked::Tree, dir),
        Source::Bundle(_) => {
            let opts = pipeline::source::fetch_options(keys.to_vec(), &config.fetch);
            match reuse::fetch_scratch(source, &opts, lock) {
                Ok(found) => found,
                Err(RunError::Bundle(e)) if reuse::is_source_down(&e) => {
                    return Ok(Checked::Unreachable(e.to_string()))
                }
                Err(e) => {
                    return Err(BootstrapError::Refused {
                        url: source.to_owned(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    };
    let unplannable = |errors: Diagnostics| BootstrapError::Unplannable {
        url: source.to_owned(),
        errors,
    };
    let tree = SourceTree::open(&dir).map_err(|d| unplannable(d.into()))?;
    let roles = classify::roles(&tree, &[], &config.roles, facts).map_err(unplannable)?;
    let overrides = vars::table_to_json(&config.vars);
    pipeline::plan(&tree, &roles, &overrides, facts, PlanOptions::default())
        .map_err(unplannable)?;
    Ok(checked)
}

/// A `--key` argument: a public key file, or the key's base64 line itself (handy in
/// cloud-init user data, where there is no file yet).
fn read_key(arg: &str) -> Result<TrustedKey, BootstrapError> {
    let bad = |reason: String| BootstrapError::Key {
        arg: arg.to_owned(),
        reason,
    };
    let path = Path::new(arg);
    if path.exists() {
        return TrustedKey::from_file(path).map_err(|e| bad(e.to_string()));
    }
    TrustedKey::from_text(arg).map_err(|e| {
        bad(format!(
            "no such file, and not a minisign public key line either ({e})"
        ))
    })
}

/// The timer's state; an error when the package's unit is not installed.
fn timer_status(sys: &System) -> Result<crate::system::services::UnitStatus, BootstrapError> {
    let status = sys.services().status(sys, TIMER)?;
    if status.not_found() {
        let where_ = if sys.is_live() {
            String::new()
        } else {
            format!(" in {}", sys.root().display())
        };
        return Err(BootstrapError::NoTimer { where_ });
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_a_file_or_the_key_itself() {
        let line = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
        assert_eq!(read_key(line).unwrap().to_base64(), line);
        let e = read_key("/nonexistent/converge.pub").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--key /nonexistent/converge.pub: no such file, and not a minisign public key line either"),
            "{e}"
        );
    }
}
