//! Notifications: restart/reload requests collected during a run and carried out once per
//! service at its end, after every file is in place; plus the `daemon-reload` that changed
//! unit files need before systemd acts on them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{Plan, Planned};
use crate::report::Mode;
use crate::report::{Notification, NotifiedBy, NotifyAction, NotifyStatus, Outcome, Status};
use crate::resource::service::{RunState, ServiceResource};
use crate::resource::ResourceId;
use crate::system::services::UnitVerb;
use crate::system::{Host, System, SystemError};

/// Requests so far, in the order they were first made.
#[derive(Debug, Default)]
pub(super) struct Notifier {
    requests: Vec<Request>,
    /// A unit file changed since the last `daemon-reload`.
    units_changed: bool,
    /// Where open requests are kept across runs (apply with a state dir only).
    journal: Option<PathBuf>,
}

/// An open request as kept in the journal.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    service: String,
    restart: bool,
    by: Vec<String>,
}

#[derive(Debug)]
struct Request {
    service: ResourceId,
    by: Vec<NotifiedBy>,
    /// A unit file or drop-in of the service changed: a reload would not apply it.
    restart: bool,
}

impl Notifier {
    /// Starts with the requests an earlier run left open in `journal` (for services still in
    /// the plan). Check mode shows them but never writes the journal.
    pub(super) fn resume(journal: &Path, plan: &Plan, mode: Mode) -> Notifier {
        let saved: Vec<Saved> = std::fs::read(journal)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut requests = Vec::new();
        for s in saved {
            let Some(id) = ResourceId::parse(&s.service) else {
                continue;
            };
            let Some(item) = plan.items.iter().find(|p| p.id == id) else {
                continue;
            };
            tracing::info!(service = %item.id, "an earlier run left this notification open");
            requests.push(Request {
                service: item.id.clone(),
                by: vec![NotifiedBy::EarlierRun],
                restart: s.restart,
            });
        }
        Notifier {
            requests,
            units_changed: false,
            journal: (mode == Mode::Apply).then(|| journal.to_path_buf()),
        }
    }

    /// Writes the open requests (or removes the journal when there are none).
    fn save(&self, open: &[&Request]) {
        let Some(journal) = &self.journal else { return };
        let result = if open.is_empty() {
            match std::fs::remove_file(journal) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            let saved: Vec<Saved> = open
                .iter()
                .map(|r| Saved {
                    service: r.service.to_string(),
                    restart: r.restart,
                    by: r.by.iter().map(ToString::to_string).collect(),
                })
                .collect();
            crate::durable::write_file(
                journal,
                &serde_json::to_vec_pretty(&saved).expect("serializes"),
                &crate::durable::FileSpec::mode(0o600),
            )
        };
        if let Err(e) = result {
            tracing::warn!(path = %journal.display(), error = %e, "cannot keep pending notifications");
        }
    }

    /// Before a service is observed: systemd must see unit files written earlier in this run,
    /// or it would report (and act on) the old definition. One reload covers every change.
    pub(super) fn before(
        &mut self,
        item: &Planned,
        host: Option<&Host>,
    ) -> Result<(), SystemError> {
        if item.resource.service().is_none() || !self.units_changed {
            return Ok(());
        }
        self.reload_units(host)
    }

    fn reload_units(&mut self, host: Option<&Host>) -> Result<(), SystemError> {
        if let (true, Some(host)) = (self.units_changed, host) {
            host.system().services().reload_definitions(host)?;
        }
        self.units_changed = false;
        Ok(())
    }

    /// Records what `item` asks for now that it changed (apply) or would change (check).
    pub(super) fn changed(&mut self, item: &Planned, sys: &System) {
        let is_unit = item.path().is_some_and(|p| sys.services().is_definition(p));
        self.units_changed |= is_unit;
        for edge in item.notify() {
            let i = match self.requests.iter().position(|r| r.service == edge.id) {
                Some(i) => i,
                None => {
                    self.requests.push(Request {
                        service: edge.id.clone(),
                        by: Vec::new(),
                        restart: false,
                    });
                    self.requests.len() - 1
                }
            };
            self.requests[i]
                .by
                .push(NotifiedBy::Resource(item.id.clone()));
            self.requests[i].restart |= is_unit;
        }
        if !item.notify().is_empty() {
            // Kept right after the change: a run killed before its restarts leaves them here.
            let open: Vec<&Request> = self.requests.iter().collect();
            self.save(&open);
        }
    }

    /// Drops the requests this run made (its changes are not kept): only those an earlier
    /// run left open stay in the journal.
    pub(super) fn abandon(self) {
        let open: Vec<&Request> = self
            .requests
            .iter()
            .filter(|r| r.by.contains(&NotifiedBy::EarlierRun))
            .collect();
        self.save(&open);
    }

