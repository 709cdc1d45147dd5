//! Runtime kernel state beyond sysctl: why a loaded module is there when no admin loaded it,
//! the namespace's nftables ruleset, and the kernel command line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::system::modalias;
use crate::system::modules::LoadedModule;
use crate::system::System;

/// Where the kernel lists each module's drivers (`/sys/module/NAME/drivers/BUS:DRIVER`).
const SYS_MODULE: &str = "/sys/module";

/// Where the machine's module files are, for [`implied_modules`].
pub(super) struct KernelFiles<'a> {
    /// `/sys/module`: each module's bound drivers.
    pub sys_module: &'a Path,
    /// `/sys/devices`: each device's modalias.
    pub sys_devices: &'a Path,
    /// modules.alias of the running release.
    pub alias_list: &'a Path,
}

/// The loaded modules no admin loaded by hand, with why: a driver of this machine's own
/// hardware (it registered a driver, or one of its aliases matches a device present here,
/// bound to it or not: two modules may claim one device), or a module another loaded
/// module needs. Hardware differs between machines and is not tuning; a dependency comes
/// with what needs it. Decided here, on the machine that has the devices: compare sees
/// two machines' snapshots and neither one's devices.
pub(super) fn implied_modules(
    loaded: &BTreeMap<String, LoadedModule>,
    files: &KernelFiles,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut unexplained = BTreeSet::new();
    for (name, module) in loaded {
        let drivers = drivers_of(&files.sys_module.join(name).join("drivers"));
        if !drivers.is_empty() {
            out.insert(
                name.clone(),
                format!(
                    "a driver of this machine's hardware ({})",
                    drivers.join(", ")
                ),
            );
        } else if !module.users.is_empty() {
            out.insert(
                name.clone(),
                format!("needed by {}", module.users.join(", ")),
            );
        } else {
            unexplained.insert(name.clone());
        }
    }
    // Only what the cheaper tests left open is matched: the alias list is long and a host
    // has hundreds of devices.
    if unexplained.is_empty() {
        return out;
    }
    let aliases = match std::fs::read_to_string(files.alias_list) {
        Ok(text) => text,
        Err(e) => {
            tracing::info!(file = %files.alias_list.display(), error = %e,
                "snapshot: no module aliases, so modules are told to be hardware only by a bound driver");
            return out;
        }
    };
    let devices = modalias::devices(files.sys_devices);
    for (name, device) in modalias::drivers_of_devices(&aliases, &unexplained, &devices) {
        out.insert(
            name,
            format!(
                "a driver of this machine's hardware (its alias matches {})",
                device.path.display()
            ),
        );
    }
    out
}

fn drivers_of(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// [`implied_modules`] of the running kernel.
pub(super) fn observe_implied(loaded: &BTreeMap<String, LoadedModule>) -> BTreeMap<String, String> {
    let alias_list = crate::system::modules::alias_list();
    let files = KernelFiles {
        sys_module: Path::new(SYS_MODULE),
        sys_devices: Path::new(modalias::SYS_DEVICES),
        alias_list: &alias_list,
    };
    implied_modules(loaded, &files)
}

/// The ruleset of the namespace converge runs in, table by table (`FAMILY/NAME` → the
/// table's body as `nft -s list ruleset` prints it); `None` when it cannot be read (no nft,
/// or no right to list it): compare then leaves nftables out rather than report it empty.
pub(super) fn observe_nftables(sys: &System) -> Option<BTreeMap<String, String>> {
    let mut cmd = crate::system::command::tool("nft");
    cmd.args(["-s", "list", "ruleset"]);
    match crate::system::command::run(&mut cmd, sys.timeouts().firewall) {
        Ok(text) => Some(parse_ruleset(&text)),
        Err(e) => {
            tracing::info!(error = %e, "snapshot: the nftables ruleset is not recorded");
            None
        }
    }
}

/// Splits `nft list ruleset` output into tables: `table FAMILY NAME {` up to its closing
/// `}` at the start of a line.
pub(crate) fn parse_ruleset(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        match &mut current {
            None => {
                let words: Vec<&str> = line.split_whitespace().collect();
                if let ["table", family, name, "{"] = words.as_slice() {
                    current = Some((format!("{family}/{name}"), String::new()));
                }
            }
            Some((id, body)) => {
                if line == "}" {
                    out.insert(std::mem::take(id), std::mem::take(body));
                    current = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    out
}

/// The running kernel's command line (also under `--root`: a tree boots nothing).
pub(super) fn observe_cmdline() -> Option<String> {
    std::fs::read_to_string("/proc/cmdline")
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_drivers_and_dependencies_are_not_loaded_by_hand() {
        let sys = tempfile::tempdir().unwrap();
        let module = sys.path().join("module");
        std::fs::create_dir_all(module.join("virtio_net/drivers/virtio:virtio_net")).unwrap();
        std::fs::create_dir_all(module.join("br_netfilter")).unwrap();
        std::fs::create_dir_all(module.join("bridge")).unwrap();
        // e1000e claims the NIC, but another driver holds it: still this machine's hardware.
        let nic = sys.path().join("devices/pci0000:00/0000:00:19.0");
        std::fs::create_dir_all(&nic).unwrap();
        std::fs::write(
            nic.join("modalias"),
            "pci:v00008086d000015B8sv000017AAsd00002251bc02sc00i00\n",
        )
        .unwrap();
        let alias_list = sys.path().join("modules.alias");
        std::fs::write(
            &alias_list,
            "alias pci:v00008086d000015B8sv*sd*bc*sc*i* e1000e\n\
             alias pci:v00008086d000015B7sv*sd*bc*sc*i* e1000e\n\
             alias pci:v000010ECd00008168sv*sd*bc*sc*i* r8169\n\
             alias net-pf-16-proto-16-family-wireguard wireguard\n",
        )
        .unwrap();
        let loaded = crate::system::modules::parse_proc_modules(
            "virtio_net 73728 0 - Live 0x0\nbr_netfilter 36864 0 - Live 0x0\nbridge 421888 1 br_netfilter, Live 0x0\nwireguard 114688 0 - Live 0x0\ne1000e 356352 0 - Live 0x0\nr8169 110592 0 - Live 0x0\n",
        );
        let files = KernelFiles {
            sys_module: &module,
            sys_devices: &sys.path().join("devices"),
            alias_list: &alias_list,
        };
        let implied = implied_modules(&loaded, &files);
        assert_eq!(
            implied,
            BTreeMap::from([
                ("bridge".to_owned(), "needed by br_netfilter".to_owned()),
                (
                    "e1000e".to_owned(),
                    format!(
                        "a driver of this machine's hardware (its alias matches {})",
                        nic.display()
                    )
                ),
                (
                    "virtio_net".to_owned(),
                    "a driver of this machine's hardware (virtio:virtio_net)".to_owned()
                ),
            ])
        );
        // Without a modules.alias only the bound drivers are known.
        let files = KernelFiles {
            alias_list: &sys.path().join("missing"),
            ..files
        };
        let implied = implied_modules(&loaded, &files);
        assert_eq!(implied.keys().collect::<Vec<_>>(), ["bridge", "virtio_net"]);
    }

    #[test]
    fn a_ruleset_splits_into_tables() {
        let text = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\ntable ip nat {\n}\n";
        let tables = parse_ruleset(text);
        assert_eq!(
            tables["inet/filter"],
            "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n"
        );
        assert_eq!(tables["ip/nat"], "");
        assert_eq!(tables.len(), 2);
    }
}
