//! `converge validate`: every role parsed, every template rendered, every error reported.

use std::collections::BTreeSet;

use anyhow::bail;

use crate::cli::ValidateArgs;
use converge::agent::classify;
use converge::diagnostics::Diagnostics;
use converge::plan::{self, PlanOptions};
use converge::render::Renderer;
use converge::role::{self, SourceTree};

/// Validates each role on its own (with its includes), so unrelated roles never conflict.
pub fn run(args: &ValidateArgs) -> anyhow::Result<i32> {
    let tree = SourceTree::open(&args.source)?;
    let facts = super::facts(args.facts.as_deref(), std::path::Path::new("/"))?;
    let overrides = super::overrides(&args.vars)?;
    let names = if args.roles.is_empty() {
        tree.role_names()
    } else {
        args.roles.clone()
    };
    let resources = check_tree("validate", &tree, &names, &facts, &overrides)?;
    println!(
        "validate: {} role{} ok ({} resources rendered)",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        resources
    );
    Ok(0)
}

/// Everything validate checks, for `names` in `tree`: every role parses, every template
/// renders, every role plans, nodes.toml names only roles that exist. All errors at once, in
/// a `COMMAND: N errors in M roles` context; otherwise the number of resources planned.
/// `publish` runs the same checks, so a bundle validate refuses never reaches a fleet.
pub fn check_tree(
    command: &str,
    tree: &SourceTree,
    names: &[String],
    facts: &serde_json::Value,
    overrides: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<usize> {
    if names.is_empty() {
        bail!("{}: roles/ holds no roles", tree.root().display());
    }
    let mut seen = BTreeSet::new();
    let mut errors = Diagnostics::default();
    let mut keep = |d: converge::diagnostics::Diagnostic, errors: &mut Diagnostics| {
        if seen.insert(d.to_string()) {
            errors.push(d);
        }
    };
    let mut renderer = match Renderer::new(&tree.templates_dir()) {
        Ok(r) => Some(r),
        Err(ds) => {
            ds.0.into_iter().for_each(|d| keep(d, &mut errors));
            None
        }
    };
    // One pass over all roles reports each parse error and include cycle once.
    if let Err(ds) = role::load(tree, names, overrides) {
        ds.0.into_iter().for_each(|d| keep(d, &mut errors));
    }
    let nodes = tree.root().join(classify::NODES_FILE);
    if let Ok(text) = std::fs::read_to_string(&nodes) {
        let file = std::path::Path::new(classify::NODES_FILE);
        let found = classify::check(file, &text, &tree.role_names());
        found.0.into_iter().for_each(|d| keep(d, &mut errors));
    }
    let mut resources = 0;
    for name in names {
        // Roles that failed to load were reported above.
        let Ok(set) = role::load(tree, std::slice::from_ref(name), overrides) else {
            continue;
        };
        let Some(renderer) = renderer.as_mut() else {
            continue;
        };
        match plan::build(tree, &set, facts, renderer, PlanOptions::default()) {
            Ok(p) => resources += p.items.len(),
            Err(ds) => ds.0.into_iter().for_each(|d| keep(d, &mut errors)),
        }
    }
    if !errors.is_empty() {
        let n = errors.0.len();
        return Err(anyhow::Error::new(errors).context(format!(
            "{command}: {n} error{} in {} role{}{}",
            if n == 1 { "" } else { "s" },
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            if command == "publish" {
                "; nothing was published"
            } else {
                ""
            }
        )));
    }
    Ok(resources)
}
