//! Which modules drive the machine's own devices, as modprobe decides it: every device
//! publishes a modalias (`/sys/devices/**/modalias`), every module declares the aliases it
//! handles (modules.alias of the running release, glob patterns), and a module whose pattern
//! matches a present device's modalias is that device's driver, bound or not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::modules::normalise;

/// Where the kernel lays out its devices, each with a `modalias` file when a module can
/// drive it.
pub(crate) const SYS_DEVICES: &str = "/sys/devices";

/// One device's modalias, with the directory that published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    /// The device's directory under /sys/devices.
    pub path: PathBuf,
    /// What its `modalias` file holds (`pci:v00008086d0000100Esv...`).
    pub modalias: String,
}

/// Every device under `root` that publishes a modalias. Links are not followed: sysfs
/// links every device from its bus and class too, and each device is reached once through
/// /sys/devices itself. An unreadable directory or file is skipped (sysfs has attributes
/// only root may read, and devices come and go while it is walked).
pub(crate) fn devices(root: &Path) -> Vec<Device> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() && entry.file_name() == "modalias" {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    let modalias = text.trim();
                    if !modalias.is_empty() {
                        out.push(Device {
                            path: dir.clone(),
                            modalias: modalias.to_owned(),
                        });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The `alias PATTERN MODULE` lines of modules.alias that belong to one of `modules`
/// (normalised names), as (pattern, module). Other lines are skipped: only the modules in
/// question need matching, and the file has tens of thousands of aliases.
pub(crate) fn aliases_of<'a>(text: &'a str, modules: &BTreeSet<String>) -> Vec<(&'a str, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "alias" {
                return None;
            }
            let pattern = words.next()?;
            let module = normalise(words.next()?);
            modules.contains(&module).then_some((pattern, module))
        })
        .collect()
}

/// Those of `modules` whose alias (from modules.alias `text`) matches one of `devices`,
/// each with the first such device.
pub(crate) fn drivers_of_devices<'a>(
    text: &str,
    modules: &BTreeSet<String>,
    devices: &'a [Device],
) -> BTreeMap<String, &'a Device> {
    let mut out = BTreeMap::new();
    for (pattern, module) in aliases_of(text, modules) {
        if out.contains_key(&module) {
            continue;
        }
        let pattern = pattern.as_bytes();
        if let Some(device) = devices
            .iter()
            .find(|d| fnmatch(pattern, d.modalias.as_bytes()))
        {
            out.insert(module, device);
        }
    }
    out
}

/// Whether `text` matches the glob `pattern` as fnmatch(3) with no flags does, which is how
/// modprobe matches a modalias against an alias: `*` any run of bytes (`/` and a leading
/// `.` included), `?` one byte, `[...]` one byte of a set (ranges, `!` or `^` to negate, a
/// leading `]` literal; an unclosed `[` is itself), `\` takes the next byte literally (and
/// one that ends the pattern matches nothing).
/// POSIX classes (`[:digit:]`) are not read as such: no module alias uses them. Written
/// here rather than taken from a glob crate because those add path rules and `{a,b}`
/// alternatives that would match differently from modprobe.
pub(crate) fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and where in `text` it stopped matching: on a mismatch it takes
    // one more byte and the rest of the pattern is tried again from there.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            p += 1;
            star = Some((p, t));
            continue;
        }
        if let Some(next) = one_byte(pattern, p, text[t]) {
            p = next;
            t += 1;
            continue;
        }
        match star {
            Some((after, from)) => {
                star = Some((after, from + 1));
                p = after;
                t = from + 1;
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*')
}

/// Where the pattern goes on when its element at `p` (anything but `*`) matches byte `c`.
fn one_byte(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'[' => match set(pattern, p + 1, c) {
            Some((found, next)) => found.then_some(next),
            None => (c == b'[').then_some(p + 1),
        },
        // A `\` that ends the pattern escapes nothing: fnmatch then matches nothing.
        b'\\' => (*pattern.get(p + 1)? == c).then_some(p + 2),
        b => (b == c).then_some(p + 1),
    }
}

