//! The gate of a progressive rollout: from the fleet's metrics, whether the hosts on the
//! candidate ran it cleanly enough to move on, and if not, which hosts say no and why.

use serde::Serialize;

use super::Fleet;

/// What a gate asks of the canaries.
#[derive(Debug, Clone, Copy)]
pub struct GateRules {
    /// Hosts on the candidate that may fail before the rollout halts.
    pub max_failed: usize,
    /// Hosts that must have run the candidate before the rollout moves on.
    pub min_reported: usize,
}

/// One host that speaks against the candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The host.
    pub host: String,
    /// What its metrics say.
    pub reason: String,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Enough hosts ran the candidate, and few enough of them failed.
    Advance {
        /// Hosts that ran the candidate.
        reported: usize,
        /// Those of them that failed (at most `max_failed`).
        failures: Vec<Failure>,
    },
    /// Too few hosts have run the candidate yet, and too few failed to halt: ask again.
    Wait {
        /// Hosts that ran the candidate.
        reported: usize,
        /// How many must have.
        needed: usize,
        /// Those of them that failed (at most `max_failed`).
        failures: Vec<Failure>,
    },
    /// More hosts failed on the candidate than allowed.
    Halt {
        /// Hosts that ran the candidate.
        reported: usize,
        /// Every host that failed on it, and why.
        failures: Vec<Failure>,
    },
}

/// Judges `candidate` before any host runs it (the rollout at 0 %), by the fleet preview:
/// the hosts that checked it, and those on which it would fail.
pub fn judge_preview(fleet: &Fleet, candidate: &str, rules: GateRules) -> Verdict {
    let mut reported = 0;
    let mut failures = Vec::new();
    for host in &fleet.hosts {
        let Some(p) = host.preview.as_ref().filter(|p| p.candidate == candidate) else {
            continue;
        };
        reported += 1;
        if p.failed > 0 {
            failures.push(Failure {
                host: host.host.clone(),
                reason: format!(
                    "the candidate would fail here ({} resource(s); its last-run.json says why)",
                    p.failed
                ),
            });
        }
    }
    verdict(reported, failures, rules)
}

/// Judges `candidate` by the hosts of `fleet` that ran it: those whose last apply used it,
/// and those that hold it back after rolling it back.
pub fn judge(fleet: &Fleet, candidate: &str, rules: GateRules) -> Verdict {
    let mut reported = 0;
    let mut failures = Vec::new();
    for host in &fleet.hosts {
        let on_it = host.bundle.as_deref() == Some(candidate);
        let holds_it = host.held.as_deref() == Some(candidate);
        if !on_it && !holds_it {
            continue;
        }
        reported += 1;
        let mut why = Vec::new();
        if on_it {
            match host.exit_code {
                Some(1) => why.push("its last run could not run (exit 1)".to_owned()),
                Some(code @ (4 | 6)) => why.push(format!("its last run failed (exit {code})")),
                _ => {}
            }
            if host.health_checks_failed > 0 {
                why.push(format!(
                    "{} health check(s) failed",
                    host.health_checks_failed
                ));
            }
            if host.rolled_back {
                why.push("the run was rolled back".to_owned());
            }
        }
        if holds_it {
            why.push("it rolled the candidate back and holds it back".to_owned());
        }
        if !why.is_empty() {
            failures.push(Failure {
                host: host.host.clone(),
                reason: why.join("; "),
            });
        }
    }
    verdict(reported, failures, rules)
}

fn verdict(reported: usize, failures: Vec<Failure>, rules: GateRules) -> Verdict {
    if failures.len() > rules.max_failed {
        Verdict::Halt { reported, failures }
    } else if reported < rules.min_reported {
        Verdict::Wait {
            reported,
            needed: rules.min_reported,
            failures,
        }
    } else {
        Verdict::Advance { reported, failures }
    }
}

