//! `converge publish`: a source tree becomes a bundle any static web server can serve.

use crate::cli::PublishArgs;

use converge::bundle::{self, SecretKeyFile};
use converge::pipeline;
use converge::role::SourceTree;

/// Checks that every role and `nodes.toml` parse (so a broken role or classification never
/// reaches the fleet), then publishes.
pub fn run(args: &PublishArgs) -> anyhow::Result<i32> {
    let tree = SourceTree::open(&args.src)?;
    pipeline::check_source(&tree)?;
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
