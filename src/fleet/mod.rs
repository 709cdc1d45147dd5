//! The fleet as Prometheus sees it: each host's bundle, last run, source, rollbacks and
//! rollout preview, read from the metrics every host exports (`report/metrics.rs`). It is
//! the view behind `converge fleet` and what the gate of `converge rollout advance` reads.
//! Prometheus is the fleet's only memory: nothing here keeps state.

pub mod gate;
pub mod prometheus;

use std::collections::BTreeMap;

use serde::Serialize;

pub use prometheus::{Prometheus, Sample};

/// Why the fleet could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// `--prometheus` is not an HTTP(S) URL.
    #[error("--prometheus {url:?} is not usable: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer at all: down, wrong address, refused.
    #[error(
        "cannot reach Prometheus at {url}: {reason} (is it running, and is this its base URL?)"
    )]
    Unreachable {
        /// The base URL.
        url: String,
        /// The connection error and its causes.
        reason: String,
    },
    /// An answer that is not a query result.
    #[error("Prometheus at {url} did not answer the query {query}: {reason}")]
    Query {
        /// The base URL.
        url: String,
        /// The PromQL query.
        query: String,
        /// What came back instead.
        reason: String,
    },
}

/// Where a host stands in a rollout, by the bundle its last apply used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    /// On the rollout's stable bundle.
    Stable,
    /// On the candidate.
    Candidate,
    /// On neither (an older bundle, a source of its own, or no bundle reported).
    Other,
}

impl Track {
    /// `stable`, `candidate` or `other`.
    pub fn name(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Candidate => "candidate",
            Track::Other => "other",
        }
    }
}

/// What a host's last preview of the candidate found (it checks the candidate, read-only,
/// after its own run while it is not on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// The candidate bundle id the preview checked.
    pub candidate: String,
    /// Resources the candidate would change on this host.
    pub pending: u64,
    /// Resources of the candidate that would fail on this host.
    pub failed: u64,
}

/// One host, as its metrics show it.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// The host's name: the value of the host label (`instance` unless told otherwise).
    pub host: String,
    /// The bundle its last apply used.
    pub bundle: Option<String>,
    /// Stable, candidate or other.
    pub track: Track,
    /// The exit code of its last apply.
    pub exit_code: Option<i32>,
    /// When its last apply finished (unix seconds).
    pub last_run: Option<f64>,
    /// The last apply failed (exit 4 or 6) or could not run (exit 1).
    pub failing: bool,
    /// Its source was unreachable or refused, and the last known good was used.
    pub stale: bool,
    /// Its source served an expired manifest or rollout file.
    pub expired: bool,
    /// Its last apply was rolled back after a failing health check.
    pub rolled_back: bool,
    /// The bundle it holds back after rolling it back, if any.
    pub held: Option<String>,
    /// Health checks that failed in its last apply.
    pub health_checks_failed: u64,
    /// Most resources one apply changed in the last day: drift repaired (or a new
    /// bundle's changes made); 0 when every apply found the host in sync.
    pub changed_last_day: u64,
    /// Its last preview of the candidate, when it checked one.
    pub preview: Option<Preview>,
}

/// The whole fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// The Prometheus it was read from.
    pub prometheus: String,
    /// The rollout's stable bundle, when one is known.
    pub stable: Option<String>,
    /// The rollout's candidate, when one is out.
    pub candidate: Option<String>,
    /// Every host that reported an apply, by name.
    pub hosts: Vec<Host>,
}

/// The rollout a fleet view is classified against; what it leaves out comes from what the
/// hosts report (`converge_rollout_track`: the candidate they were offered, and which
/// bundle the hosts on the stable track run).
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    /// The stable bundle id.
    pub stable: Option<String>,
    /// The candidate bundle id.
    pub candidate: Option<String>,
}

/// Queries, one per fact; every sample is of an apply (`mode="apply"`): checks change
/// nothing and keep series of their own.
const BUNDLE: &str = "converge_bundle_info{mode=\"apply\"}";
const EXIT_CODE: &str = "converge_last_run_exit_code{mode=\"apply\"}";
const LAST_RUN: &str = "converge_last_run_timestamp_seconds{mode=\"apply\"}";
const STALE: &str = "converge_source_stale{mode=\"apply\"}";
const EXPIRED: &str = "converge_source_expired{mode=\"apply\"}";
const ROLLED_BACK: &str = "converge_rolled_back{mode=\"apply\"}";
const HELD: &str = "converge_bundle_held_info{mode=\"apply\"}";
const HEALTH_FAILED: &str = "converge_health_checks_failed{mode=\"apply\"}";
const CHANGED_LAST_DAY: &str =
    "max_over_time(converge_resources{mode=\"apply\",state=\"changed\"}[1d])";
