//! converge: make every server provably match its role.

pub mod diagnostics;
pub mod render;
pub mod role;
pub mod facts;
pub mod system;
pub mod resource;