    /// Carries out (apply) or reports (check) at most one action per notified service.
    pub(super) fn finish(
        mut self,
        plan: &Plan,
        outcomes: &[Outcome],
        sys: &System,
        host: Option<&Host>,
    ) -> Vec<Notification> {
        let reloaded = self.reload_units(host);
        let mut out = Vec::new();
        let mut still_open = Vec::new();
        for req in &self.requests {
            let Some(index) = plan.items.iter().position(|p| p.id == req.service) else {
                continue; // the plan refuses notify edges to missing services
            };
            let Some(service) = plan.items[index].resource.service() else {
                continue;
            };
            // Restart beats reload: one action covers every request.
            let action = if req.restart || !service.reload_on_notify {
                NotifyAction::Restart
            } else {
                NotifyAction::Reload
            };
            let mut n = Notification {
                service: req.service.clone(),
                action,
                notified_by: req.by.clone(),
                status: NotifyStatus::NotNeeded,
                note: None,
                error: None,
                error_kind: None,
            };
            match decide(service, &outcomes[index], sys, &reloaded) {
                Decision::Skip(status, note) => {
                    n.status = status;
                    n.note = Some(note);
                }
                Decision::Fail(e, kind) => {
                    n.status = NotifyStatus::Failed;
                    n.error_kind = Some(kind);
                    n.error = Some(e);
                }
                Decision::Act => match host {
                    None => n.status = NotifyStatus::Pending,
                    Some(host) => {
                        let verb = match action {
                            NotifyAction::Restart => UnitVerb::TryRestart,
                            NotifyAction::Reload => UnitVerb::Reload,
                        };
                        let host = &service.host_for(host);
                        match sys.services().act(host, verb, &service.unit()) {
                            Ok(()) => n.status = NotifyStatus::Done,
                            Err(e) => {
                                n.status = NotifyStatus::Failed;
                                n.error_kind = Some(e.kind());
                                n.error = Some(e.to_string());
                            }
                        }
                    }
                },
            }
            log(&n);
            // A failed restart, or a service that did not converge, is tried again next run.
            if matches!(n.status, NotifyStatus::Failed | NotifyStatus::Skipped) {
                still_open.push(req);
            }
            out.push(n);
        }
        self.save(&still_open);
        out
    }
}

/// One journal line per restart or reload, naming the service; a failed one at warning with
/// its error.
fn log(n: &Notification) {
    let (service, verb) = (&n.service, n.action.verb());
    let by = n
        .notified_by
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match n.status {
        NotifyStatus::Failed => tracing::warn!(
            target: crate::outcome_log::OUTCOMES,
            %service, action = verb, status = "failed",
            "{verb} {service} failed: {}", n.error.as_deref().unwrap_or("")
        ),
        NotifyStatus::Skipped => tracing::warn!(
            target: crate::outcome_log::OUTCOMES,
            %service, action = verb, status = "skipped",
            "{verb} {service} skipped: {}", n.note.as_deref().unwrap_or("")
        ),
        NotifyStatus::Done => tracing::info!(
            target: crate::outcome_log::OUTCOMES,
            %service, action = verb, status = "done",
            "{verb} {service}: done (notified by {by})"
        ),
        NotifyStatus::Pending => tracing::info!(
            target: crate::outcome_log::OUTCOMES,
            %service, action = verb, status = "pending",
            "{verb} {service}: would be done (notified by {by})"
        ),
        NotifyStatus::NotNeeded => tracing::info!(
            target: crate::outcome_log::OUTCOMES,
            %service, action = verb, status = "not_needed",
            "{verb} {service}: not needed: {}", n.note.as_deref().unwrap_or("")
        ),
    }
}

enum Decision {
    Act,
    Skip(NotifyStatus, String),
    /// Failed: why, and the kind of failure for the report.
    Fail(String, &'static str),
}

/// Whether a notified service needs its restart or reload, given how it converged.
fn decide(
    service: &ServiceResource,
    outcome: &Outcome,
    sys: &System,
    reloaded: &Result<(), SystemError>,
) -> Decision {
    if matches!(outcome.status, Status::Failed | Status::Skipped) {
        return Decision::Skip(
            NotifyStatus::Skipped,
            format!("{} did not converge", outcome.id),
        );
    }
    if outcome.change.as_ref().is_some_and(|c| c.starts) {
        let when = if outcome.status == Status::Pending {
            "would be started in this run, then"
        } else {
            "started in this run,"
        };
        return Decision::Skip(
            NotifyStatus::NotNeeded,
            format!("{when} already with the new configuration"),
        );
    }
    if service.state == Some(RunState::Stopped) {
        return Decision::Skip(NotifyStatus::NotNeeded, "state = \"stopped\"".into());
    }
    if !sys.services().runs_units(sys) {
        let why = if sys.is_live() {
            "systemd is not running here: nothing runs as a unit"
        } else {
            "converging a tree (--root): nothing runs there"
        };
        return Decision::Skip(NotifyStatus::NotNeeded, why.into());
    }
    if let Err(e) = reloaded {
        return Decision::Fail(format!("daemon-reload: {e}"), e.kind());
    }
    let unit = service.unit();
    if crate::system::systemd::own_unit().as_deref() == Some(unit.as_str()) {
        // Restarting the unit this run lives in kills the run midway, and the request saved
        // for the next run would do it again on every start. converge's units pick up a
        // changed unit file or config at their next start.
        return Decision::Skip(
            NotifyStatus::NotNeeded,
            format!("deferred: {unit} runs this converge; restarting it now would kill this run, so the change takes effect at its next start"),
        );
    }
    match sys.services().status(sys, &unit) {
        Err(e) => Decision::Fail(e.to_string(), e.kind()),
        Ok(st) if st.running() == Some(true) => Decision::Act,
        Ok(st) => Decision::Skip(
            NotifyStatus::NotNeeded,
            format!(
                "not running ({})",
                st.active.as_deref().unwrap_or("unknown")
            ),
        ),
    }
}
