//! `group`: a group account, changed with groupadd/groupmod/groupdel.

use super::{Action, Change, FieldChange, Kind, Resource, ResourceError, ResourceId};
use super::{Footprint, Place, PlanSlots};
use crate::system::users::{AccountTool, GroupEntry};
use crate::system::{Host, System};

/// A managed group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupResource {
    /// Group name.
    pub name: String,
    /// Present (`true`) or absent.
    pub present: bool,
    /// Group id (`None`: groupadd picks one, an existing one is left alone).
    pub gid: Option<u32>,
    /// A system group (only matters on creation).
    pub system: bool,
}

impl Resource for GroupResource {
    type Live = Option<GroupEntry>;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Group, self.name.clone())
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint {
            place: Place::Elsewhere(Vec::new()),
            makes_directory: None,
            creates_account: self.present,
        }
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<Option<GroupEntry>, ResourceError> {
        Ok(sys.groups()?.into_iter().find(|g| g.name == self.name))
    }

    fn diff(&self, live: &Option<GroupEntry>) -> Option<Change> {
        let want_gid = self.gid.map(|g| g.to_string());
        match (live, self.present) {
            (None, false) => None,
            (Some(_), false) => Some(Change::fields(Action::Remove, Vec::new())),
            (None, true) => {
                let mut f = Vec::new();
                if want_gid.is_some() {
                    f.push(FieldChange::new("gid", None, want_gid));
                }
                if self.system {
                    f.push(FieldChange::new("system", None, Some("yes".into())));
                }
                Some(Change::fields(Action::Create, f))
            }
            (Some(g), true) => match self.gid {
                Some(gid) if gid != g.gid => Some(Change::fields(
                    Action::Update,
                    vec![FieldChange::new("gid", Some(g.gid.to_string()), want_gid)],
                )),
                _ => None,
            },
        }
    }

    fn apply(
        &self,
        host: &Host,
        _live: &Option<GroupEntry>,
        change: &Change,
    ) -> Result<(), ResourceError> {
        let mut args = Vec::new();
        let tool = match change.action {
            Action::Create => {
                if let Some(gid) = self.gid {
                    args.extend(["--gid".to_owned(), gid.to_string()]);
                }
                if self.system {
                    args.push("--system".into());
                }
                AccountTool::GroupAdd
            }
            Action::Remove => AccountTool::GroupDel,
            _ => {
                let gid = self.gid.expect("only a gid change updates a group");
                args.extend(["--gid".to_owned(), gid.to_string()]);
                AccountTool::GroupMod
            }
        };
        args.push(self.name.clone());
        host.account_tool(tool, &args)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gid_drift_is_an_update_and_absent_removes() {
        let g = GroupResource {
            name: "app".into(),
            present: true,
            gid: Some(1500),
            system: false,
        };
        let live = Some(GroupEntry {
            name: "app".into(),
            gid: 1400,
            members: Vec::new(),
        });
        let c = g.diff(&live).unwrap();
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.fields[0].before.as_deref(), Some("1400"));
        assert_eq!(g.diff(&None).unwrap().action, Action::Create);
        let gone = GroupResource {
            present: false,
            ..g
        };
        assert_eq!(gone.diff(&live).unwrap().action, Action::Remove);
        assert_eq!(gone.diff(&None), None);
    }
}
