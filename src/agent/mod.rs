//! The pull agent's own parts: its config, the run lock, the run record and the schedule.
//! A run itself goes through [`crate::pipeline`], like every other command's.

pub mod config;
pub mod lock;
pub mod record;
pub mod schedule;
