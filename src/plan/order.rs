//! Ordering: explicit `after` edges and implicit ones, then a stable topological sort.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use super::{locate, Planned};
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::resource::{Kind, ResourceId};
use crate::role::RoleSet;

/// Which resources each item of a plan must wait for, by plan position: one flat list for
/// the whole plan (most items wait for one other, their directory), not a list per item.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requirements {
    /// Item `i`'s requirements are `targets[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    targets: Vec<u32>,
}

impl Requirements {
    /// The positions of the items that item `i` requires.
    pub fn of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let range = match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        };
        self.targets[range].iter().map(|&t| t as usize)
    }

    /// From `(item, required)` pairs sorted and without repeats, for `n` items.
    fn from_sorted(n: usize, pairs: impl Iterator<Item = (u32, u32)>) -> Requirements {
        let mut starts = Vec::with_capacity(n + 1);
        let mut targets = Vec::new();
        starts.push(0);
        for (i, r) in pairs {
            while starts.len() <= i as usize {
                starts.push(targets.len() as u32);
            }
            targets.push(r);
        }
        while starts.len() <= n {
            starts.push(targets.len() as u32);
        }
        Requirements { starts, targets }
    }
}

/// Orders resources so each comes after what it requires; declaration order otherwise.
/// Implicit edges: a managed path after the directory resources above it, a path under
/// `/etc/NAME` after `package:NAME` (the package creates and owns that directory; an explicit
/// `after` on the package naming the path wins), and after every `implicit_after` resource
/// that the plan has. Returns the items in order and what each requires, by position.
pub(super) fn order(
    mut items: Vec<Planned>,
    set: &RoleSet,
) -> Result<(Vec<Planned>, Requirements), Diagnostics> {
    let n = items.len();
    // One flat list of (item, required) pairs, 32-bit indexes, sorted and deduplicated once:
    // a list per item costs an allocation each, and the lookups below are dropped before
    // the sort needs its room.
    let mut pairs = requirement_pairs(&items, set)?;
    pairs.sort_unstable();
    pairs.dedup();
    let requires = Requirements::from_sorted(n, pairs.iter().copied());
    let mut indegree: Vec<u32> = (0..n).map(|i| requires.of(i).count() as u32).collect();
    // Who waits for each item: the same pairs, turned around.
    pairs.sort_unstable_by_key(|&(i, r)| (r, i));
    let dependents = Requirements::from_sorted(n, pairs.iter().map(|&(i, r)| (r, i)));
    drop(pairs);
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut sequence: Vec<u32> = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        sequence.push(i as u32);
        for d in dependents.of(i) {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    drop(dependents);
    if sequence.len() != n {
        return Err(cycle_error(&items, &requires, &indegree, set).into());
    }
    drop(indegree);
    let mut position = vec![0u32; n];
    for (pos, &i) in sequence.iter().enumerate() {
        position[i as usize] = pos as u32;
    }
    // Requirements again, by the position of each item and of what it requires.
    let position = &position;
    let requires = &requires;
    let by_position = Requirements::from_sorted(
        n,
        sequence.iter().enumerate().flat_map(|(k, &i)| {
            requires
                .of(i as usize)
                .map(move |r| (k as u32, position[r]))
        }),
    );
    // In place, one swap per item: a second array of thousands of items is not needed.
    for k in 0..n {
        let mut j = sequence[k] as usize;
        // Items before k are in place; the one wanted here was swapped out to a later slot.
        while j < k {
            j = sequence[j] as usize;
        }
        items.swap(k, j);
    }
    Ok((items, by_position))
}

/// Every `(item, required)` pair of the plan, or the errors of edges to resources it lacks.
fn requirement_pairs(items: &[Planned], set: &RoleSet) -> Result<Vec<(u32, u32)>, Diagnostics> {
    let by_id: HashMap<&ResourceId, u32> = items
        .iter()
        .enumerate()
        .map(|(i, p)| (&p.id, i as u32))
        .collect();
    let dirs: HashMap<&Path, u32> = items
        .iter()
        .enumerate()
        .filter(|(_, p)| p.id.kind == Kind::Directory)
        .filter_map(|(i, p)| p.path().map(|path| (path, i as u32)))
        .collect();
    let packages: HashMap<&str, u32> = items
        .iter()
        .enumerate()
        .filter(|(_, p)| p.id.kind == Kind::Package)
        .map(|(i, p)| (p.id.name.as_str(), i as u32))
        .collect();
    let mut errors = Diagnostics::default();
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let i = i as u32;
        if let Some(path) = item.path() {
            for ancestor in path.ancestors().skip(1) {
                if let Some(&d) = dirs.get(ancestor) {
                    pairs.push((i, d));
                }
            }
            let config_dir_of = path
                .strip_prefix("/etc")
                .ok()
                .and_then(|rest| rest.iter().next())
                .and_then(|name| packages.get(name.to_str()?));
            if let Some(&p) = config_dir_of {
                if !items[p as usize].after().iter().any(|a| a.id == item.id) {
                    pairs.push((i, p));
                }
            }
        }
        for id in item.implicit_after() {
            if let Some(&j) = by_id.get(id) {
                if j != i {
                    pairs.push((i, j));
                }
            }
        }
        for edge in item.after() {
            match by_id.get(&edge.id) {
                Some(&j) => pairs.push((i, j)),
                None => errors.push(locate(
                    set,
                    &edge.at,
                    format!("after: no resource '{}' in this run", edge.id),
                )),
            }
        }
        // A notified service converges after what notifies it, or it could start with the
        // old configuration, and a service started in this run is not restarted again.
        for edge in item.notify() {
            match by_id.get(&edge.id) {
                Some(&j) => pairs.push((j, i)),
                None => errors.push(locate(
                    set,
                    &edge.at,
                    format!("notify: no resource '{}' in this run", edge.id),
                )),
            }
        }
    }
    errors.into_result(pairs)
}

/// Names one cycle: follow unfinished requirements until a resource repeats.
fn cycle_error(
    items: &[Planned],
    requires: &Requirements,
    indegree: &[u32],
    set: &RoleSet,
) -> Diagnostic {
    let start = (0..items.len()).find(|&i| indegree[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut current = start;
    while let Some(next) = requires.of(current).find(|&r| indegree[r] > 0) {
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

#[cfg(test)]
mod tests {
    use super::Requirements;

    #[test]
    fn requirements_list_each_items_own_in_one_flat_list() {
        let r = Requirements::from_sorted(5, [(0, 1), (0, 3), (2, 1), (4, 0)].into_iter());
        let of = |i| r.of(i).collect::<Vec<_>>();
        assert_eq!(of(0), [1, 3]);
        assert!(of(1).is_empty());
        assert_eq!(of(2), [1]);
        assert!(of(3).is_empty());
        assert_eq!(of(4), [0]);
        // Past the end (a plan read back with fewer items): nothing, not a panic.
        assert!(of(5).is_empty());
        assert!(Requirements::default().of(0).next().is_none());
    }
}
