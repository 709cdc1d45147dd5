//! converge: make every server provably match its role.

pub mod bundle;
