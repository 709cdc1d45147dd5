//! `converge publish`: a source tree becomes a bundle any static web server can serve.

use crate::cli::PublishArgs;

use converge::bundle::{self, PublishOptions, SecretKeyFile};
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
    if !args.allow_private {
        let private = bundle::private_files(&args.src)?;
        if !private.is_empty() {
            let list: Vec<String> = private
                .iter()
                .map(|(path, mode)| format!("  {path} (mode {mode:04o})"))
                .collect();
            anyhow::bail!(
                "publish: {} file{} under files/ {} not world-readable, and every bundle object is readable by anyone who can fetch the bundle:\n{}\ncapture writes content that was private on its host this way (its role says `sensitive = true`). Deliver such secrets another way, or pass --allow-private to publish them anyway. Nothing was published.",
                private.len(),
                if private.len() == 1 { "" } else { "s" },
                if private.len() == 1 { "is" } else { "are" },
                list.join("\n")
            );
        }
    }
    let signer = args.key.as_deref().map(SecretKeyFile::load).transpose()?;
    let published = bundle::publish_with(
        &args.src,
        &args.out,
        &PublishOptions {
            signer: signer.as_ref(),
            message: args.message.as_deref(),
            unsigned: args.unsigned,
            candidate: args.candidate,
            expires: args.expires,
        },
    )?;
    showln!(
        "published {}{} ({} files, {} new objects{}{}) to {}",
        if args.candidate { "candidate " } else { "" },
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
