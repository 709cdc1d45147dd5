//! Service declarations, and the `notify` edges every resource may carry.

use std::path::PathBuf;

use toml::Spanned;

use super::{Builder, Common, ContentFrom};
use crate::plan::{After, Rendered};
use crate::resource::attrs::Ownership;
use crate::resource::file::FileResource;
use crate::resource::service::{unit_name, RunState, ServiceResource, OTHER_UNIT_SUFFIXES};
use crate::resource::{Kind, ResourceId};
use crate::role::model::ServiceState;
use crate::role::Role;

/// Where a service's `unit` is written: the admin's directory, which wins over packaged units.
pub(super) const UNIT_DIR: &str = "/etc/systemd/system";

/// The unit types a `[[service]]` may name besides `.service`: the ones that activate a
/// service (a timer, a socket, a path), enabled, started, masked and notified alike.
pub(super) const ACTIVATING_SUFFIXES: &[&str] = &[".timer", ".socket", ".path"];

impl Builder<'_> {
    pub(super) fn services(&mut self, role: &Role) {
        for spec in &role.spec.service {
            let s = spec.get_ref();
            let Some(name) = self.service_name(role, &s.name) else {
                continue;
            };
            let offset = spec.span().start;
            let wants_up = s.enabled == Some(true) || s.state == Some(ServiceState::Running);
            if s.masked == Some(true) && wants_up {
                self.errors.push(role.error_at(
                    offset,
                    format!(
                        "service '{name}': masked = true contradicts enabled = true or state = \"running\""
                    ),
                ));
                continue;
            }
            let unit = unit_name(&name);
            if s.masked == Some(true) && s.unit.is_some() {
                self.errors.push(role.error_at(
                    offset,
                    format!(
                        "service '{name}': masked = true cannot go with a unit: the mask is a link at {UNIT_DIR}/{unit}, where the unit file would be"
                    ),
                ));
                continue;
            }
            let Ok(timeout) = self.timeout(role, s.timeout.as_ref()) else {
                continue;
            };
            let service = ServiceResource {
                name: name.clone(),
                timeout,
                enabled: s.enabled,
                masked: s.masked,
                state: s.state.map(|st| match st {
                    ServiceState::Running => RunState::Running,
                    ServiceState::Stopped => RunState::Stopped,
                }),
                reload_on_notify: s.reload_on_notify,
                unit_provider: None,
            };
            let unit_path = PathBuf::from(format!("{UNIT_DIR}/{unit}"));
            if let Some(spec) = &s.unit {
                let what = format!("unit of service '{name}'");
                self.unit_file(role, spec, &unit_path, what, Some(name.as_str()), None);
            }
            // `app.socket` comes with the package `app`, as `app.service` does.
            let stem = ACTIVATING_SUFFIXES
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            let common = Common {
                // Its package ships the unit, its unit file defines it: both come first.
                implicit_after: vec![
                    ResourceId::new(Kind::Package, stem),
                    ResourceId::new(Kind::File, unit_path.to_string_lossy()),
                ],
                ..Common::new(offset, &s.after)
            };
            self.push(role, common, service);
        }
        // A timer plans a service of its own (`service:NAME.timer`), so it is planned with
        // the services, not as a kind: its ids are those of the units it manages.
        self.timers(role);
    }

    /// A unit file from a `unit = { ... }` table: a plain file resource that notifies the
    /// service `notify` names, with a restart (a reload would not apply a changed unit).
    /// `validate` stands in when the table names no command. Returns the file's id.
    pub(super) fn unit_file(
        &mut self,
        role: &Role,
        unit: &Spanned<crate::role::model::UnitSpec>,
        path: &std::path::Path,
        what: String,
        notify: Option<&str>,
        validate: Option<String>,
    ) -> Option<ResourceId> {
        let u = unit.get_ref();
        let path_text = path.to_string_lossy().into_owned();
        let from = ContentFrom {
            offset: unit.span().start,
            what,
            path: &path_text,
            content: &u.content,
            template: &u.template,
            source: &u.source,
            vars: &u.vars,
            sensitive: false,
        };
        let (from, content, kept) = self.content_from(role, from)?;
        let validate = self.validate_command(role, &u.validate)?.or(validate);
        let rendered = kept.map(|content| Rendered {
            from,
            content,
            sensitive: false,
        });
        let file = FileResource {
            path: path.to_path_buf(),
            content,
            ownership: Ownership {
                mode: Some(0o644),
                ..Ownership::default()
            },
            sensitive: false,
            managed_ancestor: Default::default(),
            validate,
        };
        let common = Common {
            rendered,
            ..Common::new(unit.span().start, &[])
        };
        let id = ResourceId::new(Kind::File, path_text);
        self.push(role, common, file);
        if let Some(service) = notify {
            self.notify_unit(role, unit.span().start, service);
        }
        Some(id)
    }

    /// A restart of `service` when the resource just pushed (its unit file) changes.
    pub(super) fn notify_unit(&mut self, role: &Role, offset: usize, service: &str) {
        let at = role.location(offset);
        if let Some(item) = self.items.last_mut() {
            item.edges_mut().notify.push(After {
                id: ResourceId::new(Kind::Service, service),
                origin: at.to_string(),
                at,
            });
        }
    }

    /// `notify = ["service:nginx"]` on the resource just pushed; only services can be notified.
    pub(super) fn notify_last(&mut self, role: &Role, notify: &[Spanned<String>]) {
        let mut edges = Vec::new();
        for n in notify {
            let text = n.get_ref();
            let name = text.strip_prefix("service:").filter(|n| !n.is_empty());
            match name {
                Some(name) => {
                    let at = role.location(n.span().start);
                    edges.push(After {
                        id: ResourceId::new(
                            Kind::Service,
                            name.strip_suffix(".service").unwrap_or(name),
                        ),
                        origin: at.to_string(),
                        at,
                    })
                }
                None => self.errors.push(role.error_at(
                    n.span().start,
                    format!(
                        "invalid notify '{text}': expected service:NAME (only services can be notified)"
                    ),
                )),
            }
        }
        if let Some(item) = self.items.last_mut().filter(|_| !edges.is_empty()) {
            item.edges_mut().notify.extend(edges);
        }
    }

    /// A unit name without `.service` (a timer, socket or path unit keeps its suffix),
    /// checked so it can never be read as a systemctl option.
    fn service_name(&mut self, role: &Role, name: &Spanned<String>) -> Option<String> {
        let raw = name.get_ref();
        let bare = raw.strip_suffix(".service").unwrap_or(raw);
        let other_type = OTHER_UNIT_SUFFIXES
            .iter()
            .find(|s| bare.ends_with(*s))
            .filter(|s| !ACTIVATING_SUFFIXES.contains(s));
        let problem = if let Some(suffix) = other_type {
            format!(
                "'{raw}' is a {} unit; [[service]] manages .service, .timer, .socket and .path units",
                &suffix[1..]
            )
        } else if !unit_name_ok(bare) {
            format!(
                "invalid service name '{}': expected a systemd unit name such as \"nginx\"",
                raw.escape_debug()
            )
        } else {
            return Some(bare.to_owned());
        };
        self.errors.push(role.error_at(name.span().start, problem));
        None
    }
}

/// Whether `name` is spelled as systemd spells unit names, so no tool reads it as an option.
pub(super) fn unit_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@-\\".contains(c))
        && ACTIVATING_SUFFIXES
            .iter()
            .all(|s| name.strip_suffix(s) != Some(""))
}