/// The step after `percent` in `steps` (ascending shares), `None` past the last: the
/// candidate is then promoted.
pub fn next_step<P: Ord + Copy>(percent: P, steps: &[P]) -> Option<P> {
    steps.iter().copied().find(|&s| s > percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Host, Track};

    fn host(name: &str, bundle: &str, exit_code: i32) -> Host {
        Host {
            host: name.into(),
            bundle: Some(bundle.into()),
            track: Track::Other,
            exit_code: Some(exit_code),
            last_run: None,
            failing: matches!(exit_code, 1 | 4 | 6),
            stale: false,
            expired: false,
            rolled_back: false,
            held: None,
            health_checks_failed: 0,
            changed_last_day: 0,
            preview: None,
        }
    }

    fn fleet(hosts: Vec<Host>) -> Fleet {
        Fleet {
            prometheus: "http://p".into(),
            stable: Some("s".into()),
            candidate: Some("c".into()),
            hosts,
        }
    }

    const RULES: GateRules = GateRules {
        max_failed: 0,
        min_reported: 2,
    };

    #[test]
    fn healthy_canaries_advance_and_too_few_wait() {
        let f = fleet(vec![
            host("a", "c", 2),
            host("b", "c", 0),
            host("x", "s", 4),
        ]);
        assert_eq!(
            judge(&f, "c", RULES),
            Verdict::Advance {
                reported: 2,
                failures: vec![]
            }
        );
        let f = fleet(vec![host("a", "c", 0), host("x", "s", 0)]);
        assert_eq!(
            judge(&f, "c", RULES),
            Verdict::Wait {
                reported: 1,
                needed: 2,
                failures: vec![]
            }
        );
    }

    #[test]
    fn a_rollback_on_the_candidate_halts_and_names_the_host() {
        let mut bad = host("b", "c", 4);
        bad.rolled_back = true;
        bad.health_checks_failed = 1;
        let mut held = host("d", "s", 0);
        held.held = Some("c".into());
        let f = fleet(vec![host("a", "c", 0), bad, held, host("x", "s", 1)]);
        assert_eq!(
            judge(&f, "c", RULES),
            Verdict::Halt {
                reported: 3,
                failures: vec![
                    Failure {
                        host: "b".into(),
                        reason: "its last run failed (exit 4); 1 health check(s) failed; the run was rolled back".into()
                    },
                    Failure {
                        host: "d".into(),
                        reason: "it rolled the candidate back and holds it back".into()
                    },
                ]
            }
        );
        let lenient = GateRules {
            max_failed: 2,
            min_reported: 3,
        };
        assert!(matches!(
            judge(&f, "c", lenient),
            Verdict::Advance { reported: 3, .. }
        ));
    }

    #[test]
    fn at_zero_percent_the_preview_is_judged() {
        use crate::fleet::Preview;
        let mut a = host("a", "s", 0);
        a.preview = Some(Preview {
            candidate: "c".into(),
            pending: 3,
            failed: 0,
        });
        let mut b = host("b", "s", 0);
        b.preview = Some(Preview {
            candidate: "c".into(),
            pending: 0,
            failed: 2,
        });
        let f = fleet(vec![a.clone(), b, host("x", "s", 0)]);
        assert_eq!(
            judge_preview(&f, "c", RULES),
            Verdict::Halt {
                reported: 2,
                failures: vec![Failure {
                    host: "b".into(),
                    reason:
                        "the candidate would fail here (2 resource(s); its last-run.json says why)"
                            .into()
                }]
            }
        );
        assert_eq!(
            judge_preview(&fleet(vec![a]), "c", RULES),
            Verdict::Wait {
                reported: 1,
                needed: 2,
                failures: vec![]
            }
        );
    }

    #[test]
    fn steps_run_up_to_promotion() {
        let steps = [5, 25, 50, 100];
        assert_eq!(next_step(0, &steps), Some(5));
        assert_eq!(next_step(5, &steps), Some(25));
        assert_eq!(next_step(30, &steps), Some(50));
        assert_eq!(next_step(100, &steps), None);
    }
}
