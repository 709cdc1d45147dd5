//! Turning one role's declarations into resources: paths, modes, content and edges checked,
//! templates rendered. Every error is collected with its location.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use toml::Spanned;

mod packages;
mod services;

use super::template_job::{TemplateJob, TemplateNames, Templates};
use super::{After, Edges, PlanOptions, Planned, Rendered};
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::render::SharedRenderer;
use crate::resource::attrs::{parse_mode, Ownership};
use crate::resource::content::Desired;
use crate::resource::kind::every_kind;
use crate::resource::validate;
use crate::resource::{AnyResource, Kind, ResourceId};
use crate::role::model::{FileSpec, OwnVars};
use crate::role::{vars, Role, SourceTree};

mod accounts;
mod duration;
mod exec;
mod health;
mod kernel_module;
mod nftables;
mod paths;
mod sysctl;
mod sysfs;
mod timer;

pub(super) struct Builder<'a> {
    tree: &'a SourceTree,
    renderer: SharedRenderer,
    options: PlanOptions,
    context: Value,
    /// The renderer and `context` converted for Handlebars once, shared by every
    /// template's second render.
    templates: Option<Arc<Templates>>,
    items: Vec<Planned>,
    errors: Diagnostics,
    /// Every `[sysctl]` key of the run, for the one drop-in that persists them.
    sysctl: sysctl::SysctlKeys,
    /// Every persisted `[sysfs]` key of the run, for the boot files that keep them.
    sysfs: sysfs::SysfsKeys,
    /// `[[health]]` checks, in declaration order.
    health: Vec<crate::health::HealthCheck>,
    /// The name of the role being planned, one copy for all its resources.
    role_name: Arc<str>,
    /// Each template name once, shared by every file rendered from it.
    template_names: TemplateNames,
    /// A `[[file]]` table left as text did not parse on its own: the plan is void, and only
    /// the roles read whole give the errors.
    pub(super) unparsed: bool,
}

/// The planned items, health checks and templates, and every error found.
pub(super) type Finished = (
    Vec<Planned>,
    Vec<crate::health::HealthCheck>,
    Option<Arc<Templates>>,
    Diagnostics,
);

