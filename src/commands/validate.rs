//! `converge validate`: every role parsed, every template rendered, every error reported.

use anyhow::bail;

use crate::cli::ValidateArgs;
use converge::pipeline;
use converge::role::SourceTree;
use converge::system::System;

/// Validates each role on its own (with its includes), so unrelated roles never conflict.
pub fn run(args: &ValidateArgs) -> anyhow::Result<i32> {
    let tree = SourceTree::open(&args.source)?;
    let root = args.root.as_deref().unwrap_or(std::path::Path::new("/"));
    let facts = super::facts(args.facts.as_deref(), root)?;
    let overrides = super::overrides(&args.vars)?;
    let names = if args.roles.is_empty() {
        tree.role_names()
    } else {
        args.roles.clone()
    };
    let resources = check_tree("validate", &tree, &names, &facts, &overrides)?;
    if let Some(root) = &args.root {
        let sys = System::new(root)?;
        match pipeline::validate_against(&tree, &names, &overrides, &facts, &sys) {
            Ok(notes) => notes.iter().for_each(|n| showln!("note: {n}")),
            Err(errors) => {
                let n = errors.0.len();
                let summary = format!(
                    "validate: {n} file{} would fail validation in {}",
                    if n == 1 { "" } else { "s" },
                    root.display()
                );
                return Err(super::Findings { summary, errors }.into());
            }
        }
    }
    showln!(
        "validate: {} role{} ok ({} resources rendered)",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        resources
    );
    Ok(0)
}

/// Everything validate checks, for `names` in `tree`: every role parses, every template
/// renders, every role plans, nodes.toml names only roles that exist. All errors at once, in
/// under a `COMMAND: N errors in M roles` summary; otherwise the number of resources planned.
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
    pipeline::validate(tree, names, overrides, facts).map_err(|errors| {
        let n = errors.0.len();
        let summary = format!(
            "{command}: {n} error{} in {} role{}{}",
            if n == 1 { "" } else { "s" },
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            if command == "publish" {
                "; nothing was published"
            } else {
                ""
            }
        );
        super::Findings { summary, errors }.into()
    })
}
