//! Kernel parameters: live values under /proc/sys, and the sysctl.d files of the tree.
//!
//! Live values always belong to the running kernel, never to a tree under `--root`, so the
//! live accessors refuse to work unless the root is `/`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::fs::Entry;
use super::{Host, System, SystemError};

/// Where the kernel exposes its parameters.
const PROC_SYS: &str = "/proc/sys";

/// Directories systemd-sysctl and `sysctl --system` read, in precedence order: a file name in
/// an earlier directory hides the same name in later ones.
pub(crate) const SYSCTL_DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];

/// Read last by `sysctl --system` (Debian also links it in as /etc/sysctl.d/99-sysctl.conf).
pub(crate) const SYSCTL_CONF: &str = "/etc/sysctl.conf";

/// The /proc/sys file of `key`. As in sysctl.d(5): when the first separator is a '/', the key
/// is a path already (so interface names with dots survive); otherwise dots separate.
pub(crate) fn sysctl_path(key: &str) -> PathBuf {
    let rel = match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key.to_owned(),
        _ => swap_separators(key),
    };
    Path::new(PROC_SYS).join(rel)
}

/// The dotted spelling of `key`, the one ids, conflicts and the drop-in use. As in
/// sysctl.d(5), a dot inside a name (`eth0.100`) is written `/` in the dotted form, so the
/// two spellings convert into each other without loss.
pub(crate) fn dotted_key(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => swap_separators(key),
        _ => key.to_owned(),
    }
}

fn swap_separators(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect()
}

/// `..` resolved lexically, stopping at the root, as a chroot would.
fn normalize_in_root(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// A configuration file of the tree (sysctl.d, tmpfiles.d, udev rules), with the path it is
/// known by and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlFile {
    /// Path inside the tree, e.g. `/etc/sysctl.d/99-local.conf`.
    pub path: PathBuf,
    /// The file's contents.
    pub text: String,
}

