//! The log target of the lines that tell a run's outcomes one by one (changed, failed,
//! restarted, a health check failed...): the journal's account of a run. It sits at the
//! ground because the engine and the health checks both log at it, and the binary filters
//! it: an interactive run prints its report instead, so it leaves these out unless asked
//! with `-v`.

/// The target the outcome lines are logged at.
pub const OUTCOMES: &str = "converge::outcome";
