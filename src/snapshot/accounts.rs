//! Users and groups from the tree's /etc/passwd and /etc/group. Never a password hash: the
//! shadow databases are not read at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::system::{System, SystemError};

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// The primary group's name (the gid when it has none).
    pub group: String,
    /// The GECOS field.
    pub comment: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    /// The gid.
    pub gid: u32,
    /// Supplementary members, as listed.
    pub members: Vec<String>,
}

type Users = BTreeMap<String, UserEntry>;
type Groups = BTreeMap<String, GroupEntry>;

pub(super) fn observe(sys: &System) -> Result<(Users, Groups), SystemError> {
    let groups: Groups = sys
        .groups()?
        .into_iter()
        .map(|g| {
            (
                g.name,
                GroupEntry {
                    gid: g.gid,
                    members: g.members,
                },
            )
        })
        .collect();
    let accounts = sys.accounts();
    let users = sys
        .passwd()?
        .into_iter()
        .map(|u| {
            let entry = UserEntry {
                uid: u.uid,
                gid: u.gid,
                group: accounts.group_name(u.gid),
                comment: u.comment,
                home: u.home,
                shell: u.shell,
            };
            (u.name, entry)
        })
        .collect();
    Ok((users, groups))
}
