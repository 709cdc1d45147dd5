//! An in-memory service and package manager for unit tests of the engine: the units and
//! packages a test declares, a log of every change asked for, and failures on demand. Files
//! still go to a real temp dir; only what would need root or a booted systemd is faked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::packages::{InstalledPackage, PackageManager, PackageStatus};
use super::services::{ServiceManager, UnitFile, UnitStatus, UnitVerb};
use super::{Host, System, SystemError};

/// A fake host's managers; clones share one state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fake {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    units: BTreeMap<String, UnitStatus>,
    packages: BTreeMap<String, PackageStatus>,
    log: Vec<String>,
    /// Actions (`start web.service`) that fail.
    failing: BTreeSet<String>,
}

impl Fake {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("a test thread panicked")
    }

    /// Adds a unit `name.service` in `active` state whose unit file is `file_state`.
    pub fn unit(self, name: &str, active: &str, file_state: &str) -> Fake {
        self.state().units.insert(
            format!("{name}.service"),
            UnitStatus {
                load: "loaded".into(),
                active: Some(active.into()),
                file_state: file_state.into(),
                main_pid: None,
            },
        );
        self
    }

    /// Makes `action` (as logged, e.g. `start web.service`) fail from now on.
    pub fn failing(self, action: &str) -> Fake {
        self.state().failing.insert(action.into());
        self
    }

    /// Lets `action` succeed again.
    pub(crate) fn heal(&self, action: &str) {
        self.state().failing.remove(action);
    }

    /// Every change asked for so far, in order; the log starts empty again.
    pub(crate) fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.state().log)
    }

    /// A system over the real directory `root` whose services and packages are this fake.
    pub fn system(&self, root: &Path) -> System {
        System::with_managers(root, Box::new(self.clone()), Box::new(self.clone()))
            .expect("a usable temp dir")
    }

    fn record(&self, action: String) -> Result<(), SystemError> {
        let mut state = self.state();
        let fails = state.failing.contains(&action);
        state.log.push(action.clone());
        if fails {
            return Err(SystemError::Command {
                command: action,
                status: "exit status: 1".into(),
                stderr: "failed on purpose".into(),
            });
        }
        Ok(())
    }
}

impl ServiceManager for Fake {
    fn runs_units(&self, _sys: &System) -> bool {
        true
    }

    fn status(&self, _sys: &System, unit: &str) -> Result<UnitStatus, SystemError> {
        Ok(self.state().units.get(unit).cloned().unwrap_or(UnitStatus {
            load: "not-found".into(),
            active: Some("inactive".into()),
            file_state: String::new(),
            main_pid: None,
        }))
    }

    fn is_definition(&self, path: &Path) -> bool {
        super::systemd::is_unit_path(path)
    }

    fn act(&self, _host: &Host, verb: UnitVerb, unit: &str) -> Result<(), SystemError> {
        self.record(format!("{} {unit}", verb.as_str()))?;
        if let Some(st) = self.state().units.get_mut(unit) {
            match verb {
                UnitVerb::Start | UnitVerb::Restart => st.active = Some("active".into()),
                UnitVerb::Stop => st.active = Some("inactive".into()),
                UnitVerb::Enable => st.file_state = "enabled".into(),
                UnitVerb::Disable => st.file_state = "disabled".into(),
                UnitVerb::Mask => st.file_state = "masked".into(),
                UnitVerb::Unmask => st.file_state = "disabled".into(),
                UnitVerb::TryRestart | UnitVerb::Reload => {}
            }
        }
        Ok(())
    }

    fn reload_definitions(&self, _host: &Host) -> Result<(), SystemError> {
        self.record("daemon-reload".into())
    }

    fn unit_files(&self, _sys: &System) -> Result<Vec<UnitFile>, SystemError> {
        Ok(self
            .state()
            .units
            .iter()
            .filter(|(_, st)| !st.not_found())
            .map(|(name, st)| UnitFile {
                name: name.clone(),
                state: st.file_state.clone(),
                preset: None,
                active: st.active.clone(),
            })
            .collect())
    }
}

impl PackageManager for Fake {
    fn vocabulary(&self) -> super::packages::Vocabulary {
        super::packages::Vocabulary {
            sources: "the archives",
            refresh_hint: "is its source configured?",
            holds_hint: "the fake's holds",
        }
    }

    fn status(&self, _sys: &System, name: &str) -> Result<PackageStatus, SystemError> {
        Ok(self
            .state()
            .packages
            .get(name)
            .cloned()
            .unwrap_or(PackageStatus {
                installed: None,
                held: false,
            }))
    }

    fn available(&self, _sys: &System, _name: &str) -> Result<Vec<String>, SystemError> {
        Ok(vec!["1.0-1".into()])
    }

    fn candidate(&self, _sys: &System, _name: &str) -> Result<Option<String>, SystemError> {
        Ok(Some("1.0-1".into()))
    }

    fn is_newer(&self, _sys: &System, a: &str, b: &str) -> Result<bool, SystemError> {
        Ok(a > b)
    }

    fn install(&self, _host: &Host, name: &str, version: Option<&str>) -> Result<(), SystemError> {
        let version = version.unwrap_or("1.0-1");
        self.record(format!("install {name}={version}"))?;
        let mut state = self.state();
        let p = state.packages.entry(name.into()).or_insert(PackageStatus {
            installed: None,
            held: false,
        });
        p.installed = Some(version.into());
        Ok(())
    }

    fn file_unfit(
        &self,
        _sys: &System,
        _file: &super::packages::FileHeader,
    ) -> Result<Option<String>, SystemError> {
        Ok(None)
    }

    fn staging_dir(&self) -> &'static Path {
        Path::new("/var/cache/apt/archives")
    }

    fn install_file(
        &self,
        host: &Host,
        name: &str,
        version: &str,
        file: &Path,
    ) -> Result<(), SystemError> {
        self.record(format!("install {}", file.display()))?;
        self.install(host, name, Some(version))
    }

    fn remove(&self, _host: &Host, name: &str) -> Result<(), SystemError> {
        self.record(format!("remove {name}"))?;
        self.state().packages.remove(name);
        Ok(())
    }

    fn hold(&self, _host: &Host, name: &str, hold: bool) -> Result<(), SystemError> {
        self.record(format!("{} {name}", if hold { "hold" } else { "unhold" }))?;
        if let Some(p) = self.state().packages.get_mut(name) {
            p.held = hold;
        }
        Ok(())
    }

    /// A fake host has no sources to ask: nothing is known.
    fn offered(
        &self,
        _sys: &System,
        _packages: &[(&str, &str)],
    ) -> Result<BTreeMap<String, bool>, SystemError> {
        Ok(BTreeMap::new())
    }

    fn installed(&self, _sys: &System) -> Result<Vec<InstalledPackage>, SystemError> {
        Ok(self
            .state()
            .packages
            .iter()
            .filter_map(|(name, st)| {
                Some(InstalledPackage {
                    name: name.clone(),
                    arch: "all".into(),
                    version: st.installed.clone()?,
                    held: st.held,
                    manual: true,
                    conffiles: Vec::new(),
                })
            })
            .collect())
    }

    fn file_owners(
        &self,
        _sys: &System,
        _prefix: &Path,
    ) -> Result<BTreeMap<std::path::PathBuf, String>, SystemError> {
        Ok(BTreeMap::new())
    }
}
