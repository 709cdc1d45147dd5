//! Named points between two steps of a change where a debug build kills itself, as `kill -9`
//! would, when `CONVERGE_CRASH_AT=POINT:N` asks for the Nth time POINT is reached. Tests use
//! it to land a kill exactly in one window (a backup written but its change not made, a
//! change made but the next backup not written, a rollback half done) instead of hoping a
//! timer hits it. Release builds compile it to nothing.
//!
//! Points: `recorded` (a backup is durable, its change not made yet), `changed` (a change is
//! made, the next backup not written), `rolling-back` (the run is marked as rolling back,
//! nothing restored yet), `restored` (one more change undone), `rolled-back` (the run is
//! marked rolled back, its bundle not yet remembered).

/// Kills the process with SIGKILL at the asked-for hit of `point` (debug builds only).
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    armed::hit(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod armed {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    const VAR: &str = "CONVERGE_CRASH_AT";
    static TARGET: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static HITS: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn hit(name: &str) {
        let target = TARGET.get_or_init(|| {
            let value = std::env::var(VAR).ok()?;
            let (point, n) = value.rsplit_once(':')?;
            Some((point.to_owned(), n.parse().ok()?))
        });
        let Some((point, n)) = target else { return };
        if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            tracing::debug!(
                point = name,
                hit = n,
                "crash point reached: killing the process"
            );
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}
