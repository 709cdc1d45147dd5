//! Owner, group and mode: the attributes files and directories share.

use std::sync::Arc;

use super::{FieldChange, Kind, ResourceError};
use crate::system::fs::{Attrs, Meta};
use crate::system::Accounts;

/// Desired ownership and permissions as written in a role (`None`: leave as is).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ownership {
    /// User name or uid.
    pub owner: Option<String>,
    /// Group name or gid.
    pub group: Option<String>,
    /// Permission bits.
    pub mode: Option<u32>,
    /// The owner is a user that a resource of this run creates (filled in by the plan).
    pub owner_planned: bool,
    /// The group is one that a resource of this run creates (filled in by the plan).
    pub group_planned: bool,
}

/// Parses an octal mode string such as `0644` or `2775`.
pub(crate) fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

/// Formats permission bits the way roles write them.
pub(crate) fn format_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// Ownership resolved against the tree's account databases, plus those for display.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Ids to set.
    pub attrs: Attrs,
    /// For naming live ids in diffs.
    pub accounts: Arc<Accounts>,
    /// An owner created earlier in this run, not in the account database yet (check mode).
    pub pending_owner: Option<String>,
    /// A group created earlier in this run, not in the account database yet (check mode).
    pub pending_group: Option<String>,
}

impl Ownership {
    /// The user and group resources this ownership refers to (they must exist first).
    pub(crate) fn account_ids(&self) -> Vec<super::ResourceId> {
        let mut ids = Vec::new();
        if let Some(o) = &self.owner {
            ids.push(super::ResourceId::new(Kind::User, o.clone()));
        }
        if let Some(g) = &self.group {
            ids.push(super::ResourceId::new(Kind::Group, g.clone()));
        }
        ids
    }

    /// Resolves names to ids in the tree's /etc/passwd and /etc/group.
    ///
    /// A name that does not exist yet but is created earlier in this run is pending: check
    /// reports the ownership change (apply resolves it once the account exists).
    pub(crate) fn resolve(&self, accounts: Arc<Accounts>) -> Result<Resolved, ResourceError> {
        let mut pending_owner = None;
        let uid = match &self.owner {
            Some(o) => match accounts.uid(o) {
                Some(uid) => Some(uid),
                None if self.owner_planned => {
                    pending_owner = Some(o.clone());
                    None
                }
                None => return Err(ResourceError::UnknownUser(o.clone())),
            },
            None => None,
        };
        let mut pending_group = None;
        let gid = match &self.group {
            Some(g) => match accounts.gid(g) {
                Some(gid) => Some(gid),
                None if self.group_planned => {
                    pending_group = Some(g.clone());
                    None
                }
                None => return Err(ResourceError::UnknownGroup(g.clone())),
            },
            None => None,
        };
        Ok(Resolved {
            attrs: Attrs {
                uid,
                gid,
                mode: self.mode,
            },
            accounts,
            pending_owner,
            pending_group,
        })
    }
}

impl Resolved {
    /// The attributes that differ from `live` (all requested ones when nothing exists yet).
    pub fn diff(&self, live: Option<&Meta>) -> Vec<FieldChange> {
        let a = &self.accounts;
        let mut out = Vec::new();
        if let Some(name) = &self.pending_owner {
            out.push(FieldChange::new(
                "owner",
                live.map(|m| a.user_name(m.uid)),
                Some(name.clone()),
            ));
        }
        if let Some(name) = &self.pending_group {
            out.push(FieldChange::new(
                "group",
                live.map(|m| a.group_name(m.gid)),
                Some(name.clone()),
            ));
        }
        if let Some(uid) = self.attrs.uid {
            if live.map(|m| m.uid) != Some(uid) {
                out.push(FieldChange::new(
                    "owner",
                    live.map(|m| a.user_name(m.uid)),
                    Some(a.user_name(uid)),
                ));
            }
        }
        if let Some(gid) = self.attrs.gid {
            if live.map(|m| m.gid) != Some(gid) {
                out.push(FieldChange::new(
                    "group",
                    live.map(|m| a.group_name(m.gid)),
                    Some(a.group_name(gid)),
                ));
            }
        }
        if let Some(mode) = self.attrs.mode {
            if live.map(|m| m.mode) != Some(mode) {
                out.push(FieldChange::new(
                    "mode",
                    live.map(|m| format_mode(m.mode)),
                    Some(format_mode(mode)),
                ));
            }
        }
        out
    }

    /// Only the attributes that differ from `live`: the ones [`Resolved::diff`] reports,
    /// so apply touches nothing check did not show.
    pub(crate) fn differing(&self, live: Option<&Meta>) -> Attrs {
        let differs = |now: Option<u32>, want: Option<u32>| want.filter(|w| now != Some(*w));
        Attrs {
            uid: differs(live.map(|m| m.uid), self.attrs.uid),
            gid: differs(live.map(|m| m.gid), self.attrs.gid),
            mode: differs(live.map(|m| m.mode), self.attrs.mode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("2775"), Some(0o2775));
        assert_eq!(parse_mode("600"), Some(0o600));
        assert_eq!(parse_mode("0o640"), Some(0o640));
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(parse_mode("rw-r--r--"), None);
        assert_eq!(parse_mode("07777"), None);
        assert_eq!(format_mode(0o644), "0644");
    }
}
