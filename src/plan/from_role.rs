//! Turning one role's declarations into resources: paths, modes, content and edges checked,
//! templates rendered. Every error is collected with its location.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use toml::Spanned;

use super::{After, PlanOptions, Planned, Rendered};
use crate::diagnostics::{Diagnostics, Location};
use crate::render::Renderer;
use crate::resource::absent::AbsentResource;
use crate::resource::attrs::{parse_mode, Ownership};
use crate::resource::directory::DirectoryResource;
use crate::resource::exec::ExecResource;
use crate::resource::file::FileResource;
use crate::resource::group::GroupResource;
use crate::resource::symlink::SymlinkResource;
use crate::resource::sysctl::{self, SysctlResource};
use crate::resource::sysctl_conf::SysctlConfResource;
use crate::resource::user::UserResource;
use crate::resource::{Managed, ResourceId};
use crate::role::model::{Ensure, FileSpec};
use crate::role::{vars, Role, SourceTree};

/// Resource kinds that `after = [...]` may name.
const KINDS: &[&str] = &[
    "file",
    "directory",
    "symlink",
    "absent",
    "sysctl",
    "user",
    "group",
    "exec",
];

pub(super) struct Builder<'a> {
    tree: &'a SourceTree,
    renderer: &'a mut Renderer,
    options: PlanOptions,
    context: Value,
    items: Vec<Planned>,
    errors: Diagnostics,
    /// Every `[sysctl]` key of the run, for the one drop-in that persists them.
    sysctl: SysctlKeys,
}

/// The `[sysctl]` keys seen so far and where the first of them was declared.
#[derive(Default)]
struct SysctlKeys {
    entries: std::collections::BTreeMap<String, String>,
    roles: Vec<String>,
    origin: Option<String>,
}

