//! `[[nftables]]` declarations: one resource for the live table, one file that persists it
//! for boot (after the table, so a table nft refuses is not persisted), and, when no role
//! manages it, the directory that file goes in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{Builder, Common, ContentFrom};
use crate::plan::{Edges, Planned};
use crate::resource::attrs::Ownership;
use crate::resource::content::Desired;
use crate::resource::directory::DirectoryResource;
use crate::resource::file::FileResource;
use crate::resource::nftables::{self, NftablesResource};
use crate::resource::AnyResource;
use crate::resource::{Kind, Resource, ResourceId};
use crate::role::Role;

impl Builder<'_> {
    pub(super) fn nftables(&mut self, role: &Role) {
        for spec in &role.spec.nftables {
            let s = spec.get_ref();
            let family = s.family.get_ref();
            if !nftables::FAMILIES.contains(&family.as_str()) {
                self.errors.push(role.error_at(
                    s.family.span().start,
                    format!(
                        "invalid nftables family '{}': expected one of {}",
                        family.escape_debug(),
                        nftables::FAMILIES.join(", ")
                    ),
                ));
                continue;
            }
            let table = s.table.get_ref();
            if let Err(e) = nftables::check_table(table) {
                self.errors.push(role.error_at(s.table.span().start, e));
                continue;
            }
            let path = nftables::persisted_path(family, table);
            let path_text = path.to_string_lossy().into_owned();
            let from = ContentFrom {
                offset: spec.span().start,
                what: format!("nftables table '{family} {table}'"),
                path: &path_text,
                content: &s.content,
                template: &s.template,
                source: &s.source,
                vars: &s.vars,
                sensitive: false,
            };
            let Some((from, content, _)) = self.content_from(role, from) else {
                continue;
            };
            let body = match content.load() {
                Ok(b) => b,
                Err(e) => {
                    let e = format!("nftables table '{family} {table}': {e}");
                    self.errors.push(role.error_at(spec.span().start, e));
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&body);
            if let Err(e) = nftables::check_body(&text) {
                // Pointed at the key the body came from.
                let at = [&s.template, &s.source]
                    .into_iter()
                    .flatten()
                    .next()
                    .map_or(spec.span().start, |k| k.span().start);
                let e = format!("nftables table '{family} {table}' ({from}): {e}");
                self.errors.push(role.error_at(at, e));
                continue;
            }
            let r = NftablesResource {
                family: family.clone(),
                table: table.clone(),
                content,
                from,
                purge_keep: s.purge.then(BTreeSet::new),
            };
            let id = r.id();
            self.push(role, Common::new(spec.span().start, &s.after), r);
            self.notify_last(role, &s.notify);
            let file = FileResource {
                path,
                content: Desired::bytes(nftables::persisted(family, table, &body)),
                ownership: root_owned(0o644),
                sensitive: false,
                managed_ancestor: Default::default(),
                validate: None,
            };
            let common = Common {
                implicit_after: vec![id],
                ..Common::new(spec.span().start, &[])
            };
            self.push(role, common, file);
        }
    }

    /// Once every role is planned: each purging table learns the family's declared tables,
    /// and the persisted files get their directory unless a role manages it.
    pub(super) fn nftables_finish(&mut self) {
        let mut declared: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut first = None;
        for (i, item) in self.items.iter().enumerate() {
            if item.id.kind != Kind::Nftables {
                continue;
            }
            first.get_or_insert(i);
            if let Some((family, table)) = item.id.name.split_once('/') {
                declared
                    .entry(family.to_owned())
                    .or_default()
                    .insert(table.to_owned());
            }
        }
        let Some(first) = first else {
            return;
        };
        for item in &mut self.items {
            let AnyResource::Nftables(r) = &mut item.resource else {
                continue;
            };
            if r.purge_keep.is_none() {
                continue;
            }
            r.purge_keep = declared.get(&r.family).cloned();
        }
        let dir = PathBuf::from(nftables::PERSIST_DIR);
        let dir_id = ResourceId::new(Kind::Directory, dir.to_string_lossy());
        if self.items.iter().any(|i| i.id == dir_id) {
            return;
        }
        let r = DirectoryResource {
            path: dir,
            ownership: root_owned(0o755),
            purge: false,
            keep: BTreeSet::new(),
            managed_ancestor: Default::default(),
        };
        let (role, at) = (self.items[first].role.clone(), self.items[first].at.clone());
        let mut item = Planned {
            id: dir_id,
            resource: r.into(),
            role,
            at,
            rendered: None,
            edges: None,
        };
        item.set_edges(Edges::default());
        self.items.push(item);
    }
}

/// Owned by root, with `mode`.
fn root_owned(mode: u32) -> Ownership {
    Ownership {
        owner: Some("0".into()),
        group: Some("0".into()),
        mode: Some(mode),
        ..Ownership::default()
    }
}
