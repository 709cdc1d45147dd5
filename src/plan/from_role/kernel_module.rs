//! `[[kernel_module]]`: the live module, and the two files that make it hold at boot, as
//! ordinary file and absent resources (their diffs, backups and rollback are the file
//! path's).
//!
//! Order: a loaded module's options are written before it loads (modprobe reads them then),
//! and its modules-load.d entry after it loaded, so a module this kernel lacks is not set to
//! load at every boot. An absent module is unloaded first and blacklisted after: a module
//! still in use fails, and nothing about it changes.

use std::path::PathBuf;

use super::{Builder, Common};
use crate::resource::absent::AbsentResource;
use crate::resource::file::FileResource;
use crate::resource::kernel_module::{self as km, KernelModuleResource, ModuleEnsure};
use crate::resource::{AnyResource, Resource, ResourceId};
use crate::role::Role;
use crate::system::modules::normalise;

impl Builder<'_> {
    pub(super) fn kernel_modules(&mut self, role: &Role) {
        for spec in &role.spec.kernel_module {
            let s = spec.get_ref();
            if let Err(e) = km::check_name(s.name.get_ref()) {
                self.errors.push(role.error_at(s.name.span().start, e));
                continue;
            }
            let name = normalise(s.name.get_ref());
            let ensure = match s.ensure.as_ref().map(|e| (e.get_ref().as_str(), e)) {
                None | Some(("loaded", _)) => ModuleEnsure::Loaded,
                Some(("absent", _)) => ModuleEnsure::Absent,
                Some((other, at)) => {
                    self.errors.push(role.error_at(
                        at.span().start,
                        format!(
                            "invalid ensure '{}' for kernel module '{name}': expected \"loaded\" or \"absent\"",
                            other.escape_default()
                        ),
                    ));
                    continue;
                }
            };
            let options = match (&s.options, ensure) {
                (None, _) => None,
                (Some(o), ModuleEnsure::Absent) => {
                    self.errors.push(role.error_at(
                        o.span().start,
                        format!("kernel module '{name}': options only go with ensure = \"loaded\""),
                    ));
                    continue;
                }
                (Some(o), ModuleEnsure::Loaded) => match km::check_options(o.get_ref()) {
                    Ok(()) => Some(o.get_ref().split_whitespace().collect::<Vec<_>>().join(" ")),
                    Err(e) => {
                        self.errors.push(role.error_at(o.span().start, e));
                        continue;
                    }
                },
            };
            let at = spec.span().start;
            let module = KernelModuleResource {
                name: name.clone(),
                ensure,
                options: options.clone(),
            };
            let module_id = Resource::id(&module);
            let load_path = km::load_file(&name);
            let modprobe_path = km::modprobe_file(&name);
            match ensure {
                ModuleEnsure::Loaded => {
                    let modprobe_d: AnyResource = match &options {
                        Some(o) => file(modprobe_path, km::options_text(&name, o)),
                        None => absent(modprobe_path),
                    };
                    let modprobe_id = modprobe_d.id();
                    self.push(role, Common::new(at, &[]), modprobe_d);
                    let common = Common {
                        implicit_after: vec![modprobe_id],
                        ..Common::new(at, &s.after)
                    };
                    self.push(role, common, module);
                    let boot = file(load_path, km::load_text(&name));
                    self.push(role, after(at, &module_id), boot);
                }
                ModuleEnsure::Absent => {
                    self.push(role, Common::new(at, &s.after), module);
                    let blacklist = file(modprobe_path, km::blacklist_text(&name));
                    self.push(role, after(at, &module_id), blacklist);
                    self.push(role, after(at, &module_id), absent(load_path));
                }
            }
        }
    }
}

/// A declaration at `offset` that follows `id`.
fn after<'s>(offset: usize, id: &ResourceId) -> Common<'s> {
    Common {
        implicit_after: vec![id.clone()],
        ..Common::new(offset, &[])
    }
}

fn file(path: PathBuf, text: String) -> AnyResource {
    FileResource::system(path, text).into()
}

fn absent(path: PathBuf) -> AnyResource {
    AbsentResource { path, force: false }.into()
}
