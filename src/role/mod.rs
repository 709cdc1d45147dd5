//! Roles: the TOML format, loading with includes, variables, and which roles a host gets.

pub mod classify;
pub mod load;
pub mod model;
mod schema_errors;
pub mod sections;
pub mod vars;

pub use load::{load, load_deferred, valid_role_name, Role, RoleSet, SourceTree};