impl System {
    /// The live value of `key`, `None` when this kernel (or namespace) has no such key.
    pub(crate) fn read_sysctl(&self, key: &str) -> Result<Option<String>, SystemError> {
        self.require_live(key)?;
        let path = sysctl_path(key);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SystemError::io(&path, e)),
        }
    }

    /// Every sysctl configuration file of the tree in the order they are applied at boot:
    /// `*.conf` collated by file name across [`SYSCTL_DIRS`], then [`SYSCTL_CONF`].
    pub(crate) fn sysctl_files(&self) -> Result<Vec<SysctlFile>, SystemError> {
        self.collated_files(SYSCTL_DIRS, ".conf", &[SYSCTL_CONF])
    }

    /// The configuration files of a systemd-style `dirs` list (sysctl.d, tmpfiles.d, udev
    /// rules) in the order they are read: names ending in `suffix` collated by file name (an
    /// earlier directory hides the same name in later ones), then `last`.
    pub(crate) fn collated_files(
        &self,
        dirs: &[&str],
        suffix: &str,
        last: &[&str],
    ) -> Result<Vec<SysctlFile>, SystemError> {
        let mut by_name: std::collections::BTreeMap<String, PathBuf> = Default::default();
        for dir in dirs {
            let names = match self.list_dir(Path::new(dir)) {
                Ok(names) => names,
                Err(SystemError::Io { source, .. })
                    if matches!(
                        source.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let names = names.into_iter().filter_map(|n| n.into_string().ok());
            for name in names.filter(|n| n.ends_with(suffix)) {
                let path = Path::new(dir).join(&name);
                by_name.entry(name).or_insert(path);
            }
        }
        let mut paths: Vec<PathBuf> = by_name.into_values().collect();
        paths.extend(last.iter().map(PathBuf::from));
        let mut files = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for path in paths {
            // One link hop, resolved inside the tree (Debian's 99-sysctl.conf points at
            // ../sysctl.conf); a link out of the tree or a fifo must not be read or block.
            let target = match self.entry(&path) {
                Ok(Entry::Symlink(t)) => {
                    let dir = path.parent().unwrap_or(Path::new("/"));
                    let joined: PathBuf = dir.join(t).components().collect();
                    normalize_in_root(&joined)
                }
                Ok(Entry::File(_)) => path.clone(),
                _ => continue,
            };
            if !seen.insert(target.clone()) || !matches!(self.entry(&target), Ok(Entry::File(_))) {
                continue;
            }
            match self.read_file(&target) {
                Ok(bytes) => files.push(SysctlFile {
                    path,
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(files)
    }

    fn require_live(&self, key: &str) -> Result<(), SystemError> {
        if self.is_live() {
            Ok(())
        } else {
            Err(SystemError::NotLive(format!("sysctl {key}")))
        }
    }
}

/// What the kernel lets anyone do with a parameter (its mode in /proc/sys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SysctlAccess {
    /// A setting: readable and writable.
    ReadWrite,
    /// Reported by the kernel, not settable.
    ReadOnly,
    /// A trigger: writing it does something, there is nothing to read.
    WriteOnly,
}

/// One kernel parameter as listed by [`System::kernel_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelSetting {
    /// The dotted key, e.g. `net.core.somaxconn`.
    pub key: String,
    /// What can be done with it.
    pub access: SysctlAccess,
    /// The value read (trailing newline removed); `None` when it is write-only or the kernel
    /// refused the read (`stable_secret` before it is set answers EIO).
    pub value: Option<String>,
}

/// Keys whose read does work: reading `vm.stat_refresh` makes every CPU fold its counters.
const READ_TRIGGERS: &[&str] = &["vm.stat_refresh"];

impl System {
    /// Every parameter under /proc/sys of the running kernel, in the namespaces this process
    /// runs in, sorted by key. Always the running kernel, also under `--root`: a tree has none.
    /// binfmt_misc is skipped: it is a filesystem of its own, often an automount.
    pub(crate) fn kernel_settings(&self) -> Result<Vec<KernelSetting>, SystemError> {
        use std::os::unix::fs::MetadataExt;
        let top = Path::new(PROC_SYS);
        let dev = std::fs::metadata(top)
            .map_err(|e| SystemError::io(top, e))?
            .dev();
        let mut out = Vec::new();
        let mut pending = vec![top.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    if meta.dev() == dev && !path.ends_with("fs/binfmt_misc") {
                        pending.push(path);
                    }
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                let Ok(rel) = path.strip_prefix(top) else {
                    continue;
                };
                let key = dotted_key(&rel.to_string_lossy());
                let mode = meta.mode();
                let access = match (mode & 0o400 != 0, mode & 0o200 != 0) {
                    _ if READ_TRIGGERS.contains(&key.as_str()) => SysctlAccess::WriteOnly,
                    (true, true) => SysctlAccess::ReadWrite,
                    (true, false) => SysctlAccess::ReadOnly,
                    (false, _) => SysctlAccess::WriteOnly,
                };
                let value = (access != SysctlAccess::WriteOnly)
                    .then(|| std::fs::read_to_string(&path).ok())
                    .flatten()
                    .map(|v| v.strip_suffix('\n').unwrap_or(&v).to_owned());
                out.push(KernelSetting { key, access, value });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

impl Host<'_> {
    /// Sets the live value of `key` with one write, as sysctl(8) does.
    pub(crate) fn write_sysctl(&self, key: &str, value: &str) -> Result<(), SystemError> {
        self.system().require_live(key)?;
        write_kernel_value(&sysctl_path(key), value)
    }
}

/// Writes `value` to a kernel file (/proc/sys, /sys) in one write, opened as sysctl(8) and
/// `echo VALUE > FILE` open it. The kernel parses the whole buffer at once; the newline is
/// what both send too.
pub(crate) fn write_kernel_value(path: &Path, value: &str) -> Result<(), SystemError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| SystemError::io(path, e))?;
    f.write_all(format!("{value}\n").as_bytes())
        .map_err(|e| SystemError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys_paths() {
        assert_eq!(
            sysctl_path("net.core.somaxconn"),
            Path::new("/proc/sys/net/core/somaxconn")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/rp_filter"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(
            dotted_key("net/ipv4/tcp_syncookies"),
            "net.ipv4.tcp_syncookies"
        );
        assert_eq!(dotted_key("vm.swappiness"), "vm.swappiness");
        // A dot inside a name survives both ways.
        let slashed = "net/ipv4/conf/eth0.100/rp_filter";
        assert_eq!(dotted_key(slashed), "net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(sysctl_path(&dotted_key(slashed)), sysctl_path(slashed));
        assert_eq!(
            sysctl_path(slashed),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
    }

    #[test]
    fn config_files_collate_by_name_and_end_with_sysctl_conf() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["etc/sysctl.d", "usr/lib/sysctl.d"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("etc/sysctl.d/10-a.conf"), "a").unwrap();
        std::fs::write(root.join("usr/lib/sysctl.d/10-a.conf"), "hidden").unwrap();
        std::fs::write(root.join("usr/lib/sysctl.d/05-b.conf"), "b").unwrap();
        std::fs::write(root.join("etc/sysctl.d/README"), "not a conf").unwrap();
        std::fs::write(root.join("etc/sysctl.conf"), "c").unwrap();
        let sys = System::new(root).unwrap();
        let files = sys.sysctl_files().unwrap();
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.path.to_string_lossy().into_owned(), f.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/usr/lib/sysctl.d/05-b.conf".to_owned(), "b"),
                ("/etc/sysctl.d/10-a.conf".to_owned(), "a"),
                ("/etc/sysctl.conf".to_owned(), "c"),
            ]
        );
    }
}
