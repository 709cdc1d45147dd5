//! From roles to an ordered list of desired resources: rendering, validation, conflicts, order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};
use toml::Spanned;

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::render::Renderer;
use crate::resource::absent::AbsentResource;
use crate::resource::attrs::{parse_mode, Ownership};
use crate::resource::directory::DirectoryResource;
use crate::resource::file::FileResource;
use crate::resource::symlink::SymlinkResource;
use crate::resource::{Managed, ResourceId};
use crate::role::{vars, Role, RoleSet, SourceTree};

/// One desired resource and where it came from.
#[derive(Debug)]
pub struct Planned {
    /// The resource itself.
    pub resource: Box<dyn Managed>,
    /// Its identity.
    pub id: ResourceId,
    /// The role that declared it.
    pub role: String,
    /// `roles/web.toml:12:1`, where it was declared.
    pub origin: String,
    /// Rendered content, kept only when the plan was built for `converge render`.
    pub rendered: Option<Rendered>,
    /// Indexes (into the plan) of resources that must converge first.
    pub requires: Vec<usize>,
}

/// A file's content as rendered, for `converge render`.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Where the content came from: a template, a bundle file, or inline.
    pub from: String,
    /// The bytes.
    pub content: Vec<u8>,
    /// Whether it must not be shown.
    pub sensitive: bool,
}

/// The resources of a run in the order they converge.
#[derive(Debug, Default)]
pub struct Plan {
    /// Resources, dependencies first.
    pub items: Vec<Planned>,
}

/// Options for building a plan.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlanOptions {
    /// Keep rendered file content in [`Planned::rendered`].
    pub keep_rendered: bool,
}

/// Builds the plan for `set`, rendering templates with `facts`. Reports every error found.
pub fn build(
    tree: &SourceTree,
    set: &RoleSet,
    facts: &Value,
    renderer: &mut Renderer,
    options: PlanOptions,
) -> Result<Plan, Diagnostics> {
    let mut b = Builder {
        tree,
        renderer,
        options,
        context: base_context(facts, &set.vars),
        items: Vec::new(),
        paths: Vec::new(),
        fingerprints: Vec::new(),
        errors: Diagnostics::default(),
    };
    for role in &set.roles {
        b.role(role);
    }
    let Builder {
        mut items,
        paths,
        fingerprints,
        mut errors,
        ..
    } = b;
    dedupe_and_detect_conflicts(&mut items, &paths, &fingerprints, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let (mut items, paths): (Vec<_>, Vec<_>) = items
        .into_iter()
        .zip(paths)
        .filter_map(|(i, p)| i.map(|i| (i, p)))
        .unzip();
    fill_purge_keep(&mut items, &paths);
    let items = order(items, &paths)?;
    Ok(Plan { items })
}

fn base_context(facts: &Value, vars: &Map<String, Value>) -> Value {
    let mut ctx = Map::new();
    ctx.insert("facts".into(), facts.clone());
    ctx.insert("vars".into(), Value::Object(vars.clone()));
    Value::Object(ctx)
}

/// A resource under construction: the type-erased resource, plus what planning needs.
enum Typed {
    File(FileResource),
    Directory(DirectoryResource),
    Symlink(SymlinkResource),
    Absent(AbsentResource),
}

impl Typed {
    fn boxed(self) -> Box<dyn Managed> {
        match self {
            Typed::File(r) => Box::new(r),
            Typed::Directory(r) => Box::new(r),
            Typed::Symlink(r) => Box::new(r),
            Typed::Absent(r) => Box::new(r),
        }
    }
}

struct Builder<'a> {
    tree: &'a SourceTree,
    renderer: &'a mut Renderer,
    options: PlanOptions,
    context: Value,
    items: Vec<Option<Planned>>,
    paths: Vec<PathBuf>,
    fingerprints: Vec<String>,
    errors: Diagnostics,
}

