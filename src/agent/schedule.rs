//! When the agent runs: every `interval`, at an offset inside `splay` fixed by the host's
//! identity. Hosts spread over the splay window, and a restart or reboot keeps each host's
//! slot (re-drawing a random splay at every start makes restarted fleets run in step).
//! `converge agent` sleeps to its slots itself; a run started by converge.timer, which fires
//! on the same calendar on every host, waits its offset first (`apply --splay`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// The host's stable identity: /etc/machine-id when present, else the host name.
pub fn identity(hostname: &str) -> String {
    identity_in(std::path::Path::new("/"), hostname)
}

/// The stable identity of the host whose tree is `root` (`/` for the running machine): its
/// etc/machine-id when present and not empty, else `hostname`. A tree converged under
/// `--root` is its own host, with its own place in a rollout.
pub fn identity_in(root: &std::path::Path, hostname: &str) -> String {
    let text =
        crate::system::tree_file::read_text_or_empty(root, std::path::Path::new("/etc/machine-id"));
    let id = text.trim();
    if id.is_empty() {
        hostname.to_owned()
    } else {
        id.to_owned()
    }
}

/// This host's name as the kernel has it, for [`identity`] where there is no machine id.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Whether a systemd timer started this run: systemd (251 and later) names the triggering
/// unit in `TRIGGER_UNIT`. A run an operator starts by hand, even through the service, has
/// none, and does not wait.
pub fn started_by_timer() -> bool {
    std::env::var("TRIGGER_UNIT").is_ok_and(|unit| unit.ends_with(".timer"))
}

/// This host's offset inside the splay window (never more than the interval).
pub fn offset(identity: &str, interval: Duration, splay: Duration) -> Duration {
    let window = splay.min(interval).as_millis() as u64;
    if window == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(identity.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    Duration::from_millis(n % window)
}

/// The next run after `now`: the first instant `k * interval + offset` (unix time) past it.
pub fn next_run(now: SystemTime, interval: Duration, offset: Duration) -> SystemTime {
    let interval_ms = interval.as_millis().max(1);
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let offset_ms = offset.as_millis() % interval_ms;
    let base = now_ms - now_ms % interval_ms + offset_ms;
    let next = if base > now_ms {
        base
    } else {
        base + interval_ms
    };
    UNIX_EPOCH + Duration::from_millis(next as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_stable_and_inside_the_window() {
        let i = Duration::from_secs(1800);
        let s = Duration::from_secs(300);
        let a = offset("host-a", i, s);
        assert_eq!(a, offset("host-a", i, s));
        assert!(a < s);
        assert_ne!(a, offset("host-b", i, s));
        assert!(
            offset("x", Duration::from_secs(60), Duration::from_secs(600))
                < Duration::from_secs(60)
        );
        assert_eq!(offset("x", i, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn next_run_is_the_next_slot() {
        let i = Duration::from_secs(100);
        let o = Duration::from_secs(7);
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(next_run(at(1000), i, o), at(1007));
        assert_eq!(next_run(at(1007), i, o), at(1107));
        assert_eq!(next_run(at(1050), i, o), at(1107));
    }
}
