//! `user`: a login account and its attributes, changed with useradd/usermod/userdel.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, Place, PlanSlots};
use crate::system::users::{AccountTool, GroupEntry, PasswdEntry};
use crate::system::{Host, System};

/// A managed user. `None` fields are left as they are (or to useradd's defaults on creation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserResource {
    /// Login name.
    pub name: String,
    /// Present (`true`) or absent.
    pub present: bool,
    /// User id.
    pub uid: Option<u32>,
    /// Primary group: a name or a numeric gid.
    pub group: Option<String>,
    /// Supplementary groups, the exact set.
    pub groups: Option<BTreeSet<String>>,
    /// Home directory.
    pub home: Option<String>,
    /// Login shell.
    pub shell: Option<String>,
    /// The GECOS field.
    pub comment: Option<String>,
    /// A system account (only matters on creation: ids from the system range, no aging).
    pub system: bool,
    /// Create the home directory with the user, move it with `home`, remove it with the user.
    pub manage_home: bool,
}

/// What a user resource finds.
#[derive(Debug)]
pub struct UserLive {
    entry: Option<PasswdEntry>,
    /// Name of the primary group (the gid when it has none).
    group: String,
    /// Supplementary groups that list the user.
    groups: BTreeSet<String>,
}

impl UserResource {
    /// Whether the live primary group is the desired one, by name or by number.
    fn group_matches(&self, entry: &PasswdEntry, live_name: &str) -> bool {
        match &self.group {
            None => true,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => entry.gid == gid,
                Err(_) => live_name == g,
            },
        }
    }

    /// Every requested attribute, for a new account.
    fn create_fields(&self) -> Vec<FieldChange> {
        let mut f = Vec::new();
        let mut push = |name: &str, v: Option<String>| {
            if v.is_some() {
                f.push(FieldChange::new(name, None, v));
            }
        };
        push("uid", self.uid.map(|u| u.to_string()));
        push("group", self.group.clone());
        push(
            "groups",
            self.groups.as_ref().filter(|g| !g.is_empty()).map(join),
        );
        push("home", self.home.clone());
        push("shell", self.shell.clone());
        push("comment", self.comment.clone());
        push("system", self.system.then(|| "yes".into()));
        push("home directory", self.manage_home.then(|| "create".into()));
        f
    }

    fn useradd_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        let mut opt = |flag: &str, v: &Option<String>| {
            if let Some(v) = v {
                a.push(flag.to_owned());
                a.push(v.clone());
            }
        };
        opt("--uid", &self.uid.map(|u| u.to_string()));
        opt("--gid", &self.group);
        let groups = self.groups.as_ref().filter(|g| !g.is_empty());
        opt("--groups", &groups.map(|g| join_with(g, ",")));
        opt("--home-dir", &self.home);
        opt("--shell", &self.shell);
        opt("--comment", &self.comment);
        if self.system {
            a.push("--system".into());
        }
        a.push(
            if self.manage_home {
                "--create-home"
            } else {
                "--no-create-home"
            }
            .into(),
        );
        a.push(self.name.clone());
        a
    }

    /// The attributes of an existing account that differ: what diff reports and usermod
    /// changes, each with its live and desired value.
    fn differing(&self, e: &PasswdEntry, live: &UserLive) -> Vec<(Attr, String, String)> {
        let mut out = Vec::new();
        let mut differ = |attr: Attr, now: String, want: Option<String>| {
            if let Some(want) = want.filter(|w| *w != now) {
                out.push((attr, now, want));
            }
        };
        differ(
            Attr::Uid,
            e.uid.to_string(),
            self.uid.map(|u| u.to_string()),
        );
        if !self.group_matches(e, &live.group) {
            differ(Attr::Group, live.group.clone(), self.group.clone());
        }
        if self.groups.as_ref().is_some_and(|g| *g != live.groups) {
            differ(
                Attr::Groups,
                join(&live.groups),
                self.groups.as_ref().map(join),
            );
        }
        differ(Attr::Home, e.home.clone(), self.home.clone());
        differ(Attr::Shell, e.shell.clone(), self.shell.clone());
        differ(Attr::Comment, e.comment.clone(), self.comment.clone());
        out
    }

    /// Only the attributes that differ, so apply does nothing check did not report.
    fn usermod_args(&self, differing: &[(Attr, String, String)]) -> Vec<String> {
        let mut a = Vec::new();
        for (attr, _, _) in differing {
            let (flag, value) = match attr {
                Attr::Uid => ("--uid", self.uid.map(|u| u.to_string())),
                Attr::Group => ("--gid", self.group.clone()),
                Attr::Groups => ("--groups", self.groups.as_ref().map(|g| join_with(g, ","))),
                Attr::Home => ("--home", self.home.clone()),
                Attr::Shell => ("--shell", self.shell.clone()),
                Attr::Comment => ("--comment", self.comment.clone()),
            };
            if let Some(value) = value {
                a.push(flag.to_owned());
                a.push(value);
            }
        }
        if differing.iter().any(|(attr, ..)| *attr == Attr::Home) && self.manage_home {
            a.push("--move-home".into());
        }
        a.push(self.name.clone());
        a
    }
}

/// An account attribute that usermod can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    Uid,
    Group,
    Groups,
    Home,
    Shell,
    Comment,
}

impl Attr {
    /// The field name in change records.
    fn field(self) -> &'static str {
        match self {
            Attr::Uid => "uid",
            Attr::Group => "group",
            Attr::Groups => "groups",
            Attr::Home => "home",
            Attr::Shell => "shell",
            Attr::Comment => "comment",
        }
    }
}

/// For reports: an empty list must still be visible.
fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "(none)".into()
    } else {
        join_with(set, ", ")
    }
}

