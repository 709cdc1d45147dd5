//! The service manager seam: what `service` resources and notifications ask of whatever
//! runs services on the host. systemd ([`super::systemd`]) is the one backend today; another
//! (OpenRC, runit) is one added file implementing [`ServiceManager`].

use std::fmt;
use std::path::Path;

use super::{Host, System, SystemError};

/// What the service manager says about one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    /// `loaded`, `not-found`, `masked`, `bad-setting`...; offline only `loaded` or `not-found`.
    pub load: String,
    /// `active`, `inactive`, `failed`, `activating`...; `None` offline, where nothing runs.
    pub active: Option<String>,
    /// `enabled`, `disabled`, `masked`, `static`...; empty when there is no unit file.
    pub file_state: String,
    /// The main process, when one runs.
    pub main_pid: Option<u32>,
}

impl UnitStatus {
    /// Whether the manager knows no unit file of this name.
    pub(crate) fn not_found(&self) -> bool {
        self.load == "not-found"
    }

    /// Enabled at boot: `Some(true/false)`, or `None` for states that enable/disable cannot
    /// change (static units without an [Install] section, generated and transient units).
    pub fn enabled(&self) -> Option<bool> {
        match self.file_state.as_str() {
            "enabled" | "enabled-runtime" | "alias" => Some(true),
            "static" | "indirect" | "generated" | "transient" => None,
            _ => Some(false),
        }
    }

    /// Masked, at runtime or for good.
    pub fn masked(&self) -> bool {
        self.load == "masked" || self.file_state.starts_with("masked")
    }

    /// Running (or on its way there, or reloading); `None` offline, where nothing runs.
    pub fn running(&self) -> Option<bool> {
        let active = self.active.as_deref()?;
        Some(matches!(active, "active" | "activating" | "reloading"))
    }
}

/// What can be asked of the service manager about one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitVerb {
    /// Start it now.
    Start,
    /// Stop it now.
    Stop,
    /// Restart it if it runs (never starts a stopped unit).
    TryRestart,
    /// Restart it, starting it when it is not running (a failed restart left it down).
    Restart,
    /// Reload its configuration.
    Reload,
    /// Start it at boot.
    Enable,
    /// Do not start it at boot.
    Disable,
    /// Make it impossible to start.
    Mask,
    /// Undo a mask.
    Unmask,
}

impl UnitVerb {
    /// The verb as systemctl spells it (and as logs and messages show it).
    pub fn as_str(self) -> &'static str {
        match self {
            UnitVerb::Start => "start",
            UnitVerb::Stop => "stop",
            UnitVerb::TryRestart => "try-restart",
            UnitVerb::Restart => "restart",
            UnitVerb::Reload => "reload",
            UnitVerb::Enable => "enable",
            UnitVerb::Disable => "disable",
            UnitVerb::Mask => "mask",
            UnitVerb::Unmask => "unmask",
        }
    }

    /// Whether it acts on the running manager rather than on unit files.
    pub(crate) fn needs_running_system(self) -> bool {
        matches!(
            self,
            UnitVerb::Start
                | UnitVerb::Stop
                | UnitVerb::TryRestart
                | UnitVerb::Restart
                | UnitVerb::Reload
        )
    }
}

/// A service manager. Reads get the [`System`] (root, limits); changes get the writing
/// [`Host`], which only the engine can obtain, in apply mode.
pub trait ServiceManager: fmt::Debug + Send + Sync {
    /// Whether units run on `sys` (a booted manager), rather than only unit files in a tree:
    /// run states, restarts and reloads only mean something when they do.
    fn runs_units(&self, sys: &System) -> bool;
    /// The state of `unit` (a full name such as `nginx.service`). Never changes anything.
    fn status(&self, sys: &System, unit: &str) -> Result<UnitStatus, SystemError>;
    /// Whether a file at `path` is a unit definition the manager must reread before it acts
    /// on the change.
    fn is_definition(&self, path: &Path) -> bool;
    /// Does `verb` to `unit`.
    fn act(&self, host: &Host, verb: UnitVerb, unit: &str) -> Result<(), SystemError>;
    /// Makes the running manager reread changed definitions.
    fn reload_definitions(&self, host: &Host) -> Result<(), SystemError>;
    /// Every unit file with its enablement and preset, sorted by name, plus each unit's
    /// active state when units run (see [`ServiceManager::runs_units`]).
    fn unit_files(&self, sys: &System) -> Result<Vec<UnitFile>, SystemError>;
}

/// One unit file as a service manager lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// Full unit name, e.g. `ssh.service`.
    pub name: String,
    /// `enabled`, `disabled`, `masked`, `static`, `alias`...
    pub state: String,
    /// What the distribution's presets say (`enabled`/`disabled`), when they say anything.
    pub preset: Option<String>,
    /// `active`, `inactive`, `failed`...; only when units run.
    pub active: Option<String>,
}
