//! One module per subcommand, plus what they share: reading inputs and building a plan.

pub mod facts;
pub mod render;
pub mod run;
pub mod validate;

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use crate::cli::SourceArgs;
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
            let value: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON facts", path.display()))?;
            if !value.is_object() {
                bail!("{}: facts must be a JSON object", path.display());
            }
            Ok(value)
        }
        None => Ok(serde_json::to_value(Facts::gather(root))?),
    }
}

/// The source tree, roles and overrides of a run.
pub struct Inputs {
    /// The source tree.
    pub tree: SourceTree,
    /// Roles to apply.
    pub roles: Vec<String>,
    /// `--var` overrides.
    pub overrides: Map<String, Value>,
}

/// Resolves `--source`/`--role`.
pub fn inputs(args: &SourceArgs) -> anyhow::Result<Inputs> {
    let Some(source) = &args.source else {
        bail!(
            "no source: pass --source DIR (reading sources from {} is not supported yet)",
            args.config.display()
        );
    };
    if args.roles.is_empty() {
        bail!("no roles: pass --role NAME (repeatable)");
    }
    let tree = SourceTree::open(source)?;
    Ok(Inputs {
        tree,
        roles: args.roles.clone(),
        overrides: overrides(&args.vars)?,
    })
}

/// Loads roles, renders and plans.
pub fn plan(inputs: &Inputs, facts: &Value, options: PlanOptions) -> anyhow::Result<Plan> {
    let set = role::load(&inputs.tree, &inputs.roles, &inputs.overrides)?;
    let mut renderer = Renderer::new(&inputs.tree.templates_dir())?;
    Ok(plan::build(
        &inputs.tree,
        &set,
        facts,
        &mut renderer,
        options,
    )?)
}
