//! `converge fleet --prometheus URL`: the fleet at a glance, from the metrics its hosts
//! export. Reads Prometheus only; changes nothing.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cli::{FleetArgs, Format};
use converge::fleet::{Fleet, Host, Prometheus, Rollout, Track};

/// What `--format json` prints: the fleet and its counts.
#[derive(Serialize)]
struct FleetJson<'a> {
    #[serde(flatten)]
    fleet: &'a Fleet,
    counts: Counts,
}

/// Hosts per track and per trouble.
#[derive(Serialize)]
struct Counts {
    hosts: usize,
    stable: usize,
    candidate: usize,
    other: usize,
    failing: usize,
    stale: usize,
    expired: usize,
    rolled_back_or_held: usize,
    changed_last_day: usize,
    previewed: usize,
    preview_failed: usize,
}

impl Counts {
    fn of(fleet: &Fleet) -> Counts {
        let count = |f: &dyn Fn(&Host) -> bool| fleet.hosts.iter().filter(|h| f(h)).count();
        Counts {
            hosts: fleet.hosts.len(),
            stable: fleet.on(Track::Stable).count(),
            candidate: fleet.on(Track::Candidate).count(),
            other: fleet.on(Track::Other).count(),
            failing: count(&|h| h.failing),
            stale: count(&|h| h.stale),
            expired: count(&|h| h.expired),
            rolled_back_or_held: count(&|h| h.rolled_back || h.held.is_some()),
            changed_last_day: count(&|h| h.changed_last_day > 0),
            previewed: count(&|h| h.preview.is_some()),
            preview_failed: count(&|h| h.preview.as_ref().is_some_and(|p| p.failed > 0)),
        }
    }
}

/// Prints the fleet; exits 0 (1 when Prometheus cannot be read).
pub fn run(args: &FleetArgs) -> anyhow::Result<i32> {
    let prom = Prometheus::new(&args.prometheus)?;
    let fleet = Fleet::read(&prom, &args.host_label, &Rollout::default())?;
    let counts = Counts::of(&fleet);
    if args.format == Format::Json {
        let json = FleetJson {
            fleet: &fleet,
            counts,
        };
        showln!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        show!("{}", human(&fleet, &counts, SystemTime::now()));
    }
    Ok(0)
}

/// A bundle id as people read it: its first 12 hex digits.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// What needs a look on `host`, in a few words.
fn notes(host: &Host) -> String {
    let mut out = Vec::new();
    if host.failing {
        out.push("failing".to_owned());
    }
    if host.health_checks_failed > 0 {
        out.push(format!(
            "{} health check(s) failed",
            host.health_checks_failed
        ));
    }
    if host.rolled_back {
        out.push("rolled back".to_owned());
    }
    if let Some(held) = &host.held {
        out.push(format!("holds {} back", short(held)));
    }
    if host.stale {
        out.push("stale source".to_owned());
    }
    if host.expired {
        out.push("expired source".to_owned());
    }
    if let Some(p) = &host.preview {
        if p.failed > 0 {
            out.push(format!("candidate would fail ({})", p.failed));
        }
        out.push(format!("candidate would change {}", p.pending));
    }
    out.join(", ")
}

/// The table and the summary for people.
fn human(fleet: &Fleet, counts: &Counts, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet: {} hosts, from {}",
        counts.hosts, fleet.prometheus
    );
    let bundle = |id: &Option<String>| id.as_deref().map_or("-", short).to_owned();
    let _ = writeln!(
        out,
        "  stable     {:<12}  {} hosts",
        bundle(&fleet.stable),
        counts.stable
    );
    let preview = if fleet.candidate.is_some() {
        format!(
            "; preview on {} hosts, failing on {}",
            counts.previewed, counts.preview_failed
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  candidate  {:<12}  {} hosts{preview}",
        bundle(&fleet.candidate),
        counts.candidate
    );
    let _ = writeln!(out, "  other      {:<12}  {} hosts", "", counts.other);
    if fleet.hosts.is_empty() {
        let _ = writeln!(
            out,
            "no host has reported an apply (converge_last_run_exit_code{{mode=\"apply\"}} is empty)"
        );
        return out;
    }
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let rows: Vec<[String; 6]> = fleet
        .hosts
        .iter()
        .map(|h| {
            [
                h.host.clone(),
                h.track.name().to_owned(),
                h.bundle.as_deref().map_or("-", short).to_owned(),
                h.last_run.map_or("-".to_owned(), |t| {
                    let ago = Duration::from_secs((now - t).max(0.0) as u64);
                    format!("{} ago", humantime::format_duration(ago))
                }),
                h.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                h.changed_last_day.to_string(),
            ]
        })
        .collect();
    let header = ["HOST", "TRACK", "BUNDLE", "LAST RUN", "EXIT", "CHANGED 1D"];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str], notes: &str| {
        let mut l = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(l, "{cell:<width$}  ");
        }
        l.push_str(notes);
        format!("{}\n", l.trim_end())
    };
    out.push('\n');
    out.push_str(&line(&header, "NOTES"));
    for (row, host) in rows.iter().zip(&fleet.hosts) {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push_str(&line(&cells, &notes(host)));
    }
    let list = |f: &dyn Fn(&Host) -> bool| {
        let names: Vec<&str> = fleet
            .hosts
            .iter()
            .filter(|h| f(h))
            .map(|h| h.host.as_str())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(" ")
        }
    };
    out.push('\n');
    let _ = writeln!(out, "failing runs:            {}", list(&|h| h.failing));
    let _ = writeln!(out, "stale sources:           {}", list(&|h| h.stale));
    let _ = writeln!(out, "expired sources:         {}", list(&|h| h.expired));
    let _ = writeln!(
        out,
        "rolled back or held:     {}",
        list(&|h| h.rolled_back || h.held.is_some())
    );
    let _ = writeln!(
        out,
        "drift repaired (1 day):  {}",
        list(&|h| h.changed_last_day > 0)
    );
    if fleet.candidate.is_some() {
        let _ = writeln!(
            out,
            "candidate would fail on: {}",
            list(&|h| h.preview.as_ref().is_some_and(|p| p.failed > 0))
        );
    }
    out
}
