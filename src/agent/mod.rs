//! The pull agent's own settings and memory: its config, the memory of a rolled-back
//! bundle, the pause and the schedule. The pipeline reads them; a run itself, and its
//! record, live in [`crate::pipeline`], and bootstrap in [`crate::bootstrap`].

pub mod config;
pub mod held;
pub mod pause;
pub mod schedule;
