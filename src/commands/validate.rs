//! `converge validate`: every role parsed, every template rendered, every error reported.

use anyhow::bail;

use crate::cli::ValidateArgs;
use converge::pipeline;
use converge::role::SourceTree;

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
    if names.is_empty() {
        bail!("{}: roles/ holds no roles", args.source.display());
    }
    let resources = match pipeline::validate(&tree, &names, &overrides, &facts) {
        Ok(n) => n,
        Err(errors) => {
            // The findings are validate's output; exit 1 like any run that could not pass.
            for d in &errors.0 {
                eprintln!("error: {d}");
            }
            let n = errors.0.len();
            eprintln!(
                "validate: {n} error{} in {} role{}",
                if n == 1 { "" } else { "s" },
                names.len(),
                if names.len() == 1 { "" } else { "s" }
            );
            return Ok(1);
        }
    };
    println!(
        "validate: {} role{} ok ({} resources rendered)",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        resources
    );
    Ok(0)
}
