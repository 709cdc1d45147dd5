//! Fleet preview: while the source's rollout has a candidate and this host is not on it,
//! the host checks the candidate too, after its own run, read-only: fetched and verified
//! into scratch space, planned against this host's facts, and observed against the host as
//! it is. What the candidate would change or fail on goes into `last-run.json` and the
//! metrics, so a candidate that breaks on one host shows fleet-wide before any host runs it.
//!
//! Read-only holds by construction: the candidate runs through the engine in check mode,
//! which never gets a writing handle; the plan is not cached; health checks are left out
//! (they judge the host after a change, and the candidate changed nothing here). Only
//! converge's own scratch space under the state dir is written, and removed again.

use crate::durable::StateLock;
use crate::engine;
use crate::report::preview::CandidatePreview;
use crate::report::Mode;
use crate::system::System;

use super::record::RunRecord;
use super::source::{self, HostView, Unchecked};
use super::{plan_tree, Request, Source};

/// The preview of the candidate for the run `req` recorded in `record`, when there is a
/// candidate this host is not on; `None` otherwise. A run that found the host `in_sync`
/// on the bundle of the last run, with the same candidate out, keeps that run's preview:
/// nothing it was made from changed, and an unchanged poll stays a few 304s.
pub(super) fn candidate(
    req: &Request,
    lock: &StateLock,
    sys: &System,
    record: &RunRecord,
    in_sync: bool,
) -> Option<CandidatePreview> {
    let Source::Bundle(text) = &req.source else {
        return None;
    };
    let status = record.source.as_ref()?;
    let candidate = status.rollout.as_ref()?.candidate.clone()?;
    if status.bundle_id == candidate {
        return None;
    }
    if in_sync {
        if let Some(kept) = last_preview(&req.settings.state_dir, &status.bundle_id, &candidate) {
            return Some(kept);
        }
    }
    let preview = match check(req, text, lock, sys, &candidate) {
        Ok(preview) => preview,
        Err(Unchecked { error, kind }) => CandidatePreview::unchecked(&candidate, error, kind),
    };
    tracing::info!(
        candidate = %candidate,
        pending = preview.pending,
        failed = preview.failed,
        "candidate {candidate} previewed: {} would change, {} would fail{}",
        preview.pending,
        preview.failed,
        preview.error.as_deref().map_or_else(String::new, |e| format!(": {e}"))
    );
    Some(preview)
}

fn check(
    req: &Request,
    text: &str,
    lock: &StateLock,
    sys: &System,
    candidate: &str,
) -> Result<CandidatePreview, Unchecked> {
    let host = HostView {
        root: &req.root,
        facts: &req.facts,
    };
    let (tree, _scratch) = source::peek_candidate(text, &req.settings, lock, &host, candidate)?;
    let check = Request {
        mode: Mode::Check,
        ..req.clone()
    };
    let (mut plan, _roles) = plan_tree(&check, &tree)?;
    plan.health.clear();
    let report = engine::run(
        &plan,
        sys,
        engine::RunOptions {
            mode: Mode::Check,
            journal: None,
            recorder: None,
        },
    );
    Ok(CandidatePreview::from_check(candidate, &report))
}

/// The last apply's preview, when that apply ran `bundle` and previewed `candidate`.
fn last_preview(
    state_dir: &std::path::Path,
    bundle: &str,
    candidate: &str,
) -> Option<CandidatePreview> {
    let last: serde_json::Value =
        crate::durable::read_json(&state_dir.join(super::record::LAST_RUN_FILE), "record")?;
    if last["source"]["bundle_id"].as_str() != Some(bundle) {
        return None;
    }
    let kept: CandidatePreview = serde_json::from_value(last.get("candidate")?.clone()).ok()?;
    (kept.candidate == candidate).then_some(kept)
}