/// Whether byte `c` is in the set that starts at `p` (just past its `[`), and where the
/// pattern goes on past the closing `]`; `None` when the set is never closed.
fn set(pattern: &[u8], mut p: usize, c: u8) -> Option<(bool, usize)> {
    let negated = matches!(pattern.get(p), Some(b'!' | b'^'));
    if negated {
        p += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let mut lo = *pattern.get(p)?;
        if lo == b']' && !first {
            break;
        }
        first = false;
        if lo == b'\\' {
            p += 1;
            lo = *pattern.get(p)?;
        }
        p += 1;
        let mut hi = lo;
        if pattern.get(p) == Some(&b'-') && !matches!(pattern.get(p + 1), Some(b']') | None) {
            hi = pattern[p + 1];
            p += 2;
        }
        found |= lo <= c && c <= hi;
    }
    Some((found != negated, p + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        fnmatch(pattern.as_bytes(), text.as_bytes())
    }

    #[test]
    fn stars_match_any_run_and_question_marks_one_byte() {
        assert!(m(
            "pci:v00008086d0000100Esv*sd*bc*sc*i*",
            "pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00"
        ));
        assert!(!m(
            "pci:v00008086d0000100Fsv*sd*bc*sc*i*",
            "pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00"
        ));
        assert!(m("*", ""));
        assert!(m("a*", "a"));
        assert!(!m("a*b", "a"));
        assert!(m("*b*b", "abxbyb"));
        assert!(m("a**c", "abbc"));
        assert!(m(
            "cpu:type:x86,ven*fam*mod*:feature:*0099*",
            "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0099,00E5"
        ));
        assert!(!m(
            "cpu:type:x86,ven*fam*mod*:feature:*0098*",
            "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0099"
        ));
        assert!(m(
            "of:N*T*Cfsl,imx6q-pcie",
            "of:NpcieT(null)Cfsl,imx6q-pcie"
        ));
        assert!(m("acpi*:PNP0C0A:*", "acpi:PNP0C0A:"));
        assert!(m("dmi:*/x*", "dmi:a/b/xy"), "* crosses slashes");
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("a?c", "abbc"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abcd", "abc"));
    }

    #[test]
    fn sets_take_ranges_negation_and_escapes() {
        assert!(m(
            "usb:v*p*d*dc*dsc*dp*ic0[0-9]*",
            "usb:v1p2d3dc0dsc0dp0ic07isc"
        ));
        assert!(!m(
            "usb:v*p*d*dc*dsc*dp*ic0[0-9]*",
            "usb:v1p2d3dc0dsc0dp0ic0Aisc"
        ));
        assert!(m("x[!0-9]", "xA"));
        assert!(!m("x[!0-9]", "x5"));
        assert!(m("x[^0-9]", "xA"));
        assert!(m("x[]a]", "x]"));
        assert!(m("x[a-]", "x-"));
        assert!(m("x[ab]y", "xby"));
        assert!(!m("x[ab]y", "xcy"));
        assert!(m("x[", "x["), "an unclosed set is a literal [");
        assert!(!m("x[", "xa"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("x[\\]]", "x]"));
        assert!(
            !m("a\\", "a\\"),
            "a trailing \\ escapes nothing and matches nothing"
        );
        assert!(!m("*\\", "a\\"));
    }

    #[test]
    fn only_the_aliases_of_the_modules_in_question_are_read() {
        let text = "# Aliases extracted from modules themselves.\n\
                    alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n\
                    alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio-net\n\
                    alias net-pf-16-proto-16-family-wireguard wireguard\n\
                    alias fs-btrfs btrfs\n";
        let wanted = BTreeSet::from(["virtio_net".to_owned(), "wireguard".to_owned()]);
        assert_eq!(
            aliases_of(text, &wanted),
            [
                (
                    "pci:v00001AF4d00001000sv*sd*bc*sc*i*",
                    "virtio_net".to_owned()
                ),
                (
                    "net-pf-16-proto-16-family-wireguard",
                    "wireguard".to_owned()
                ),
            ]
        );
        let devices = [
            Device {
                path: "/sys/devices/pci0000:00/0000:00:03.0".into(),
                modalias: "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".into(),
            },
            Device {
                path: "/sys/devices/pci0000:00/0000:00:04.0".into(),
                modalias: "pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00".into(),
            },
        ];
        let wanted = BTreeSet::from([
            "virtio_net".to_owned(),
            "wireguard".to_owned(),
            "btrfs".to_owned(),
        ]);
        let found = drivers_of_devices(text, &wanted, &devices);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found["virtio_net"], &devices[0]);
    }

    #[test]
    fn devices_are_found_at_any_depth_without_following_links() {
        let sys = tempfile::tempdir().unwrap();
        let nic = sys.path().join("pci0000:00/0000:00:03.0");
        std::fs::create_dir_all(nic.join("virtio0/net/eth0")).unwrap();
        std::fs::write(nic.join("modalias"), "pci:v00001AF4d00001000\n").unwrap();
        std::fs::write(nic.join("virtio0/modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        std::fs::write(nic.join("virtio0/net/eth0/modalias"), "\n").unwrap();
        std::os::unix::fs::symlink(&nic, sys.path().join("pci0000:00/link")).unwrap();
        let found = devices(sys.path());
        assert_eq!(
            found,
            [
                Device {
                    path: nic.clone(),
                    modalias: "pci:v00001AF4d00001000".into()
                },
                Device {
                    path: nic.join("virtio0"),
                    modalias: "virtio:d00000001v00001AF4".into()
                },
            ]
        );
    }
}
