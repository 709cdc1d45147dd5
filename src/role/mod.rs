//! Roles: the TOML format, loading with includes, and variables.

pub mod load;
pub mod model;
pub mod vars;

pub use load::{load, valid_role_name, Role, RoleSet, SourceTree};