/// Declares [`Builder::role`] from [`every_kind!`]'s list: each kind's planner method, in
/// the list's order.
macro_rules! declare_role_planner {
    ($($(#[$doc:meta])* $kind:ident => $name:literal, planned by $planner:ident,
        [$($(#[$vdoc:meta])* $variant:ident($ty:path)),*];)+) => {
        impl Builder<'_> {
            /// Every declaration of `role`, kind by kind in [`Kind::ALL`] order.
            pub(super) fn role(&mut self, role: &mut Role) {
                self.role_name = Arc::from(role.name.as_str());
                $(self.$planner(role);)+
            }
        }
    };
}

every_kind!(declare_role_planner);

/// What every declaration carries besides its own fields.
struct Common<'s> {
    offset: usize,
    after: &'s [Spanned<String>],
    implicit_after: Vec<ResourceId>,
    rendered: Option<Rendered>,
}

impl<'s> Common<'s> {
    /// A declaration at `offset` with its `after` edges, and nothing else yet.
    fn new(offset: usize, after: &'s [Spanned<String>]) -> Common<'s> {
        Common {
            offset,
            after,
            implicit_after: Vec::new(),
            rendered: None,
        }
    }
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        tree: &'a SourceTree,
        renderer: SharedRenderer,
        options: PlanOptions,
        context: Value,
    ) -> Builder<'a> {
        Builder {
            tree,
            renderer,
            options,
            context,
            templates: None,
            items: Vec::new(),
            errors: Diagnostics::default(),
            sysctl: sysctl::SysctlKeys::default(),
            sysfs: sysfs::SysfsKeys::default(),
            health: Vec::new(),
            role_name: Arc::from(""),
            template_names: TemplateNames::default(),
            unparsed: false,
        }
    }

    pub(super) fn finish(mut self) -> Finished {
        self.sysctl_drop_in();
        self.nftables_finish();
        self.sysfs_finish();
        (self.items, self.health, self.templates, self.errors)
    }

    /// Makes room for `n` more resources.
    pub(super) fn reserve(&mut self, n: usize) {
        self.items.reserve_exact(n);
    }

    fn push(&mut self, role: &Role, common: Common, resource: impl Into<AnyResource>) {
        let resource = resource.into();
        let mut after = Vec::new();
        for edge in common.after {
            match ResourceId::parse(edge.get_ref()) {
                Some(id) => {
                    let at = role.location(edge.span().start);
                    after.push(After {
                        id,
                        origin: at.to_string(),
                        at,
                    })
                }
                None => self.errors.push(role.error_at(
                    edge.span().start,
                    format!(
                        "invalid resource '{}' in after: expected KIND:NAME with KIND one of {}",
                        edge.get_ref(),
                        Kind::names()
                    ),
                )),
            }
        }
        let at = role.location(common.offset);
        let mut item = Planned {
            id: resource.id(),
            resource,
            role: self.role_name.clone(),
            at,
            rendered: common.rendered.map(Box::new),
            edges: None,
        };
        item.set_edges(Edges {
            after,
            implicit_after: common.implicit_after,
            notify: Vec::new(),
        });
        self.items.push(item);
    }

    /// A declaration's `timeout`: a duration with a unit, more than zero. `Err` after a
    /// located error.
    fn timeout(
        &mut self,
        role: &Role,
        timeout: Option<&Spanned<String>>,
    ) -> Result<Option<std::time::Duration>, ()> {
        let Some(t) = timeout else {
            return Ok(None);
        };
        let positive = duration::Limits {
            zero: false,
            max: None,
        };
        match duration::read(t.get_ref(), positive, "\"30s\" or \"5m\"") {
            Ok(d) => Ok(Some(d)),
            Err(expected) => {
                self.errors.push(role.error_at(
                    t.span().start,
                    format!(
                        "invalid timeout '{}': {expected}",
                        t.get_ref().escape_debug()
                    ),
                ));
                Err(())
            }
        }
    }

    fn path(&mut self, role: &Role, path: &Spanned<String>) -> Option<PathBuf> {
        if let Some(why) = control_character(path.get_ref()) {
            let message = format!("invalid path: {why}");
            self.errors.push(role.error_at(path.span().start, message));
            return None;
        }
        let p = Path::new(path.get_ref());
        let ok = p.is_absolute()
            && p.components().count() > 1
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        // Only the canonical spelling: `/etc//x` or `/etc/./x` would otherwise be a second
        // resource for the same file, and the two would undo each other on every run.
        let canonical: PathBuf = p.components().collect();
        if ok && canonical.as_os_str() == p.as_os_str() {
            Some(canonical)
        } else {
            self.errors.push(role.error_at(
                path.span().start,
                format!(
                    "invalid path '{}': expected an absolute path without '.', '..', '//' or a trailing '/'",
                    path.get_ref()
                ),
            ));
            None
        }
    }

    fn ownership(
        &mut self,
        role: &Role,
        owner: &Option<Spanned<String>>,
        group: &Option<Spanned<String>>,
        mode: &Option<Spanned<String>>,
    ) -> Option<Ownership> {
        let mode = match mode {
            None => None,
            Some(m) => match parse_mode(m.get_ref()) {
                Some(bits) => Some(bits),
                None => {
                    self.errors.push(role.error_at(
                        m.span().start,
                        format!(
                            "invalid mode '{}': expected an octal string such as \"0644\"",
                            m.get_ref()
                        ),
                    ));
                    return None;
                }
            },
        };
        let name = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        Some(Ownership {
            owner: name(owner),
            group: name(group),
            mode,
            ..Ownership::default()
        })
    }

    /// A `validate` command, which must say where the file to check goes. `None`: invalid.
    fn validate_command(
        &mut self,
        role: &Role,
        command: &Option<Spanned<String>>,
    ) -> Option<Option<String>> {
        let Some(command) = command else {
            return Some(None);
        };
        let text = command.get_ref();
        if text.contains(validate::PLACEHOLDER) {
            return Some(Some(text.clone()));
        }
        self.errors.push(role.error_at(
            command.span().start,
            format!(
                "validate '{text}': the command must name the file to check as {}, e.g. \"nginx -t -c {}\"",
                validate::PLACEHOLDER,
                validate::PLACEHOLDER
            ),
        ));
        None
    }

    /// A `source` file of the bundle's `files/`: where it is (`files/REL`) and its content,
    /// fingerprinted now and read again a piece at a time when it is needed. `None` after a
    /// located error when it is not a regular file inside `files/`.
    fn bundle_file(&mut self, role: &Role, source: &Spanned<String>) -> Option<(String, Desired)> {
        let rel = source.get_ref();
        let safe = Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        let path = self.tree.files_dir().join(rel);
        let found = if safe && path.is_file() {
            Desired::file(path).ok()
        } else {
            None
        };
        match found {
            Some(desired) => Some((format!("files/{rel}"), desired)),
            None => {
                self.errors.push(role.error_at(
                    source.span().start,
                    format!("source file 'files/{rel}' not found in the bundle"),
                ));
                None
            }
        }
    }

    /// The file's content from exactly one of content, template or source.
    fn content(&mut self, role: &Role, spec: &Spanned<Box<FileSpec>>) -> Option<Content> {
        let s = spec.get_ref();
        let from = ContentFrom {
            offset: spec.span().start,
            what: format!("file '{}'", s.path.get_ref()),
            path: s.path.get_ref(),
            content: &s.content,
            template: &s.template,
            source: &s.source,
            vars: &s.vars,
            sensitive: s.sensitive,
        };
        self.content_from(role, from)
    }

    /// Content from exactly one of content, template or source, for a file or a unit: where
    /// it comes from, the desired content (held only when inline), and the bytes themselves
    /// when the plan keeps them for `converge render`.
    fn content_from(&mut self, role: &Role, s: ContentFrom) -> Option<Content> {
        let given = [
            s.content.is_some(),
            s.template.is_some(),
            s.source.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.errors.push(role.error_at(
                s.offset,
                format!(
                    "{} needs exactly one of content, template or source",
                    s.what
                ),
            ));
            return None;
        }
        let keep = self.options.keep_rendered;
        if let Some(text) = &s.content {
            let kept = keep.then(|| text.clone().into_bytes());
            let desired = Desired::bytes(text.clone().into_bytes());
            return Some(("content".into(), desired, kept));
        }
        if let Some(source) = &s.source {
            let (shown, desired) = self.bundle_file(role, source)?;
            let kept = keep.then(|| desired.load().ok()).flatten();
            return Some((shown, desired, kept.map(|b| b.to_vec())));
        }
        let template = s.template.as_ref().expect("one of the three is set");
        let name = template.get_ref();
        let exists = self
            .renderer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .exists(name);
        if !exists {
            self.errors.push(role.error_at(
                template.span().start,
                format!("template 'templates/{name}' not found"),
            ));
            return None;
        }
        let templates = self
            .templates
            .get_or_insert_with(|| {
                Arc::new(Templates::ready(
                    self.tree.templates_dir(),
                    self.renderer.clone(),
                    &self.context,
                ))
            })
            .clone();
        let shared_name = self.template_names.shared(name);
        // Only the file's own vars are kept (the facts and role vars are shared).
        let own = s
            .vars
            .0
            .iter()
            .map(|(k, v)| (k.clone(), vars::to_json(v)))
            .collect();
        let (job, rendered) = TemplateJob::render_new(templates, shared_name, own);
        match rendered {
            Ok(text) => {
                let desired = Desired::produced(text.as_bytes(), Arc::new(job));
                let kept = keep.then(|| text.into_bytes());
                Some((format!("templates/{name}"), desired, kept))
            }
            Err(mut d) => {
                d.message = format!(
                    "{} (rendering {} for role '{}')",
                    d.message, s.path, role.name
                );
                if s.sensitive {
                    d.excerpt = None;
                }
                self.errors.push(d);
                None
            }
        }
    }
}

/// Where content came from, the desired content, and the bytes when the plan keeps them.
type Content = (String, Desired, Option<Vec<u8>>);

/// Where content comes from: the content/template/source keys of a file or a unit.
struct ContentFrom<'s> {
    offset: usize,
    what: String,
    path: &'s str,
    content: &'s Option<String>,
    template: &'s Option<Spanned<String>>,
    source: &'s Option<Spanned<String>>,
    vars: &'s OwnVars,
    /// Keep template lines out of errors: they may hold the secret itself.
    sensitive: bool,
}

/// Names a NUL, newline or other control character in `text`: no tool takes one in a path
/// or name (a NUL cuts it short at the kernel), and in logs it hides what follows.
fn control_character(text: &str) -> Option<String> {
    let c = text.chars().find(|c| c.is_control())?;
    Some(format!(
        "'{}' contains the control character {:?}",
        text.escape_debug(),
        c
    ))
}

/// Refuses the id 4294967295: to chown(2) and setuid(2) it is (uid_t)-1, "leave unchanged".
fn reserved_id(role: &Role, id: &Option<Spanned<u32>>, what: &str) -> Option<Diagnostic> {
    let id = id.as_ref().filter(|i| *i.get_ref() == u32::MAX)?;
    Some(role.error_at(
        id.span().start,
        format!("{what} 4294967295 is reserved ((uid_t)-1 means \"no change\"); expected 0 to 4294967294"),
    ))
}
