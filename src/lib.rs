//! converge: make every server provably match its role.

pub mod agent;
pub mod bootstrap;
pub mod bundle;
pub mod capture;
pub mod compare;
pub mod diagnostics;
pub mod durable;
pub mod engine;
pub mod facts;
pub mod fleet;
pub mod health;
pub mod history;
pub mod outcome_log;
pub mod pipeline;
pub mod plan;
pub mod render;
pub mod report;
pub mod resource;
pub mod role;
pub mod snapshot;
pub mod system;
pub mod version;
