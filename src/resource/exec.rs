//! `exec`: a guarded shell command, for the rare change no resource type covers.
//!
//! Guards (`creates`, `onlyif`, `unless`) decide whether it is needed; they run in check mode
//! too, so they must be read-only. The command itself runs only in apply.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, Place, PlanSlots};
use crate::system::fs::Entry;
use crate::system::process::{tail, RunAs, Shell};
use crate::system::{Host, System};

/// Used when a role gives no timeout (Puppet's default too).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What reports show instead of a sensitive command or its output.
const HIDDEN: &str = "(sensitive, not shown)";

/// A guarded command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecResource {
    /// Its identity: the role's `name`, or the command itself.
    pub name: String,
    /// Run with `sh -c`.
    pub command: String,
    /// Run only when this exits non-zero.
    pub unless: Option<String>,
    /// Run only when this exits zero.
    pub onlyif: Option<String>,
    /// Run only when this path does not exist.
    pub creates: Option<PathBuf>,
    /// Working directory (default `/`).
    pub cwd: Option<PathBuf>,
    /// Run as this user (default root).
    pub user: Option<String>,
    /// Extra environment variables.
    pub environment: BTreeMap<String, String>,
    /// Kill the command (and guards) after this long.
    pub timeout: Duration,
    /// Keep the command and its output out of reports and logs.
    pub sensitive: bool,
}

/// Whether the guards want the command to run, and why.
#[derive(Debug, PartialEq, Eq)]
pub enum ExecLive {
    /// It needs to run.
    Run(String),
    /// A guard says it is done.
    Done,
}

/// `exited with status 3` or `was killed by signal 9`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => status.to_string(),
    }
}

impl ExecResource {
    fn shown<'a>(&self, text: &'a str) -> &'a str {
        if self.sensitive {
            HIDDEN
        } else {
            text
        }
    }

    /// The user to run as, looked up in the tree when the command or a guard runs (a user
    /// created earlier in the same run is there by then).
    fn run_as(&self, sys: &System) -> Result<Option<RunAs>, ResourceError> {
        let Some(name) = &self.user else {
            return Ok(None);
        };
        let passwd = sys.passwd()?;
        let entry = passwd
            .iter()
            .find(|u| u.name == *name)
            .ok_or_else(|| ResourceError::NoSuchUser(name.clone()))?;
        let groups = sys
            .groups()?
            .into_iter()
            .filter(|g| g.members.contains(&entry.name) || g.gid == entry.gid)
            .map(|g| g.gid)
            .collect();
        Ok(Some(RunAs {
            name: entry.name.clone(),
            uid: entry.uid,
            gid: entry.gid,
            groups,
            home: entry.home.clone(),
        }))
    }

    fn shell<'a>(&'a self, label: &'a str, script: &'a str, user: Option<&'a RunAs>) -> Shell<'a> {
        Shell {
            label,
            script,
            cwd: self.cwd.as_deref(),
            user,
            env: &self.environment,
            timeout: self.timeout,
        }
    }

    /// Runs a guard; true when it exits zero.
    fn guard(&self, sys: &System, which: &str, script: &str) -> Result<bool, ResourceError> {
        let user = self.run_as(sys)?;
        let label = format!("{which} guard of exec:{}", self.name);
        let done = sys.run_guard(&self.shell(&label, script, user.as_ref()))?;
        tracing::debug!(exec = %self.name, guard = which, status = %done.status, "guard ran");
        Ok(done.status.success())
    }
}

impl Resource for ExecResource {
    type Live = ExecLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Exec, self.name.clone())
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint {
            place: Place::Elsewhere(self.creates.iter().cloned().collect()),
            makes_directory: None,
            creates_account: false,
        }
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<ExecLive, ResourceError> {
        let mut reasons = Vec::new();
        if let Some(path) = &self.creates {
            if sys.entry(path)? != Entry::Missing {
                return Ok(ExecLive::Done);
            }
            reasons.push(format!("{} does not exist", path.display()));
        }
        if let Some(script) = &self.onlyif {
            if !self.guard(sys, "onlyif", script)? {
                return Ok(ExecLive::Done);
            }
            reasons.push(format!("onlyif '{}' succeeded", self.shown(script)));
        }
        if let Some(script) = &self.unless {
            if self.guard(sys, "unless", script)? {
                return Ok(ExecLive::Done);
            }
            reasons.push(format!("unless '{}' failed", self.shown(script)));
        }
        if reasons.is_empty() {
            reasons.push("no guard: it runs on every apply".into());
        }
        Ok(ExecLive::Run(reasons.join("; ")))
    }

    fn diff(&self, live: &ExecLive) -> Option<Change> {
        let ExecLive::Run(reason) = live else {
            return None;
        };
        Some(Change::fields(
            Action::Run,
            vec![
                FieldChange::new("command", None, Some(self.shown(&self.command).to_owned())),
                FieldChange::new("because", None, Some(reason.clone())),
            ],
        ))
    }

    fn apply(&self, host: &Host, _live: &ExecLive, _change: &Change) -> Result<(), ResourceError> {
        let user = self.run_as(host.system())?;
        let label = format!("exec:{}", self.name);
        let done = host.run_shell(&self.shell(&label, &self.command, user.as_ref()))?;
        if done.status.success() {
            return Ok(());
        }
        let output = if self.sensitive {
            HIDDEN.to_owned()
        } else {
            let err = tail(&done.stderr);
            if err.is_empty() {
                tail(&done.stdout)
            } else {
                err
            }
        };
        Err(ResourceError::ExecFailed {
            status: describe_status(done.status),
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(command: &str) -> ExecResource {
        ExecResource {
            name: "t".into(),
            command: command.into(),
            unless: None,
            onlyif: None,
            creates: None,
            cwd: None,
            user: None,
            environment: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            sensitive: false,
        }
    }

    #[test]
    fn guards_decide_in_order_and_explain_why() {
        let dir = tempfile::tempdir().unwrap();
        let sys = System::new(dir.path()).unwrap();
        std::fs::write(sys.root().join("present"), "").unwrap();
        let mut e = exec("true");
        e.creates = Some("/present".into());
        assert_eq!(e.observe(&sys).unwrap(), ExecLive::Done);
        e.creates = Some("/missing".into());
        assert_eq!(
            e.observe(&sys).unwrap(),
            ExecLive::Run("/missing does not exist".into())
        );
        let e = exec("true");
        assert_eq!(
            e.observe(&sys).unwrap(),
            ExecLive::Run("no guard: it runs on every apply".into())
        );
    }

    #[test]
    fn sensitive_commands_are_hidden_from_the_change() {
        let mut e = exec("mysql -psecret");
        e.sensitive = true;
        let c = e.diff(&ExecLive::Run("x".into())).unwrap();
        assert_eq!(c.action, Action::Run);
        assert_eq!(c.fields[0].after.as_deref(), Some(HIDDEN));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
