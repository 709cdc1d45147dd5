//! `sysfs`: the live value of one kernel attribute under /sys, or of every device attribute
//! a glob names (`block/nvme*/queue/scheduler`). Keeping it across reboots and for devices
//! plugged in later is the boot files' job ([`super::sysfs_boot`]).

use super::ResourceId;
use super::{Action, Change, FieldChange, Footprint, Kind, PlanSlots, Resource, ResourceError};
use crate::system::sysfs::{is_glob, sys_path, AttrValue};
use crate::system::{Host, System, SystemError};

/// One key of `[sysfs]`.
#[derive(Debug, Clone, Eq, serde::Serialize, serde::Deserialize)]
pub struct SysfsResource {
    /// The path under /sys as written in the role, globs allowed in device names.
    pub key: String,
    /// The desired value, as it is written to the kernel.
    pub value: String,
    /// Whether the boot files carry it.
    pub persist: bool,
    /// Where the role declares it (`roles/db.toml:4:1`), for errors only the host can tell.
    pub declared_at: String,
}

/// Two roles declaring the same key and value are one resource, wherever they declare it.
impl PartialEq for SysfsResource {
    fn eq(&self, other: &Self) -> bool {
        (&self.key, &self.value, self.persist) == (&other.key, &other.value, other.persist)
    }
}

/// Where a key's value is kept for boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyShape {
    /// A fixed attribute (globs only over CPUs): a tmpfiles.d `w` line.
    Fixed,
    /// A device attribute: a udev rule, which also covers devices that appear later.
    Device {
        /// The udev subsystem, `block` or `net`.
        subsystem: &'static str,
        /// The kernel name or glob, `nvme*`.
        name: String,
        /// The attribute below the device, `queue/scheduler`.
        attr: String,
    },
}

/// The areas of /sys a key may name, for messages.
pub(crate) const AREAS: &str = "kernel/mm/..., block/DEVICE/queue/..., class/net/DEVICE/..., \
     module/MODULE/parameters/PARAM, devices/system/cpu/...";

/// Why `key` cannot be managed, or how its value is kept for boot.
pub(crate) fn check_key(key: &str) -> Result<KeyShape, String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid sysfs key '{}': {why}",
            key.escape_default()
        ))
    };
    if key.starts_with('/') {
        return bad(
            "expected a path relative to /sys, e.g. \"kernel/mm/transparent_hugepage/enabled\"",
        );
    }
    let parts: Vec<&str> = key.split('/').collect();
    for p in &parts {
        if p.is_empty() || *p == "." || *p == ".." {
            return bad("expected a path without '.', '..', '//' or a trailing '/'");
        }
        let ok = p.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '+')
        } || matches!(c, '*' | '?' | '[' | ']' | '!'));
        if !ok {
            return bad("expected letters, digits and _ - . : @ + (and * ? [ ] in device names)");
        }
    }
    if parts.last() == Some(&"uevent") {
        return bad("uevent is a trigger, not a setting");
    }
    let no_glob = |from: usize| parts[from..].iter().all(|p| !is_glob(p));
    let refuse_glob = || {
        bad("globs go only in device names (block/DEVICE/..., class/net/DEVICE/...) and under devices/system/cpu")
    };
    match parts.as_slice() {
        ["kernel", "mm", _, ..] => {
            if !no_glob(0) {
                return refuse_glob();
            }
            Ok(KeyShape::Fixed)
        }
        ["module", _, "parameters", _] => {
            if !no_glob(0) {
                return refuse_glob();
            }
            Ok(KeyShape::Fixed)
        }
        ["devices", "system", "cpu", _, ..] => Ok(KeyShape::Fixed),
        ["block", name, "queue", _, ..] | ["class", "net", name, _, ..] => {
            let subsystem = if parts[0] == "block" { "block" } else { "net" };
            let attr_from = if subsystem == "block" { 2 } else { 3 };
            if !no_glob(attr_from) {
                return refuse_glob();
            }
            Ok(KeyShape::Device {
                subsystem,
                name: (*name).to_owned(),
                attr: parts[attr_from..].join("/"),
            })
        }
        _ => bad(&format!(
            "not one of the writable areas converge manages: expected {AREAS}"
        )),
    }
}

/// Why `value` cannot be written to the kernel and the boot files, if it cannot.
pub(crate) fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty()
        || value
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\\' | '%' | '$'))
    {
        return Err(format!(
            "invalid value for sysfs key '{key}': expected a value on one line without quotes, '\\', '%' or '$', e.g. \"never\" or 128"
        ));
    }
    Ok(())
}

/// What a sysfs resource finds.
#[derive(Debug)]
pub enum SysfsLive {
    /// Converging a tree under `--root`: the running kernel is not the tree's.
    NotManaged,
    /// Every attribute the key names now (none: a glob that matches no device yet).
    Values(Vec<(String, AttrValue)>),
}

