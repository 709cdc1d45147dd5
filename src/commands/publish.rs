//! `converge publish`: a source tree becomes a bundle any static web server can serve.

use crate::cli::PublishArgs;
use std::path::Path;

use converge::agent::classify;
use converge::bundle::{self, SecretKeyFile};
use converge::role::{self, SourceTree};

/// Checks that every role and `nodes.toml` parse (so a broken role or classification never
/// reaches the fleet), then publishes.
pub fn run(args: &PublishArgs) -> anyhow::Result<i32> {
    let tree = SourceTree::open(&args.src)?;
    let names = tree.role_names();
    role::load(&tree, &names, &Default::default())?;
    if let Ok(text) = std::fs::read_to_string(tree.root().join(classify::NODES_FILE)) {
        let errors = classify::check(Path::new(classify::NODES_FILE), &text, &names);
        if !errors.is_empty() {
            return Err(errors.into());
        }
    }
    let signer = args.key.as_deref().map(SecretKeyFile::load).transpose()?;
    let published = bundle::publish(&args.src, &args.out, signer.as_ref())?;
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
