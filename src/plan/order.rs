//! Ordering: explicit `after` edges and implicit ones, then a stable topological sort.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::{locate, Planned};
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::resource::{Kind, ResourceId};
use crate::role::RoleSet;

/// Orders resources so each comes after what it requires; declaration order otherwise.
/// Implicit edges: a managed path after the directory resources above it, a path under
/// `/etc/NAME` after `package:NAME` (the package creates and owns that directory; an explicit
/// `after` on the package naming the path wins), and after every `implicit_after` resource
/// that the plan has.
pub(super) fn order(mut items: Vec<Planned>, set: &RoleSet) -> Result<Vec<Planned>, Diagnostics> {
    let by_id: HashMap<&ResourceId, usize> =
        items.iter().enumerate().map(|(i, p)| (&p.id, i)).collect();
    let dirs: HashMap<&Path, usize> = items
        .iter()
        .enumerate()
        .filter(|(_, p)| p.id.kind == Kind::Directory)
        .filter_map(|(i, p)| p.path().map(|path| (path, i)))
        .collect();
    let packages: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .filter(|(_, p)| p.id.kind == Kind::Package)
        .map(|(i, p)| (p.id.name.as_str(), i))
        .collect();
    let n = items.len();
    let mut errors = Diagnostics::default();
    // Vecs, sorted and deduplicated once filled: most items require one or two others, and a
    // one-element Vec is a quarter of a BTreeSet's node.
    let mut requires: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, item) in items.iter().enumerate() {
        if let Some(path) = item.path() {
            for ancestor in path.ancestors().skip(1) {
                if let Some(&d) = dirs.get(ancestor) {
                    requires[i].push(d);
                }
            }
            let config_dir_of = path
                .strip_prefix("/etc")
                .ok()
                .and_then(|rest| rest.iter().next())
                .and_then(|name| packages.get(name.to_str()?));
            if let Some(&p) = config_dir_of {
                if !items[p].after.iter().any(|a| a.id == item.id) {
                    requires[i].push(p);
                }
            }
        }
        for id in &item.implicit_after {
            if let Some(&j) = by_id.get(id) {
                if j != i {
                    requires[i].push(j);
                }
            }
        }
        for edge in &item.after {
            match by_id.get(&edge.id) {
                Some(&j) => {
                    requires[i].push(j);
                }
                None => errors.push(locate(
                    set,
                    &edge.at,
                    format!("after: no resource '{}' in this run", edge.id),
                )),
            }
        }
        // A notified service converges after what notifies it, or it could start with the
        // old configuration, and a service started in this run is not restarted again.
        for edge in &item.notify {
            match by_id.get(&edge.id) {
                Some(&j) => {
                    requires[j].push(i);
                }
                None => errors.push(locate(
                    set,
                    &edge.at,
                    format!("notify: no resource '{}' in this run", edge.id),
                )),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for reqs in &mut requires {
        reqs.sort_unstable();
        reqs.dedup();
    }
    let mut indegree: Vec<usize> = requires.iter().map(Vec::len).collect();
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
        return Err(cycle_error(&items, &requires, &indegree, set).into());
    }
    let mut position = vec![0; n];
    for (pos, &i) in sequence.iter().enumerate() {
        position[i] = pos;
    }
    for (i, reqs) in requires.into_iter().enumerate() {
        items[i].requires = reqs.into_iter().map(|r| position[r]).collect();
    }
    // In place, one swap per item: a second array of thousands of items is not needed.
    for k in 0..n {
        let mut j = sequence[k];
        // Items before k are in place; the one wanted here was swapped out to a later slot.
        while j < k {
            j = sequence[j];
        }
        items.swap(k, j);
    }
    Ok(items)
}

/// Names one cycle: follow unfinished requirements until a resource repeats.
fn cycle_error(
    items: &[Planned],
    requires: &[Vec<usize>],
    indegree: &[usize],
    set: &RoleSet,
) -> Diagnostic {
    let start = (0..items.len()).find(|&i| indegree[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut current = start;
    while let Some(&next) = requires[current].iter().find(|&&r| indegree[r] > 0) {
        if let Some(pos) = path.iter().position(|&p| p == next) {
            path.drain(..pos);
            path.push(next);
            break;
        }
        path.push(next);
        current = next;
    }
    let names: Vec<String> = path.iter().map(|&i| items[i].id.to_string()).collect();
    locate(
        set,
        &items[path[0]].at,
        format!("ordering cycle: {}", names.join(" after ")),
    )
}
