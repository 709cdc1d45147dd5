//! `[sysfs]` tables: one resource per key for the live value, and the two boot files that
//! keep every persisted key (tmpfiles.d for fixed attributes, a udev rule for devices).

use std::collections::BTreeMap;

use super::{Builder, Common};
use crate::diagnostics::Location;
use crate::plan::{Edges, Planned};
use crate::resource::sysfs::{self, KeyShape, SysfsResource};
use crate::resource::sysfs_boot::{BootFile, SysfsBootResource};
use crate::resource::sysfs_glob::overlap;
use crate::resource::{Kind, Resource, ResourceId};
use crate::role::Role;

/// The persisted `[sysfs]` keys seen so far, by boot file, and where the first was declared.
#[derive(Default)]
pub(super) struct SysfsKeys {
    fixed: BTreeMap<String, String>,
    devices: BTreeMap<String, String>,
    roles: Vec<String>,
    at: Option<Location>,
    /// Every key of the run so far, with its value and place.
    declared: Vec<(String, String, Location)>,
}

impl Builder<'_> {
    pub(super) fn sysfs(&mut self, role: &Role) {
        for (key, value) in &role.spec.sysfs {
            let (k, v) = (key.get_ref(), &value.get_ref().value);
            let shape = match sysfs::check_key(k) {
                Ok(shape) => shape,
                Err(e) => {
                    self.errors.push(role.error_at(key.span().start, e));
                    continue;
                }
            };
            if let Err(e) = sysfs::check_value(k, v) {
                self.errors.push(role.error_at(value.span().start, e));
                continue;
            }
            let at = role.location(key.span().start);
            // Two keys naming one file with different values would undo each other on
            // every run (the same key twice is the planner's conflict).
            let clash = self
                .sysfs
                .declared
                .iter()
                .find(|(other, value, _)| other != k && value != v && overlap(other, k));
            if let Some((other, value, first)) = clash {
                let message = format!(
                    "conflict: sysfs '{k}' = {v} and '{other}' = {value} ({first}) can name the same attribute with different values; each run would undo the other"
                );
                self.errors.push(role.error_at(key.span().start, message));
                continue;
            }
            self.sysfs.declared.push((k.clone(), v.clone(), at.clone()));
            let persist = value.get_ref().persist;
            if persist {
                self.sysfs.at.get_or_insert(at.clone());
                if !self.sysfs.roles.contains(&role.name) {
                    self.sysfs.roles.push(role.name.clone());
                }
                let file = match shape {
                    KeyShape::Fixed => &mut self.sysfs.fixed,
                    KeyShape::Device { .. } => &mut self.sysfs.devices,
                };
                // A different value in another role is reported as a conflict by the planner.
                file.entry(k.clone()).or_insert(v.clone());
            }
            let r = SysfsResource {
                key: k.clone(),
                value: v.clone(),
                persist,
                declared_at: at.to_string(),
            };
            self.push(role, Common::new(key.span().start, &[]), r);
        }
    }

    /// The boot files go after every live key, so a value the kernel refuses is not kept.
    pub(super) fn sysfs_finish(&mut self) {
        let keys = std::mem::take(&mut self.sysfs);
        let Some(at) = keys.at else {
            return;
        };
        let live: Vec<ResourceId> = keys
            .fixed
            .keys()
            .chain(keys.devices.keys())
            .map(|k| ResourceId::new(Kind::Sysfs, k.clone()))
            .collect();
        for (format, entries) in [
            (BootFile::Tmpfiles, keys.fixed),
            (BootFile::Udev, keys.devices),
        ] {
            if entries.is_empty() {
                continue;
            }
            let r = SysfsBootResource::new(format, entries);
            let mut item = Planned {
                id: Resource::id(&r),
                resource: r.into(),
                role: keys.roles.join(", ").into(),
                at: at.clone(),
                rendered: None,
                edges: None,
            };
            item.set_edges(Edges {
                implicit_after: live.clone(),
                ..Edges::default()
            });
            self.items.push(item);
        }
    }
}
