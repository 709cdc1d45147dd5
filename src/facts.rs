//! Host facts: what templates and classification know about the machine.

pub mod cloud;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::system::os_release::OsRelease;
use crate::system::tree_file::read_text_or_empty;

/// Everything converge knows about a host before it renders anything.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    /// Short host name.
    pub hostname: String,
    /// Fully qualified name (from /etc/hosts when it knows one, else the host name).
    pub fqdn: String,
    /// The distribution, from os-release.
    pub os: OsFacts,
    /// The running kernel.
    pub kernel: KernelFacts,
    /// Machine architecture, e.g. `x86_64`.
    pub arch: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Memory totals.
    pub memory: MemoryFacts,
    /// Addresses by interface name.
    pub interfaces: BTreeMap<String, InterfaceFacts>,
    /// What cloud-init knows about this instance; absent where cloud-init has not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<cloud::CloudFacts>,
}

/// Distribution identity from os-release.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OsFacts {
    /// `debian` (Debian, Ubuntu and derivatives) or `redhat` (RHEL, Fedora, CentOS, Rocky,
    /// AlmaLinux and derivatives), from `ID` and `ID_LIKE`; for any other distribution its
    /// `ID`. It decides the package manager (apt or dnf).
    #[serde(default)]
    pub family: String,
    /// `ID`, e.g. `debian`, `rocky`.
    pub id: String,
    /// `VERSION_ID`, e.g. `12`.
    pub version_id: String,
    /// `VERSION_CODENAME`, e.g. `bookworm`.
    pub codename: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

/// Kernel identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelFacts {
    /// `uname -r`.
    pub release: String,
}

/// Memory totals.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryFacts {
    /// MemTotal in bytes.
    pub total_bytes: u64,
    /// MemTotal in MiB, handy for tuning formulas in templates.
    pub total_mb: u64,
}

/// Addresses of one interface.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InterfaceFacts {
    /// IPv4 addresses.
    pub ipv4: Vec<String>,
    /// IPv6 addresses.
    pub ipv6: Vec<String>,
}

impl Facts {
    /// Gathers facts from the running kernel; os-release and cloud-init's instance data come
    /// from `root` (the tree being converged), since an image built under `--root` is what the
    /// templates are for. Unreadable instance data is an error rather than a host silently
    /// classified without its tags.
    pub fn gather(root: &Path) -> Result<Facts, cloud::CloudError> {
        let uts = nix::sys::utsname::uname().ok();
        let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uts.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| field(|u| u.nodename()));
        // The tree's own files, read as in a chroot: its links never lead to the host's.
        let read = |p: &str| read_text_or_empty(root, Path::new(p));
        let hosts = read("/etc/hosts");
        let fqdn = fqdn_from_hosts(&hosts, &hostname).unwrap_or_else(|| hostname.clone());
        let total_bytes = match std::fs::read_to_string("/proc/meminfo") {
            Ok(m) => mem_total_bytes(&m),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc/meminfo (is /proc mounted?): the memory facts are 0");
                None
            }
        }
        .unwrap_or(0);
        Ok(Facts {
            fqdn,
            hostname,
            os: os_facts(&OsRelease::of_tree(root)),
            kernel: KernelFacts {
                release: field(|u| u.release()),
            },
            arch: field(|u| u.machine()),
            cpus: online_cpus(),
            memory: MemoryFacts {
                total_bytes,
                total_mb: total_bytes / (1024 * 1024),
            },
            interfaces: interfaces(),
            cloud: cloud::read(root)?,
        })
    }
}

fn online_cpus() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map_or(1, |n| n.max(1) as usize)
}

/// The first name with a dot on a /etc/hosts line that also names `hostname`.
fn fqdn_from_hosts(hosts: &str, hostname: &str) -> Option<String> {
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>())
        .filter(|names| names.contains(&hostname))
        .find_map(|names| {
            names
                .iter()
                .find(|n| n.contains('.') && n.starts_with(&format!("{hostname}.")))
                .map(|n| n.to_string())
        })
}

/// Gives facts read from a file (`--facts`) the `os.family` that files saved before the
/// fact existed lack, from their `os.id`, so templates that test it render as they would on
/// that host.
pub fn fill_os_family(facts: &mut serde_json::Value) {
    let Some(os) = facts.get_mut("os").and_then(|o| o.as_object_mut()) else {
        return;
    };
    if os.contains_key("family") {
        return;
    }
    let Some(id) = os.get("id").and_then(|v| v.as_str()) else {
        return;
    };
    let family = OsRelease {
        id: id.to_owned(),
        ..OsRelease::default()
    }
    .family_name();
    os.insert("family".into(), family.into());
}

fn os_facts(os: &OsRelease) -> OsFacts {
    OsFacts {
        family: os.family_name(),
        id: os.id.clone(),
        version_id: os.version_id.clone(),
        codename: os.codename.clone(),
        pretty_name: os.pretty_name.clone(),
    }
}

fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn interfaces() -> BTreeMap<String, InterfaceFacts> {
    let mut out: BTreeMap<String, InterfaceFacts> = BTreeMap::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for ifa in addrs {
        let entry = out.entry(ifa.interface_name.clone()).or_default();
        let Some(addr) = ifa.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            entry.ipv4.push(v4.ip().to_string());
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            entry.ipv6.push(v6.ip().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_facts_name_the_family() {
        let os = os_facts(&OsRelease::parse(
            "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
        ));
        assert_eq!(
            (os.family.as_str(), os.id.as_str(), os.version_id.as_str()),
            ("redhat", "rocky", "9.3")
        );
        let os = os_facts(&OsRelease::parse("ID=debian\nVERSION_ID=\"12\"\n"));
        assert_eq!(os.family, "debian");
        assert_eq!(os_facts(&OsRelease::parse("ID=alpine\n")).family, "alpine");
    }

    #[test]
    fn a_facts_file_without_the_family_gets_it_from_the_id() {
        let mut facts = serde_json::json!({"os": {"id": "rocky"}});
        fill_os_family(&mut facts);
        assert_eq!(facts["os"]["family"], "redhat");
        let mut facts = serde_json::json!({"os": {"id": "rocky", "family": "mine"}});
        fill_os_family(&mut facts);
        assert_eq!(facts["os"]["family"], "mine");
        let mut facts = serde_json::json!({"hostname": "h"});
        fill_os_family(&mut facts);
        assert_eq!(facts, serde_json::json!({"hostname": "h"}));
    }

    #[test]
    fn fqdn_comes_from_hosts() {
        let hosts = "127.0.0.1 localhost\n10.0.0.5 web1.example.com web1 # app\n";
        assert_eq!(
            fqdn_from_hosts(hosts, "web1").as_deref(),
            Some("web1.example.com")
        );
        assert_eq!(fqdn_from_hosts(hosts, "db1"), None);
    }

    #[test]
    fn gathers_this_host() {
        let f = Facts::gather(Path::new("/")).unwrap();
        assert!(f.cpus >= 1);
        assert!(f.memory.total_mb > 0);
        assert!(f.interfaces.contains_key("lo"));
        assert_eq!(f.interfaces["lo"].ipv4, ["127.0.0.1"]);
    }
}
