//! How long each kind of external command may run: one hung `systemctl start` or a stuck
//! dpkg lock must not block the agent (and hold its lock) for ever. Past its deadline a
//! command is killed with its whole process group and fails its resource; the run goes on
//! with whatever does not depend on it. Set in agent.toml under `[timeouts]`.

use std::time::Duration;

use serde::Deserialize;

/// Deadlines by kind of command. `exec` resources carry their own `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Read-only queries: `dpkg-query`, `apt-cache`, `rpm -q`, `dnf repoquery`, `systemctl
    /// show` and `is-enabled`.
    #[serde(with = "humantime_serde")]
    pub query: Duration,
    /// `apt-get install` and `remove`, `apt-mark`, `dnf install` and `remove`: downloads and
    /// maintainer scripts.
    #[serde(with = "humantime_serde")]
    pub package: Duration,
    /// `systemctl start`, `stop`, `restart`, `reload`, `enable`..., `daemon-reload`; systemd's
    /// own start timeout is 90 s, so a unit that starts at all starts within this.
    #[serde(with = "humantime_serde")]
    pub service: Duration,
    /// `useradd`, `usermod`, `groupadd`... (home directories are copied from /etc/skel).
    #[serde(with = "humantime_serde")]
    pub account: Duration,
    /// A file's or unit's `validate` command.
    #[serde(with = "humantime_serde")]
    pub validate: Duration,
    /// `nft`: listing, checking and loading a table (a scratch network namespace included).
    #[serde(with = "humantime_serde")]
    pub firewall: Duration,
    /// `modprobe` and `modprobe -r`: a module's init (firmware, probing devices) runs inside.
    #[serde(with = "humantime_serde")]
    pub module: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            query: Duration::from_secs(60),
            package: Duration::from_secs(600),
            service: Duration::from_secs(300),
            account: Duration::from_secs(60),
            validate: Duration::from_secs(60),
            firewall: Duration::from_secs(60),
            module: Duration::from_secs(120),
        }
    }
}
