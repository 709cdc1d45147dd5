//! `converge rollout OUT advance --prometheus URL --steps 5,25,50,100`: the gate of a
//! progressive rollout. It reads the fleet's metrics and moves the candidate to the next
//! step (or promotes it after the last) when the hosts on it ran it cleanly, waits when
//! too few have, and halts the rollout, host by host saying why, when too many failed.
//! It keeps no state of its own: the signed rollout file is the whole of it.

use std::fmt::Write as _;

use anyhow::bail;
use serde::Serialize;

use crate::cli::{AdvanceArgs, Format, RolloutSign};
use converge::bundle::{self, Percent, RolloutAction, RolloutOptions, SecretKeyFile};
use converge::fleet::gate::{self, GateRules, Verdict};
use converge::fleet::{Fleet, Prometheus, Rollout};

/// Exit code when too few hosts have run the candidate yet: nothing changed, ask again.
pub const EXIT_WAIT: i32 = 3;
/// Exit code when the rollout was halted.
pub const EXIT_HALTED: i32 = 4;

/// What `--format json` prints.
#[derive(Serialize)]
struct Outcome<'a> {
    candidate: &'a str,
    /// What was judged: `preview` (at 0 %, no host runs it yet) or `runs`.
    judged: &'static str,
    /// The share before.
    from: String,
    /// The share after (`promoted` when the candidate became stable, `halted`).
    to: String,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

/// Judges the candidate and edits the rollout file as the verdict says; exit 0 moved on,
/// 3 waiting (nothing changed), 4 halted, 1 could not judge (nothing changed).
pub fn run(out: &std::path::Path, args: &AdvanceArgs, sign: &RolloutSign) -> anyhow::Result<i32> {
    let mut steps = args.steps.clone();
    steps.sort();
    steps.dedup();
    let Some(rollout) = bundle::read_rollout(out)? else {
        bail!(
            "rollout advance: no rollout in {}: publish a candidate (`publish --candidate`) and `rollout start` it first",
            out.display()
        );
    };
    let Some(candidate) = rollout.candidate.clone() else {
        bail!(
            "rollout advance: no candidate in {}: nothing to advance",
            out.display()
        );
    };
    if rollout.halted {
        bail!("rollout advance: the rollout of {candidate} is halted; `rollout start` resumes it");
    }
    // The key must open before anything is judged: a gate that halts must be able to.
    let signer = sign.key.as_deref().map(SecretKeyFile::load).transpose()?;
    let prom = Prometheus::new(&args.prometheus)?;
    let fleet = Fleet::read(
        &prom,
        &args.host_label,
        &Rollout {
            stable: Some(rollout.stable.clone()),
            candidate: Some(candidate.clone()),
        },
    )?;
    let rules = GateRules {
        max_failed: args.max_failed,
        min_reported: args.min_reported,
    };
    // At 0 % no host runs the candidate: the fleet preview is all there is to judge.
    let previewed = rollout.percent == Percent::default();
    let verdict = if previewed {
        gate::judge_preview(&fleet, &candidate, rules)
    } else {
        gate::judge(&fleet, &candidate, rules)
    };
    let action = match &verdict {
        Verdict::Advance { .. } => match gate::next_step(rollout.percent, &steps) {
            Some(percent) => Some(RolloutAction::Set { percent }),
            None => Some(RolloutAction::Promote),
        },
        Verdict::Wait { .. } => None,
        Verdict::Halt { .. } => Some(RolloutAction::Halt),
    };
    let options = RolloutOptions {
        signer: signer.as_ref(),
        expires: sign.expires,
    };
    let to = match action {
        Some(action) => {
            let edited = bundle::edit_rollout(out, action, &options)
                .map_err(|e| anyhow::anyhow!("rollout advance: {e}"))?;
            match (action, edited.promoted) {
                (RolloutAction::Promote, _) => "promoted".to_owned(),
                (RolloutAction::Halt, _) => "halted".to_owned(),
                _ => edited.rollout.percent.to_string(),
            }
        }
        None => rollout.percent.to_string(),
    };
    let outcome = Outcome {
        candidate: &candidate,
        judged: if previewed { "preview" } else { "runs" },
        from: rollout.percent.to_string(),
        to,
        verdict: &verdict,
    };
    if args.format == Format::Json {
        showln!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        show!("{}", human(&outcome, rules));
    }
    Ok(match verdict {
        Verdict::Advance { .. } => 0,
        Verdict::Wait { .. } => EXIT_WAIT,
        Verdict::Halt { .. } => EXIT_HALTED,
    })
}

/// The verdict for people: what happened, and each failing host with its reason.
fn human(o: &Outcome, rules: GateRules) -> String {
    let mut out = String::new();
    let short = o.candidate.get(..12).unwrap_or(o.candidate);
    let (ran, failed) = match o.judged {
        "preview" => ("previewed", "would fail"),
        _ => ("ran", "failed"),
    };
    let failures = match o.verdict {
        Verdict::Advance { reported, failures } => {
            let _ = writeln!(
                out,
                "advance: {reported} hosts {ran} candidate {short}, {} {failed} (at most {} allowed)",
                failures.len(),
                rules.max_failed
            );
            if o.to == "promoted" {
                let _ = writeln!(
                    out,
                    "promoted: the candidate is the stable bundle for every host"
                );
            } else {
                let _ = writeln!(
                    out,
                    "advanced: {} % → {} % of hosts on the candidate",
                    o.from, o.to
                );
            }
            failures
        }
        Verdict::Wait {
            reported,
            needed,
            failures,
        } => {
            let _ = writeln!(
                out,
                "wait: {reported} of the {needed} hosts needed {ran} candidate {short} ({} {failed}); nothing changed, still at {} %",
                failures.len(),
                o.from
            );
            failures
        }
        Verdict::Halt { reported, failures } => {
            let _ = writeln!(
                out,
                "halt: {} of {reported} hosts that {ran} candidate {short} {failed} (at most {} allowed)",
                failures.len(),
                rules.max_failed
            );
            let _ = writeln!(
                out,
                "halted: every host goes back to the stable bundle at its next run (was at {} %); `rollout start` resumes",
                o.from
            );
            failures
        }
    };
    for f in failures {
        let _ = writeln!(out, "  {}: {}", f.host, f.reason);
    }
    out
}
