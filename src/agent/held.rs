//! A bundle that was rolled back on this host, remembered so that the agent does not apply it
//! again on every timer tick (flapping between broken and rolled back). A new bundle, or
//! `converge apply --force`, moves on.

use std::path::Path;

pub use crate::report::rollback::HeldBundle;

/// The file in the state dir.
pub(crate) const HELD_FILE: &str = "rolled-back.json";

/// The remembered bundle, if any (an unreadable file counts as none, with a warning).
pub fn load(state_dir: &Path) -> Option<HeldBundle> {
    crate::durable::read_json(&state_dir.join(HELD_FILE), "record")
}

/// Remembers `held`.
pub fn save(state_dir: &Path, held: &HeldBundle) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(held).expect("serializes");
    crate::durable::write_file(
        &state_dir.join(HELD_FILE),
        &json,
        &crate::durable::FileSpec::mode(0o600),
    )
}

/// Forgets the remembered bundle (a later bundle applied cleanly).
pub fn clear(state_dir: &Path) {
    let path = state_dir.join(HELD_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!("a bundle applied cleanly; the rolled-back one is forgotten"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove"),
    }
}
