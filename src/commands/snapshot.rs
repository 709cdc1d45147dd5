//! `converge snapshot`: the host's observable state as versioned JSON.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::cli::SnapshotArgs;
use converge::snapshot::{self, Options, Snapshot};
use converge::system::System;

/// Takes the snapshot and writes it to `-o` (stdout by default).
pub fn run(args: &SnapshotArgs) -> anyhow::Result<i32> {
    let sys = System::new(&args.root)?;
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

/// Writes to stdout for `-`, else atomically to a 0600 file next to its final name.
fn write(output: &str, snap: &Snapshot) -> anyhow::Result<()> {
    let text = snap.to_json();
    if output == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write the snapshot to stdout")?;
        return Ok(());
    }
    let path = Path::new(output);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // tempfile creates 0600, which is what a file holding config text should be.
    let mut tmp = tempfile::Builder::new()
        .prefix(&converge::system::fs::temp_prefix())
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {output}"))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {output}"))?;
    Ok(())
}
