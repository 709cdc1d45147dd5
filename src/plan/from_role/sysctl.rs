//! `[sysctl]` tables: one resource per key for the live value, one drop-in for all of them.

use super::{Builder, Common};
use crate::plan::Edges;
use crate::plan::Planned;
use crate::resource::sysctl::{self, SysctlResource};
use crate::resource::sysctl_conf::SysctlConfResource;
use crate::resource::{Kind, ResourceId};
use crate::role::Role;

/// The `[sysctl]` keys seen so far and where the first of them was declared.
#[derive(Default)]
pub(super) struct SysctlKeys {
    entries: std::collections::BTreeMap<String, String>,
    roles: Vec<String>,
    at: Option<crate::diagnostics::Location>,
}

impl Builder<'_> {
    /// The drop-in goes after every live key, so a value the kernel refuses is not persisted.
    pub(super) fn sysctl_drop_in(&mut self) {
        let keys = std::mem::take(&mut self.sysctl);
        let Some(at) = keys.at else {
            return;
        };
        let implicit_after = keys
            .entries
            .keys()
            .map(|k| ResourceId::new(Kind::Sysctl, k.clone()))
            .collect();
        let r = SysctlConfResource::new(keys.entries);
        let mut item = Planned {
            id: crate::resource::Resource::id(&r),
            resource: r.into(),
            role: keys.roles.join(", ").into(),
            at,
            rendered: None,
            edges: None,
        };
        item.set_edges(Edges {
            implicit_after,
            ..Edges::default()
        });
        self.items.push(item);
    }

    pub(super) fn sysctl(&mut self, role: &Role) {
        for (key, value) in &role.spec.sysctl {
            // One spelling per key: `net/core/x` and `net.core.x` are the same setting.
            let dotted = crate::system::procfs::dotted_key(key.get_ref());
            let (k, v) = (&dotted, &value.get_ref().value);
            if let Err(e) = sysctl::check_key(k) {
                self.errors.push(role.error_at(key.span().start, e));
                continue;
            }
            if let Err(e) = sysctl::check_value(k, v) {
                self.errors.push(role.error_at(value.span().start, e));
                continue;
            }
            // `persist = false`: a live value only; the drop-in leaves it out.
            if value.get_ref().persist {
                let at = role.location(key.span().start);
                self.sysctl.at.get_or_insert(at);
                if !self.sysctl.roles.contains(&role.name) {
                    self.sysctl.roles.push(role.name.clone());
                }
                // A different value in another role is reported as a conflict by the planner.
                self.sysctl.entries.entry(k.clone()).or_insert(v.clone());
            }
            let r = SysctlResource {
                key: k.clone(),
                value: v.clone(),
            };
            let common = Common::new(key.span().start, &[]);
            self.push(role, common, r);
        }
    }
}