/// What every declaration carries besides its own fields.
struct Common<'s> {
    offset: usize,
    path: Option<PathBuf>,
    after: &'s [Spanned<String>],
    implicit_after: Vec<ResourceId>,
    rendered: Option<Rendered>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        tree: &'a SourceTree,
        renderer: &'a mut Renderer,
        options: PlanOptions,
        context: Value,
    ) -> Builder<'a> {
        Builder {
            tree,
            renderer,
            options,
            context,
            items: Vec::new(),
            errors: Diagnostics::default(),
            sysctl: SysctlKeys::default(),
        }
    }

    pub(super) fn finish(mut self) -> (Vec<Planned>, Diagnostics) {
        self.sysctl_drop_in();
        (self.items, self.errors)
    }

    /// The drop-in goes after every live key, so a value the kernel refuses is not persisted.
    fn sysctl_drop_in(&mut self) {
        let keys = std::mem::take(&mut self.sysctl);
        let Some(origin) = keys.origin else {
            return;
        };
        let implicit_after = keys
            .entries
            .keys()
            .map(|k| ResourceId::new("sysctl", k.clone()))
            .collect();
        let r = SysctlConfResource::new(keys.entries);
        self.items.push(Planned {
            id: crate::resource::Resource::id(&r),
            path: Some(r.path().to_path_buf()),
            fingerprint: format!("{r:?}"),
            resource: Box::new(r),
            role: keys.roles.join(", "),
            origin,
            rendered: None,
            after: Vec::new(),
            implicit_after,
            requires: Vec::new(),
        });
    }

    pub(super) fn role(&mut self, role: &Role) {
        for spec in &role.spec.file {
            let s = spec.get_ref();
            let Some(path) = self.path(role, &s.path) else {
                continue;
            };
            let Some(ownership) = self.ownership(role, &s.owner, &s.group, &s.mode) else {
                continue;
            };
            let Some((from, content)) = self.content(role, spec) else {
                continue;
            };
            let rendered = self.options.keep_rendered.then(|| Rendered {
                from,
                content: content.clone(),
                sensitive: s.sensitive,
            });
            let implicit_after = ownership.account_ids();
            let r = FileResource {
                path: path.clone(),
                content,
                ownership,
                sensitive: s.sensitive,
            };
            let common = Common {
                offset: spec.span().start,
                path: Some(path),
                after: &s.after,
                implicit_after,
                rendered,
            };
            self.push(role, common, Box::new(r.clone()), format!("{r:?}"));
        }
        for spec in &role.spec.directory {
            let s = spec.get_ref();
            let Some(path) = self.path(role, &s.path) else {
                continue;
            };
            let Some(ownership) = self.ownership(role, &s.owner, &s.group, &s.mode) else {
                continue;
            };
            let implicit_after = ownership.account_ids();
            let r = DirectoryResource {
                path: path.clone(),
                ownership,
                purge: s.purge,
                keep: BTreeSet::new(),
            };
            let common = Common {
                offset: spec.span().start,
                path: Some(path),
                after: &s.after,
                implicit_after,
                rendered: None,
            };
            self.push(role, common, Box::new(r.clone()), format!("{r:?}"));
        }
        for spec in &role.spec.symlink {
            let s = spec.get_ref();
            let Some(path) = self.path(role, &s.path) else {
                continue;
            };
            let r = SymlinkResource {
                path: path.clone(),
                target: PathBuf::from(&s.target),
                force: s.force,
            };
            let common = Common {
                offset: spec.span().start,
                path: Some(path),
                after: &s.after,
                implicit_after: Vec::new(),
                rendered: None,
            };
            self.push(role, common, Box::new(r.clone()), format!("{r:?}"));
        }
        for spec in &role.spec.absent {
            let s = spec.get_ref();
            let Some(path) = self.path(role, &s.path) else {
                continue;
            };
            let r = AbsentResource {
                path: path.clone(),
                force: s.force,
            };
            let common = Common {
                offset: spec.span().start,
                path: Some(path),
                after: &s.after,
                implicit_after: Vec::new(),
                rendered: None,
            };
            self.push(role, common, Box::new(r.clone()), format!("{r:?}"));
        }
        self.sysctl(role);
        self.accounts(role);
        self.execs(role);
    }

    fn execs(&mut self, role: &Role) {
        for spec in &role.spec.exec {
            let s = spec.get_ref();
            let mut ok = true;
            let mut fail = |offset: usize, msg: String| {
                self.errors.push(role.error_at(offset, msg));
                ok = false;
            };
            if s.command.get_ref().trim().is_empty() {
                fail(s.command.span().start, "empty command".into());
            }
            if s.sensitive && s.name.is_none() {
                fail(
                    spec.span().start,
                    "a sensitive exec needs a name: its id would show the command".into(),
                );
            }
            let timeout = match &s.timeout {
                None => crate::resource::exec::DEFAULT_TIMEOUT,
                Some(t) => match humantime::parse_duration(t.get_ref()) {
                    Ok(d) if !d.is_zero() => d,
                    _ => {
                        fail(
                            t.span().start,
                            format!(
                                "invalid timeout '{}': expected a duration with a unit, e.g. \"30s\" or \"5m\"",
                                t.get_ref()
                            ),
                        );
                        Default::default()
                    }
                },
            };
            for key in s.environment.keys() {
                if key.is_empty() || key.contains(['=', '\0']) {
                    fail(
                        spec.span().start,
                        format!("invalid environment variable name '{key}'"),
                    );
                }
            }
            let creates = s.creates.as_ref().and_then(|p| self.path(role, p));
            let cwd = s.cwd.as_ref().and_then(|p| match p.get_ref().as_str() {
                "/" => Some(PathBuf::from("/")),
                _ => self.path(role, p),
            });
            if (s.creates.is_some() && creates.is_none()) || (s.cwd.is_some() && cwd.is_none()) {
                continue;
            }
            if !ok {
                continue;
            }
            let user = s.user.as_ref().map(|u| u.get_ref().clone());
            let r = ExecResource {
                name: s
                    .name
                    .as_ref()
                    .map_or_else(|| s.command.get_ref().clone(), |n| n.get_ref().clone()),
                command: s.command.get_ref().clone(),
                unless: s.unless.clone(),
                onlyif: s.onlyif.clone(),
                creates,
                cwd,
                user: user.clone(),
                environment: s.environment.clone(),
                timeout,
                sensitive: s.sensitive,
            };
            let common = Common {
                offset: spec.span().start,
                path: None,
                after: &s.after,
                implicit_after: user
                    .map(|u| ResourceId::new("user", u))
                    .into_iter()
                    .collect(),
                rendered: None,
            };
            self.push(role, common, Box::new(r.clone()), format!("{r:?}"));
        }
    }

    fn sysctl(&mut self, role: &Role) {
        for (key, value) in &role.spec.sysctl {
            let (k, v) = (key.get_ref(), &value.get_ref().0);
            if let Err(e) = sysctl::check_key(k) {
                self.errors.push(role.error_at(key.span().start, e));
                continue;
            }
            if let Err(e) = sysctl::check_value(k, v) {
                self.errors.push(role.error_at(value.span().start, e));
                continue;
            }
            let origin = Location::at_offset(&role.file, &role.text, key.span().start);
            self.sysctl.origin.get_or_insert_with(|| origin.to_string());
            if !self.sysctl.roles.contains(&role.name) {
                self.sysctl.roles.push(role.name.clone());
            }
            // A different value in another role is reported as a conflict by the planner.
            self.sysctl.entries.entry(k.clone()).or_insert(v.clone());
            let r = SysctlResource {
                key: k.clone(),
                value: v.clone(),
            };
            let common = Common {
                offset: key.span().start,
                path: None,
                after: &[],
                implicit_after: Vec::new(),
                rendered: None,
            };
            self.push(role, common, Box::new(r.clone()), format!("{r:?}"));
        }
    }

    fn accounts(&mut self, role: &Role) {
        for spec in &role.spec.group {
            let s = spec.get_ref();
            if !self.account_name(role, &s.name, "group") {
                continue;
            }
            let r = GroupResource {
                name: s.name.get_ref().clone(),
                present: s.ensure == Ensure::Present,
                gid: s.gid,
                system: s.system,
            };
            let common = Common {
                offset: spec.span().start,
                path: None,
                after: &s.after,
                implicit_after: Vec::new(),
                rendered: None,
            };
            self.push(role, common, Box::new(r.clone()), format!("{r:?}"));
        }
        for spec in &role.spec.user {
            let s = spec.get_ref();
            let mut ok = self.account_name(role, &s.name, "user");
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
                if !p.get_ref().starts_with('/') || p.get_ref().contains(':') {
                    self.errors.push(role.error_at(
                        p.span().start,
                        format!(
                            "invalid path '{}': expected an absolute path without ':'",
                            p.get_ref()
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
                .map(|g| ResourceId::new("group", g.clone()))
                .collect();
            let r = UserResource {
                name: s.name.get_ref().clone(),
                present: s.ensure == Ensure::Present,
                uid: s.uid,
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
                offset: spec.span().start,
                path: None,
                after: &s.after,
                implicit_after,
                rendered: None,
            };
            self.push(role, common, Box::new(r.clone()), format!("{r:?}"));
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

    fn push(
        &mut self,
        role: &Role,
        common: Common,
        resource: Box<dyn Managed>,
        fingerprint: String,
    ) {
        let mut after = Vec::new();
        for edge in common.after {
            match parse_id(edge.get_ref()) {
                Some(id) => after.push(After {
                    id,
                    origin: Location::at_offset(&role.file, &role.text, edge.span().start)
                        .to_string(),
                }),
                None => self.errors.push(role.error_at(
                    edge.span().start,
                    format!(
                        "invalid resource '{}' in after: expected KIND:NAME with KIND one of {}",
                        edge.get_ref(),
                        KINDS.join(", ")
                    ),
                )),
            }
        }
        let origin = Location::at_offset(&role.file, &role.text, common.offset).to_string();
        self.items.push(Planned {
            id: resource.id(),
            resource,
            role: role.name.clone(),
            origin,
            rendered: common.rendered,
            path: common.path,
            after,
            implicit_after: common.implicit_after,
            requires: Vec::new(),
            fingerprint,
        });
    }

    fn path(&mut self, role: &Role, path: &Spanned<String>) -> Option<PathBuf> {
        let p = Path::new(path.get_ref());
        let ok = p.is_absolute()
            && p.components().count() > 1
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if ok && !path.get_ref().ends_with('/') {
            Some(p.to_path_buf())
        } else {
            self.errors.push(role.error_at(
                path.span().start,
                format!(
                    "invalid path '{}': expected an absolute path without '.', '..' or a trailing '/'",
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
        })
    }

    /// The file's bytes from exactly one of content, template or source.
    fn content(&mut self, role: &Role, spec: &Spanned<FileSpec>) -> Option<(String, Vec<u8>)> {
        let s = spec.get_ref();
        let given = [
            s.content.is_some(),
            s.template.is_some(),
            s.source.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.errors.push(role.error_at(
                spec.span().start,
                format!(
                    "file '{}' needs exactly one of content, template or source",
                    s.path.get_ref()
                ),
            ));
            return None;
        }
        if let Some(text) = &s.content {
            return Some(("content".into(), text.clone().into_bytes()));
        }
        if let Some(source) = &s.source {
            let rel = source.get_ref();
            let safe = Path::new(rel)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            let read = if safe {
                std::fs::read(self.tree.files_dir().join(rel)).ok()
            } else {
                None
            };
            return match read {
                Some(bytes) => Some((format!("files/{rel}"), bytes)),
                None => {
                    self.errors.push(role.error_at(
                        source.span().start,
                        format!("source file 'files/{rel}' not found in the bundle"),
                    ));
                    None
                }
            };
        }
        let template = s.template.as_ref().expect("one of the three is set");
        let name = template.get_ref();
        if !self.renderer.exists(name) {
            self.errors.push(role.error_at(
                template.span().start,
                format!("template 'templates/{name}' not found"),
            ));
            return None;
        }
        let rendered = if s.vars.is_empty() {
            self.renderer.render(name, &self.context)
        } else {
            let mut ctx = self.context.clone();
            if let Some(Value::Object(v)) = ctx.get_mut("vars") {
                vars::merge(v, &vars::table_to_json(&s.vars));
            }
            self.renderer.render(name, &ctx)
        };
        match rendered {
            Ok(text) => Some((format!("templates/{name}"), text.into_bytes())),
            Err(mut d) => {
                d.message = format!(
                    "{} (rendering {} for role '{}')",
                    d.message,
                    s.path.get_ref(),
                    role.name
                );
                self.errors.push(d);
                None
            }
        }
    }
}

/// `file:/etc/x` → the id, when the kind is known.
fn parse_id(text: &str) -> Option<ResourceId> {
    let (kind, name) = text.split_once(':')?;
    let kind = KINDS.iter().find(|k| **k == kind)?;
    (!name.is_empty()).then(|| ResourceId::new(kind, name))
}
