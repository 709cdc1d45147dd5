//! Kernel modules: what the running kernel has loaded (/proc/modules), what it has built in
//! (modules.builtin of the running release), and `modprobe` to load and unload them.
//!
//! Like sysctl values, loaded modules belong to the running kernel, never to a tree under
//! `--root`: the live accessors refuse to work unless the root is `/`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::command::{failed, output, tool};
use super::process::DEFAULT_PATH;
use super::{Host, System, SystemError};

/// Where the kernel lists its loaded modules.
pub(crate) const PROC_MODULES: &str = "/proc/modules";

/// The longest module name the kernel keeps (`MODULE_NAME_LEN` is 64 with the NUL, less the
/// 8 bytes of an `unsigned long`).
pub(crate) const MAX_NAME: usize = 55;

/// One line of /proc/modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadedModule {
    /// How many references hold it (modules using it, open devices, mounts...).
    pub refcount: u32,
    /// The modules that use it, the kernel's "used by" column.
    pub users: Vec<String>,
    /// Loaded for good: it has no exit function, so it cannot be unloaded.
    pub permanent: bool,
}

/// The kernel's spelling of a module name: `-` and `_` are the same to it, and it lists
/// every module with `_`.
pub(crate) fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses /proc/modules: `name size refcount users state address`, users `-` or `a,b,`.
pub(crate) fn parse_proc_modules(text: &str) -> BTreeMap<String, LoadedModule> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let name = cols.next()?;
            let _size = cols.next()?;
            let refcount = cols.next()?.parse().unwrap_or(0);
            let list = cols.next().unwrap_or("-");
            // `[permanent],` and `[unsafe],` are markers in the users column, not modules.
            let users = list
                .split(',')
                .filter(|u| !u.is_empty() && *u != "-" && !u.starts_with('['))
                .map(normalise)
                .collect();
            let permanent = list.contains("[permanent]");
            let module = LoadedModule {
                refcount,
                users,
                permanent,
            };
            Some((normalise(name), module))
        })
        .collect()
}

/// Parses modules.builtin: one `kernel/.../name.ko` path a line.
pub(crate) fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let file = line.trim().rsplit('/').next()?;
            let name = file.strip_suffix(".ko").unwrap_or(file);
            (!name.is_empty()).then(|| normalise(name))
        })
        .collect()
}

/// The module files of the running kernel's release (`/lib/modules/RELEASE`).
fn release_dir() -> PathBuf {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

/// modules.builtin of the running kernel's release.
pub(crate) fn builtin_list() -> PathBuf {
    release_dir().join("modules.builtin")
}

/// modules.alias of the running kernel's release: the device patterns each module drives.
/// Read as text; depmod's modules.alias.bin holds the same in a trie.
pub(crate) fn alias_list() -> PathBuf {
    release_dir().join("modules.alias")
}

/// The modules the running kernel has loaded, whatever tree is converged (a snapshot of a
/// tree records the running kernel's, as it does its sysctl values).
pub(crate) fn running_kernel_modules() -> Result<BTreeMap<String, LoadedModule>, SystemError> {
    match std::fs::read_to_string(PROC_MODULES) {
        Ok(text) => Ok(parse_proc_modules(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(SystemError::io(Path::new(PROC_MODULES), e)),
    }
}

fn require_live(sys: &System) -> Result<(), SystemError> {
    if sys.is_live() {
        Ok(())
    } else {
        Err(SystemError::NotLive("kernel modules".into()))
    }
}

impl System {
    /// The modules the running kernel has loaded, by normalised name. A kernel built
    /// without module support has no /proc/modules: nothing is loaded.
    pub(crate) fn loaded_modules(&self) -> Result<BTreeMap<String, LoadedModule>, SystemError> {
        require_live(self)?;
        running_kernel_modules()
    }

    /// The modules built into the running kernel, by normalised name; empty when its
    /// modules.builtin is missing (no modules installed for this release).
    pub(crate) fn builtin_modules(&self) -> Result<BTreeSet<String>, SystemError> {
        require_live(self)?;
        let path = builtin_list();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(parse_builtin(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(e) => Err(SystemError::io(&path, e)),
        }
    }
}

impl System {
    /// For a rollback: what would change to have `name` loaded (or not) as it was, `None`
    /// when it is already, or under `--root` (a tree's kernel is not running).
    pub(crate) fn module_differs(
        &self,
        name: &str,
        loaded: bool,
    ) -> Result<Option<String>, SystemError> {
        if !self.is_live() {
            return Ok(None);
        }
        let now = self.loaded_modules()?.contains_key(name);
        let state = |l| if l { "loaded" } else { "not loaded" };
        Ok((now != loaded).then(|| format!("state: {} → {}", state(now), state(loaded))))
    }
}

impl Host<'_> {
    /// Loads or unloads `name` (a rollback putting back what was).
    pub(crate) fn set_module_loaded(&self, name: &str, loaded: bool) -> Result<(), SystemError> {
        if loaded {
            self.load_module(name)
        } else {
            self.unload_module(name)
        }
    }

    /// `modprobe NAME`: loads it with its dependencies and the options of modprobe.d.
    pub(crate) fn load_module(&self, name: &str) -> Result<(), SystemError> {
        self.modprobe(&[name])
    }

    /// `modprobe -r NAME`: unloads it, and the modules it pulled in that nothing else uses.
    pub(crate) fn unload_module(&self, name: &str) -> Result<(), SystemError> {
        self.modprobe(&["-r", name])
    }

    fn modprobe(&self, args: &[&str]) -> Result<(), SystemError> {
        require_live(self.system())?;
        let mut cmd = tool("modprobe");
        // Found where an admin's own shell would find it, not on the agent's PATH.
        cmd.env("PATH", DEFAULT_PATH).args(args);
        let out = output(&mut cmd, self.timeouts().module)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failed(&cmd, &out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_modules_lines_give_refcount_and_users() {
        let got = parse_proc_modules(
            "br_netfilter 32768 0 - Live 0x0000000000000000\n\
             bridge 311296 1 br_netfilter, Live 0x0000000000000000\n\
             nf_conntrack 172032 3 nf_nat,xt_conntrack,nf-tables, Live 0x0000000000000000 (E)\n\
             ipv6 540672 0 [permanent], Live 0x0000000000000000\n",
        );
        assert!(got["ipv6"].permanent && got["ipv6"].users.is_empty());
        assert!(!got["bridge"].permanent);
        assert_eq!(got["br_netfilter"].users, Vec::<String>::new());
        assert_eq!(got["bridge"].refcount, 1);
        assert_eq!(got["bridge"].users, ["br_netfilter"]);
        assert_eq!(
            got["nf_conntrack"].users,
            ["nf_nat", "xt_conntrack", "nf_tables"]
        );
    }

    #[test]
    fn builtin_paths_give_normalised_names() {
        let got = parse_builtin("kernel/net/ipv4/tcp_bbr.ko\nkernel/drivers/md/dm-mod.ko\n\n");
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            ["dm_mod".to_owned(), "tcp_bbr".to_owned()]
        );
    }
}
