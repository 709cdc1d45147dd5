//! The pull agent's own parts: its config, the run lock, the run record, the memory of a
//! rolled-back bundle, and the schedule. A run itself goes through [`crate::pipeline`], like
//! every other command's.

pub mod config;
pub mod held;
pub mod lock;
pub mod record;
pub mod schedule;
