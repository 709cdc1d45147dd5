//! Undoing a run: every recorded change put back, newest first, then the services it had
//! restarted or reloaded acted on again, so they run the old configuration, then its health
//! checks probed again.

mod nftables;
mod since;

use std::path::Path;

use crate::health::HealthCheck;
pub use crate::history::Recorded;
use crate::history::{HistoryError, PathState, Prior, RunBlobs, ServiceAction};
use crate::report::rollback::{Restore, RestoreStatus, Rollback, ServiceRestore};
use crate::report::NotifyAction;
use crate::system::fs::{Attrs, Entry};
use crate::system::services::UnitVerb;
use crate::system::{Host, System, SystemError};
use since::{Look, Since};

/// Why one change could not be undone.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    /// The host refused.
    #[error(transparent)]
    System(#[from] SystemError),
    /// The run's kept copy is unreadable or does not verify: never put back.
    #[error("not restored: {0}")]
    Backup(#[from] HistoryError),
}

impl RestoreError {
    fn kind(&self) -> &'static str {
        match self {
            RestoreError::System(e) => e.kind(),
            RestoreError::Backup(HistoryError::CorruptBlob { .. }) => "corrupt_backup",
            RestoreError::Backup(_) => "backup_unreadable",
        }
    }
}

/// Undoes the run `rec` (its changes in reverse) on the host, repeats `services`' actions,
/// then runs the `health` checks. A path changed since the run is restored too, once what
/// stands there is kept in the run's history (the report says where); a caller that must
/// refuse such paths asks [`preview`] first. A rollback is an apply of the recorded past,
/// so it is the one other place that gets a writing handle.
pub fn undo(
    sys: &System,
    rec: Recorded,
    reason: String,
    services: &[ServiceAction],
    health: &[HealthCheck],
) -> Rollback {
    let applying = crate::system::Applying::by_the_engine();
    let host = &sys.host(&applying);
    let manager = sys.services();
    let restored: Vec<Restore> = since::survey(sys, &rec, false)
        .into_iter()
        .map(|look| {
            let restored = restore_one(host, &look, rec.blobs);
            crate::durable::crash::point("restored");
            restored
        })
        .collect();
    let units_changed = rec.priors.iter().any(|p| match p {
        Prior::Path { path, .. } => manager.is_definition(path),
        _ => false,
    });
    let mut service_results = Vec::new();
    let mut acted = None;
    if manager.runs_units(sys) {
        if units_changed {
            if let Err(e) = manager.reload_definitions(host) {
                tracing::warn!(error = %e, "daemon-reload after restoring unit files failed");
            }
        }
        for s in services {
            // Every unit here ran before the run (notifications act only on running units),
            // and one whose restart failed is down: a restart brings it back either way.
            let verb = match s.action {
                NotifyAction::Reload => UnitVerb::Reload,
                NotifyAction::Restart => UnitVerb::Restart,
            };
            let failed = manager.act(host, verb, &s.unit).err();
            service_results.push(ServiceRestore {
                unit: s.unit.clone(),
                action: s.action,
                error_kind: failed.as_ref().map(SystemError::kind),
                error: failed.map(|e| e.to_string()),
            });
            acted = Some(std::time::Instant::now());
        }
    }
    Rollback {
        run: rec.run.to_owned(),
        reason,
        preview: false,
        already_rolled_back: false,
        restored,
        services: service_results,
        // After the restarts and reloads, as in a run: they see the services as left.
        health: crate::health::run_all(
            health,
            sys,
            crate::health::After {
                acted,
                changed: true,
            },
        ),
    }
}

