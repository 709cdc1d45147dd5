//! `converge snapshot`: the host's observable state as versioned JSON.

use std::path::Path;

use anyhow::anyhow;

use crate::cli::SnapshotArgs;
use converge::snapshot::{self, Options, Snapshot};

/// Takes the snapshot and writes it to `-o` (stdout by default).
pub fn run(args: &SnapshotArgs) -> anyhow::Result<i32> {
    let sys = super::system(&args.root, &args.config)?;
    let mut options = Options {
        secrets: args.secrets.clone(),
        include_private: args.include_private,
        ..Options::default()
    };
    if !args.paths.is_empty() {
        // Named paths are recorded whole: the caps and selections are the default scope's.
        options.paths = args.paths.clone();
        options.selected.clear();
        let missing = snapshot::missing_paths(&sys, &options.paths);
        for path in &missing {
            say!(
                "warning: snapshot: --path {} does not exist under {}: nothing recorded there",
                path.display(),
                args.root.display()
            );
        }
        if missing.len() == options.paths.len() {
            anyhow::bail!(
                "snapshot: none of the --path arguments exists under {}: no snapshot written",
                args.root.display()
            );
        }
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

/// Writes to stdout for `-`, else to `output` (a new or regular file is replaced
/// atomically and made 0600; a device, fifo or link such as /dev/stdout is written to).
fn write(output: &str, snap: &Snapshot) -> anyhow::Result<()> {
    let text = snap.to_json();
    // 0600: a snapshot holds config text, and private files' text when asked for.
    let mode = 0o600;
    if output == "-" {
        // Private text must not land in a file the shell made world-readable.
        let narrow = snap.has_private_content().then_some(mode);
        converge::durable::write_stream(&mut std::io::stdout().lock(), text.as_bytes(), narrow)
            .map_err(|e| anyhow!("cannot write the snapshot to stdout: {e}"))?;
        return Ok(());
    }
    converge::durable::write_output(
        Path::new(output),
        text.as_bytes(),
        &converge::durable::FileSpec::mode(mode),
    )
    .map_err(|e| anyhow!("cannot write {output}: {e}"))?;
    Ok(())
}
