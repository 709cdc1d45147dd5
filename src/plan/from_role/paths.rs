//! `[[file]]`, `[[directory]]`, `[[symlink]]` and `[[absent]]` declarations.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{control_character, Builder, Common, Rendered};
use crate::resource::absent::AbsentResource;
use crate::resource::directory::DirectoryResource;
use crate::resource::file::FileResource;
use crate::resource::symlink::SymlinkResource;
use crate::role::model::FileSpec;
use crate::role::{sections, Role};
use toml::Spanned;

impl Builder<'_> {
    /// `[[file]]`: path, ownership, content from one of content, template or source. Each
    /// spec is parsed (when its role left it as text) and dropped as it is planned: with
    /// thousands of files, specs and resources are never all held at once.
    pub(super) fn files(&mut self, role: &mut Role) {
        let specs = std::mem::take(&mut role.spec.file);
        let tables = std::mem::take(&mut role.spec.file_tables);
        let role = &*role;
        for spec in specs {
            self.file(role, spec);
        }
        for range in tables {
            match sections::parse_table(&role.text, range) {
                Some(spec) => self.file(role, spec),
                None => {
                    self.unparsed = true;
                    return;
                }
            }
        }
    }

    fn file(&mut self, role: &Role, spec: Spanned<Box<FileSpec>>) {
        let s = spec.get_ref();
        let Some(path) = self.path(role, &s.path) else {
            return;
        };
        let Some(ownership) = self.ownership(role, &s.owner, &s.group, &s.mode) else {
            return;
        };
        let Some((from, content, kept)) = self.content(role, &spec) else {
            return;
        };
        let Some(validate) = self.validate_command(role, &s.validate) else {
            return;
        };
        let rendered = kept.map(|content| Rendered {
            from,
            content,
            sensitive: s.sensitive,
        });
        let implicit_after = ownership.account_ids();
        let r = FileResource {
            path,
            content,
            ownership,
            sensitive: s.sensitive,
            managed_ancestor: Default::default(),
            validate,
        };
        let common = Common {
            implicit_after,
            rendered,
            ..Common::new(spec.span().start, &s.after)
        };
        self.push(role, common, r);
        self.notify_last(role, &s.notify);
    }

    /// `[[directory]]`: path and ownership; what a purge keeps is filled in later. Specs
    /// are dropped once planned, as files' are (a role may make a directory per few files).
    pub(super) fn directories(&mut self, role: &mut Role) {
        let specs = std::mem::take(&mut role.spec.directory);
        let role = &*role;
        for spec in &specs {
            let s = spec.get_ref();
            let Some(path) = self.path(role, &s.path) else {
                continue;
            };
            let Some(ownership) = self.ownership(role, &s.owner, &s.group, &s.mode) else {
                continue;
            };
            let implicit_after = ownership.account_ids();
            let r = DirectoryResource {
                path,
                ownership,
                purge: s.purge,
                keep: BTreeSet::new(),
                managed_ancestor: Default::default(),
            };
            let common = Common {
                implicit_after,
                ..Common::new(spec.span().start, &s.after)
            };
            self.push(role, common, r);
            self.notify_last(role, &s.notify);
        }
    }

    /// `[[symlink]]`: path and target as written.
    pub(super) fn symlinks(&mut self, role: &Role) {
        for spec in &role.spec.symlink {
            let s = spec.get_ref();
            let target = s.target.get_ref();
            let bad_target = if target.is_empty() {
                Some("empty symlink target: expected the path the link points at".to_owned())
            } else {
                control_character(target).map(|why| format!("invalid symlink target: {why}"))
            };
            if let Some(message) = bad_target {
                self.errors
                    .push(role.error_at(s.target.span().start, message));
                continue;
            }
            let Some(path) = self.path(role, &s.path) else {
                continue;
            };
            let r = SymlinkResource {
                path,
                target: PathBuf::from(target),
                force: s.force,
                managed_ancestor: Default::default(),
            };
            let common = Common {
                ..Common::new(spec.span().start, &s.after)
            };
            self.push(role, common, r);
            self.notify_last(role, &s.notify);
        }
    }

    /// `[[absent]]`: a path to remove.
    pub(super) fn absents(&mut self, role: &Role) {
        for spec in &role.spec.absent {
            let s = spec.get_ref();
            let Some(path) = self.path(role, &s.path) else {
                continue;
            };
            let r = AbsentResource {
                path,
                force: s.force,
            };
            let common = Common {
                ..Common::new(spec.span().start, &s.after)
            };
            self.push(role, common, r);
            self.notify_last(role, &s.notify);
        }
    }
}
