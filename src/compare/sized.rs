//! Kernel settings the kernel sizes from the machine at boot. Two hosts of different sizes
//! differ in them without anyone tuning anything, so a difference is reported only when a
//! side's value is not what the kernel computes for that side's machine.
//!
//! The formulas are the kernel's (4 KiB pages, 16 KiB thread stacks, as on x86-64 and
//! arm64): `files_maxfiles_init` (fs/file_table.c), `set_max_threads` (kernel/fork.c),
//! `calculate_min_free_kbytes` (mm/page_alloc.c) and khugepaged's
//! `set_recommended_min_free_kbytes`, `tcp_init`/`tcp_init_mem` (net/ipv4/tcp.c), `udp_init`
//! (net/ipv4/udp.c), `alloc_large_system_hash` (mm/mm_init.c) and `pid_idr_init`
//! (kernel/pid.c). The kernel counts pages free or present at boot, which lie a little
//! below `MemTotal` (what it keeps for itself); a value anywhere in that band counts.

use crate::snapshot::MachineSize;

/// The lowest share of `MemTotal`, in percent, that the kernel may have counted at boot.
const BOOT_SHARE_MIN: u64 = 85;
/// The highest: `nr_kernel_pages` (hash tables) counts a little more than `MemTotal`.
const BOOT_SHARE_MAX: u64 = 115;

/// KiB per page.
const PAGE_KB: u64 = 4;

/// The settings sized from the machine; user namespace limits follow `threads-max`.
pub(crate) const SIZED: &[&str] = &[
    "fs.file-max",
    "kernel.threads-max",
    "vm.min_free_kbytes",
    "net.ipv4.tcp_mem",
    "net.ipv4.udp_mem",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_max_syn_backlog",
    "kernel.pid_max",
    "user.max_user_namespaces",
    "user.max_pid_namespaces",
    "user.max_uts_namespaces",
    "user.max_ipc_namespaces",
    "user.max_net_namespaces",
    "user.max_mnt_namespaces",
    "user.max_cgroup_namespaces",
    "user.max_time_namespaces",
];

/// A range of KiB of memory the kernel may have counted.
#[derive(Clone, Copy)]
struct Band {
    lo: u64,
    hi: u64,
}

impl Band {
    fn of(size: &MachineSize, max_share: u64) -> Band {
        Band {
            lo: size.memory_kb * BOOT_SHARE_MIN / 100,
            hi: size.memory_kb * max_share / 100,
        }
    }

    /// Whether `v` is `f(kb)` for some kb in the band, `f` not decreasing.
    fn holds(self, v: u64, f: impl Fn(u64) -> u64) -> bool {
        f(self.lo) <= v && v <= f(self.hi)
    }
}

/// Whether `value` (as /proc/sys gives it) is what the kernel computes for `key` on a
/// machine of `size`; `None` for a setting the kernel does not size from the machine.
pub(crate) fn computed(key: &str, value: &str, size: &MachineSize) -> Option<bool> {
    if !SIZED.contains(&key) {
        return None;
    }
    let numbers: Vec<u64> = crate::resource::sysctl::tokens(value)
        .iter()
        .map(|t| t.parse::<u64>())
        .collect::<Result<_, _>>()
        .ok()?;
    let one = match numbers.as_slice() {
        [v] => Some(*v),
        _ => None,
    };
    let band = Band::of(size, 100);
    let threads = |kb: u64| (kb / 128).clamp(MIN_THREADS, MAX_THREADS);
    Some(match key {
        // (pages - reserve) * (PAGE_SIZE / 1024) / 10, at least NR_FILE.
        "fs.file-max" => band.holds(one?, |kb| (kb / 10).max(NR_FILE)),
        // pages * PAGE_SIZE / (THREAD_SIZE * 8).
        "kernel.threads-max" => band.holds(one?, threads),
        // init_user_ns's limits: max_threads / 2.
        k if k.starts_with("user.") => band.holds(one?, |kb| threads(kb) / 2),
        "vm.min_free_kbytes" => min_free_kbytes(one?, band),
        "net.ipv4.tcp_mem" => pressure_triple(&numbers, band, 16),
        "net.ipv4.udp_mem" => pressure_triple(&numbers, band, 8),
        "net.ipv4.tcp_max_orphans" | "net.ipv4.tcp_max_tw_buckets" => {
            ehash_sizes(size).any(|cnt| one == Some(cnt / 2))
        }
        "net.ipv4.tcp_max_syn_backlog" => {
            ehash_sizes(size).any(|cnt| one == Some((cnt / 128).max(128)))
        }
        "kernel.pid_max" => {
            one? == (PIDS_PER_CPU * u64::from(size.cpus)).clamp(PID_MAX_DEFAULT, PID_MAX_LIMIT)
        }
        _ => return None,
    })
}

