//! The running ruleset through `nft`: listing a table, checking a script, loading one, and
//! putting a table into nft's own printed form in a scratch network namespace.
//!
//! Scripts go to `nft -f` from a private temp file on the machine running converge (nft
//! reads no stdin here, and its errors then name a line and column of that file). Every
//! call has the `[timeouts] firewall` deadline.

use std::path::Path;
use std::process::Command;

use super::command::{self, tool};
use super::process::Finished;
use super::{Host, System, SystemError};

/// What nft said when it refused a script: its own message, with the line and column it
/// names in the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// A private temp file holding `script`, named `name` (nft quotes that name in its errors).
fn script_file(
    script: &[u8],
    name: &str,
) -> Result<(tempfile::TempDir, std::path::PathBuf), SystemError> {
    let base = std::env::temp_dir();
    let dir = crate::durable::temp::dir_in(&base).map_err(|e| SystemError::io(&base, e))?;
    let path = dir.path().join(name);
    crate::durable::write_file_from(
        &path,
        &mut &script[..],
        &crate::durable::FileSpec::mode(0o600),
    )
    .map_err(|e| SystemError::io(&path, e))?;
    Ok((dir, path))
}

/// nft's complaint, or the error for a command that could not run at all.
fn refused_or_error(cmd: &Command, out: &Finished, file: &Path) -> Result<Refused, SystemError> {
    // nft exits 1 on a refused script; anything else (a signal, 127) is no verdict.
    if out.status.code() != Some(1) {
        return Err(command::failed(cmd, out));
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let dir = file
        .parent()
        .map(|d| format!("{}/", d.display()))
        .unwrap_or_default();
    // The temp dir means nothing to the reader: only the file's name stays.
    Ok(Refused(text.trim_end().replace(&dir, "")))
}

impl System {
    /// The names of the live tables of `family`, in nft's order.
    pub(crate) fn nft_tables(&self, family: &str) -> Result<Vec<String>, SystemError> {
        let mut cmd = tool("nft");
        cmd.args(["list", "tables", family]);
        let out = command::run(&mut cmd, self.timeouts().firewall)?;
        Ok(out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("table "))
            .filter_map(|l| l.split_once(' ').map(|(_, name)| name.to_owned()))
            .collect())
    }

    /// The live table as `nft -s list table` prints it (stateless: no counter values), or
    /// `None` when there is no such table.
    pub(crate) fn nft_table(
        &self,
        family: &str,
        table: &str,
    ) -> Result<Option<String>, SystemError> {
        if !self.nft_tables(family)?.iter().any(|t| t == table) {
            return Ok(None);
        }
        let mut cmd = tool("nft");
        cmd.args(["-s", "list", "table", family, table]);
        command::run(&mut cmd, self.timeouts().firewall).map(Some)
    }

    /// Asks nft whether it would load `script` (`nft -c -f`, against the live ruleset,
    /// changing nothing). `name` is what the script is called in nft's messages.
    pub(crate) fn nft_check(
        &self,
        script: &[u8],
        name: &str,
    ) -> Result<Option<Refused>, SystemError> {
        let (_dir, file) = script_file(script, name)?;
        let mut cmd = tool("nft");
        cmd.arg("-c").arg("-f").arg(&file);
        let out = command::output(&mut cmd, self.timeouts().firewall)?;
        if out.status.success() {
            return Ok(None);
        }
        refused_or_error(&cmd, &out, &file).map(Some)
    }

    /// `script` loaded into a new, empty network namespace that lives only for this call,
    /// then the table `family table` listed there as [`System::nft_table`] lists a live
    /// one: the form nft itself prints of the desired table. The host's ruleset is not
    /// touched. `Err(Refused)` when nft would not load it there.
    pub(crate) fn nft_canonical(
        &self,
        script: &[u8],
        name: &str,
        family: &str,
        table: &str,
    ) -> Result<Result<String, Refused>, SystemError> {
        let (_dir, file) = script_file(script, name)?;
        let mut cmd = tool("unshare");
        cmd.args(["--net", "--", "sh", "-c"])
            .arg("nft -f \"$1\" && nft -s list table \"$2\" \"$3\"")
            .arg("sh")
            .arg(&file)
            .args([family, table]);
        let out = command::output(&mut cmd, self.timeouts().firewall)?;
        if out.status.success() {
            return Ok(Ok(String::from_utf8_lossy(&out.stdout).into_owned()));
        }
        refused_or_error(&cmd, &out, &file).map(Err)
    }
}

impl Host<'_> {
    /// Loads `script` into the live ruleset with `nft -f`: one transaction, all or nothing.
    pub(crate) fn nft_load(&self, script: &[u8], name: &str) -> Result<(), SystemError> {
        let (_dir, file) = script_file(script, name)?;
        let mut cmd = tool("nft");
        cmd.arg("-f").arg(&file);
        let out = command::output(&mut cmd, self.timeouts().firewall)?;
        if out.status.success() {
            return Ok(());
        }
        let refused = refused_or_error(&cmd, &out, &file)?;
        Err(SystemError::Command {
            command: format!("nft -f {name}"),
            status: out.status.to_string(),
            stderr: refused.0,
        })
    }
}