/// Why a key cannot be had on this host.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// A fixed path this kernel does not have.
    #[error("{at}: sysfs '{key}': {} does not exist on this host (not in this kernel, or its module is not loaded)", sys_path(key).display())]
    Missing {
        /// Where the role declares it.
        at: String,
        /// The key.
        key: String,
    },
    /// Something other than a writable attribute file.
    #[error("{at}: sysfs '{key}': {} is {what}, not a writable attribute", sys_path(rel).display())]
    NotWritable {
        /// Where the role declares it.
        at: String,
        /// The key.
        key: String,
        /// The path matched.
        rel: String,
        /// What it is.
        what: &'static str,
    },
    /// A choice list that does not offer the value.
    #[error("{at}: sysfs '{key}': {} offers {}, not '{value}'", sys_path(rel).display(), choices.join(", "))]
    NotAChoice {
        /// Where the role declares it.
        at: String,
        /// The key.
        key: String,
        /// The path matched.
        rel: String,
        /// The value wanted.
        value: String,
        /// What the kernel offers.
        choices: Vec<String>,
    },
    /// The kernel refused the write.
    #[error("sysfs {}: cannot set '{value}': {reason}", sys_path(rel).display())]
    Rejected {
        /// The path written.
        rel: String,
        /// The value refused.
        value: String,
        /// Why, in words.
        reason: String,
    },
    /// The kernel took the write but reads back something else.
    #[error("sysfs {}: wrote '{wanted}' but the kernel keeps '{got}'", sys_path(rel).display())]
    NotKept {
        /// The path written.
        rel: String,
        /// The value written.
        wanted: String,
        /// What it reads back.
        got: String,
    },
}

impl SysfsError {
    /// A stable name for the JSON report.
    pub fn kind(&self) -> &'static str {
        match self {
            SysfsError::Missing { .. } => "sysfs_missing",
            SysfsError::NotWritable { .. } => "sysfs_not_writable",
            SysfsError::NotAChoice { .. } => "sysfs_not_a_choice",
            SysfsError::Rejected { .. } => "sysfs_rejected",
            SysfsError::NotKept { .. } => "sysfs_not_kept",
        }
    }
}

/// Whether the kernel's `now` is the wanted `value` (whitespace-split tokens, as sysctl).
fn same(now: &str, value: &str) -> bool {
    now.split_whitespace().eq(value.split_whitespace())
}

impl SysfsResource {
    /// The attributes whose value differs, with what they hold now.
    fn differing<'l>(&self, live: &'l SysfsLive) -> Vec<(&'l str, &'l str)> {
        match live {
            SysfsLive::NotManaged => Vec::new(),
            SysfsLive::Values(values) => values
                .iter()
                .filter(|(_, v)| !same(&v.value, &self.value))
                .map(|(rel, v)| (rel.as_str(), v.value.as_str()))
                .collect(),
        }
    }

    fn is_glob(&self) -> bool {
        self.key.split('/').any(is_glob)
    }

    fn write_error(&self, rel: &str, e: SystemError) -> ResourceError {
        let SystemError::Io { source, .. } = &e else {
            return e.into();
        };
        let reason = match source.raw_os_error() {
            Some(nix::libc::EINVAL) => "the kernel rejected the value (EINVAL)".to_owned(),
            Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => {
                "permission denied (EPERM/EACCES: read-only here)".to_owned()
            }
            Some(nix::libc::EBUSY) => "the device is busy (EBUSY)".to_owned(),
            _ => return e.into(),
        };
        SysfsError::Rejected {
            rel: rel.to_owned(),
            value: self.value.clone(),
            reason,
        }
        .into()
    }
}