const NR_FILE: u64 = 8192;
const MIN_THREADS: u64 = 20;
const MAX_THREADS: u64 = 0x3fff_ffff;
const PIDS_PER_CPU: u64 = 1024;
const PID_MAX_DEFAULT: u64 = 32768;
const PID_MAX_LIMIT: u64 = 4 * 1024 * 1024;

/// `int_sqrt(lowmem_kbytes * 16)` clamped (to 256 MiB since Linux 5.7, 64 MiB before); or,
/// with transparent hugepages on, khugepaged's floor: two pageblocks per zone plus one per
/// migrate type pair (11 pageblocks of 2 MiB per populated zone), at most 5% of low memory.
fn min_free_kbytes(v: u64, band: Band) -> bool {
    let by_memory = |cap: u64| band.holds(v, |kb| isqrt(kb * 16).clamp(128, cap));
    if by_memory(262_144) || by_memory(65_536) {
        return true;
    }
    let floor = isqrt(band.lo * 16).clamp(128, 65_536);
    (1..=4u64).any(|zones| {
        let thp = 11 * 2048 * zones;
        v >= floor && (v == thp || (band.lo / 20 <= v && v <= band.hi / 20 && v < thp))
    })
}

/// tcp_mem/udp_mem: `limit = max(pages / share, 128)`, then `[limit/4*3, limit, limit/4*3*2]`.
fn pressure_triple(numbers: &[u64], band: Band, share: u64) -> bool {
    let [low, limit, high] = numbers else {
        return false;
    };
    *low == limit / 4 * 3
        && *high == low * 2
        && band.holds(*limit, |kb| (kb / PAGE_KB / share).max(128))
}

/// The sizes the TCP established hash may have: one bucket per 128 KiB of low memory
/// (coarser past 64 GiB), a power of two, at most 512 Ki entries.
fn ehash_sizes(size: &MachineSize) -> impl Iterator<Item = u64> {
    let band = Band::of(size, BOOT_SHARE_MAX);
    let (lo, hi) = (ehash(band.lo / PAGE_KB), ehash(band.hi / PAGE_KB));
    std::iter::successors(Some(lo.min(hi)), move |n| {
        (*n < lo.max(hi)).then_some(n * 2)
    })
}

fn ehash(pages: u64) -> u64 {
    const ADAPT_SCALE_NPAGES: u64 = (64 << 30) / 4096;
    let entries = pages.div_ceil(256) * 256;
    let mut scale = 17u32;
    let mut adapt = ADAPT_SCALE_NPAGES;
    while adapt < entries {
        scale += 1;
        adapt <<= 2;
    }
    (entries >> (scale - 12))
        .max(1)
        .next_power_of_two()
        .min(512 * 1024)
}

