//! One module per subcommand, plus what they share: where roles come from, facts, overrides.

pub mod agent;
pub mod bootstrap;
pub mod capture;
pub mod compare;
pub mod facts;
pub mod generate;
pub mod history;
pub mod keys;
pub mod publish;
pub mod render;
pub mod run;
pub mod snapshot;
pub mod validate;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use crate::cli::SourceArgs;
use converge::agent::classify;
use converge::agent::config::AgentConfig;
use converge::facts::Facts;
use converge::plan::{self, Plan, PlanOptions};
use converge::render::Renderer;
use converge::role::{self, vars, SourceTree};

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
                .with_context(|| format!("cannot read facts file {}", path.display()))?;
            let value: Value = serde_json::from_str(&text).map_err(|e| {
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
            Ok(value)
        }
        None => Ok(serde_json::to_value(Facts::gather(root)?)?),
    }
}

/// Where a run's roles come from.
pub enum Origin {
    /// A source tree on disk, read in place (an admin's checkout).
    Tree(SourceTree),
    /// A bundle source (URL or published directory) or the agent config: the agent path,
    /// with lock, verification, last known good and run records.
    Agent(Box<AgentConfig>),
}

/// Resolves `--source` (a source tree, a published bundle or a URL) or the agent config.
pub fn origin(args: &SourceArgs, state_dir: Option<&PathBuf>) -> anyhow::Result<Origin> {
    let mut config = match &args.source {
        Some(s) if !s.contains("://") => {
            let dir = Path::new(s);
            if dir.join("roles").is_dir() {
                return Ok(Origin::Tree(SourceTree::open(dir)?));
            }
            if !dir.join(converge::bundle::MANIFEST_FILE).is_file() {
                bail!(
                    "{s}: neither a source tree (no roles/ directory) nor a published bundle (no {})",
                    converge::bundle::MANIFEST_FILE
                );
            }
            with_source(&args.config, s)?
        }
        Some(s) => with_source(&args.config, s)?,
        None => AgentConfig::load(&args.config)?,
    };
    if let Some(dir) = state_dir {
        config.state_dir = dir.clone();
    }
    Ok(Origin::Agent(Box::new(config)))
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
        Err(converge::agent::config::ConfigError::Missing(_)) => {
            Ok(AgentConfig::for_source(source))
        }
        Err(e) => Err(e.into()),
    }
}

/// A source tree to read without fetching: the tree itself, or the agent's last verified
/// bundle (`<state_dir>/current`) for render and validate.
pub fn local_tree(args: &SourceArgs) -> anyhow::Result<SourceTree> {
    match origin(args, None)? {
        Origin::Tree(tree) => Ok(tree),
        Origin::Agent(config) => {
            let current = config.state_dir.join("current");
            SourceTree::open(&current).with_context(|| {
                format!(
                    "{} is not a source tree and no verified bundle is in {} yet (run `converge apply` once)",
                    config.source,
                    current.display()
                )
            })
        }
    }
}

/// The roles to apply from a tree: `--role`s, else the tree's `nodes.toml`.
pub fn tree_roles(
    tree: &SourceTree,
    roles: &[String],
    facts: &Value,
) -> anyhow::Result<Vec<String>> {
    if !roles.is_empty() {
        return Ok(roles.to_vec());
    }
    let nodes = tree.root().join(classify::NODES_FILE);
    match std::fs::read_to_string(&nodes) {
        Ok(text) => Ok(classify::roles_for_checked(
            Path::new(classify::NODES_FILE),
            &text,
            facts,
            &tree.role_names(),
        )?),
        Err(_) => bail!("no roles: pass --role NAME (repeatable) or add nodes.toml to the source"),
    }
}

/// Loads roles, renders and plans.
pub fn plan(
    tree: &SourceTree,
    roles: &[String],
    overrides: &Map<String, Value>,
    facts: &Value,
    options: PlanOptions,
) -> anyhow::Result<Plan> {
    let set = role::load(tree, roles, overrides)?;
    let mut renderer = Renderer::new(&tree.templates_dir())?;
    Ok(plan::build(tree, &set, facts, &mut renderer, options)?)
}
