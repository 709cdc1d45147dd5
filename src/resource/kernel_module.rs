//! `kernel_module`: whether the running kernel has a module loaded. What holds at boot is
//! two files of the module's own, planned as ordinary file resources next to it (so diffs,
//! backups and rollback are the file path's): a modules-load.d entry that loads it, and a
//! modprobe.d file with its options, or the blacklist that keeps it out.

use std::path::PathBuf;

use super::{
    Action, Change, FieldChange, Footprint, Kind, PlanSlots, Resource, ResourceError, ResourceId,
};
use crate::system::modules::MAX_NAME;
use crate::system::{Host, System, SystemError};

/// Whether the module is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ModuleEnsure {
    /// Loaded now and at boot.
    Loaded,
    /// Unloaded now and blacklisted.
    Absent,
}

/// One kernel module's live state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelModuleResource {
    /// The name as the kernel lists it (`-` written `_`).
    pub name: String,
    /// Loaded or absent.
    pub ensure: ModuleEnsure,
    /// The options its modprobe.d file gives it, as written.
    pub options: Option<String>,
}

/// What a kernel module resource finds.
#[derive(Debug, PartialEq, Eq)]
pub enum ModuleLive {
    /// Converging a tree under `--root`: the running kernel is not the tree's.
    NotManaged,
    /// Built into the kernel: always there, never loaded or unloaded.
    Builtin,
    /// In /proc/modules.
    Loaded,
    /// Neither loaded nor built in.
    NotLoaded,
}

/// Why a module could not be had as the role wants it.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// `ensure = "absent"` on a module the kernel has built in.
    #[error("kernel module '{0}' is built into this kernel (modules.builtin): it cannot be unloaded or blacklisted; ensure = \"absent\" needs a kernel that has it as a module")]
    Builtin(String),
    /// `ensure = "absent"` on a module something still uses.
    #[error("kernel module '{name}' is in use ({}, refcount {refcount}): unload {} first, or declare {} absent too; nothing was changed",
        if users.is_empty() { "by no module: a device, mount or process holds it".to_owned() } else { format!("used by {}", users.join(", ")) },
        if users.is_empty() { "what holds it" } else { "those" },
        if users.is_empty() { "it" } else { "them" })]
    InUse {
        /// The module.
        name: String,
        /// The modules that use it.
        users: Vec<String>,
        /// The kernel's reference count.
        refcount: u32,
    },
    /// `ensure = "absent"` on a module loaded for good.
    #[error("kernel module '{0}' is permanent (it has no exit function): it cannot be unloaded until reboot; nothing was changed")]
    Permanent(String),
    /// modprobe could not load it (not built for this kernel, a bad option...).
    #[error("kernel module '{name}' cannot be loaded: {reason}")]
    LoadFailed {
        /// The module.
        name: String,
        /// What modprobe said.
        reason: String,
    },
    /// modprobe -r could not unload it.
    #[error("kernel module '{name}' cannot be unloaded: {reason}")]
    UnloadFailed {
        /// The module.
        name: String,
        /// What modprobe said.
        reason: String,
    },
    /// modprobe succeeded but /proc/modules says otherwise.
    #[error("kernel module '{name}': modprobe succeeded but the module is {} /proc/modules (an `install` or `remove` rule in modprobe.d may run something else instead)",
        if *loaded { "still in" } else { "not in" })]
    NotKept {
        /// The module.
        name: String,
        /// Whether it is loaded after the change.
        loaded: bool,
    },
}

impl ModuleError {
    /// A stable name for the JSON report.
    pub fn kind(&self) -> &'static str {
        match self {
            ModuleError::Builtin(_) => "module_builtin",
            ModuleError::InUse { .. } => "module_in_use",
            ModuleError::Permanent(_) => "module_permanent",
            ModuleError::LoadFailed { .. } => "module_load_failed",
            ModuleError::UnloadFailed { .. } => "module_unload_failed",
            ModuleError::NotKept { .. } => "module_not_kept",
        }
    }
}

/// The modules-load.d file that loads `name` at boot.
pub(crate) fn load_file(name: &str) -> PathBuf {
    PathBuf::from(format!("/etc/modules-load.d/converge-{name}.conf"))
}