fn isqrt(n: u64) -> u64 {
    let mut r = (n as f64).sqrt() as u64;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real host: 2 vCPUs, 24,683,784 KiB (Linux 6.18, THP madvise), with the values it
    /// booted with.
    const BUILD_HOST: MachineSize = MachineSize {
        memory_kb: 24_683_784,
        cpus: 2,
    };

    fn on(size: &MachineSize, key: &str, value: &str) -> bool {
        computed(key, value, size).expect("a sized key")
    }

    #[test]
    fn file_max_is_a_tenth_of_memory_in_kib() {
        assert!(on(&BUILD_HOST, "fs.file-max", "2466255"));
        assert!(!on(&BUILD_HOST, "fs.file-max", "4194304"), "tuned higher");
        assert!(!on(&BUILD_HOST, "fs.file-max", "1000000"), "tuned lower");
        let tiny = MachineSize {
            memory_kb: 60_000,
            cpus: 1,
        };
        assert!(on(&tiny, "fs.file-max", "8192"), "NR_FILE floor");
    }

    #[test]
    fn threads_max_and_the_user_namespace_limits_follow_memory() {
        assert!(on(&BUILD_HOST, "kernel.threads-max", "192735"));
        assert!(on(&BUILD_HOST, "user.max_user_namespaces", "96367"));
        assert!(on(&BUILD_HOST, "user.max_pid_namespaces", "96367"));
        assert!(!on(&BUILD_HOST, "kernel.threads-max", "4194304"));
        assert!(
            !on(&BUILD_HOST, "user.max_user_namespaces", "0"),
            "disabled by hand"
        );
    }

    #[test]
    fn min_free_kbytes_by_memory_or_by_khugepaged() {
        // THP on: khugepaged's floor for three zones (DMA, DMA32, Normal).
        assert!(on(&BUILD_HOST, "vm.min_free_kbytes", "67584"));
        // THP off: int_sqrt(lowmem * 16), lowmem a little under MemTotal.
        assert!(on(&BUILD_HOST, "vm.min_free_kbytes", "19800"));
        assert!(!on(&BUILD_HOST, "vm.min_free_kbytes", "1048576"));
        assert!(!on(&BUILD_HOST, "vm.min_free_kbytes", "100000"));
        assert_eq!(isqrt(24_683_784 * 16), 19873);
        assert_eq!(isqrt(15), 3);
        assert_eq!(isqrt(16), 4);
    }

    #[test]
    fn tcp_and_udp_memory_are_shares_of_memory() {
        assert!(on(
            &BUILD_HOST,
            "net.ipv4.tcp_mem",
            "287907\t383878\t575814"
        ));
        assert!(on(
            &BUILD_HOST,
            "net.ipv4.udp_mem",
            "575817\t767757\t1151634"
        ));
        assert!(!on(
            &BUILD_HOST,
            "net.ipv4.tcp_mem",
            "287907\t383878\t900000"
        ));
        assert!(!on(
            &BUILD_HOST,
            "net.ipv4.tcp_mem",
            "786432\t1048576\t1572864"
        ));
        assert!(!on(&BUILD_HOST, "net.ipv4.tcp_mem", "1 2"));
    }

    #[test]
    fn tcp_hash_limits_follow_the_established_hash() {
        assert_eq!(ehash(24_683_784 / 4), 262_144);
        assert!(on(&BUILD_HOST, "net.ipv4.tcp_max_orphans", "131072"));
        assert!(on(&BUILD_HOST, "net.ipv4.tcp_max_tw_buckets", "131072"));
        assert!(on(&BUILD_HOST, "net.ipv4.tcp_max_syn_backlog", "2048"));
        assert!(!on(&BUILD_HOST, "net.ipv4.tcp_max_syn_backlog", "8192"));
        assert!(!on(&BUILD_HOST, "net.ipv4.tcp_max_tw_buckets", "2000000"));
        // Past 64 GiB each fourfold of memory halves the buckets per byte.
        assert_eq!(ehash(256 << 18), 524_288);
    }

    #[test]
    fn pid_max_follows_cpus() {
        assert!(on(&BUILD_HOST, "kernel.pid_max", "32768"));
        let big = MachineSize {
            memory_kb: 512 << 20,
            cpus: 128,
        };
        assert!(on(&big, "kernel.pid_max", "131072"));
        assert!(!on(&BUILD_HOST, "kernel.pid_max", "4194304"));
    }

    #[test]
    fn other_keys_and_odd_values_are_not_sized() {
        assert_eq!(computed("net.core.somaxconn", "4096", &BUILD_HOST), None);
        assert_eq!(computed("fs.file-max", "lots", &BUILD_HOST), None);
        assert!(SIZED
            .iter()
            .all(|k| computed(k, "1\t2\t3", &BUILD_HOST) != Some(true)));
    }
}