impl Builder<'_> {
    fn role(&mut self, role: &Role) {
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
            let r = FileResource {
                path: path.clone(),
                content,
                ownership,
                sensitive: s.sensitive,
            };
            self.push(role, spec.span().start, path, Typed::File(r), rendered);
        }
        for spec in &role.spec.directory {
            let s = spec.get_ref();
            let Some(path) = self.path(role, &s.path) else {
                continue;
            };
            let Some(ownership) = self.ownership(role, &s.owner, &s.group, &s.mode) else {
                continue;
            };
            let r = DirectoryResource {
                path: path.clone(),
                ownership,
                purge: s.purge,
                keep: BTreeSet::new(),
            };
            self.push(role, spec.span().start, path, Typed::Directory(r), None);
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
            self.push(role, spec.span().start, path, Typed::Symlink(r), None);
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
            self.push(role, spec.span().start, path, Typed::Absent(r), None);
        }
    }

    fn push(
        &mut self,
        role: &Role,
        offset: usize,
        path: PathBuf,
        typed: Typed,
        rendered: Option<Rendered>,
    ) {
        let fingerprint = match &typed {
            Typed::File(r) => format!("{r:?}"),
            Typed::Directory(r) => format!("{r:?}"),
            Typed::Symlink(r) => format!("{r:?}"),
            Typed::Absent(r) => format!("{r:?}"),
        };
        let resource = typed.boxed();
        let loc = crate::diagnostics::Location::at_offset(&role.file, &role.text, offset);
        self.items.push(Some(Planned {
            id: resource.id(),
            resource,
            role: role.name.clone(),
            origin: loc.to_string(),
            rendered,
            requires: Vec::new(),
        }));
        self.paths.push(path);
        self.fingerprints.push(fingerprint);
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
    fn content(
        &mut self,
        role: &Role,
        spec: &Spanned<crate::role::model::FileSpec>,
    ) -> Option<(String, Vec<u8>)> {
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
            let path = self.tree.files_dir().join(rel);
            return match std::fs::read(&path) {
                Ok(bytes) if safe => Some((format!("files/{rel}"), bytes)),
                _ => {
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

/// Two declarations of one path: identical ones collapse into the first, different ones are
/// a conflict naming both roles.
fn dedupe_and_detect_conflicts(
    items: &mut [Option<Planned>],
    paths: &[PathBuf],
    fingerprints: &[String],
    errors: &mut Diagnostics,
) {
    let mut first: HashMap<&Path, usize> = HashMap::new();
    for i in 0..items.len() {
        let Some(&j) = first.get(paths[i].as_path()) else {
            first.insert(&paths[i], i);
            continue;
        };
        let (a, b) = (items[j].as_ref().unwrap(), items[i].as_ref().unwrap());
        if a.id == b.id && fingerprints[i] == fingerprints[j] {
            items[i] = None;
            continue;
        }
        errors.push(Diagnostic::new(format!(
            "{}: conflict: {} is managed by role '{}' ({}) and by role '{}' ({}) with different desired state",
            b.origin,
            paths[i].display(),
            a.role,
            a.origin,
            b.role,
            b.origin
        )));
    }
}

fn fill_purge_keep(items: &mut [Planned], paths: &[PathBuf]) {
    let purging: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, p)| p.id.kind == "directory")
        .map(|(i, _)| i)
        .collect();
    if purging.is_empty() {
        return;
    }
    let mut keep: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for &d in &purging {
        for (i, p) in paths.iter().enumerate() {
            if i != d && items[i].id.kind != "absent" {
                if let Ok(rest) = p.strip_prefix(&paths[d]) {
                    if let Some(Component::Normal(first)) = rest.components().next() {
                        keep.entry(d)
                            .or_default()
                            .insert(first.to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    for (d, names) in keep {
        // Which entries are managed is known only once every role is planned.
        if let Some(dir) = downcast_directory(&items[d]) {
            let mut dir = dir.clone();
            dir.keep = names;
            items[d].resource = Box::new(dir);
        }
    }
}

fn downcast_directory(p: &Planned) -> Option<&DirectoryResource> {
    p.resource.as_any().downcast_ref::<DirectoryResource>()
}

/// Orders resources so that each comes after the directories above it (stable otherwise).
fn order(mut items: Vec<Planned>, paths: &[PathBuf]) -> Result<Vec<Planned>, Diagnostics> {
    let dirs: HashMap<&Path, usize> = items
        .iter()
        .enumerate()
        .filter(|(_, p)| p.id.kind == "directory")
        .map(|(i, _)| (paths[i].as_path(), i))
        .collect();
    let n = items.len();
    let mut requires: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, path) in paths.iter().enumerate() {
        for ancestor in path.ancestors().skip(1) {
            if let Some(&d) = dirs.get(ancestor) {
                requires[i].insert(d);
            }
        }
    }
    let mut indegree: Vec<usize> = requires.iter().map(BTreeSet::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, reqs) in requires.iter().enumerate() {
        for &r in reqs {
            dependents[r].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut sequence = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        sequence.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if sequence.len() != n {
        let stuck: Vec<String> = (0..n)
            .filter(|i| indegree[*i] > 0)
            .map(|i| items[i].id.to_string())
            .collect();
        return Err(Diagnostic::new(format!("dependency cycle among {}", stuck.join(", "))).into());
    }
    let mut position = vec![0; n];
    for (pos, &i) in sequence.iter().enumerate() {
        position[i] = pos;
    }
    for (i, reqs) in requires.into_iter().enumerate() {
        items[i].requires = reqs.into_iter().map(|r| position[r]).collect();
    }
    let mut slots: Vec<Option<Planned>> = items.into_iter().map(Some).collect();
    Ok(sequence
        .into_iter()
        .map(|i| slots[i].take().expect("each index once"))
        .collect())
}
