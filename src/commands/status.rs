//! `converge status`, `converge pause --for D` and `converge resume`: the operator's view of
//! a host and its maintenance switch.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::anyhow;
use serde::Serialize;
use serde_json::Value;

use crate::cli::{Format, PauseArgs, StateArgs};
use converge::agent::config::AgentConfig;
use converge::agent::pause::{self, Pause};
use converge::agent::{held, schedule};
use converge::pipeline::record;

/// What `status` shows.
#[derive(Debug, Serialize)]
struct Status {
    /// The state dir read.
    state_dir: String,
    /// The bundle the last apply used: id, url, freshness, created, signer, message...
    bundle: Option<Value>,
    /// The last apply: started, finished, exit code, error.
    last_run: Option<LastRun>,
    /// The bundle rolled back on this host and not applied again.
    held: Option<held::HeldBundle>,
    /// The pause in force.
    paused: Option<Pause>,
    /// When converge.timer runs next, as systemd says; `None` when that is not known.
    next_run: Option<String>,
    /// Why `next_run` is not known, or what the timer's state is.
    timer: String,
    /// How long a run the timer starts waits first: this host's offset inside `splay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    splay_offset: Option<String>,
}

#[derive(Debug, Serialize)]
struct LastRun {
    started: Value,
    finished: Value,
    exit_code: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// Prints the host's state; exits 0 (1 only when the state dir cannot be read at all).
pub fn status(args: &StateArgs) -> anyhow::Result<i32> {
    let (dir, _, _) = super::history::state_dir(args)?;
    let record = read_record(&dir.join(record::LAST_RUN_FILE))?;
    let (next_run, timer) = next_timer_run();
    let status = Status {
        state_dir: dir.display().to_string(),
        bundle: record.as_ref().and_then(|r| r.get("source")).cloned(),
        last_run: record.as_ref().map(|r| LastRun {
            started: r["started"].clone(),
            finished: r["finished"].clone(),
            exit_code: r["exit_code"].clone(),
            error: r.get("error").cloned(),
        }),
        held: held::load(&dir),
        paused: pause::in_force(&dir, SystemTime::now()),
        splay_offset: splay_offset(args),
        next_run,
        timer,
    };
    if args.format == Format::Json {
        showln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        show!("{}", human(&status));
    }
    Ok(0)
}

/// Pauses agent runs; exits 0.
pub fn pause(args: &PauseArgs) -> anyhow::Result<i32> {
    let (dir, _, _) = super::history::state_dir(&args.state)?;
    let p = pause::pause(&dir, SystemTime::now(), args.length, args.reason.as_deref()).map_err(
        |e| {
            anyhow!(
                "cannot pause: {}: {e}",
                dir.join(pause::PAUSE_FILE).display()
            )
        },
    )?;
    tracing::info!(until = %p.until, reason = p.reason.as_deref().unwrap_or(""), "paused {}", p.describe());
    showln!(
        "paused {}: agent runs change nothing until then (converge resume ends it now)",
        p.describe()
    );
    Ok(0)
}

/// Ends the pause; exits 0 whether or not there was one.
pub fn resume(args: &StateArgs) -> anyhow::Result<i32> {
    let (dir, _, _) = super::history::state_dir(args)?;
    let was = pause::resume(&dir).map_err(|e| {
        anyhow!(
            "cannot resume: {}: {e}",
            dir.join(pause::PAUSE_FILE).display()
        )
    })?;
    match was {
        Some(p) => {
            tracing::info!("resumed (the pause was {})", p.describe());
            showln!("resumed: agent runs go on (the pause was {})", p.describe());
        }
        None => showln!("not paused: nothing to resume"),
    }
    Ok(0)
}

fn read_record(path: &Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{}:{}:{}: not a run record: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// This host's offset inside the agent config's splay, which a timer run waits before it
/// starts; `None` without a config or when there is no wait.
fn splay_offset(args: &StateArgs) -> Option<String> {
    let config = AgentConfig::load(&args.config).ok()?;
    let identity = schedule::identity(&schedule::hostname());
    let wait = schedule::offset(&identity, config.interval, config.splay);
    let wait = std::time::Duration::from_millis(wait.as_millis() as u64);
    (!wait.is_zero()).then(|| humantime::format_duration(wait).to_string())
}

/// When systemd next starts converge.timer's run, and the timer's state; without systemd,
/// no time and why.
fn next_timer_run() -> (Option<String>, String) {
    if !Path::new("/run/systemd/system").is_dir() {
        return (None, "unknown: systemd is not running".into());
    }
    let out = Command::new("systemctl")
        .args([
            "show",
            "converge.timer",
            "--property=ActiveState,NextElapseUSecRealtime",
        ])
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            return (
                None,
                format!(
                    "unknown: systemctl show: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            )
        }
        Err(e) => return (None, format!("unknown: systemctl: {e}")),
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_owned()
    };
    let state = field("ActiveState");
    let next = field("NextElapseUSecRealtime");
    // While the run it started is going on, the timer has no next time yet.
    if state == "active" && next.is_empty() && service_running() {
        return (None, "now: a run is in progress".into());
    }
    if state != "active" || next.is_empty() {
        return (None, format!("none: converge.timer is {state}"));
    }
    (Some(next), state)
}

/// Whether converge.service is running now (a oneshot is `activating` until it ends).
fn service_running() -> bool {
    Command::new("systemctl")
        .args([
            "show",
            "converge.service",
            "--property=ActiveState",
            "--value",
        ])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "activating")
}

/// The host's place in a rollout, from the run record's `source`: its track, and the
/// bucket against the share that decided it.
fn rollout_line(source: &Value) -> Option<String> {
    let track = source.get("track").and_then(Value::as_str)?;
    let Some(r) = source.get("rollout") else {
        return Some(format!("{track} track"));
    };
    let Some(candidate) = r.get("candidate").and_then(Value::as_str) else {
        return Some(format!("{track} track (no candidate)"));
    };
    let short = &candidate[..candidate.len().min(12)];
    let percent = &r["percent"];
    let bucket = &r["bucket"];
    Some(if r["halted"].as_bool() == Some(true) {
        format!("{track} track: the rollout of candidate {short} is halted (bucket {bucket})")
    } else {
        format!("{track} track: bucket {bucket}, candidate {short} on {percent} % of hosts")
    })
}

fn human(s: &Status) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<10} {value}\n"));
    match &s.bundle {
        Some(b) if !text(b.get("bundle_id")).is_empty() => {
            let id = text(b.get("bundle_id"));
            line(
                "bundle:",
                format!(
                    "{} ({}, fetched {} ago) from {}",
                    &id[..id.len().min(12)],
                    text(b.get("freshness")),
                    humantime::format_duration(std::time::Duration::from_secs(
                        b["bundle_age_seconds"].as_u64().unwrap_or(0)
                    )),
                    text(b.get("url"))
                ),
            );
            let signer = text(b.get("signer"));
            let mut published = format!(
                "{} by {}",
                Some(text(b.get("created")))
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "(unknown date)".into()),
                if signer.is_empty() {
                    "nobody (unsigned)".to_owned()
                } else {
                    format!("key {signer}")
                }
            );
            let message = text(b.get("message"));
            if !message.is_empty() {
                published.push_str(&format!(": \"{message}\""));
            }
            line("published:", published);
            if let Some(r) = rollout_line(b) {
                line("rollout:", r);
            }
            if b.get("expired").and_then(Value::as_bool) == Some(true) {
                line(
                    "expired:",
                    "yes: the source offers only expired content (converge_source_expired 1)"
                        .into(),
                );
            }
        }
        Some(b) => line(
            "source:",
            format!("{} ({})", text(b.get("url")), text(b.get("freshness"))),
        ),
        None => line("bundle:", "none yet (no apply has run)".into()),
    }
    line(
        "held:",
        match &s.held {
            Some(h) => format!("yes: bundle {} was rolled back ({})", h.bundle, h.reason),
            None => "no".into(),
        },
    );
    line(
        "paused:",
        match &s.paused {
            Some(p) => p.describe(),
            None => "no".into(),
        },
    );
    line(
        "last run:",
        match &s.last_run {
            Some(r) => {
                let mut t = format!(
                    "{}, exit {}",
                    r.finished.as_str().unwrap_or(""),
                    r.exit_code
                );
                if let Some(e) = r.error.as_ref().and_then(Value::as_str) {
                    t.push_str(&format!(": {e}"));
                }
                t
            }
            None => "none yet".into(),
        },
    );
    line(
        "next run:",
        match (&s.next_run, &s.splay_offset) {
            (Some(n), Some(wait)) => format!("{n}, then this host's {wait} splay offset"),
            (Some(n), None) => n.clone(),
            (None, Some(wait)) if s.timer.starts_with("now") => format!(
                "{} (a run the timer starts first waits this host's {wait} splay offset)",
                s.timer
            ),
            (None, _) => s.timer.clone(),
        },
    );
    out
}
