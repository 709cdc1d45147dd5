//! `converge agent`: the long-running loop for hosts without a systemd timer.

use std::time::SystemTime;

use crate::cli::AgentArgs;
use converge::agent::config::AgentConfig;
use converge::agent::{pause, schedule};
use converge::facts::Facts;
use converge::pipeline::record;
use converge::pipeline::{self, Request};
use converge::report::Mode;

/// Applies every interval at this host's splay offset; each run is independent (nothing is
/// carried from one run to the next, so memory stays flat over thousands of runs).
pub fn run(args: &AgentArgs) -> anyhow::Result<i32> {
    let config = AgentConfig::load(&args.config)?;
    let root = std::path::Path::new("/");
    let hostname = Facts::gather(root)?.hostname;
    let offset = schedule::offset(
        &schedule::identity(&hostname),
        config.interval,
        config.splay,
    );
    tracing::info!(
        interval = %humantime::format_duration(config.interval),
        offset = %humantime::format_duration(offset),
        "agent started"
    );
    let mut runs = 0u64;
    loop {
        let code = once(&config);
        runs += 1;
        if args.once || args.runs.is_some_and(|n| runs >= n) {
            return Ok(code);
        }
        let next = schedule::next_run(SystemTime::now(), config.interval, offset);
        let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
        tracing::info!(next = %humantime::format_rfc3339_seconds(next), "sleeping until the next run");
        std::thread::sleep(wait);
    }
}

fn once(config: &AgentConfig) -> i32 {
    if let Some(p) = pause::in_force(&config.state_dir, SystemTime::now()) {
        record::keep_paused(config, Mode::Apply);
        tracing::info!(until = %p.until, reason = p.reason.as_deref().unwrap_or(""), "paused {}: this run changes nothing", p.describe());
        return 0;
    }
    let root = std::path::Path::new("/");
    let gathered = Facts::gather(root)
        .map_err(anyhow::Error::from)
        .and_then(|f| Ok(serde_json::to_value(f)?));
    let facts = match gathered {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot gather facts");
            return 1;
        }
    };
    let request = Request::agent_run(root, config, facts);
    match pipeline::run(&request) {
        Ok(finished) => {
            converge::pipeline::journal::log_summary(
                &finished.report,
                finished.record.source.as_ref(),
            );
            finished.report.exit_code()
        }
        Err(e) => {
            tracing::error!(error = %e, "apply: could not run: {e}; exit 1");
            1
        }
    }
}
