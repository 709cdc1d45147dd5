//! Accounts: reading the tree's /etc/passwd and /etc/group, changing them only through the
//! shadow-utils tools (`useradd`, `usermod`, ... with `--root` for a tree), which take the
//! locks, keep /etc/shadow and /etc/gshadow consistent and create home directories.

use std::io;
use std::path::Path;
use std::process::Command;

use super::{Host, System, SystemError};

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// The GECOS field.
    pub comment: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Users listed as supplementary members.
    pub members: Vec<String>,
}

/// Parses /etc/passwd text; malformed lines are skipped, as the C library does.
pub(crate) fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                comment: f[4].to_owned(),
                home: f[5].to_owned(),
                shell: f[6].to_owned(),
            })
        })
        .collect()
}

/// Parses /etc/group text; malformed lines are skipped.
pub(crate) fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// The shadow-utils tools converge changes accounts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountTool {
    /// `useradd`
    UserAdd,
    /// `usermod`
    UserMod,
    /// `userdel`
    UserDel,
    /// `groupadd`
    GroupAdd,
    /// `groupmod`
    GroupMod,
    /// `groupdel`
    GroupDel,
}

impl AccountTool {
    /// The program name.
    pub fn program(self) -> &'static str {
        match self {
            AccountTool::UserAdd => "useradd",
            AccountTool::UserMod => "usermod",
            AccountTool::UserDel => "userdel",
            AccountTool::GroupAdd => "groupadd",
            AccountTool::GroupMod => "groupmod",
            AccountTool::GroupDel => "groupdel",
        }
    }
}

impl System {
    /// The users of the tree (none when it has no /etc/passwd).
    pub fn passwd(&self) -> Result<Vec<PasswdEntry>, SystemError> {
        Ok(parse_passwd(&self.read_account_db("/etc/passwd")?))
    }

    /// The groups of the tree (none when it has no /etc/group).
    pub fn groups(&self) -> Result<Vec<GroupEntry>, SystemError> {
        Ok(parse_group(&self.read_account_db("/etc/group")?))
    }

    /// The database at `path` read as in a chroot: `/etc/passwd -> /etc/passwd-` in a tree is
    /// the tree's file, and a fifo there is an error, not a hang.
    fn read_account_db(&self, path: &str) -> Result<String, SystemError> {
        match super::tree_file::read_in_root(self.root(), Path::new(path)) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(SystemError::io(Path::new(path), e)),
        }
    }
}

impl Host<'_> {
    /// Runs a shadow-utils tool on the tree (`--root ROOT` unless it is `/`), then drops the
    /// cached account databases so later owner lookups in this run see the change.
    pub(crate) fn account_tool(
        &self,
        tool: AccountTool,
        args: &[String],
    ) -> Result<(), SystemError> {
        let sys = self.system();
        let mut cmd = Command::new(tool.program());
        if !sys.is_live() {
            cmd.arg("--root").arg(sys.root());
        }
        cmd.args(args)
            .env("PATH", super::process::DEFAULT_PATH)
            .env("LC_ALL", "C");
        let shown = super::process::describe(&cmd);
        tracing::debug!(command = %shown, "changing accounts");
        let out = super::process::run_with_deadline(&mut cmd, &shown, sys.timeouts().account);
        // Even a failed tool may have changed something (home directories too); never trust
        // the caches after it ran.
        sys.forget_accounts();
        sys.forget_paths();
        let out = out?;
        if out.status.success() {
            return Ok(());
        }
        Err(SystemError::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: super::process::tail(&out.stderr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_account_databases() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbroken line\napp:x:1500:1500:App,,,:/srv/app:/usr/sbin/nologin\n",
        );
        assert_eq!(users.len(), 2);
        assert_eq!(
            users[1],
            PasswdEntry {
                name: "app".into(),
                uid: 1500,
                gid: 1500,
                comment: "App,,,".into(),
                home: "/srv/app".into(),
                shell: "/usr/sbin/nologin".into(),
            }
        );
        let groups = parse_group("sudo:x:27:\nweb:x:33:app,alice\nbad:x:zz:\n");
        assert_eq!(groups.len(), 2);
        assert!(groups[0].members.is_empty());
        assert_eq!(groups[1].members, ["app", "alice"]);
    }
}