/// The modprobe.d file with `name`'s options or blacklist.
pub(crate) fn modprobe_file(name: &str) -> PathBuf {
    PathBuf::from(format!("/etc/modprobe.d/converge-{name}.conf"))
}

const HEADER: &str =
    "# Managed by converge from the roles' [[kernel_module]]; local edits are lost.\n";

/// The modules-load.d file's text.
pub(crate) fn load_text(name: &str) -> String {
    format!("{HEADER}{name}\n")
}

/// The modprobe.d file's text for an absent module: `blacklist` keeps udev and aliases from
/// loading it, and the `install` rule stops a load by name too (what Debian admins write).
pub(crate) fn blacklist_text(name: &str) -> String {
    format!("{HEADER}blacklist {name}\ninstall {name} /bin/false\n")
}

/// The modprobe.d file's text for a loaded module with options.
pub(crate) fn options_text(name: &str, options: &str) -> String {
    format!("{HEADER}options {name} {options}\n")
}

/// `text` for a message: control characters escaped, so a newline cannot fake a line.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Why `name` is not a module name, if it is not.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid kernel module name '{}': expected letters, digits, '_' and '-', at most {MAX_NAME} characters, e.g. \"br_netfilter\"",
            shown(name)
        ))
    }
}

/// Why `options` cannot go on a modprobe.d `options` line, if it cannot.
pub(crate) fn check_options(options: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid options '{}': {why}; expected space-separated PARAM=VALUE, e.g. \"nf_conntrack_helper=1 hashsize=65536\"",
            shown(options)
        ))
    };
    if options.trim().is_empty() {
        return bad("empty");
    }
    if options.contains(['\n', '\r']) {
        return bad("it must be on one line");
    }
    for word in options.split_whitespace() {
        let (param, value) = word.split_once('=').unwrap_or((word, ""));
        if param.is_empty()
            || !param
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad(&format!("'{}' is not a parameter name", shown(param)));
        }
        if value
            .chars()
            .any(|c| c.is_control() || matches!(c, '#' | '"' | '\'' | '\\'))
        {
            return bad(&format!(
                "the value of '{param}' holds a quote, '#', '\\' or a control character"
            ));
        }
    }
    Ok(())
}

