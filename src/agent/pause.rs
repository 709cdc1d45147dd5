//! A maintenance pause: `converge pause --for 2h` stops agent runs from changing the host
//! until it is resumed or the pause runs out. It lives in the state dir, not in agent.toml, so
//! a bootstrap that rewrites the config does not silently end it.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::durable::{self, FileSpec};

/// The file in the state dir.
pub const PAUSE_FILE: &str = "paused.json";

/// A pause in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// When it was set (RFC 3339).
    pub since: String,
    /// When it ends by itself (RFC 3339).
    pub until: String,
    /// Why, as the operator said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Pause {
    /// When it ends, as a time (a pause whose end does not parse has ended).
    pub fn ends(&self) -> SystemTime {
        humantime::parse_rfc3339(&self.until).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// `until 2026-12-07T12:00:00Z (kernel upgrade)`.
    pub fn describe(&self) -> String {
        match &self.reason {
            Some(r) => format!("until {} ({r})", self.until),
            None => format!("until {}", self.until),
        }
    }
}

/// Pauses agent runs for `length` from `now`; replaces any pause in force.
pub fn pause(
    state_dir: &Path,
    now: SystemTime,
    length: Duration,
    reason: Option<&str>,
) -> std::io::Result<Pause> {
    let pause = Pause {
        since: humantime::format_rfc3339_seconds(now).to_string(),
        until: humantime::format_rfc3339_seconds(now + length).to_string(),
        reason: reason.map(str::to_owned),
    };
    // The state dir's own mode, as systemd's StateDirectoryMode= makes it.
    durable::ensure_dir(state_dir, 0o711)?;
    let json = serde_json::to_vec_pretty(&pause).expect("serializes");
    durable::write_file(&state_dir.join(PAUSE_FILE), &json, &FileSpec::mode(0o600))?;
    Ok(pause)
}

/// Ends the pause; the pause that was in force, if any.
pub fn resume(state_dir: &Path) -> std::io::Result<Option<Pause>> {
    let was = read(state_dir);
    match std::fs::remove_file(state_dir.join(PAUSE_FILE)) {
        Ok(()) => Ok(was),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The pause in force at `now`. One that has run out is removed here, which is how a pause
/// ends by itself: the first run after its end goes on as usual.
pub fn in_force(state_dir: &Path, now: SystemTime) -> Option<Pause> {
    let pause = read(state_dir)?;
    if pause.ends() > now {
        return Some(pause);
    }
    match resume(state_dir) {
        Ok(_) => {
            tracing::info!(until = %pause.until, "the pause ended {}; runs go on", pause.until)
        }
        Err(e) => tracing::warn!(error = %e, "the pause ended, but its file cannot be removed"),
    }
    None
}

/// The pause as recorded, ended or not (an unreadable file counts as none, with a warning).
fn read(state_dir: &Path) -> Option<Pause> {
    durable::read_json(&state_dir.join(PAUSE_FILE), "pause")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_pause_holds_until_its_end_then_ends_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let p = pause(
            &state,
            t0,
            Duration::from_secs(7200),
            Some("kernel upgrade"),
        )
        .unwrap();
        assert_eq!(p.describe(), "until 2027-01-15T10:00:00Z (kernel upgrade)");
        assert_eq!(
            in_force(&state, t0 + Duration::from_secs(7199)),
            Some(p.clone())
        );
        assert_eq!(in_force(&state, t0 + Duration::from_secs(7200)), None);
        assert!(!state.join(PAUSE_FILE).exists());
        pause(&state, t0, Duration::from_secs(60), None).unwrap();
        assert_eq!(resume(&state).unwrap().map(|p| p.reason), Some(None));
        assert_eq!(resume(&state).unwrap(), None);
    }
}
