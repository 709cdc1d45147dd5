//! The systemd backend of [`ServiceManager`], through `systemctl`: unit state,
//! enable/disable/mask, start/stop/restart/reload, daemon-reload.
//!
//! `systemctl` rather than a D-Bus client: it is the interface systemd documents for scripts,
//! it adds no dependency, and `systemctl --root=DIR` edits a tree offline with the very same
//! install logic (symlinks in `*.wants/`, masks to /dev/null) that the running manager uses.
//! `show` is refused together with `--root`, so offline the unit file state comes from
//! `is-enabled` and the runtime state is unknown. "Offline" is also the live host when no
//! systemd runs it (a chroot while baking an image, a plain container): enablement is
//! managed in its unit files as under `--root`, and nothing can be started or stopped.

use std::path::Path;
use std::process::Command;

use super::command::{self, tool};
use super::services::{ServiceManager, UnitFile, UnitStatus, UnitVerb};
use super::{Host, System, SystemError};

/// Directories whose unit files systemd only rereads on `daemon-reload`.
pub(crate) const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// Whether a file at `path` is a unit file or drop-in that needs a `daemon-reload`.
pub(crate) fn is_unit_path(path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return false;
    };
    let in_unit_dir = |dir: &Path| UNIT_DIRS.iter().any(|d| dir == Path::new(d));
    if in_unit_dir(parent) {
        return true;
    }
    // Drop-ins: /etc/systemd/system/nginx.service.d/override.conf
    let is_dropin_dir = parent
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(".d"));
    is_dropin_dir && parent.parent().is_some_and(in_unit_dir)
}

/// The systemd service this process runs in (`converge.service`), from its cgroup; `None`
/// outside a service (a shell, a timer-less container).
pub(crate) fn own_unit() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    own_unit_from(&text)
}

/// The innermost `.service` in `/proc/self/cgroup` text (cgroup v2 `0::/...` or v1
/// `N:name=systemd:/...` lines alike).
fn own_unit_from(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter_map(|path| path.split('/').rev().find(|c| c.ends_with(".service")))
        .next()
        .map(str::to_owned)
}

/// systemd on the live host, or `systemctl --root` on a tree.
#[derive(Debug, Default)]
pub(crate) struct Systemd;

/// Whether a systemd manager runs this root: the live host booted with systemd (sd_booted(3)).
/// A tree, a chroot or a plain container is handled offline, the way `systemctl --root` does.
fn running(sys: &System) -> bool {
    sys.is_live() && Path::new("/run/systemd/system").is_dir()
}

fn systemctl(sys: &System) -> Command {
    let mut cmd = tool("systemctl");
    if !running(sys) {
        cmd.arg(format!("--root={}", sys.root().display()));
    }
    cmd.arg("--no-ask-password");
    cmd
}

impl ServiceManager for Systemd {
    fn runs_units(&self, sys: &System) -> bool {
        running(sys)
    }

    fn status(&self, sys: &System, unit: &str) -> Result<UnitStatus, SystemError> {
        if running(sys) {
            let mut cmd = systemctl(sys);
            cmd.args([
                "show",
                "-p",
                "LoadState,ActiveState,UnitFileState,MainPID",
                "--",
                unit,
            ]);
            return Ok(parse_show(&command::run(&mut cmd, sys.timeouts().query)?));
        }
        let mut cmd = systemctl(sys);
        cmd.args(["is-enabled", "--", unit]);
        let out = command::output(&mut cmd, sys.timeouts().query)?;
        // is-enabled exits non-zero for disabled and masked units too; only the text counts.
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if state == "not-found" || (state.is_empty() && stderr.contains("No such file")) {
            return Ok(UnitStatus {
                load: "not-found".into(),
                active: None,
                file_state: String::new(),
                main_pid: None,
            });
        }
        if state.is_empty() {
            return Err(command::failed(&cmd, &out));
        }
        Ok(UnitStatus {
            load: "loaded".into(),
            active: None,
            file_state: state,
            main_pid: None,
        })
    }

    fn is_definition(&self, path: &Path) -> bool {
        is_unit_path(path)
    }

    /// `systemctl VERB UNIT` (offline verbs under `--root` use `systemctl --root`).
    fn act(&self, host: &Host, verb: UnitVerb, unit: &str) -> Result<(), SystemError> {
        let sys = host.system();
        if verb.needs_running_system() && !self.runs_units(sys) {
            let what = format!("systemctl {} {unit}", verb.as_str());
            return Err(if sys.is_live() {
                SystemError::NoSystemd(what)
            } else {
                SystemError::NotLive(what)
            });
        }
        let mut cmd = systemctl(sys);
        cmd.args([verb.as_str(), "--", unit]);
        tracing::info!(unit, verb = verb.as_str(), "systemctl");
        let since = std::time::SystemTime::now();
        command::run(&mut cmd, host.timeouts().service)
            .map(drop)
            .map_err(|e| with_journal(sys, verb, unit, since, e))
    }

