//! `sysctl`: the live value of one kernel parameter. Persisting it is the drop-in's job
//! ([`super::sysctl_conf`]); this resource only makes the running kernel agree.

use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, PlanSlots};
use crate::system::procfs::sysctl_path;
use crate::system::{Host, System, SystemError};

/// Keys that trigger an action when written instead of holding a value: writing them on every
/// run would flush caches or routes each time, and they can never read back "in sync".
const TRIGGER_KEYS: &[&str] = &["vm.drop_caches", "vm.compact_memory"];

/// One kernel parameter's live value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SysctlResource {
    /// The key as written in the role, e.g. `net.core.somaxconn`.
    pub key: String,
    /// The desired value, exactly as it is written to the kernel and the drop-in.
    pub value: String,
}

/// What a sysctl resource finds.
#[derive(Debug)]
pub enum SysctlLive {
    /// Converging a tree under `--root`: the running kernel is not the tree's.
    NotManaged,
    /// The kernel's current value.
    Value(String),
}

/// Whitespace-split tokens: the kernel reads back multi-value keys tab-separated
/// (`1024\t65000`), so comparing text would report a change on every run.
pub fn tokens(value: &str) -> Vec<&str> {
    value.split_whitespace().collect()
}

/// Why `key` cannot be managed, if it cannot.
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    let dotted = crate::system::procfs::dotted_key(key);
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_' | '-' | ':' | '@'))
    {
        return Err(format!(
            "invalid sysctl key '{key}': expected names such as net.core.somaxconn"
        ));
    }
    let path = sysctl_path(key);
    let rel = path.to_string_lossy();
    let parts: Vec<&str> = rel.trim_start_matches("/proc/sys/").split('/').collect();
    if parts.len() < 2 || parts.iter().any(|p| matches!(*p, "" | "." | "..")) {
        return Err(format!(
            "invalid sysctl key '{key}': expected names such as net.core.somaxconn"
        ));
    }
    if TRIGGER_KEYS.contains(&dotted.as_str()) || dotted.ends_with(".route.flush") {
        return Err(format!(
            "sysctl key '{key}' is a write-only trigger, not a setting: writing it on every run \
             would repeat the action; run it once with an [[exec]] instead"
        ));
    }
    Ok(())
}

/// Why `value` cannot be written, if it cannot.
pub(crate) fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(format!(
            "invalid value for sysctl key '{key}': it must be on one line"
        ));
    }
    Ok(())
}

impl Resource for SysctlResource {
    type Live = SysctlLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Sysctl, self.key.clone())
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint::no_path()
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<SysctlLive, ResourceError> {
        if !sys.is_live() {
            tracing::debug!(key = %self.key, "live value not managed under --root");
            return Ok(SysctlLive::NotManaged);
        }
        match sys.read_sysctl(&self.key)? {
            Some(v) => Ok(SysctlLive::Value(v)),
            None => Err(ResourceError::SysctlUnknownKey {
                key: self.key.clone(),
                path: sysctl_path(&self.key),
            }),
        }
    }

    fn diff(&self, live: &SysctlLive) -> Option<Change> {
        let SysctlLive::Value(now) = live else {
            return None;
        };
        if tokens(now) == tokens(&self.value) {
            return None;
        }
        Some(Change::fields(
            Action::Update,
            vec![FieldChange::new(
                "value",
                Some(tokens(now).join(" ")),
                Some(self.value.clone()),
            )],
        ))
    }

    fn apply(
        &self,
        host: &Host,
        _live: &SysctlLive,
        _change: &Change,
    ) -> Result<(), ResourceError> {
        host.write_sysctl(&self.key, &self.value)
            .map_err(|e| self.write_error(e))?;
        // Some keys clamp or round what they are given; catch that now rather than
        // reporting the same change on every later run.
        let got = host.system().read_sysctl(&self.key)?.unwrap_or_default();
        if tokens(&got) != tokens(&self.value) {
            return Err(ResourceError::SysctlNotKept {
                key: self.key.clone(),
                wanted: self.value.clone(),
                got: tokens(&got).join(" "),
            });
        }
        Ok(())
    }
}

impl SysctlResource {
    fn write_error(&self, e: SystemError) -> ResourceError {
        let SystemError::Io { source, .. } = &e else {
            return e.into();
        };
        let reason = match source.raw_os_error() {
            Some(nix::libc::EINVAL) => {
                "the kernel rejected the value (EINVAL: malformed, out of range, \
                 or read-only in this namespace)"
            }
            Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => {
                "permission denied (EPERM/EACCES: the key is read-only here; \
                 inside a container or network namespace some keys are global)"
            }
            Some(nix::libc::ENOENT) => "the key does not exist in this kernel",
            _ => return e.into(),
        };
        ResourceError::SysctlRejected {
            key: self.key.clone(),
            value: self.value.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_value_keys_compare_by_tokens() {
        let r = SysctlResource {
            key: "net.ipv4.ip_local_port_range".into(),
            value: "1024 65000".into(),
        };
        assert_eq!(r.diff(&SysctlLive::Value("1024\t65000\n".into())), None);
        let c = r.diff(&SysctlLive::Value("32768\t60999\n".into())).unwrap();
        assert_eq!(c.fields[0].before.as_deref(), Some("32768 60999"));
        assert_eq!(c.fields[0].after.as_deref(), Some("1024 65000"));
        assert_eq!(r.diff(&SysctlLive::NotManaged), None);
    }

    #[test]
    fn triggers_and_bad_keys_are_refused() {
        assert!(check_key("net.core.somaxconn").is_ok());
        assert!(check_key("net/ipv4/conf/eth0.100/rp_filter").is_ok());
        for key in [
            "vm.drop_caches",
            "vm.compact_memory",
            "net.ipv4.route.flush",
            "net.ipv6.route.flush",
            "net/ipv4/route/flush",
        ] {
            let e = check_key(key).unwrap_err();
            assert!(e.contains("write-only trigger"), "{key}: {e}");
        }
        for key in [
            "",
            "somaxconn",
            "net/../../etc/passwd",
            "net..core",
            "net.core.*",
            "a b",
        ] {
            assert!(check_key(key).is_err(), "{key}");
        }
        assert!(check_value("k", "1\n2").is_err());
        assert!(check_value("k", "1024 65000").is_ok());
    }
}