impl Resource for SysfsResource {
    type Live = SysfsLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Sysfs, self.key.clone())
    }

    fn footprint(&self) -> Footprint<'_> {
        // Its boot files are resources of their own.
        Footprint::no_path()
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<SysfsLive, ResourceError> {
        if !sys.is_live() {
            return Ok(SysfsLive::NotManaged);
        }
        let attrs = sys.sysfs_attributes(&self.key)?;
        if attrs.is_empty() && !self.is_glob() {
            return Err(SysfsError::Missing {
                at: self.declared_at.clone(),
                key: self.key.clone(),
            }
            .into());
        }
        let mut values = Vec::with_capacity(attrs.len());
        for a in attrs {
            if !a.writable {
                let what = if sys_path(&a.rel).is_dir() {
                    "a directory"
                } else {
                    "read-only"
                };
                return Err(SysfsError::NotWritable {
                    at: self.declared_at.clone(),
                    key: self.key.clone(),
                    rel: a.rel,
                    what,
                }
                .into());
            }
            let v = sys.read_sysfs(&a.rel)?;
            // Refused before anything is written: the kernel would refuse it anyway.
            if let Some(choices) = v.choices.as_ref().filter(|c| !c.contains(&self.value)) {
                return Err(SysfsError::NotAChoice {
                    at: self.declared_at.clone(),
                    key: self.key.clone(),
                    rel: a.rel,
                    value: self.value.clone(),
                    choices: choices.clone(),
                }
                .into());
            }
            values.push((a.rel, v));
        }
        Ok(SysfsLive::Values(values))
    }

    fn diff(&self, live: &SysfsLive) -> Option<Change> {
        let differing = self.differing(live);
        if differing.is_empty() {
            return None;
        }
        let glob = self.is_glob();
        let fields = differing
            .into_iter()
            .map(|(rel, now)| {
                let field = if glob { rel } else { "value" };
                FieldChange::new(field, Some(now.to_owned()), Some(self.value.clone()))
            })
            .collect();
        Some(Change::fields(Action::Update, fields))
    }

    fn apply(&self, host: &Host, live: &SysfsLive, _change: &Change) -> Result<(), ResourceError> {
        for (rel, _) in self.differing(live) {
            host.write_sysfs(rel, &self.value)
                .map_err(|e| self.write_error(rel, e))?;
            let got = host.system().read_sysfs(rel)?.value;
            if !same(&got, &self.value) {
                return Err(SysfsError::NotKept {
                    rel: rel.to_owned(),
                    wanted: self.value.clone(),
                    got,
                }
                .into());
            }
        }
        Ok(())
    }

    fn notes(&self, sys: &System) -> Vec<String> {
        let shape = check_key(&self.key).ok();
        let boot = match (&shape, self.persist) {
            (_, false) => "not kept for boot (persist = false)".to_owned(),
            (Some(KeyShape::Device { .. }), true) => format!(
                "{} sets it at boot and on every matching device that appears",
                super::sysfs_boot::UDEV_RULES
            ),
            _ => format!("{} sets it at boot", super::sysfs_boot::TMPFILES),
        };
        if !sys.is_live() {
            return vec![format!(
                "live value not managed under --root: converge cannot write a tree's kernel; {boot}"
            )];
        }
        let none_now = self.is_glob()
            && sys
                .sysfs_attributes(&self.key)
                .is_ok_and(|found| found.is_empty());
        if none_now {
            return vec![format!(
                "no device matches {} now; {boot}",
                sys_path(&self.key).display()
            )];
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thp(value: &str) -> SysfsResource {
        SysfsResource {
            key: "block/nvme*/queue/scheduler".into(),
            value: value.into(),
            persist: true,
            declared_at: "roles/db.toml:2:1".into(),
        }
    }

    #[test]
    fn keys_are_checked_against_the_areas() {
        assert_eq!(
            check_key("kernel/mm/transparent_hugepage/enabled"),
            Ok(KeyShape::Fixed)
        );
        assert_eq!(
            check_key("block/nvme*/queue/scheduler"),
            Ok(KeyShape::Device {
                subsystem: "block",
                name: "nvme*".into(),
                attr: "queue/scheduler".into()
            })
        );
        assert_eq!(
            check_key("class/net/eth*/tx_queue_len"),
            Ok(KeyShape::Device {
                subsystem: "net",
                name: "eth*".into(),
                attr: "tx_queue_len".into()
            })
        );
        assert_eq!(
            check_key("devices/system/cpu/cpu*/cpufreq/scaling_governor"),
            Ok(KeyShape::Fixed)
        );
        assert_eq!(
            check_key("module/nf_conntrack/parameters/hashsize"),
            Ok(KeyShape::Fixed)
        );
        for bad in [
            "/sys/kernel/mm/ksm/run",
            "kernel/mm/../../power/state",
            "power/state",
            "kernel/mm",
            "kernel/mm/*/enabled",
            "block/sda/queue/*",
            "block/sda/uevent",
            "block/sda//queue/x",
            "kernel/mm/ksm/run ",
            "firmware/efi/x",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_value("k", "never").is_ok());
        assert!(check_value("k", "0-3").is_ok());
        for bad in ["", " ", "a\nb", "a\"b", "50%", "$x", "a\\b"] {
            assert!(check_value("k", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn diff_names_each_device_that_differs() {
        let r = thp("mq-deadline");
        let live = SysfsLive::Values(vec![
            (
                "block/nvme0n1/queue/scheduler".into(),
                crate::system::sysfs::parse_value("[none] mq-deadline"),
            ),
            (
                "block/nvme1n1/queue/scheduler".into(),
                crate::system::sysfs::parse_value("none [mq-deadline]"),
            ),
        ]);
        let c = r.diff(&live).unwrap();
        assert_eq!(c.fields.len(), 1);
        assert_eq!(c.fields[0].field, "block/nvme0n1/queue/scheduler");
        assert_eq!(c.fields[0].before.as_deref(), Some("none"));
        assert_eq!(r.diff(&SysfsLive::Values(Vec::new())), None);
        assert_eq!(r.diff(&SysfsLive::NotManaged), None);
        let mut other = thp("mq-deadline");
        other.declared_at = "roles/other.toml:9:1".into();
        assert_eq!(r, other);
    }
}
