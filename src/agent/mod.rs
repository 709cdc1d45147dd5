//! The pull agent's own parts: its config, the run record, the memory of a rolled-back
//! bundle, bootstrap and the schedule. A run itself goes through [`crate::pipeline`], like
//! every other command's.

pub mod bootstrap;
pub mod config;
pub mod held;
pub mod pause;
pub mod record;
pub mod schedule;
