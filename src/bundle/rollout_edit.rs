//! `converge rollout OUT start|set|halt|promote`: the publisher's edits of `rollout.json`,
//! each a new signed file dated after the last, so hosts take it and refuse the old one.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::error::BundleError;
use super::manifest::Manifest;
use super::publish::write_signed;
use super::rollout::{Percent, Rollout, Track, ROLLOUT_FILE, ROLLOUT_SIGNATURE_FILE};
use super::signature::SecretKeyFile;

/// What a rollout command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    /// Put the published candidate on `percent` of the hosts (also resumes a halted rollout,
    /// and starts over when the candidate changed).
    Start {
        /// Share of hosts on the candidate.
        percent: Percent,
    },
    /// Change the share of hosts on the candidate of a running rollout.
    Set {
        /// Share of hosts on the candidate.
        percent: Percent,
    },
    /// Send every host back to the stable bundle at its next run; the candidate stays
    /// published and named, so `start` can resume it.
    Halt,
    /// Make the candidate the stable bundle (a new manifest, dated after both), and end
    /// the rollout.
    Promote,
}

/// How a rollout file is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct RolloutOptions<'a> {
    /// The key that signs the rollout file (and, for `promote`, the new stable manifest).
    pub signer: Option<&'a SecretKeyFile>,
    /// How long hosts accept the new file; without it, as long as the file it replaces
    /// (none if that had no expiry). For `promote`, the new manifest's validity too.
    pub expires: Option<Duration>,
}

/// What a rollout command wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutEdited {
    /// The rollout state now published.
    pub rollout: Rollout,
    /// For `promote`: the new stable bundle's id.
    pub promoted: Option<String>,
}

/// The rollout file in the bundle dir `out`, when there is one; one that cannot be read is
/// an error (it is never overwritten blind).
pub fn read_rollout(out: &Path) -> Result<Option<Rollout>, BundleError> {
    let path = out.join(ROLLOUT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BundleError::io(&path, e)),
    };
    Rollout::parse(&bytes)
        .map(Some)
        .map_err(|reason| BundleError::RolloutMalformed {
            url: path.display().to_string(),
            reason,
        })
}

/// After a publish of `track` as bundle `id` into `out`, where `rollout` is in force: the
/// rollout file names the new bundle. A new candidate draws a new slice, so its rollout
/// starts over at 0 % (`start` puts it on hosts).
pub(crate) fn follow_publish(
    out: &Path,
    rollout: &Rollout,
    track: Track,
    id: &str,
    signer: Option<&SecretKeyFile>,
) -> Result<Rollout, BundleError> {
    let next = match track {
        Track::Stable => Rollout::next(
            Some(rollout),
            id.to_owned(),
            rollout.candidate.clone(),
            rollout.percent,
            rollout.halted,
            None,
            SystemTime::now(),
        ),
        Track::Candidate => {
            if rollout.candidate.as_deref().is_some_and(|c| c != id) {
                tracing::warn!(
                    candidate = id,
                    "a new candidate: its rollout starts over at 0 % (run `converge rollout OUT start --percent P`)"
                );
            }
            let percent = match rollout.candidate.as_deref() {
                Some(c) if c == id => rollout.percent,
                _ => Percent::default(),
            };
            Rollout::next(
                Some(rollout),
                rollout.stable.clone(),
                Some(id.to_owned()),
                percent,
                false,
                None,
                SystemTime::now(),
            )
        }
    };
    write_rollout(out, &next, signer)?;
    Ok(next)
}

