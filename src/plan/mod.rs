//! From roles to an ordered list of desired resources: rendering, validation, conflicts, order.

mod declared;
mod from_role;
mod order;
mod template_job;
mod units;

pub use declared::of_resources;
pub use order::Requirements;
pub use template_job::Templates;

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diagnostics::{Diagnostic, Diagnostics, Location};
use crate::health::HealthCheck;
use crate::render::SharedRenderer;
use crate::resource::{AnyResource, Kind, ResourceId};
use crate::role::{RoleSet, SourceTree};

/// One desired resource and where it came from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Planned {
    /// The resource itself.
    pub resource: AnyResource,
    /// Its identity.
    pub id: ResourceId,
    /// The role that declared it, one copy shared by its resources and their outcomes.
    pub role: Arc<str>,
    /// Where it was declared, `roles/web.toml:12:1` as text (its outcome names it so).
    pub at: Location,
    /// Rendered content, kept only when the plan was built for `converge render`.
    pub rendered: Option<Box<Rendered>>,
    /// Its edges to other resources; `None` for the many that have none (three empty lists
    /// inline would be a third of the item).
    edges: Option<Box<Edges>>,
}

/// A plan item's edges to other resources.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Edges {
    /// Resources named in `after = [...]`; each must exist in the plan.
    pub after: Vec<After>,
    /// Resources it goes after when the plan has them (its owner's user, its parent directory).
    pub implicit_after: Vec<ResourceId>,
    /// Services to restart or reload at the end of the run when this resource changed; each
    /// must be in the plan, and converges after this resource.
    pub notify: Vec<After>,
}

impl Planned {
    /// The host path it manages, when it manages one (two resources may not share a path):
    /// the resource's own, not a second copy.
    pub fn path(&self) -> Option<&Path> {
        self.resource.host_path()
    }

    /// Resources named in `after = [...]`.
    pub fn after(&self) -> &[After] {
        self.edges.as_deref().map_or(&[], |e| &e.after)
    }

    /// Resources it goes after when the plan has them.
    pub(crate) fn implicit_after(&self) -> &[ResourceId] {
        self.edges.as_deref().map_or(&[], |e| &e.implicit_after)
    }

    /// Services it notifies when it changed.
    pub fn notify(&self) -> &[After] {
        self.edges.as_deref().map_or(&[], |e| &e.notify)
    }

    /// Its edges, to add to.
    pub(crate) fn edges_mut(&mut self) -> &mut Edges {
        self.edges.get_or_insert_with(Box::default)
    }

    /// Sets its edges, kept out of line only when there are some.
    pub(crate) fn set_edges(&mut self, edges: Edges) {
        let none =
            edges.after.is_empty() && edges.implicit_after.is_empty() && edges.notify.is_empty();
        self.edges = (!none).then(|| Box::new(edges));
    }
}

/// An explicit edge to another resource (`after` or `notify`) and where it was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct After {
    /// The resource to converge first.
    pub id: ResourceId,
    /// `roles/web.toml:12:9`, for errors.
    pub origin: String,
    /// The same place, for errors that show the line.
    pub at: Location,
}

/// A file's content as rendered, for `converge render`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Health checks, run at the end in declaration order.
    pub health: Vec<HealthCheck>,
    /// Which items each item requires (converged first, and not failed or skipped).
    pub requires: Requirements,
    /// What its templated files render with when their bytes are needed again.
    pub templates: Option<Arc<Templates>>,
}

/// Options for building a plan.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlanOptions {
    /// Keep rendered file content in [`Planned::rendered`].
    pub keep_rendered: bool,
}