/// What undoing `rec` would do, without doing it, with the diff of each file it restores.
/// A path changed since the run is `refused`, or with `force` restored once what stands
/// there is kept.
pub fn preview(sys: &System, rec: Recorded, force: bool) -> Rollback {
    let restored = since::survey(sys, &rec, true)
        .into_iter()
        .map(|look| {
            let (status, note, error_kind) = match (look.prior, look.differs) {
                (Prior::NotRestorable { why, .. }, _) => {
                    (RestoreStatus::NotRolledBack, Some(why.clone()), None)
                }
                (_, Ok(None)) => (RestoreStatus::Unchanged, None, None),
                (_, Err(e)) => (RestoreStatus::Failed, Some(e.to_string()), Some(e.kind())),
                (_, Ok(Some(what))) => match &look.since {
                    Since::Changed(how) if !force => (
                        RestoreStatus::Refused,
                        Some(format!(
                            "changed since the run ({how}); --force restores it and keeps what is there now in the run's history"
                        )),
                        None,
                    ),
                    Since::Changed(how) => (
                        RestoreStatus::Restored,
                        Some(format!(
                            "{what}; changed since the run ({how}): what is there now is kept first"
                        )),
                        None,
                    ),
                    Since::Unknown => (
                        RestoreStatus::Restored,
                        Some(format!("{what}; {UNKNOWN}: what is there now is kept first")),
                        None,
                    ),
                    Since::AsLeft => (RestoreStatus::Restored, Some(what), None),
                },
            };
            Restore {
                resource: look.prior.resource().to_owned(),
                status,
                note,
                error_kind,
                content: look.content,
            }
        })
        .collect();
    Rollback {
        run: rec.run.to_owned(),
        reason: "by hand".into(),
        preview: true,
        already_rolled_back: false,
        restored,
        services: Vec::new(),
        health: Vec::new(),
    }
}

const UNKNOWN: &str = "the run's record does not say what it left there";

fn restore_one(host: &Host, look: &Look, blobs: &RunBlobs) -> Restore {
    let prior = look.prior;
    let resource = prior.resource().to_owned();
    let done = |status, note: Option<String>| Restore {
        resource: resource.clone(),
        status,
        note,
        error_kind: None,
        content: None,
    };
    let failed = |e: RestoreError| Restore {
        error_kind: Some(e.kind()),
        ..done(RestoreStatus::Failed, Some(e.to_string()))
    };
    if let Prior::NotRestorable { why, .. } = prior {
        return done(RestoreStatus::NotRolledBack, Some(why.clone()));
    }
    // Looked at again: a newer change of the run undone just before may have put back
    // what this one changed.
    match differs(host.system(), prior, blobs) {
        Ok(None) => return done(RestoreStatus::Unchanged, None),
        Ok(Some(_)) => {}
        Err(e) => return failed(e),
    }
    let mut notes = Vec::new();
    if look.since != Since::AsLeft {
        let why = match &look.since {
            Since::Changed(how) => format!("changed since the run ({how})"),
            _ => UNKNOWN.to_owned(),
        };
        let kept = match prior {
            Prior::Path { path, was, .. } => {
                since::keep(host.system(), &resource, path, was, blobs).map(Vec::from_iter)
            }
            // A kernel value needs no copy: the note names it.
            _ => since::keep_live(host.system(), prior, blobs),
        };
        match kept {
            Ok(at) if at.is_empty() => {
                if !matches!(prior, Prior::Path { .. }) {
                    notes.push(format!("{why}: restored over it"));
                }
            }
            Ok(at) => {
                let at: Vec<String> = at.iter().map(|p| p.display().to_string()).collect();
                notes.push(format!(
                    "{why}: what was there is kept in {}",
                    at.join(", ")
                ));
            }
            Err(e) => {
                let note =
                    format!("{why}, and what is there cannot be kept, so it is not restored: {e}");
                return Restore {
                    error_kind: Some(e.kind()),
                    ..done(RestoreStatus::Failed, Some(note))
                };
            }
        }
    }
    let result: Result<(), RestoreError> = match prior {
        Prior::Path { path, was, .. } => restore_path(host, path, was, blobs, &mut notes),
        Prior::Sysctl { key, value, .. } => {
            if !host.system().is_live() {
                notes.push("live values are not managed under --root".into());
                Ok(())
            } else {
                host.write_sysctl(key, value).map_err(Into::into)
            }
        }
        Prior::Package {
            name,
            version,
            held,
            ..
        } => match restore_package(host, name, version.as_deref(), *held) {
            // A package version gone from the archives is "not rolled back", not a failure
            // of the rollback machinery.
            Ok(Some(gone)) => return done(RestoreStatus::NotRolledBack, Some(gone)),
            other => other.map(drop).map_err(Into::into),
        },
        Prior::Service {
            unit,
            enabled,
            masked,
            running,
            ..
        } => restore_service(host, unit, *enabled, *masked, *running).map_err(Into::into),
        Prior::Nftables { .. } => nftables::restore(host, prior, blobs, &mut notes),
        Prior::KernelModule { name, loaded, .. } => {
            host.set_module_loaded(name, *loaded).map_err(Into::into)
        }
        Prior::Sysfs { values, .. } => {
            let sys = host.system();
            let mut done = Ok(());
            for (rel, value) in values {
                let now = sys.read_sysfs(rel).map(|v| v.value);
                if now.as_deref().ok() != Some(value.as_str()) {
                    done = host.write_sysfs(rel, value);
                    if done.is_err() {
                        break;
                    }
                }
            }
            done.map_err(Into::into)
        }
        Prior::NotRestorable { .. } => unreachable!("handled above"),
    };
    match result {
        Err(e) => failed(e),
        Ok(()) if notes.is_empty() => done(RestoreStatus::Restored, None),
        // Partial restores: what could not be kept, what --root does not manage.
        Ok(()) => done(RestoreStatus::Restored, Some(notes.join("; "))),
    }
}