    fn unit_files(&self, sys: &System) -> Result<Vec<UnitFile>, SystemError> {
        let mut cmd = systemctl(sys);
        cmd.args(["list-unit-files", "--no-legend", "--no-pager", "--full"]);
        let mut files = parse_unit_files(&command::run(&mut cmd, sys.timeouts().query)?);
        if running(sys) {
            let mut cmd = systemctl(sys);
            cmd.args([
                "list-units",
                "--all",
                "--no-legend",
                "--no-pager",
                "--plain",
                "--full",
            ]);
            let active = parse_list_units(&command::run(&mut cmd, sys.timeouts().query)?);
            for f in &mut files {
                let state = active.get(&f.name).cloned();
                f.active = Some(state.unwrap_or_else(|| "inactive".into()));
            }
        }
        Ok(files)
    }

    /// Nothing to do for a tree: no manager has read its units.
    fn reload_definitions(&self, host: &Host) -> Result<(), SystemError> {
        let sys = host.system();
        if !self.runs_units(sys) {
            return Ok(());
        }
        let mut cmd = systemctl(sys);
        cmd.arg("daemon-reload");
        tracing::info!("systemctl daemon-reload");
        command::run(&mut cmd, host.timeouts().service).map(drop)
    }
}

fn parse_unit_files(text: &str) -> Vec<UnitFile> {
    let mut out: Vec<UnitFile> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, state) = (words.next()?, words.next()?);
            let preset = words.next().filter(|p| *p != "-").map(str::to_owned);
            Some(UnitFile {
                name: name.to_owned(),
                state: state.to_owned(),
                preset,
                active: None,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn parse_list_units(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let _load = words.next()?;
            Some((name.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

fn parse_show(text: &str) -> UnitStatus {
    let mut status = UnitStatus {
        load: String::new(),
        active: Some(String::new()),
        file_state: String::new(),
        main_pid: None,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "LoadState" => status.load = value.to_owned(),
            "ActiveState" => status.active = Some(value.to_owned()),
            "UnitFileState" => status.file_state = value.to_owned(),
            "MainPID" => status.main_pid = value.parse().ok().filter(|p| *p != 0),
            _ => {}
        }
    }
    status
}

/// A failed start, restart or reload with the unit's own account of it: systemctl only says
/// "see systemctl status"; the unit's journal lines since the action say what went wrong
/// (nginx's "unknown directive", a missing file). Best effort: without them the error is
/// systemctl's alone.
fn with_journal(
    sys: &System,
    verb: UnitVerb,
    unit: &str,
    since: std::time::SystemTime,
    e: SystemError,
) -> SystemError {
    let SystemError::Command {
        command,
        status,
        stderr,
    } = e
    else {
        return e;
    };
    let starts = matches!(
        verb,
        UnitVerb::Start | UnitVerb::TryRestart | UnitVerb::Reload
    );
    let secs = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let lines = starts
        .then(|| {
            let mut cmd = std::process::Command::new("journalctl");
            cmd.args(["-u", unit, "-n", "10", "--no-pager", "-o", "cat", "--since"])
                .arg(format!("@{secs}"));
            command::run(&mut cmd, sys.timeouts().query).ok()
        })
        .flatten()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let stderr = match lines {
        Some(lines) => {
            let unit = if unit.contains('.') {
                unit.to_owned()
            } else {
                format!("{unit}.service")
            };
            format!(
                "{stderr}\n{unit}'s journal since the {}:\n{lines}",
                verb.as_str()
            )
        }
        None => stderr,
    };
    SystemError::Command {
        command,
        status,
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_files_and_dropins_need_a_reload() {
        assert!(is_unit_path(Path::new("/etc/systemd/system/x.service")));
        assert!(is_unit_path(Path::new(
            "/etc/systemd/system/nginx.service.d/override.conf"
        )));
        assert!(is_unit_path(Path::new("/usr/lib/systemd/system/x.timer")));
        assert!(!is_unit_path(Path::new("/etc/nginx/nginx.conf")));
        assert!(!is_unit_path(Path::new(
            "/etc/systemd/journald.conf.d/x.conf"
        )));
    }

    #[test]
    fn unit_file_lists_parse_with_and_without_presets() {
        let files = parse_unit_files(
            "ssh.service enabled enabled\nsshd.service alias -\nx.timer disabled\n",
        );
        assert_eq!(files[0].name, "ssh.service");
        assert_eq!(files[0].preset.as_deref(), Some("enabled"));
        assert_eq!(files[1].preset, None);
        assert_eq!(files[2].state, "disabled");
        let active = parse_list_units("ssh.service loaded active running OpenBSD Secure Shell\n");
        assert_eq!(active["ssh.service"], "active");
    }

    #[test]
    fn show_output_parses_and_zero_pid_means_none() {
        let s =
            parse_show("MainPID=0\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n");
        assert!(s.not_found());
        assert_eq!(s.main_pid, None);
        assert_eq!(s.active.as_deref(), Some("inactive"));
        let s =
            parse_show("MainPID=35\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n");
        assert_eq!(s.main_pid, Some(35));
        assert_eq!(s.file_state, "enabled");
    }
}

#[cfg(test)]
mod own_unit_tests {
    use super::own_unit_from;

    #[test]
    fn finds_the_innermost_service_in_v1_and_v2_cgroup_files() {
        assert_eq!(
            own_unit_from("0::/system.slice/converge.service\n").as_deref(),
            Some("converge.service")
        );
        assert_eq!(
            own_unit_from("12:cpu:/\n1:name=systemd:/system.slice/converge-agent.service\n0::/\n")
                .as_deref(),
            Some("converge-agent.service")
        );
        assert_eq!(
            own_unit_from("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
    }
}
