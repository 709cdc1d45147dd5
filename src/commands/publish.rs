//! `converge publish`: a source tree becomes a bundle any static web server can serve.

use crate::cli::PublishArgs;

use converge::bundle::{self, SecretKeyFile};
use converge::role::SourceTree;

/// Runs every check `validate` runs (roles parse, templates render, roles plan, nodes.toml
/// names real roles), so a bundle that no host could plan never reaches the fleet, then
/// publishes.
pub fn run(args: &PublishArgs) -> anyhow::Result<i32> {
    let tree = SourceTree::open(&args.src)?;
    let names = tree.role_names();
    let facts = super::facts(args.facts.as_deref(), std::path::Path::new("/"))?;
    let overrides = super::overrides(&args.vars)?;
    super::validate::check_tree("publish", &tree, &names, &facts, &overrides)?;
    let signer = args.key.as_deref().map(SecretKeyFile::load).transpose()?;
    let published = if args.unsigned {
        bundle::publish_unsigned(&args.src, &args.out)?
    } else {
        bundle::publish(&args.src, &args.out, signer.as_ref())?
    };
    println!(
        "published {} ({} files, {} new objects{}{}) to {}",
        published.id,
        published.files,
        published.new_objects,
        if published.signed { ", signed" } else { "" },
        if published.unchanged {
            ", unchanged"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(0)
}