/// `Some(what)` when the live state differs from `prior` (what would be restored).
fn differs(sys: &System, prior: &Prior, blobs: &RunBlobs) -> Result<Option<String>, RestoreError> {
    Ok(match prior {
        Prior::Path { path, was, .. } => path_differs(sys, path, was, blobs)?,
        Prior::Sysctl { key, value, .. } => {
            if !sys.is_live() {
                return Ok(None);
            }
            let now = sys.read_sysctl(key)?.unwrap_or_default();
            let now = now.split_whitespace().collect::<Vec<_>>().join(" ");
            (now != *value).then(|| format!("value: {now} → {value}"))
        }
        Prior::Package {
            name,
            version,
            held,
            ..
        } => {
            let now = sys.packages().status(sys, name)?;
            (now.installed != *version || now.held != *held).then(|| {
                format!(
                    "version: {} → {}",
                    now.installed.as_deref().unwrap_or("not installed"),
                    version.as_deref().unwrap_or("not installed")
                )
            })
        }
        Prior::Service {
            unit,
            enabled,
            masked,
            running,
            ..
        } => {
            let now = sys.services().status(sys, unit)?;
            let now_enabled = now.enabled() == Some(true);
            let now_masked = now.masked();
            let now_running = now.running();
            let run_differs = running.is_some() && now_running.is_some() && *running != now_running;
            (now_enabled != *enabled || now_masked != *masked || run_differs)
                .then(|| format!("{unit}: enabled, masked and running state as before the run"))
        }
        Prior::Nftables { .. } => nftables::differs(sys, prior, blobs)?,
        Prior::KernelModule { name, loaded, .. } => sys.module_differs(name, *loaded)?,
        Prior::Sysfs { values, .. } => {
            if !sys.is_live() {
                return Ok(None);
            }
            let mut changes = Vec::new();
            for (rel, value) in values {
                let now = sys.read_sysfs(rel)?.value;
                if now != *value {
                    changes.push(format!("{rel}: {now} → {value}"));
                }
            }
            (!changes.is_empty()).then(|| changes.join(", "))
        }
        Prior::NotRestorable { .. } => None,
    })
}

fn path_differs(
    sys: &System,
    path: &Path,
    was: &PathState,
    blobs: &RunBlobs,
) -> Result<Option<String>, RestoreError> {
    let now = sys.entry(path)?;
    let what = match (was, &now) {
        (PathState::Missing, Entry::Missing) => None,
        (PathState::Missing, other) => Some(format!("remove the {}", other.kind())),
        (
            PathState::File {
                uid,
                gid,
                mode,
                sha256,
                size,
            },
            Entry::File(meta),
        ) => {
            let same_meta = meta.uid == *uid && meta.gid == *gid && meta.mode == *mode;
            let content = sys.read_file(path)?;
            let same = crate::resource::Digest::of(&content).sha256 == *sha256;
            // The kept copy must be there and verify for a restore to be possible at all.
            if !same {
                blobs.get(sha256, *size)?;
            }
            (!same || !same_meta).then(|| "content, owner, group and mode as before".to_owned())
        }
        (PathState::File { .. }, _) => Some("put the file back".into()),
        (PathState::Symlink { target }, Entry::Symlink(t)) if t == target => None,
        (PathState::Symlink { target }, _) => Some(format!("link to {}", target.display())),
        (
            PathState::Directory {
                uid,
                gid,
                mode,
                entries,
            },
            Entry::Directory(meta),
        ) => {
            let mut differs = meta.uid != *uid || meta.gid != *gid || meta.mode != *mode;
            for (name, state) in entries {
                differs |= path_differs(sys, &path.join(name), state, blobs)?.is_some();
            }
            differs.then(|| "directory and its removed entries as before".to_owned())
        }
        (PathState::Directory { .. }, _) => Some("put the directory back".into()),
        (PathState::NotKept { .. }, _) => None,
    };
    Ok(what)
}

