//! The two files converge owns to keep `[sysfs]` values across reboots: a tmpfiles.d file
//! (`w` lines, written by systemd-tmpfiles at boot) for fixed attributes, and a udev rule
//! file for device attributes, which udev applies at boot and to every device that appears
//! later. Each is a file resource underneath (atomic write, unified diff, backups), plus a
//! warning when a file read after it sets a managed attribute to something else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::FileResource;
use super::sysctl_conf::{BootFileLive, Override};
use super::sysfs::{check_key, KeyShape};
use super::sysfs_glob::overlap;
use super::{Change, Footprint, PlanSlots, Resource, ResourceError, ResourceId};
use crate::system::procfs::SysctlFile;
use crate::system::sysfs::{sys_path, TMPFILES_DIRS, UDEV_DIRS};
use crate::system::{Host, System};

/// Where fixed attributes are kept for boot. Of two tmpfiles.d lines for one path the file
/// whose name sorts first wins (systemd-tmpfiles ignores the later one as a duplicate), so
/// the name sorts before the usual ones.
pub(crate) const TMPFILES: &str = "/etc/tmpfiles.d/00-converge-sysfs.conf";

/// Where device attributes are kept for boot and for devices plugged in later. udev runs
/// every matching rule in file-name order, so a later assignment wins.
pub(crate) const UDEV_RULES: &str = "/etc/udev/rules.d/90-converge-sysfs.rules";

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BootFile {
    /// tmpfiles.d `w` lines.
    Tmpfiles,
    /// udev `ATTR{}` assignments.
    Udev,
}

/// One of the boot files, holding every key of its shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SysfsBootResource {
    /// Which file.
    pub format: BootFile,
    /// Key → value, sorted by key.
    pub entries: BTreeMap<String, String>,
    file: FileResource,
}

const HEADER: &str =
    "# Managed by converge from the roles' [sysfs] tables; written whole, local edits are lost.\n";

impl SysfsBootResource {
    /// The file of `format` for `entries` (keys already checked).
    pub fn new(format: BootFile, entries: BTreeMap<String, String>) -> SysfsBootResource {
        let (path, text) = match format {
            BootFile::Tmpfiles => (TMPFILES, tmpfiles_text(&entries)),
            BootFile::Udev => (UDEV_RULES, udev_text(&entries)),
        };
        let file = FileResource::system(PathBuf::from(path), text);
        SysfsBootResource {
            format,
            entries,
            file,
        }
    }
}

/// `w /sys/KEY - - - - VALUE` lines: systemd-tmpfiles writes each at boot (globs expanded).
fn tmpfiles_text(entries: &BTreeMap<String, String>) -> String {
    let mut out = format!(
        "{HEADER}# systemd-tmpfiles writes them at boot; of two files writing one path, the one sorting first wins.\n"
    );
    for (k, v) in entries {
        out.push_str(&format!("w {} - - - - {v}\n", sys_path(k).display()));
    }
    out
}

/// One rule a line: on add and change of a matching device, set the attribute.
fn udev_text(entries: &BTreeMap<String, String>) -> String {
    let mut out = format!(
        "{HEADER}# udev applies them at boot and to each matching device that appears; a later rule setting the same attribute wins.\n"
    );
    for (k, v) in entries {
        let Some((subsystem, name, attr)) = device(k) else {
            continue;
        };
        // Partitions share a block disk's name pattern but have no queue.
        let disk = if subsystem == "block" {
            "ENV{DEVTYPE}==\"disk\", "
        } else {
            ""
        };
        out.push_str(&format!(
            "ACTION==\"add|change\", SUBSYSTEM==\"{subsystem}\", {disk}KERNEL==\"{name}\", ATTR{{{attr}}}=\"{v}\"\n"
        ));
    }
    out
}

/// The udev subsystem, device name (or glob) and attribute of a device key.
fn device(key: &str) -> Option<(&'static str, String, String)> {
    match check_key(key) {
        Ok(KeyShape::Device {
            subsystem,
            name,
            attr,
        }) => Some((subsystem, name, attr)),
        _ => None,
    }
}

