//! `package`: a package (deb or rpm, whichever the host's manager takes) installed
//! (optionally pinned and held), absent, or latest; or installed from a package file
//! (.deb or .rpm) shipped in the bundle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::content::Desired;
use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, PlanSlots};
use crate::system::fs::Attrs;
use crate::system::fs::Entry;
use crate::system::packages::{FileHeader, PackageStatus};
use crate::system::{Host, System, SystemError};

/// What a package declaration wants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ensure {
    /// Installed; at exactly this version (and held there) when one is given.
    Installed(Option<String>),
    /// Not installed.
    Absent,
    /// At the candidate version of the configured archives.
    Latest,
    /// Installed from this package file of the bundle, at its version (and held there).
    FromFile(Box<PackageFile>),
}

/// A package file shipped in the bundle, as planning read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageFile {
    /// Where it is in the bundle, for messages: `files/pkgs/tool_0.9-1_all.deb`.
    pub shown: String,
    /// Its bytes, fingerprinted when the plan was built (a changed file is a new plan).
    pub content: Desired,
    /// What its header says it installs; its version as the package manager reports it.
    pub header: FileHeader,
}

/// A managed package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageResource {
    /// Package name.
    pub name: String,
    /// Desired state.
    pub ensure: Ensure,
    /// The deadline of its install, remove and hold when the role sets one; else the
    /// host's.
    pub timeout: Option<Duration>,
}

/// What a package resource finds.
#[derive(Debug)]
pub struct PackageLive {
    status: PackageStatus,
    /// The version apply installs, resolved at observe time so apply installs what check showed.
    target: Option<String>,
}

impl PackageResource {
    /// A version pinned in the role, which converge holds.
    fn pinned(&self) -> bool {
        matches!(
            self.ensure,
            Ensure::Installed(Some(_)) | Ensure::FromFile(_)
        )
    }

    /// Where apply stages the bundle's package file inside the root, in `dir`.
    fn staged(&self, dir: &Path, file: &PackageFile) -> PathBuf {
        let base = self.name.split(':').next().unwrap_or(&self.name);
        dir.join(format!(
            "converge-{base}.{}",
            file.header.format.extension()
        ))
    }

    /// Installs the bundle's package file: copied (checked against the plan's fingerprint
    /// on the way) to where the package manager reads it inside the root, installed, and
    /// the copy removed, with any directory made for it.
    fn install_file(&self, host: &Host, file: &PackageFile) -> Result<(), ResourceError> {
        let packages = host.system().packages();
        let dir = packages.staging_dir();
        let made = make_dirs(host, dir)?;
        let staged = self.staged(dir, file);
        let installed = file
            .content
            .open()
            .map_err(|e| ResourceError::Desired {
                path: PathBuf::from(&file.shown),
                reason: e.to_string(),
            })
            .and_then(|mut bytes| {
                host.write_file_from(&staged, &mut bytes, Attrs::default(), 0o644)?;
                let installed =
                    packages.install_file(host, &self.name, &file.header.version, &staged);
                let removed = host.remove(&staged, false);
                installed?;
                removed.map_err(Into::into)
            });
        let unmade = unmake_dirs(host, &made);
        installed?;
        unmade.map_err(Into::into)
    }

    /// The installed version is not the one to have: apply installs or removes.
    fn moves(&self, live: &PackageLive) -> bool {
        live.status.installed != live.target
    }

    /// A pinned package that is not held yet: apply holds it.
    fn holds(&self, live: &PackageLive) -> bool {
        self.pinned() && !live.status.held
    }
}

/// Makes the directories of `dir` that are missing, outermost first, and returns them.
fn make_dirs(host: &Host, dir: &Path) -> Result<Vec<PathBuf>, SystemError> {
    let mut missing: Vec<&Path> = Vec::new();
    // The root itself is always there.
    for d in dir.ancestors().take_while(|d| d.parent().is_some()) {
        match host.system().entry(d)? {
            Entry::Missing => missing.push(d),
            _ => break,
        }
    }
    let mut made = Vec::new();
    for d in missing.into_iter().rev() {
        host.create_dir(d, Attrs::default())?;
        made.push(d.to_path_buf());
    }
    Ok(made)
}