fn restore_path(
    host: &Host,
    path: &Path,
    was: &PathState,
    blobs: &RunBlobs,
    notes: &mut Vec<String>,
) -> Result<(), RestoreError> {
    let sys = host.system();
    let now = sys.entry(path)?;
    match was {
        PathState::Missing => {
            if now != Entry::Missing {
                host.remove(path, true)?;
            }
        }
        PathState::File {
            uid,
            gid,
            mode,
            sha256,
            size,
        } => {
            let content = blobs.get(sha256, *size)?;
            if matches!(now, Entry::Directory(_)) {
                host.remove(path, true)?;
            }
            // Atomic like every write: a kill here leaves the new or the old file whole.
            let attrs = Attrs {
                uid: Some(*uid),
                gid: Some(*gid),
                mode: Some(*mode),
            };
            host.write_file(path, &content, attrs, *mode)?;
        }
        PathState::Symlink { target } => {
            if matches!(now, Entry::Directory(_)) {
                host.remove(path, true)?;
            }
            host.symlink(path, target)?;
        }
        PathState::Directory {
            uid,
            gid,
            mode,
            entries,
        } => {
            let attrs = Attrs {
                uid: Some(*uid),
                gid: Some(*gid),
                mode: Some(*mode),
            };
            match now {
                Entry::Directory(_) => host.set_attrs(path, attrs)?,
                Entry::Missing => host.create_dir(path, attrs)?,
                _ => {
                    host.remove(path, true)?;
                    host.create_dir(path, attrs)?;
                }
            }
            for (name, state) in entries {
                restore_path(host, &path.join(name), state, blobs, notes)?;
            }
        }
        PathState::NotKept { what } => notes.push(format!("{}: not kept: {what}", path.display())),
    }
    Ok(())
}

/// Puts a package back; `Some(why)` when its old version cannot be had any more.
fn restore_package(
    host: &Host,
    name: &str,
    version: Option<&str>,
    held: bool,
) -> Result<Option<String>, SystemError> {
    let sys = host.system();
    let packages = sys.packages();
    let now = packages.status(sys, name)?;
    if now.held {
        packages.hold(host, name, false)?;
    }
    match version {
        None => packages.remove(host, name)?,
        Some(v) if now.installed.as_deref() == Some(v) => {}
        Some(v) => {
            if !packages.available(sys, name)?.iter().any(|a| a == v) {
                if now.held {
                    packages.hold(host, name, true)?;
                }
                return Ok(Some(format!(
                    "version {v} is no longer in {}; {name} stays at {}",
                    packages.vocabulary().sources,
                    now.installed.as_deref().unwrap_or("not installed")
                )));
            }
            packages.install(host, name, Some(v))?;
        }
    }
    if held && version.is_some() {
        packages.hold(host, name, true)?;
    }
    Ok(None)
}

fn restore_service(
    host: &Host,
    unit: &str,
    enabled: bool,
    masked: bool,
    running: Option<bool>,
) -> Result<(), SystemError> {
    let sys = host.system();
    let services = sys.services();
    let systemctl = |verb| services.act(host, verb, unit);
    let now = services.status(sys, unit)?;
    let now_masked = now.masked();
    if now_masked && !masked {
        systemctl(UnitVerb::Unmask)?;
    }
    let now_enabled = now.enabled() == Some(true);
    if !masked && now_enabled != enabled {
        let verb = if enabled {
            UnitVerb::Enable
        } else {
            UnitVerb::Disable
        };
        systemctl(verb)?;
    }
    if services.runs_units(sys) {
        let now_running = now.running() == Some(true);
        match running {
            Some(true) if !now_running => systemctl(UnitVerb::Start)?,
            Some(false) if now_running => systemctl(UnitVerb::Stop)?,
            _ => {}
        }
    }
    if masked && !now_masked {
        systemctl(UnitVerb::Mask)?;
    }
    Ok(())
}