fn join_with(set: &BTreeSet<String>, sep: &str) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(sep)
}

/// The user's primary group name and the groups listing it as a member.
fn memberships(entry: &PasswdEntry, groups: &[GroupEntry]) -> (String, BTreeSet<String>) {
    let primary = groups
        .iter()
        .find(|g| g.gid == entry.gid)
        .map_or_else(|| entry.gid.to_string(), |g| g.name.clone());
    let member_of = groups
        .iter()
        .filter(|g| g.members.contains(&entry.name))
        .map(|g| g.name.clone())
        .collect();
    (primary, member_of)
}

impl Resource for UserResource {
    type Live = UserLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::User, self.name.clone())
    }

    fn footprint(&self) -> Footprint<'_> {
        // Without `home`, useradd's default on Debian is /home/NAME.
        let home = || {
            self.home
                .as_ref()
                .map_or_else(|| Path::new("/home").join(&self.name), PathBuf::from)
        };
        Footprint {
            place: Place::Elsewhere(if self.present {
                vec![home()]
            } else {
                Vec::new()
            }),
            makes_directory: (self.present && self.manage_home)
                .then(|| self.home.as_deref().map(Path::new))
                .flatten(),
            creates_account: self.present,
        }
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<UserLive, ResourceError> {
        let entry = sys.passwd()?.into_iter().find(|u| u.name == self.name);
        let (group, groups) = match &entry {
            Some(e) => memberships(e, &sys.groups()?),
            None => (String::new(), BTreeSet::new()),
        };
        Ok(UserLive {
            entry,
            group,
            groups,
        })
    }

    fn diff(&self, live: &UserLive) -> Option<Change> {
        match (&live.entry, self.present) {
            (None, false) => None,
            (Some(e), false) => {
                let fields = if self.manage_home {
                    vec![FieldChange::new(
                        "home directory",
                        Some(e.home.clone()),
                        None,
                    )]
                } else {
                    Vec::new()
                };
                Some(Change::fields(Action::Remove, fields))
            }
            (None, true) => Some(Change::fields(Action::Create, self.create_fields())),
            (Some(e), true) => {
                let f: Vec<FieldChange> = self
                    .differing(e, live)
                    .into_iter()
                    .map(|(attr, now, want)| FieldChange::new(attr.field(), Some(now), Some(want)))
                    .collect();
                (!f.is_empty()).then(|| Change::fields(Action::Update, f))
            }
        }
    }

    fn apply(&self, host: &Host, live: &UserLive, change: &Change) -> Result<(), ResourceError> {
        let (tool, args) = match change.action {
            Action::Create => (AccountTool::UserAdd, self.useradd_args()),
            Action::Remove => {
                let mut args = Vec::new();
                if self.manage_home {
                    args.push("--remove".to_owned());
                }
                args.push(self.name.clone());
                (AccountTool::UserDel, args)
            }
            _ => {
                let differing = match &live.entry {
                    Some(e) => self.differing(e, live),
                    None => Vec::new(),
                };
                (AccountTool::UserMod, self.usermod_args(&differing))
            }
        };
        host.account_tool(tool, &args)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserResource {
        UserResource {
            name: "app".into(),
            present: true,
            uid: Some(1500),
            group: Some("app".into()),
            groups: Some(["adm".to_owned(), "www-data".to_owned()].into()),
            home: Some("/srv/app".into()),
            shell: Some("/bin/bash".into()),
            comment: None,
            system: false,
            manage_home: true,
        }
    }

    fn live(shell: &str, groups: &[&str]) -> UserLive {
        UserLive {
            entry: Some(PasswdEntry {
                name: "app".into(),
                uid: 1500,
                gid: 1500,
                comment: "".into(),
                home: "/srv/app".into(),
                shell: shell.into(),
            }),
            group: "app".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn only_differing_fields_change_and_only_they_reach_usermod() {
        let u = user();
        assert_eq!(u.diff(&live("/bin/bash", &["www-data", "adm"])), None);
        let drifted = live("/bin/sh", &["adm"]);
        let c = u.diff(&drifted).unwrap();
        let shown: Vec<_> = c
            .fields
            .iter()
            .map(|f| format!("{}: {:?} → {:?}", f.field, f.before, f.after))
            .collect();
        assert_eq!(
            shown,
            [
                "groups: Some(\"adm\") → Some(\"adm, www-data\")",
                "shell: Some(\"/bin/sh\") → Some(\"/bin/bash\")"
            ]
        );
        assert_eq!(
            u.usermod_args(&u.differing(drifted.entry.as_ref().unwrap(), &drifted)),
            ["--groups", "adm,www-data", "--shell", "/bin/bash", "app"]
        );
    }

    #[test]
    fn creation_passes_every_requested_attribute() {
        let c = user()
            .diff(&UserLive {
                entry: None,
                group: String::new(),
                groups: BTreeSet::new(),
            })
            .unwrap();
        assert_eq!(c.action, Action::Create);
        assert!(c.touches("uid") && c.touches("home directory"));
        assert_eq!(
            user().useradd_args(),
            [
                "--uid",
                "1500",
                "--gid",
                "app",
                "--groups",
                "adm,www-data",
                "--home-dir",
                "/srv/app",
                "--shell",
                "/bin/bash",
                "--create-home",
                "app"
            ]
        );
    }

    #[test]
    fn a_numeric_group_compares_by_gid_and_absent_removes() {
        let mut u = user();
        u.group = Some("1500".into());
        assert_eq!(u.diff(&live("/bin/bash", &["adm", "www-data"])), None);
        u.present = false;
        let c = u.diff(&live("/bin/bash", &[])).unwrap();
        assert_eq!(c.action, Action::Remove);
    }
}
