//! Plans of resources the library declares itself rather than a role (bootstrap's trusted
//! keys, agent config and timer): planned as a role's are, so the engine converges them
//! with the same check, apply, backups and report as any other.

use std::path::Path;
use std::sync::Arc;

use serde_json::Map;

use super::{order, units, Plan, Planned};
use crate::diagnostics::{Diagnostics, Location};
use crate::resource::AnyResource;
use crate::role::RoleSet;

/// The plan of `resources`, declared by `origin` (it stands where a role's name and place
/// would), in the order given except where one must wait for another (a path for the
/// directory of the run above it).
pub fn of_resources(origin: &str, resources: Vec<AnyResource>) -> Result<Plan, Diagnostics> {
    let role: Arc<str> = Arc::from(origin);
    let at = Location {
        file: Arc::from(Path::new(origin)),
        line: 1,
        col: 1,
    };
    let mut items: Vec<Planned> = resources
        .into_iter()
        .map(|resource| Planned {
            id: resource.id(),
            resource,
            role: role.clone(),
            at: at.clone(),
            rendered: None,
            edges: None,
        })
        .collect();
    super::fill_managed_ancestors(&mut items);
    super::fill_planned_accounts(&mut items);
    units::fill_unit_providers(&mut items);
    let none = RoleSet {
        roles: Vec::new(),
        vars: Map::new(),
        names: Vec::new(),
    };
    let (items, requires) = order::order(items, &none)?;
    Ok(Plan {
        items,
        health: Vec::new(),
        requires,
        templates: None,
    })
}
