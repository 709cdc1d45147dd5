//! The machine's size as the kernel saw it at boot: memory and CPUs, from which it sizes some
//! of its own settings (`fs.file-max`, `kernel.threads-max`, `net.ipv4.tcp_mem`...).

use serde::{Deserialize, Serialize};

/// Memory and CPUs of the running kernel's machine (also under `--root`: as for sysctl, a
/// tree has no kernel of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSize {
    /// `MemTotal` of /proc/meminfo, in KiB.
    pub memory_kb: u64,
    /// The CPUs the kernel may ever bring up (/sys/devices/system/cpu/possible).
    pub cpus: u32,
}

/// Reads the running machine's size; `None` when /proc or /sys do not say (never fatal:
/// compare then reports the sized settings as any other).
pub(super) fn observe() -> Option<MachineSize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").ok()?;
    Some(MachineSize {
        memory_kb: mem_total(&meminfo)?,
        cpus: cpu_count(&possible)?,
    })
}

/// `MemTotal:  24683784 kB` → 24683784.
fn mem_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// A CPU list (`0-3,8-11`, `0`) → how many CPUs it names.
fn cpu_count(list: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in list.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?),
            None => {
                let one = part.parse::<u32>().ok()?;
                (one, one)
            }
        };
        n = n.checked_add(hi.checked_sub(lo)? + 1)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_cpus_parse() {
        assert_eq!(
            mem_total("MemTotal:       24683784 kB\nMemFree:  1 kB\n"),
            Some(24683784)
        );
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(cpu_count("0-1\n"), Some(2));
        assert_eq!(cpu_count("0\n"), Some(1));
        assert_eq!(cpu_count("0-3,8-11\n"), Some(8));
        assert_eq!(cpu_count("x"), None);
        assert_eq!(cpu_count("3-1"), None);
    }

    #[test]
    fn this_machine_has_a_size() {
        let size = observe().expect("/proc/meminfo and the cpu list are readable");
        assert!(size.memory_kb > 0 && size.cpus > 0, "{size:?}");
    }
}