/// Builds the plan for `set`, rendering templates with `facts`. Reports every error found.
/// The roles' `[[file]]` specs are used up: each is dropped once its resource is planned
/// (and parsed only then, when the set was loaded with [`crate::role::load_deferred`]).
pub fn build(
    tree: &SourceTree,
    set: &mut RoleSet,
    facts: &Value,
    renderer: &SharedRenderer,
    options: PlanOptions,
) -> Result<Plan, Diagnostics> {
    let mut b = from_role::Builder::new(
        tree,
        renderer.clone(),
        options,
        base_context(facts, &set.vars),
    );
    // Reserved once: an array of thousands of items doubling would hold half of it unused.
    b.reserve(set.roles.iter().map(|r| r.spec.declarations()).sum());
    for role in &mut set.roles {
        b.role(role);
        if b.unparsed {
            break;
        }
    }
    if b.unparsed {
        drop(b);
        // A [[file]] table that does not parse alone: the roles read whole give its error
        // (and every other one) exactly as a whole read would have, or, should they read
        // whole after all, the plan.
        let mut whole = crate::role::load(tree, &set.names, &Map::new())?;
        whole.vars = std::mem::take(&mut set.vars);
        *set = whole;
        return build(tree, set, facts, renderer, options);
    }
    let (items, health, templates, mut errors) = b.finish();
    let mut items = dedupe_and_detect_conflicts(items, set, &mut errors);
    let health = health_checks(health, &items, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    fill_purge_keep(&mut items);
    fill_managed_ancestors(&mut items);
    fill_planned_accounts(&mut items);
    units::fill_unit_providers(&mut items);
    let (items, requires) = order::order(items, set)?;
    Ok(Plan {
        items,
        health,
        requires,
        templates,
    })
}

/// One check per name (identical declarations from two roles collapse), each watching only
/// services this run declares.
fn health_checks(
    checks: Vec<HealthCheck>,
    items: &[Planned],
    errors: &mut Diagnostics,
) -> Vec<HealthCheck> {
    let mut kept: Vec<HealthCheck> = Vec::with_capacity(checks.len());
    for check in checks {
        if let Some(first) = kept.iter().find(|k| k.name == check.name) {
            let same = HealthCheck {
                role: first.role.clone(),
                origin: first.origin.clone(),
                ..check.clone()
            };
            if same != *first {
                errors.push(Diagnostic::new(format!(
                    "{}: conflict: health:{} is declared by role '{}' ({}) and by role '{}' ({}) differently",
                    check.origin, check.name, first.role, first.origin, check.role, check.origin
                )));
            }
            continue;
        }
        for service in &check.services {
            let id = ResourceId::new(Kind::Service, service.clone());
            if !items.iter().any(|p| p.id == id) {
                errors.push(Diagnostic::new(format!(
                    "{}: health check '{}': services: no resource 'service:{service}' in this run",
                    check.origin, check.name
                )));
            }
        }
        kept.push(check);
    }
    kept
}

fn base_context(facts: &Value, vars: &Map<String, Value>) -> Value {
    let mut ctx = Map::new();
    ctx.insert("facts".into(), facts.clone());
    ctx.insert("vars".into(), Value::Object(vars.clone()));
    Value::Object(ctx)
}

/// Two declarations of one path (or one id): identical ones collapse into the first,
/// different ones are a conflict naming both roles.
fn dedupe_and_detect_conflicts(
    mut items: Vec<Planned>,
    set: &RoleSet,
    errors: &mut Diagnostics,
) -> Vec<Planned> {
    // Indexes sorted by what they manage, stably: the first of a run of equals is the first
    // declaration. A map keyed by formatted strings held twice the array's size for this.
    let mut sorted: Vec<u32> = (0..items.len() as u32).collect();
    sorted.sort_by(|&a, &b| identity(&items[a as usize]).cmp(&identity(&items[b as usize])));
    // (a later declaration, the first one of the same thing)
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut first = None;
    for w in sorted.windows(2) {
        let (a, b) = (w[0] as usize, w[1] as usize);
        if identity(&items[a]) == identity(&items[b]) {
            repeats.push((b, *first.get_or_insert(a)));
        } else {
            first = None;
        }
    }
    drop(sorted);
    // In declaration order, as the conflicts are reported.
    repeats.sort_unstable();
    // Dropped in place afterwards: thousands of items are not copied into a second array.
    let mut keep = vec![true; items.len()];
    for (i, j) in repeats {
        keep[i] = false;
        let (before, from_i) = items.split_at_mut(i);
        let (a, item) = (&mut before[j], &mut from_i[0]);
        if a.id == item.id && a.resource == item.resource {
            // One resource, declared twice: every role's notify requests still count.
            let notify = item.edges.as_mut().map(|e| std::mem::take(&mut e.notify));
            for n in notify.unwrap_or_default() {
                if !a.notify().iter().any(|m| m.id == n.id) {
                    a.edges_mut().notify.push(n);
                }
            }
            continue;
        }
        let what = match item.path() {
            Some(p) => p.display().to_string(),
            None => item.id.to_string(),
        };
        let message = format!(
            "conflict: {what} is managed by role '{}' ({}) and by role '{}' ({}) with different desired state",
            a.role, a.at, item.role, item.at
        );
        let first = locate(
            set,
            &a.at,
            format!("role '{}' declares it first here", a.role),
        );
        errors.push(locate(set, &item.at, message).with_note(first));
    }
    let mut keep = keep.into_iter();
    items.retain(|_| keep.next().unwrap_or(true));
    items
}

/// What a plan item manages, which no two different items may share: its host path, or
/// its id when it has no path.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Identity<'a> {
    Path(&'a std::ffi::OsStr),
    Id(&'a ResourceId),
}

fn identity(item: &Planned) -> Identity<'_> {
    match item.path() {
        Some(p) => Identity::Path(p.as_os_str()),
        None => Identity::Id(&item.id),
    }
}

/// An error at `at` in one of the set's roles, with the line and a caret.
pub(super) fn locate(set: &RoleSet, at: &Location, message: String) -> Diagnostic {
    match set.roles.iter().find(|r| r.file == at.file) {
        Some(role) => Diagnostic::at(at.clone(), &role.text, message),
        None => Diagnostic::new(format!("{at}: {message}")),
    }
}

/// Paths leave a missing parent to the directory the run makes above them: a
/// `[[directory]]`, or the home of a user created with it.
fn fill_managed_ancestors(items: &mut [Planned]) {
    // One shared copy of each directory's path for all the paths under it.
    let dirs: BTreeSet<Arc<Path>> = items
        .iter()
        .filter_map(|p| p.resource.makes_directory().map(Arc::from))
        .collect();
    for item in items.iter() {
        let Some(path) = item.path() else { continue };
        let Some(nearest) = path.ancestors().skip(1).find_map(|a| dirs.get(a)) else {
            continue;
        };
        item.resource.set_managed_ancestor(nearest.clone());
    }
}

/// Owners and groups that a user or group resource of this run creates.
fn fill_planned_accounts(items: &mut [Planned]) {
    let created = |kind: Kind| -> BTreeSet<String> {
        items
            .iter()
            .filter(|p| p.id.kind == kind && p.resource.creates_account())
            .map(|p| p.id.name.clone())
            .collect()
    };
    let (users, groups) = (created(Kind::User), created(Kind::Group));
    if users.is_empty() && groups.is_empty() {
        return;
    }
    for item in items.iter_mut() {
        let Some(ownership) = item.resource.ownership_mut() else {
            continue;
        };
        ownership.owner_planned = ownership.owner.as_ref().is_some_and(|o| users.contains(o));
        ownership.group_planned = ownership.group.as_ref().is_some_and(|g| groups.contains(g));
    }
}

/// A purging directory keeps the entries that other resources of the run claim.
fn fill_purge_keep(items: &mut [Planned]) {
    let purging: Vec<(usize, PathBuf)> = items
        .iter_mut()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.resource.purge_mut()?.0)))
        .collect();
    for (d, dir) in purging {
        let mut keep = BTreeSet::new();
        for (i, other) in items.iter().enumerate() {
            if i == d {
                continue;
            }
            for claimed in other.resource.claims() {
                let Ok(rest) = claimed.strip_prefix(&dir) else {
                    continue;
                };
                if let Some(Component::Normal(first)) = rest.components().next() {
                    keep.insert(first.to_string_lossy().into_owned());
                }
            }
        }
        // Which entries are managed is known only once every role is planned.
        if let Some((_, kept)) = items[d].resource.purge_mut() {
            *kept = keep;
        }
    }
}
