//! Running host tools (systemctl, dpkg-query, apt-get) with a fixed environment and a deadline.

use std::process::Command;
use std::time::Duration;

use super::process::{run_with_deadline, Finished};
use super::SystemError;

pub use super::process::describe;

/// A command whose output we parse: the C locale keeps messages and formats stable.
pub fn tool(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LC_ALL", "C").env("LANG", "C");
    cmd
}

/// Runs `cmd` and collects its output; failing to start it, or to finish within `timeout`
/// (then it is killed with everything it started), is an error.
pub fn output(cmd: &mut Command, timeout: Duration) -> Result<Finished, SystemError> {
    let label = describe(cmd);
    run_with_deadline(cmd, &label, timeout)
}

/// Runs `cmd` as [`output`] does; a non-zero exit is an error carrying the tail of what it
/// printed.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<String, SystemError> {
    let out = output(cmd, timeout)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(failed(cmd, &out))
}

/// The error for a command that ran and failed.
pub fn failed(cmd: &Command, out: &Finished) -> SystemError {
    // apt and systemctl explain on stderr; a few tools only on stdout.
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    // The last lines say why; apt prints progress before them.
    let lines: Vec<&str> = text.lines().collect();
    SystemError::Command {
        command: describe(cmd),
        status: out.status.to_string(),
        stderr: lines[lines.len().saturating_sub(6)..].join("\n"),
    }
}