/// Removes the directories `made` (outermost first), innermost first, up to the first that
/// something else has put a file in since (the package manager's own cache or log), which
/// stays with its parents.
fn unmake_dirs(host: &Host, made: &[PathBuf]) -> Result<(), SystemError> {
    for d in made.iter().rev() {
        match host.remove(d, false) {
            Err(SystemError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::DirectoryNotEmpty =>
            {
                break
            }
            other => other?,
        }
    }
    Ok(())
}

impl Resource for PackageResource {
    type Live = PackageLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Package, self.name.clone())
    }

    /// The files a package installs are the package manager's to track, not this run's.
    fn footprint(&self) -> Footprint<'_> {
        Footprint::no_path()
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<PackageLive, ResourceError> {
        let packages = sys.packages();
        if let Ensure::FromFile(file) = &self.ensure {
            // Before anything else asks the host: a .deb on an rpm host (or an .rpm on an
            // apt host) stops here, with the reason, in check as in apply.
            if let Some(reason) = packages.file_unfit(sys, &file.header)? {
                return Err(ResourceError::PackageFileUnfit {
                    name: self.name.clone(),
                    file: file.shown.clone(),
                    reason,
                });
            }
        }
        let status = packages.status(sys, &self.name)?;
        let target = match &self.ensure {
            Ensure::Absent => None,
            // The file is the version: no archive is asked for it.
            Ensure::FromFile(file) => Some(file.header.version.clone()),
            Ensure::Installed(Some(version)) => {
                let same = |full: &String| packages.same_version(full, version);
                match &status.installed {
                    Some(installed) if same(installed) => Some(installed.clone()),
                    // Checked before anything changes, so a typo fails the run cleanly.
                    _ => {
                        let available = packages.available(sys, &self.name)?;
                        let Some(found) = available.iter().find(|v| same(v)) else {
                            return Err(ResourceError::PackageVersionNotFound {
                                name: self.name.clone(),
                                version: version.clone(),
                                available: if available.is_empty() {
                                    "none".to_owned()
                                } else {
                                    available.join(", ")
                                },
                                words: packages.vocabulary(),
                            });
                        };
                        Some(found.clone())
                    }
                }
            }
            Ensure::Installed(None) if status.installed.is_some() => status.installed.clone(),
            Ensure::Installed(None) | Ensure::Latest => {
                match packages.candidate(sys, &self.name)? {
                    Some(candidate) => {
                        // "latest" only ever upgrades: a newer local build stays.
                        let upgrade = match &status.installed {
                            Some(installed) => packages.is_newer(sys, &candidate, installed)?,
                            None => true,
                        };
                        if !upgrade {
                            status.installed.clone()
                        } else if self.ensure == Ensure::Latest && status.held {
                            return Err(ResourceError::PackageHeld(
                                self.name.clone(),
                                packages.vocabulary(),
                            ));
                        } else {
                            Some(candidate)
                        }
                    }
                    None if status.installed.is_some() => status.installed.clone(),
                    None => {
                        return Err(ResourceError::PackageNotFound(
                            self.name.clone(),
                            packages.vocabulary(),
                        ))
                    }
                }
            }
        };
        Ok(PackageLive { status, target })
    }

    fn diff(&self, live: &PackageLive) -> Option<Change> {
        let installed = &live.status.installed;
        let mut fields = Vec::new();
        if self.moves(live) {
            fields.push(FieldChange::new(
                "version",
                installed.clone(),
                live.target.clone(),
            ));
        }
        if self.holds(live) {
            fields.push(FieldChange::new(
                "hold",
                Some("not held".into()),
                Some("held".into()),
            ));
        }
        if fields.is_empty() {
            return None;
        }
        let action = match (installed, &live.target) {
            (None, _) => Action::Create,
            (Some(_), None) => Action::Remove,
            _ => Action::Update,
        };
        Some(Change::fields(action, fields))
    }

    fn apply(
        &self,
        host: &Host,
        live: &PackageLive,
        _change: &Change,
    ) -> Result<(), ResourceError> {
        let held = live.status.held;
        let packages = host.system().packages();
        let mut timeouts = *host.timeouts();
        if let Some(t) = self.timeout {
            timeouts.package = t;
        }
        let host = &host.with_timeouts(timeouts);
        if self.moves(live) {
            // apt refuses to move a held package; lift our hold for exactly this one change.
            if held {
                packages.hold(host, &self.name, false)?;
            }
            let result = match (&self.ensure, &live.target) {
                (Ensure::FromFile(file), _) => self.install_file(host, file),
                (_, Some(version)) => packages
                    .install(host, &self.name, Some(version))
                    .map_err(Into::into),
                (_, None) => packages.remove(host, &self.name).map_err(Into::into),
            };
            if let Err(e) = result {
                if held {
                    // Best effort: leave the package as it was, held.
                    let _ = packages.hold(host, &self.name, true);
                }
                return Err(e);
            }
        }
        // A pinned package ends held: newly, or again after the move above lifted the hold.
        if self.pinned() {
            packages.hold(host, &self.name, true)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(installed: Option<&str>, held: bool, target: Option<&str>) -> PackageLive {
        PackageLive {
            status: PackageStatus {
                installed: installed.map(Into::into),
                held,
            },
            target: target.map(Into::into),
        }
    }

    fn pinned(v: &str) -> PackageResource {
        PackageResource {
            name: "cfgtest".into(),
            ensure: Ensure::Installed(Some(v.into())),
            timeout: None,
        }
    }

    #[test]
    fn pinned_and_held_is_in_sync() {
        assert_eq!(
            pinned("1.0-1").diff(&live(Some("1.0-1"), true, Some("1.0-1"))),
            None
        );
    }

    #[test]
    fn drifted_version_and_missing_hold_both_show() {
        let c = pinned("1.0-1")
            .diff(&live(Some("2.0-1"), false, Some("1.0-1")))
            .unwrap();
        assert_eq!(c.action, Action::Update);
        assert!(c.touches("version") && c.touches("hold"));
    }

    #[test]
    fn a_package_file_is_pinned_at_its_version_and_held() {
        let p = PackageResource {
            name: "tool".into(),
            ensure: Ensure::FromFile(Box::new(PackageFile {
                shown: "files/pkgs/tool.deb".into(),
                content: Desired::bytes(b"!<arch>\n".to_vec()),
                header: FileHeader {
                    format: crate::system::packages::FileFormat::Deb,
                    name: "tool".into(),
                    version: "0.9-1".into(),
                    arch: "all".into(),
                },
            })),
            timeout: None,
        };
        assert_eq!(p.diff(&live(Some("0.9-1"), true, Some("0.9-1"))), None);
        let c = p.diff(&live(Some("1.0-1"), true, Some("0.9-1"))).unwrap();
        assert_eq!(c.action, Action::Update);
        assert!(c.touches("version") && !c.touches("hold"));
        assert!(p
            .diff(&live(Some("0.9-1"), false, Some("0.9-1")))
            .unwrap()
            .touches("hold"));
    }

    #[test]
    fn absent_removes() {
        let p = PackageResource {
            name: "cfgtest".into(),
            ensure: Ensure::Absent,
            timeout: None,
        };
        assert_eq!(
            p.diff(&live(Some("1.0-1"), false, None)).unwrap().action,
            Action::Remove
        );
        assert_eq!(p.diff(&live(None, false, None)), None);
    }
}
