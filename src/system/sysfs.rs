//! Kernel attributes under /sys: finding the files a key names (globs over device names),
//! reading them in the kernel's own formats, writing them, and which disks the host has.
//!
//! Like sysctl values, /sys belongs to the running kernel, never to a tree under `--root`:
//! the live accessors refuse to work unless the root is `/`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Host, System, SystemError};

/// Where the kernel exposes its attributes.
pub(crate) const SYS: &str = "/sys";

/// Directories systemd-tmpfiles reads, in precedence order (a name in an earlier one hides
/// the same name in later ones).
pub(crate) const TMPFILES_DIRS: &[&str] = &[
    "/etc/tmpfiles.d",
    "/run/tmpfiles.d",
    "/usr/local/lib/tmpfiles.d",
    "/usr/lib/tmpfiles.d",
];

/// Directories udev reads rules from, in precedence order.
pub(crate) const UDEV_DIRS: &[&str] = &[
    "/etc/udev/rules.d",
    "/run/udev/rules.d",
    "/usr/local/lib/udev/rules.d",
    "/usr/lib/udev/rules.d",
    "/lib/udev/rules.d",
];

/// Whether a path component is a glob rather than a name.
pub(crate) fn is_glob(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// One attribute file a key matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute {
    /// The path under /sys, e.g. `block/vda/queue/scheduler`.
    pub rel: String,
    /// Whether it is a regular file its owner may write (sysfs marks settings 0644 and
    /// reports 0444).
    pub writable: bool,
}

/// The value an attribute holds, read the way the kernel writes it: a choice list such as
/// `always madvise [never]` means `never`; anything else is its whitespace-split tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrValue {
    /// The selected choice, or the tokens joined by one space.
    pub value: String,
    /// Every choice the kernel offers, for a choice list.
    pub choices: Option<Vec<String>>,
}

/// Parses what an attribute file reads back.
pub(crate) fn parse_value(raw: &str) -> AttrValue {
    let tokens: Vec<&str> = raw.split_whitespace().collect();
    let selected = tokens
        .iter()
        .find_map(|t| t.strip_prefix('[').and_then(|t| t.strip_suffix(']')));
    match selected {
        Some(s) => AttrValue {
            value: s.to_owned(),
            choices: Some(
                tokens
                    .iter()
                    .map(|t| t.trim_start_matches('[').trim_end_matches(']').to_owned())
                    .collect(),
            ),
        },
        None => AttrValue {
            value: tokens.join(" "),
            choices: None,
        },
    }
}

fn require_live(sys: &System, what: &str) -> Result<(), SystemError> {
    if sys.is_live() {
        Ok(())
    } else {
        Err(SystemError::NotLive(format!("sysfs {what}")))
    }
}

/// The file of `rel` under /sys.
pub(crate) fn sys_path(rel: &str) -> PathBuf {
    Path::new(SYS).join(rel)
}

impl System {
    /// The attribute files `key` (relative to /sys, globs allowed) names now, sorted; empty
    /// when a glob matches nothing or a fixed path is missing.
    pub(crate) fn sysfs_attributes(&self, key: &str) -> Result<Vec<Attribute>, SystemError> {
        require_live(self, key)?;
        let mut found = vec![String::new()];
        for part in key.split('/') {
            let mut next = Vec::new();
            for prefix in &found {
                let join = |name: &str| {
                    if prefix.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{prefix}/{name}")
                    }
                };
                if !is_glob(part) {
                    next.push(join(part));
                    continue;
                }
                let matcher = globset::GlobBuilder::new(part)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| {
                        SystemError::io(
                            Path::new(key),
                            io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
                        )
                    })?
                    .compile_matcher();
                let dir = sys_path(prefix);
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) => continue,
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => continue,
                    Err(e) => return Err(SystemError::io(&dir, e)),
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| matcher.is_match(n))
                    .collect();
                names.sort();
                next.extend(names.iter().map(|n| join(n)));
            }
            found = next;
        }
        let mut out = Vec::new();
        for rel in found {
            let path = sys_path(&rel);
            // Device directories are links into /sys/devices: followed, as the kernel means.
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SystemError::io(&path, e)),
            };
            let writable = meta.is_file() && meta.permissions().mode() & 0o200 != 0;
            out.push(Attribute { rel, writable });
        }
        Ok(out)
    }

    /// The value of the attribute at `rel` under /sys.
    pub(crate) fn read_sysfs(&self, rel: &str) -> Result<AttrValue, SystemError> {
        require_live(self, rel)?;
        let path = sys_path(rel);
        let text = std::fs::read_to_string(&path).map_err(|e| SystemError::io(&path, e))?;
        Ok(parse_value(&text))
    }
}

/// The value of the running kernel's attribute at `rel` under /sys, whatever tree is
/// converged (a snapshot records the running kernel's, as it does its sysctl values);
/// `None` when this kernel has none or refuses the read.
pub(crate) fn running_kernel_attribute(rel: &str) -> Option<AttrValue> {
    let text = std::fs::read_to_string(sys_path(rel)).ok()?;
    Some(parse_value(&text))
}

/// The running machine's physical whole disks (those with a `device`: not loop, ram, zram,
/// dm or md), by kernel name, and the one holding `/` (through dm and md to a disk under
/// them).
pub(crate) fn running_kernel_disks() -> Result<(Vec<String>, Option<String>), SystemError> {
    let block = sys_path("block");
    let entries = match std::fs::read_dir(&block) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(SystemError::io(&block, e)),
    };
    let mut disks: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| block.join(n).join("device").exists())
        .collect();
    disks.sort();
    let root = root_disk(&disks);
    Ok((disks, root))
}

/// The physical disk under the device that holds `/`, if it is one of `disks`.
fn root_disk(disks: &[String]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let node = sys_path(&format!("dev/block/{major}:{minor}"))
        .canonicalize()
        .ok()?;
    disk_under(&node, disks, 0)
}

/// The disk `node` (a block device directory) is, or is a partition of, or is built on.
fn disk_under(node: &Path, disks: &[String], depth: usize) -> Option<String> {
    let whole = if node.join("partition").exists() {
        node.parent()?
    } else {
        node
    };
    let name = whole.file_name()?.to_string_lossy().into_owned();
    if disks.contains(&name) {
        return Some(name);
    }
    // dm and md devices list what they are built on in slaves/; a loop stops at a depth.
    if depth > 8 {
        return None;
    }
    let mut under: Vec<PathBuf> = std::fs::read_dir(whole.join("slaves"))
        .ok()?
        .flatten()
        .filter_map(|e| e.path().canonicalize().ok())
        .collect();
    under.sort();
    under.iter().find_map(|u| disk_under(u, disks, depth + 1))
}

impl Host<'_> {
    /// Sets the attribute at `rel` under /sys with one write, as `echo VALUE > FILE` does.
    pub(crate) fn write_sysfs(&self, rel: &str, value: &str) -> Result<(), SystemError> {
        require_live(self.system(), rel)?;
        super::procfs::write_kernel_value(&sys_path(rel), value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_lists_read_as_their_selection() {
        let v = parse_value("always madvise [never]\n");
        assert_eq!(v.value, "never");
        assert_eq!(
            v.choices.unwrap(),
            ["always", "madvise", "never"].map(String::from)
        );
        assert_eq!(parse_value("[mq-deadline] none\n").value, "mq-deadline");
        let plain = parse_value("128\n");
        assert_eq!(plain.value, "128");
        assert_eq!(plain.choices, None);
        assert_eq!(parse_value("0-3\t5\n").value, "0-3 5");
    }
}
