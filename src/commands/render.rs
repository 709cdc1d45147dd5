//! `converge render`: show what the templates produce, without touching anything.

use crate::cli::RenderArgs;
use converge::pipeline;
use converge::plan::PlanOptions;
use converge::role::{classify, vars};

/// Prints every file of the roles with a header naming path, origin and role.
pub fn run(args: &RenderArgs) -> anyhow::Result<i32> {
    let (tree, settings, _scratch) = super::scratch_tree(&args.source)?;
    let facts = super::facts(args.source.facts.as_deref(), std::path::Path::new("/"))?;
    let roles = classify::roles(&tree, &args.source.roles, &settings.roles, &facts)?;
    let mut overrides = vars::table_to_json(&settings.vars);
    vars::merge(&mut overrides, &super::overrides(&args.source.vars)?);
    let options = PlanOptions {
        keep_rendered: true,
    };
    let plan = pipeline::plan(&tree, &roles, &overrides, &facts, options)?;
    for item in &plan.items {
        let Some(r) = &item.rendered else { continue };
        showln!("==> {} ({}, role {}) <==", item.id.name, r.from, item.role);
        if r.sensitive {
            showln!("(sensitive: {} bytes, not shown)", r.content.len());
        } else {
            let text = String::from_utf8_lossy(&r.content);
            show!("{text}");
            if !text.ends_with('\n') {
                showln!();
            }
        }
    }
    Ok(0)
}