/// Carries out `action` on the bundle dir `out`. Everything is checked before the first
/// write; a refusal changes nothing.
pub fn edit(
    out: &Path,
    action: RolloutAction,
    options: &RolloutOptions,
) -> Result<RolloutEdited, BundleError> {
    let refuse = |reason: String| BundleError::RolloutRefused {
        path: out.join(ROLLOUT_FILE),
        reason: format!("{reason}; nothing was changed"),
    };
    if options.signer.is_none() {
        for signed in [
            out.join(ROLLOUT_SIGNATURE_FILE),
            out.join(Track::Stable.signature_path()),
        ] {
            if fs::symlink_metadata(&signed).is_ok() {
                return Err(BundleError::RolloutRefused {
                    path: signed,
                    reason: "the bundle is signed, and a rollout file without a signature would be refused by every host that trusts a key: pass --key SECRET_KEY; nothing was changed".into(),
                });
            }
        }
    }
    let stable_path = out.join(Track::Stable.manifest_path());
    let (stable_id, stable) = read_with_id(&stable_path)?.ok_or_else(|| {
        refuse(format!(
            "no stable bundle at {}: publish one first",
            stable_path.display()
        ))
    })?;
    let candidate_path = out.join(Track::Candidate.manifest_path());
    let candidate = read_with_id(&candidate_path)?;
    let previous = read_rollout(out)?;
    let now = SystemTime::now();
    let next = |candidate: Option<String>, percent: Percent, halted: bool| {
        Rollout::next(
            previous.as_ref(),
            stable_id.clone(),
            candidate,
            percent,
            halted,
            options.expires,
            now,
        )
    };
    let no_candidate = || {
        refuse(format!(
            "no candidate at {}: publish one with `converge publish SRC OUT --candidate`",
            candidate_path.display()
        ))
    };
    // The running rollout: a file that names the published candidate.
    let running = || -> Result<&Rollout, BundleError> {
        let (cid, _) = candidate.as_ref().ok_or_else(no_candidate)?;
        match previous.as_ref() {
            Some(r) if r.candidate.as_deref() == Some(cid.as_str()) => Ok(r),
            _ => Err(refuse(format!(
                "no rollout of candidate {cid} is running: start one with `converge rollout OUT start`"
            ))),
        }
    };
    let (rollout, promoted) = match action {
        RolloutAction::Start { percent } => {
            let (cid, _) = candidate.as_ref().ok_or_else(no_candidate)?;
            (next(Some(cid.clone()), percent, false), None)
        }
        RolloutAction::Set { percent } => {
            let r = running()?;
            if r.halted {
                return Err(refuse(format!(
                    "the rollout of candidate {} is halted; `converge rollout OUT start --percent {percent}` resumes it",
                    r.candidate.as_deref().unwrap_or_default()
                )));
            }
            (next(r.candidate.clone(), percent, false), None)
        }
        RolloutAction::Halt => {
            let r = running()?;
            (next(r.candidate.clone(), r.percent, true), None)
        }
        RolloutAction::Promote => {
            let (_, cand) = candidate.as_ref().ok_or_else(no_candidate)?;
            let newest = [&stable, cand]
                .into_iter()
                .max_by_key(|m| m.created_at().ok())
                .expect("two manifests");
            let mut promoted = Manifest {
                message: cand.message.clone(),
                ..Manifest::next_after(cand.files.clone(), Some(newest), now)
            };
            promoted.set_validity(
                options
                    .expires
                    .or_else(|| cand.validity())
                    .or_else(|| stable.validity()),
            );
            let bytes = promoted.to_bytes();
            let id = hex::encode(Sha256::digest(&bytes));
            let rollout = Rollout::next(
                previous.as_ref(),
                id.clone(),
                None,
                Percent::default(),
                false,
                options.expires,
                now,
            );
            // The new stable manifest first: until the rollout file names it, hosts refuse
            // it as not named, and keep what they have.
            write_signed(
                &stable_path,
                &out.join(Track::Stable.signature_path()),
                &bytes,
                options.signer,
            )?;
            (rollout, Some(id))
        }
    };
    write_rollout(out, &rollout, options.signer)?;
    if promoted.is_some() {
        // The candidate is the stable bundle now; a later `start` needs a new one.
        for f in [
            Track::Candidate.signature_path(),
            Track::Candidate.manifest_path(),
        ] {
            let path = out.join(f);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(BundleError::io(&path, e))
                }
                _ => {}
            }
        }
    }
    tracing::info!(
        stable = %rollout.stable,
        candidate = rollout.candidate.as_deref().unwrap_or("none"),
        percent = %rollout.percent,
        halted = rollout.halted,
        "wrote {}",
        out.join(ROLLOUT_FILE).display()
    );
    Ok(RolloutEdited { rollout, promoted })
}

fn write_rollout(
    out: &Path,
    rollout: &Rollout,
    signer: Option<&SecretKeyFile>,
) -> Result<(), BundleError> {
    write_signed(
        &out.join(ROLLOUT_FILE),
        &out.join(ROLLOUT_SIGNATURE_FILE),
        &rollout.to_bytes(),
        signer,
    )
}

/// The manifest at `path` and its bundle id, `None` when there is no file.
fn read_with_id(path: &Path) -> Result<Option<(String, Manifest)>, BundleError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BundleError::io(path, e)),
    };
    let manifest = Manifest::parse(&bytes, &path.display().to_string())?;
    Ok(Some((hex::encode(Sha256::digest(&bytes)), manifest)))
}
