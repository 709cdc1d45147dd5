//! One module per subcommand, plus what they share: where roles come from, facts, overrides.

pub mod advance;
pub mod agent;
pub mod bootstrap;
pub mod capture;
pub mod compare;
pub mod facts;
pub mod fleet;
pub mod generate;
pub mod history;
pub mod keys;
pub mod publish;
pub mod render;
pub mod rollout;
pub mod run;
pub mod snapshot;
pub mod status;
pub mod validate;

use std::path::Path;

use anyhow::{anyhow, bail};
use serde_json::{Map, Value};

use crate::cli::{RunArgs, SourceArgs};
use converge::agent::config::{AgentConfig, ConfigError};
use converge::facts::Facts;
use converge::pipeline::{Request, Source};
use converge::report::Mode;
use converge::role::{vars, SourceTree};

/// Located errors under a summary line of the command's own (`validate: 2 errors in 3
/// roles`): the errors print first, then the summary, each once.
#[derive(Debug)]
pub struct Findings {
    /// The line printed after the errors.
    pub summary: String,
    /// The errors, each with its place.
    pub errors: converge::diagnostics::Diagnostics,
}

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

impl std::error::Error for Findings {}

/// Host variable overrides from `--var` flags.
pub fn overrides(assignments: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for a in assignments {
        vars::merge(&mut out, &vars::parse_assignment(a)?);
    }
    Ok(out)
}

/// Facts from `--facts FILE` or gathered from the host (os-release under `root`).
pub fn facts(file: Option<&Path>, root: &Path) -> anyhow::Result<Value> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow!("cannot read facts file {}: {e}", path.display()))?;
            let mut value: Value = serde_json::from_str(&text).map_err(|e| {
                // serde_json says "at line L column C"; point at it the way every error does.
                let what = e.to_string();
                let what = what.split(" at line ").next().unwrap_or(&what).to_owned();
                anyhow::anyhow!(
                    "{}:{}:{}: not valid JSON facts: {what}",
                    path.display(),
                    e.line(),
                    e.column()
                )
            })?;
            if !value.is_object() {
                bail!("{}: facts must be a JSON object", path.display());
            }
            converge::facts::fill_os_family(&mut value);
            Ok(value)
        }
        None => Ok(serde_json::to_value(Facts::gather(root)?)?),
    }
}

/// The request for a check or apply run: facts, overrides, and the source with its settings.
pub fn request(run: &RunArgs, mode: Mode) -> anyhow::Result<Request> {
    let args = &run.source;
    let (source, mut settings, record) = match &args.source {
        Some(s) => match Source::detect(s, false) {
            // An admin's checkout named on the command line: read in place, and unverified.
            // The agent config's roles and [vars] hold for it as they do for a bundle:
            // `--source DIR` swaps where roles come from, not which ones apply.
            Source::Tree(dir) => {
                if !run.trusted_keys.is_empty() {
                    bail!(
                        "--trusted-key: {} is a source tree, which carries no signature; publish it and pass the bundle as --source",
                        dir.display()
                    );
                }
                let mut settings =
                    host_config(&args.config)?.unwrap_or_else(|| AgentConfig::for_source(s));
                settings.source = s.clone();
                (Source::Tree(dir), settings, false)
            }
            bundle => {
                if let Some(reason) = bundle.not_a_source() {
                    bail!("{reason}");
                }
                let mut settings = with_source(&args.config, s)?;
                settings
                    .trusted_keys
                    .extend(run.trusted_keys.iter().cloned());
                (bundle, settings, true)
            }
        },
        None => {
            let mut config = AgentConfig::load(&args.config)?;
            config.trusted_keys.extend(run.trusted_keys.iter().cloned());
            let source = Source::detect(&config.source, !config.trusted_keys.is_empty());
            (source, config, true)
        }
    };
    if let Some(dir) = &run.state_dir {
        settings.state_dir = dir.clone();
    }
    // A tree converged by hand keeps a history only where it is told to.
    let history = record || (run.state_dir.is_some() && mode == Mode::Apply);
    Ok(Request {
        mode,
        root: run.root.clone(),
        source,
        roles: args.roles.clone(),
        vars: overrides(&args.vars)?,
        facts: facts(args.facts.as_deref(), &run.root)?,
        record,
        history,
        force: run.force,
        plan_cache: settings.plan_cache && !run.no_plan_cache,
        settings,
    })
}

/// The system under `root`, with the deadlines of the agent config at `config` when there
/// is one: every command that runs tools on the host honours `[timeouts]`.
pub fn system(root: &Path, config: &Path) -> anyhow::Result<converge::system::System> {
    let mut sys = converge::system::System::new(root)?;
    if let Some(c) = host_config(config)? {
        sys.set_timeouts(c.timeouts);
    }
    Ok(sys)
}

/// The agent config at `path`, if there is one (a workstation running `check --source DIR`
/// has none).
pub fn host_config(path: &Path) -> anyhow::Result<Option<AgentConfig>> {
    match AgentConfig::load(path) {
        Ok(c) => Ok(Some(c)),
        Err(converge::agent::config::ConfigError::Missing(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The agent config with another source: its vars, trusted keys, state dir and limits still
/// hold (a one-off `--source` must not bypass signature checks or host overrides).
fn with_source(config: &Path, source: &str) -> anyhow::Result<AgentConfig> {
    match AgentConfig::load(config) {
        Ok(mut c) => {
            c.source = source.to_owned();
            Ok(c)
        }
        Err(ConfigError::Missing(_)) => Ok(AgentConfig::for_source(source)),
        Err(e) => Err(e.into()),
    }
}

/// The source tree to render, with the settings' roles and vars: a tree read in place, or
/// a bundle fetched and verified (with the settings' trusted keys) into a scratch dir that
/// lives as long as the returned guard. The agent's state dir is never touched.
pub fn scratch_tree(
    args: &SourceArgs,
) -> anyhow::Result<(SourceTree, AgentConfig, Option<tempfile::TempDir>)> {
    let (source, config) = match &args.source {
        Some(s) => match Source::detect(s, false) {
            Source::Tree(dir) => {
                return Ok((SourceTree::open(&dir)?, AgentConfig::for_source(s), None));
            }
            bundle => {
                if let Some(reason) = bundle.not_a_source() {
                    bail!("{reason}");
                }
                (s.clone(), with_source(&args.config, s)?)
            }
        },
        None => {
            let config = AgentConfig::load(&args.config)?;
            if let Source::Tree(dir) =
                Source::detect(&config.source, !config.trusted_keys.is_empty())
            {
                return Ok((SourceTree::open(&dir)?, config, None));
            }
            (config.source.clone(), config)
        }
    };
    let opts = converge::pipeline::source::sync_options(&config)?;
    if opts.trusted_keys.is_empty() {
        tracing::warn!(
            "bundle from {source} is read UNVERIFIED: no trusted key is configured (set trusted_keys in agent.toml)"
        );
    }
    let (scratch, dir) = converge::pipeline::source::fetch_scratch(&source, &opts)?;
    Ok((SourceTree::open(&dir)?, config, Some(scratch)))
}
