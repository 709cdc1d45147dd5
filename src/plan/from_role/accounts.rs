//! `[[group]]` and `[[user]]` declarations: names checked, groups ordered before their users.

use toml::Spanned;

use super::{Builder, Common};
use crate::resource::group::GroupResource;
use crate::resource::user::UserResource;
use crate::resource::{Kind, ResourceId};
use crate::role::model::Ensure;
use crate::role::Role;

impl Builder<'_> {
    /// `[[group]]` declarations.
    pub(super) fn groups(&mut self, role: &Role) {
        for spec in &role.spec.group {
            let s = spec.get_ref();
            if !self.account_name(role, &s.name, "group") {
                continue;
            }
            if let Some(e) = super::reserved_id(role, &s.gid, "gid") {
                self.errors.push(e);
                continue;
            }
            let r = GroupResource {
                name: s.name.get_ref().clone(),
                present: s.ensure == Ensure::Present,
                gid: s.gid.as_ref().map(|g| *g.get_ref()),
                system: s.system,
            };
            let common = Common::new(spec.span().start, &s.after);
            self.push(role, common, r);
        }
    }

    /// `[[user]]` declarations.
    pub(super) fn users(&mut self, role: &Role) {
        for spec in &role.spec.user {
            let s = spec.get_ref();
            let mut ok = self.account_name(role, &s.name, "user");
            for e in [
                super::reserved_id(role, &s.uid, "uid"),
                super::reserved_id(role, &s.gid, "gid"),
            ]
            .into_iter()
            .flatten()
            {
                self.errors.push(e);
                ok = false;
            }
            let group = match (&s.gid, &s.group) {
                (Some(_), Some(g)) => {
                    self.errors.push(role.error_at(
                        g.span().start,
                        "give the primary group as gid or as group, not both",
                    ));
                    ok = false;
                    None
                }
                (Some(gid), None) => Some(gid.get_ref().to_string()),
                (None, Some(g)) => {
                    ok &= self.account_name(role, g, "group");
                    Some(g.get_ref().clone())
                }
                (None, None) => None,
            };
            let mut groups = None;
            if let Some(list) = &s.groups {
                let mut set = std::collections::BTreeSet::new();
                for g in list {
                    ok &= self.account_name(role, g, "group");
                    set.insert(g.get_ref().clone());
                }
                groups = Some(set);
            }
            for p in [&s.home, &s.shell].into_iter().flatten() {
                let text = p.get_ref();
                if !text.starts_with('/')
                    || text.contains(':')
                    || text.chars().any(char::is_control)
                {
                    self.errors.push(role.error_at(
                        p.span().start,
                        format!(
                            "invalid path '{}': expected an absolute path without ':' or control characters",
                            text.escape_debug()
                        ),
                    ));
                    ok = false;
                }
            }
            if let Some(c) = &s.comment {
                if c.get_ref().contains([':', '\n']) {
                    self.errors.push(role.error_at(
                        c.span().start,
                        "invalid comment: it must be one line without ':'",
                    ));
                    ok = false;
                }
            }
            if !ok {
                continue;
            }
            // The primary and supplementary groups must exist before the user refers to them.
            let implicit_after = group
                .iter()
                .chain(groups.iter().flatten())
                .filter(|g| g.parse::<u32>().is_err())
                .map(|g| ResourceId::new(Kind::Group, g.clone()))
                .collect();
            let r = UserResource {
                name: s.name.get_ref().clone(),
                present: s.ensure == Ensure::Present,
                uid: s.uid.as_ref().map(|u| *u.get_ref()),
                group,
                groups,
                home: s.home.as_ref().map(|h| h.get_ref().clone()),
                shell: s.shell.as_ref().map(|h| h.get_ref().clone()),
                comment: s.comment.as_ref().map(|h| h.get_ref().clone()),
                system: s.system,
                // Like useradd's own convention: people get a home, system accounts do not.
                manage_home: s.manage_home.unwrap_or(!s.system),
            };
            let common = Common {
                implicit_after,
                ..Common::new(spec.span().start, &s.after)
            };
            self.push(role, common, r);
        }
    }

    /// Whether `name` is a valid user or group name (what shadow-utils accepts by default).
    fn account_name(&mut self, role: &Role, name: &Spanned<String>, what: &str) -> bool {
        let n = name.get_ref();
        let body = n.strip_suffix('$').unwrap_or(n);
        let valid = !body.is_empty()
            && n.len() <= 32
            && !body.starts_with('-')
            && body.parse::<u64>().is_err()
            && body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            self.errors.push(role.error_at(
                name.span().start,
                format!(
                    "invalid {what} name '{n}': expected letters, digits, '_', '-' or '.' \
                     (at most 32, not all digits)"
                ),
            ));
        }
        valid
    }
}