const PREVIEW_PENDING: &str = "converge_candidate_pending{mode=\"apply\"}";
const PREVIEW_FAILED: &str = "converge_candidate_failed{mode=\"apply\"}";
const ROLLOUT_TRACK: &str = "converge_rollout_track{mode=\"apply\"}";

impl Fleet {
    /// Reads the fleet from `prom`, naming hosts by `host_label`, classified against
    /// `rollout`.
    pub fn read(
        prom: &Prometheus,
        host_label: &str,
        rollout: &Rollout,
    ) -> Result<Fleet, FleetError> {
        let by_host = |query: &str| -> Result<BTreeMap<String, Sample>, FleetError> {
            Ok(prom
                .query(query)?
                .into_iter()
                .filter(|s| !s.label(host_label).is_empty())
                .map(|s| (s.label(host_label).to_owned(), s))
                .collect())
        };
        let bundles = by_host(BUNDLE)?;
        let exit_codes = by_host(EXIT_CODE)?;
        let last_runs = by_host(LAST_RUN)?;
        let stale = by_host(STALE)?;
        let expired = by_host(EXPIRED)?;
        let rolled_back = by_host(ROLLED_BACK)?;
        let held = by_host(HELD)?;
        let health = by_host(HEALTH_FAILED)?;
        let changed = by_host(CHANGED_LAST_DAY)?;
        let pending = by_host(PREVIEW_PENDING)?;
        let failed = by_host(PREVIEW_FAILED)?;
        let tracks = by_host(ROLLOUT_TRACK)?;

        // Hosts that have not run since the rollout file changed still report the old
        // state: what most hosts say wins.
        let candidate = rollout
            .candidate
            .clone()
            .or_else(|| most_common(tracks.values().map(|s| s.label("candidate"))));
        let stable = rollout.stable.clone().or_else(|| {
            most_common(
                tracks
                    .iter()
                    .filter(|(_, s)| s.label("track") == "stable")
                    .filter_map(|(host, _)| bundles.get(host))
                    .map(|b| b.label("id")),
            )
        });

        let names: std::collections::BTreeSet<&String> =
            exit_codes.keys().chain(bundles.keys()).collect();
        let value = |map: &BTreeMap<String, Sample>, host: &str| map.get(host).map(|s| s.value);
        let flag = |map: &BTreeMap<String, Sample>, host: &str| value(map, host) == Some(1.0);
        let hosts = names
            .into_iter()
            .map(|name| {
                let bundle = bundles.get(name).map(|s| s.label("id").to_owned());
                let track = match bundle.as_deref() {
                    Some(id) if candidate.as_deref() == Some(id) => Track::Candidate,
                    Some(id) if stable.as_deref() == Some(id) => Track::Stable,
                    _ => Track::Other,
                };
                let exit_code = value(&exit_codes, name).map(|v| v as i32);
                let preview = pending.get(name).map(|p| Preview {
                    candidate: p.label("candidate").to_owned(),
                    pending: p.value as u64,
                    failed: value(&failed, name).unwrap_or(0.0) as u64,
                });
                Host {
                    host: name.clone(),
                    bundle,
                    track,
                    exit_code,
                    last_run: value(&last_runs, name),
                    failing: matches!(exit_code, Some(1 | 4 | 6)),
                    stale: flag(&stale, name),
                    expired: flag(&expired, name),
                    rolled_back: flag(&rolled_back, name),
                    held: held.get(name).map(|s| s.label("id").to_owned()),
                    health_checks_failed: value(&health, name).unwrap_or(0.0) as u64,
                    changed_last_day: value(&changed, name).unwrap_or(0.0) as u64,
                    // A preview of another candidate than the one out now is history.
                    preview: preview.filter(|p| candidate.as_deref() == Some(p.candidate.as_str())),
                }
            })
            .collect();
        Ok(Fleet {
            prometheus: prom.url().to_owned(),
            stable,
            candidate,
            hosts,
        })
    }

    /// The hosts on `track`.
    pub fn on(&self, track: Track) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.track == track)
    }
}

/// The value most hosts report (ties: the smallest), ignoring empty ones.
fn most_common<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values.filter(|v| !v.is_empty()) {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(v, _)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_common_ignores_empty_values_and_breaks_ties_by_name() {
        assert_eq!(
            most_common(["", "b", "a", "b"].into_iter()),
            Some("b".into())
        );
        assert_eq!(most_common(["b", "a"].into_iter()), Some("a".into()));
        assert_eq!(most_common(["", ""].into_iter()), None);
    }
}