impl Resource for KernelModuleResource {
    type Live = ModuleLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::KernelModule, self.name.clone())
    }

    fn footprint(&self) -> Footprint<'_> {
        // Its files (modprobe.d, modules-load.d) are file resources of their own.
        Footprint::no_path()
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<ModuleLive, ResourceError> {
        if !sys.is_live() {
            return Ok(ModuleLive::NotManaged);
        }
        if sys.builtin_modules()?.contains(&self.name) {
            return match self.ensure {
                ModuleEnsure::Loaded => Ok(ModuleLive::Builtin),
                ModuleEnsure::Absent => Err(ModuleError::Builtin(self.name.clone()).into()),
            };
        }
        let Some(m) = sys.loaded_modules()?.remove(&self.name) else {
            return Ok(ModuleLive::NotLoaded);
        };
        // Refused before anything changes: modprobe -r would fail anyway, and the blacklist
        // must not be written for a module that stays.
        if self.ensure == ModuleEnsure::Absent && m.permanent {
            return Err(ModuleError::Permanent(self.name.clone()).into());
        }
        if self.ensure == ModuleEnsure::Absent && (m.refcount > 0 || !m.users.is_empty()) {
            return Err(ModuleError::InUse {
                name: self.name.clone(),
                users: m.users,
                refcount: m.refcount,
            }
            .into());
        }
        Ok(ModuleLive::Loaded)
    }

    fn diff(&self, live: &ModuleLive) -> Option<Change> {
        let (action, before, after) = match (self.ensure, live) {
            (ModuleEnsure::Loaded, ModuleLive::NotLoaded) => {
                (Action::Create, "not loaded", "loaded")
            }
            (ModuleEnsure::Absent, ModuleLive::Loaded) => (Action::Remove, "loaded", "not loaded"),
            _ => return None,
        };
        Some(Change::fields(
            action,
            vec![FieldChange::new(
                "state",
                Some(before.to_owned()),
                Some(after.to_owned()),
            )],
        ))
    }

    fn apply(
        &self,
        host: &Host,
        _live: &ModuleLive,
        _change: &Change,
    ) -> Result<(), ResourceError> {
        let load = self.ensure == ModuleEnsure::Loaded;
        let name = self.name.clone();
        if let Err(e) = host.set_module_loaded(&self.name, load) {
            let reason = match e {
                SystemError::Command { stderr, status, .. } if stderr.is_empty() => {
                    format!("modprobe {status}")
                }
                SystemError::Command { stderr, .. } => stderr,
                other => return Err(other.into()),
            };
            return Err(if load {
                ModuleError::LoadFailed { name, reason }
            } else {
                ModuleError::UnloadFailed { name, reason }
            }
            .into());
        }
        // An `install` rule may have run something else: believe the kernel, not the exit code.
        let sys = host.system();
        let loaded = sys.loaded_modules()?.contains_key(&self.name);
        if loaded != load {
            return Err(ModuleError::NotKept { name, loaded }.into());
        }
        Ok(())
    }

    fn notes(&self, sys: &System) -> Vec<String> {
        if !sys.is_live() {
            let boot = match self.ensure {
                ModuleEnsure::Loaded => {
                    format!("{} loads it at boot", load_file(&self.name).display())
                }
                ModuleEnsure::Absent => format!(
                    "the blacklist in {} keeps it out at boot",
                    modprobe_file(&self.name).display()
                ),
            };
            return vec![format!(
                "not loaded or unloaded under --root: converge cannot load a module into a tree; {boot}"
            )];
        }
        let builtin = sys.builtin_modules().is_ok_and(|b| b.contains(&self.name));
        if !builtin || self.ensure != ModuleEnsure::Loaded {
            return Vec::new();
        }
        let mut note = format!(
            "{} is built into the kernel (modules.builtin): always loaded",
            self.name
        );
        if self.options.is_some() {
            note.push_str(&format!(
                "; modprobe.d options do not reach a built-in module, set them on the kernel command line ({}.PARAM=VALUE)",
                self.name
            ));
        }
        vec![note]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(ensure: ModuleEnsure) -> KernelModuleResource {
        KernelModuleResource {
            name: "br_netfilter".into(),
            ensure,
            options: None,
        }
    }

    #[test]
    fn diff_loads_what_is_missing_and_removes_what_is_unwanted() {
        let loaded = module(ModuleEnsure::Loaded);
        let c = loaded.diff(&ModuleLive::NotLoaded).unwrap();
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.fields[0].before.as_deref(), Some("not loaded"));
        assert_eq!(c.fields[0].after.as_deref(), Some("loaded"));
        for in_sync in [
            ModuleLive::Loaded,
            ModuleLive::Builtin,
            ModuleLive::NotManaged,
        ] {
            assert_eq!(loaded.diff(&in_sync), None);
        }
        let absent = module(ModuleEnsure::Absent);
        assert_eq!(
            absent.diff(&ModuleLive::Loaded).unwrap().action,
            Action::Remove
        );
        assert_eq!(absent.diff(&ModuleLive::NotLoaded), None);
        assert_eq!(absent.diff(&ModuleLive::NotManaged), None);
    }

    #[test]
    fn names_and_options_are_checked() {
        assert!(check_name("br_netfilter").is_ok());
        assert!(check_name("dm-mod").is_ok());
        for bad in ["", "a b", "../x", "x.ko", "ä", &"x".repeat(56)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_options("nf_conntrack_helper=1 hashsize=65536").is_ok());
        assert!(check_options("debug").is_ok());
        for bad in ["", "a=1\nb=2", "=1", "a=\"x y\"", "a=1 # c", "x;y=1"] {
            assert!(check_options(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn in_use_errors_name_the_users() {
        let e = ModuleError::InUse {
            name: "bridge".into(),
            users: vec!["br_netfilter".into()],
            refcount: 1,
        };
        assert_eq!(
            e.to_string(),
            "kernel module 'bridge' is in use (used by br_netfilter, refcount 1): unload those first, or declare them absent too; nothing was changed"
        );
    }
}