/// `w` lines of other files that write a managed attribute with another value and win:
/// systemd-tmpfiles keeps the first line of a path in file-name order and ignores later
/// duplicates, so an earlier file's line of the same path wins; a glob and a path it
/// matches are two lines that both run, so either may.
fn tmpfiles_overrides(
    files: &[SysctlFile],
    ours: &Path,
    entries: &BTreeMap<String, String>,
) -> Vec<Override> {
    let our_name = ours.file_name().unwrap_or_default();
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.path != ours) {
        let earlier = f.path.file_name().is_some_and(|n| n < our_name);
        for line in f.text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [kind, path, _, _, _, _, value @ ..] = fields.as_slice() else {
                continue;
            };
            if kind.trim_end_matches(['+', '!', '-', '=', '~', '^']) != "w" {
                continue;
            }
            let value = value.join(" ");
            for (k, want) in entries {
                let mine = sys_path(k).display().to_string();
                let wins = if earlier {
                    overlap(path, &mine)
                } else {
                    *path != mine && overlap(path, &mine)
                };
                if wins && !same_tokens(&value, want) {
                    out.push(Override {
                        key: k.clone(),
                        value: value.clone(),
                        file: f.path.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Rules of files read after `ours` that assign a managed device attribute another value.
fn udev_overrides(
    files: &[SysctlFile],
    ours: &Path,
    entries: &BTreeMap<String, String>,
) -> Vec<Override> {
    let mut out = Vec::new();
    for f in later(files, ours) {
        for rule in rules(&f.text) {
            let pairs = udev_pairs(&rule);
            let get = |key: &str| {
                pairs
                    .iter()
                    .find(|(k, op, _)| *k == key && *op == "==")
                    .map(|(_, _, v)| v.as_str())
            };
            for (k, want) in entries {
                let Some((subsystem, name, attr)) = device(k) else {
                    continue;
                };
                let attr_key = format!("ATTR{{{attr}}}");
                let Some((_, _, value)) = pairs
                    .iter()
                    .find(|(key, op, _)| *key == attr_key && matches!(*op, "=" | ":="))
                else {
                    continue;
                };
                let same_subsystem =
                    get("SUBSYSTEM").is_none_or(|s| s.split('|').any(|s| s == subsystem));
                let same_device =
                    get("KERNEL").is_none_or(|p| p.split('|').any(|p| overlap(p, &name)));
                if same_subsystem && same_device && !same_tokens(value, want) {
                    out.push(Override {
                        key: k.clone(),
                        value: value.clone(),
                        file: f.path.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The files after `ours` in boot order (by name: the collated order).
fn later<'f>(files: &'f [SysctlFile], ours: &Path) -> impl Iterator<Item = &'f SysctlFile> {
    let our_name = ours.file_name().unwrap_or_default().to_owned();
    files
        .iter()
        .filter(move |f| f.path.file_name().is_some_and(|n| n > our_name.as_os_str()))
}

fn same_tokens(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// The rules of a udev file: comments dropped, `\`-continued lines joined.
fn rules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(line);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

/// `KEY OP "VALUE"` pairs of one rule, e.g. `("ATTR{queue/scheduler}", "=", "bfq")`.
fn udev_pairs(rule: &str) -> Vec<(String, &str, String)> {
    let mut out = Vec::new();
    let mut rest = rule;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let Some(op_at) = rest.find(['=', '!', '+', '-', ':']) else {
            break;
        };
        let key = rest[..op_at].trim().to_owned();
        let after = &rest[op_at..];
        let op_len = after.find('"').unwrap_or(after.len());
        let op = after[..op_len].trim();
        let Some(body) = after.get(op_len + 1..) else {
            break;
        };
        let Some(end) = body.find('"') else {
            break;
        };
        out.push((key, op, body[..end].to_owned()));
        rest = &body[end + 1..];
    }
    out
}

impl Resource for SysfsBootResource {
    type Live = BootFileLive;

    fn id(&self) -> ResourceId {
        Resource::id(&self.file)
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint::keeps(&self.file.path, &self.file.managed_ancestor)
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<BootFileLive, ResourceError> {
        let file = self.file.observe(sys)?;
        let overrides = match self.format {
            BootFile::Tmpfiles => {
                let files = sys.collated_files(TMPFILES_DIRS, ".conf", &[])?;
                tmpfiles_overrides(&files, &self.file.path, &self.entries)
            }
            BootFile::Udev => {
                let files = sys.collated_files(UDEV_DIRS, ".rules", &[])?;
                udev_overrides(&files, &self.file.path, &self.entries)
            }
        };
        let ours = self.file.path.display();
        Ok(BootFileLive::new(
            sys,
            file,
            &overrides,
            |o| {
                format!(
                    "{} sets {} to {} besides {ours}; that value wins at boot",
                    o.file.display(),
                    o.key,
                    o.value
                )
            },
            |o| {
                format!(
                    "{} sets {} to {} at boot, overriding this file",
                    o.file.display(),
                    o.key,
                    o.value
                )
            },
        ))
    }

    fn diff(&self, live: &BootFileLive) -> Option<Change> {
        live.diff(&self.file)
    }

    fn apply(
        &self,
        host: &Host,
        live: &BootFileLive,
        change: &Change,
    ) -> Result<(), ResourceError> {
        live.apply(&self.file, host, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(path: &str, text: &str) -> SysctlFile {
        SysctlFile {
            path: PathBuf::from(path),
            text: text.into(),
        }
    }

    #[test]
    fn renders_tmpfiles_lines_and_udev_rules() {
        let text = tmpfiles_text(&entries(&[(
            "kernel/mm/transparent_hugepage/enabled",
            "never",
        )]));
        assert!(text.ends_with("w /sys/kernel/mm/transparent_hugepage/enabled - - - - never\n"));
        let text = udev_text(&entries(&[
            ("block/nvme*/queue/scheduler", "mq-deadline"),
            ("class/net/eth*/tx_queue_len", "10000"),
        ]));
        let body: Vec<_> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                r#"ACTION=="add|change", SUBSYSTEM=="block", ENV{DEVTYPE}=="disk", KERNEL=="nvme*", ATTR{queue/scheduler}="mq-deadline""#,
                r#"ACTION=="add|change", SUBSYSTEM=="net", KERNEL=="eth*", ATTR{tx_queue_len}="10000""#,
            ]
        );
    }

    #[test]
    fn later_files_setting_a_managed_attribute_override() {
        let want = entries(&[("kernel/mm/transparent_hugepage/enabled", "never")]);
        let files = [
            file("/usr/lib/tmpfiles.d/0-thp.conf", "w- /sys/kernel/mm/transparent_hugepage/enabled - - - - always\nw /sys/kernel/mm/transparent_hugepage/defrag - - - - never\n"),
            file("/etc/tmpfiles.d/00-aaa.conf", "w /sys/kernel/mm/transparent_hugepage/enabled - - - - never\n"),
            file(TMPFILES, "w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise\n"),
            file("/etc/tmpfiles.d/thp.conf", "w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise\n"),
            file("/etc/tmpfiles.d/zz.conf", "w /sys/kernel/mm/transparent_hugepage/* - - - - always\n"),
        ];
        let got: Vec<_> = tmpfiles_overrides(&files, Path::new(TMPFILES), &want)
            .into_iter()
            .map(|o| format!("{}:{}", o.file.display(), o.value))
            .collect();
        assert_eq!(
            got,
            [
                "/usr/lib/tmpfiles.d/0-thp.conf:always",
                "/etc/tmpfiles.d/zz.conf:always"
            ]
        );

        let want = entries(&[("block/nvme*/queue/scheduler", "mq-deadline")]);
        let files = [
            file("/lib/udev/rules.d/60-block-scheduler.rules", "SUBSYSTEM==\"block\", KERNEL==\"nvme*\", ATTR{queue/scheduler}=\"none\"\n"),
            file("/etc/udev/rules.d/95-local.rules", "# c\nACTION==\"add\", SUBSYSTEM==\"block\", \\\n  KERNEL==\"sd*|nvme0n1\", ATTR{queue/scheduler}=\"bfq\"\nKERNEL==\"sd*\", ATTR{queue/scheduler}=\"kyber\"\nSUBSYSTEM==\"net\", ATTR{queue/scheduler}=\"x\"\n"),
        ];
        let got: Vec<_> = udev_overrides(&files, Path::new(UDEV_RULES), &want)
            .into_iter()
            .map(|o| format!("{}:{}", o.file.display(), o.value))
            .collect();
        assert_eq!(got, ["/etc/udev/rules.d/95-local.rules:bfq"]);
    }
}
