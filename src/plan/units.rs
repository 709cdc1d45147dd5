//! Which resource of the run provides each service's unit file, so that a unit that does not
//! exist yet is a pending change in check when the run will create it, and an error in check
//! and apply alike when nothing will.

use std::path::Path;

use super::Planned;
use crate::resource::Kind;
use crate::system::systemd::UNIT_DIRS;

/// A unit comes from a file in a unit directory with its name, or else from a package the
/// service goes after (its namesake, or one named in `after`).
pub(super) fn fill_unit_providers(items: &mut [Planned]) {
    for s in 0..items.len() {
        let Some(service) = items[s].resource.service() else {
            continue;
        };
        let unit = service.unit();
        let file = items.iter().find(|p| {
            p.path().is_some_and(|path| {
                UNIT_DIRS
                    .iter()
                    .any(|dir| path == Path::new(dir).join(&unit))
            })
        });
        let item = &items[s];
        let package = || {
            items.iter().find(|p| {
                p.id.kind == Kind::Package
                    && (item.implicit_after().contains(&p.id)
                        || item.after().iter().any(|a| a.id == p.id))
            })
        };
        let provider = file.or_else(package).map(|p| p.id.clone());
        if let Some(svc) = items[s].resource.service_mut() {
            svc.unit_provider = provider;
        }
    }
}
