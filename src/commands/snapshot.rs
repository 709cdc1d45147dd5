//! `converge snapshot`: the host's observable state as versioned JSON.

use std::io::Write;
use std::path::Path;

use anyhow::anyhow;

use crate::cli::SnapshotArgs;
use converge::snapshot::{self, Options, Snapshot};

/// Takes the snapshot and writes it to `-o` (stdout by default).
pub fn run(args: &SnapshotArgs) -> anyhow::Result<i32> {
    let sys = super::system(&args.root, &args.config)?;
    let mut options = Options {
        secrets: args.secrets.clone(),
        ..Options::default()
    };
    if !args.paths.is_empty() {
        options.paths = args.paths.clone();
    }
    let started = std::time::Instant::now();
    let snap = snapshot::take(&sys, &options)?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        files = snap.files.len(),
        sysctl = snap.sysctl.len(),
        packages = snap.packages.len(),
        units = snap.units.len(),
        "snapshot taken"
    );
    write(&args.output, &snap)?;
    Ok(0)
}

/// Writes to stdout for `-`, else atomically to a 0600 file.
fn write(output: &str, snap: &Snapshot) -> anyhow::Result<()> {
    let text = snap.to_json();
    if output == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| anyhow!("cannot write the snapshot to stdout: {e}"))?;
        return Ok(());
    }
    // 0600: a snapshot holds config text, some of it not world-readable on the host.
    converge::durable::write_file(
        Path::new(output),
        text.as_bytes(),
        &converge::durable::FileSpec::mode(0o600),
    )
    .map_err(|e| anyhow!("cannot write {output}: {e}"))?;
    Ok(())
}
