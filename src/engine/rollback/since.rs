//! What happened to a run's paths since the run: a rollback restores over the run's own
//! content freely (the bundle still has it), but content someone wrote afterwards is never
//! destroyed without a copy. The run noted what it left at each path (`history::Left`);
//! here the live path is compared with that, and what a rollback replaces is kept.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::SystemTime;

use super::{differs, Recorded, RestoreError};
use crate::history::{backup, Kept, KeptText, LeftState, PathState, Prior, RunBlobs};
use crate::resource::content::Fingerprint;
use crate::resource::ContentChange;
use crate::system::fs::Entry;
use crate::system::{System, SystemError};

/// How a path stands against what the run left there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Since {
    /// As the run left it (or another change of the run, undone first, covers it).
    AsLeft,
    /// Changed since the run: how.
    Changed(String),
    /// The run's record does not say what it left (recorded before converge kept that, or
    /// cut short by a kill): treated as possibly changed, but not refused.
    Unknown,
}

/// One change of the run, looked at before anything is undone.
#[derive(Debug)]
pub(super) struct Look<'a> {
    /// What was there before the change.
    pub prior: &'a Prior,
    /// What differs from before the run (`None`: nothing, or, outside a preview, a change
    /// that is not a path's, which the undo looks at when its turn comes).
    pub differs: Result<Option<String>, RestoreError>,
    /// For a path to restore, whether someone changed it since the run.
    pub since: Since,
    /// For a file to restore (when asked for): the live content → the content before.
    pub content: Option<ContentChange>,
}

/// Looks at each change of `rec`, newest first (the order they are undone in). `preview`:
/// also diff each file to restore, and find what differs for every kind (an undo finds
/// that again for each change right before undoing it, so it looks at paths only here).
pub(super) fn survey<'a>(sys: &System, rec: &Recorded<'a>, preview: bool) -> Vec<Look<'a>> {
    // Paths of changes made after the one looked at: undone before it, so what stands
    // there when its turn comes is the run's own.
    let mut later: HashSet<&Path> = HashSet::new();
    let mut out = Vec::with_capacity(rec.priors.len());
    for (i, prior) in rec.priors.iter().enumerate().rev() {
        let differs = match prior {
            Prior::Path { .. } => differs(sys, prior, rec.blobs),
            _ if preview => differs(sys, prior, rec.blobs),
            _ => Ok(None),
        };
        let mut look = Look {
            prior,
            differs,
            since: Since::AsLeft,
            content: None,
        };
        if let (Prior::Path { path, was, .. }, Ok(Some(_))) = (prior, &look.differs) {
            let left = rec.left.get(&i);
            look.since = match left {
                _ if later.contains(path.as_path()) => Since::AsLeft,
                None => Since::Unknown,
                Some(left) => {
                    let covered = |p: &Path| later.contains(p);
                    match changed(sys, path, was, &left.state, &covered) {
                        Ok(None) => Since::AsLeft,
                        Ok(Some(how)) => Since::Changed(how),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot tell whether a path changed since its run");
                            Since::Unknown
                        }
                    }
                }
            };
            if preview {
                // Unknown sensitivity (an older record) is treated as sensitive.
                let sensitive = left.is_none_or(|l| l.sensitive);
                look.content = diff(sys, path, was, rec.blobs, sensitive);
            }
        }
        if let Some(LeftState::Live { state }) = rec.left.get(&i).map(|l| &l.state) {
            look.since = live_since(sys, prior, state);
        }
        if let Prior::Path { path, .. } = prior {
            later.insert(path);
        }
        out.push(look);
    }
    out
}

/// How the live state `prior` names stands against `left`, what the run left of it. One
/// that cannot be read counts as left: the restore then reads it again, and fails.
fn live_since(sys: &System, prior: &Prior, left: &str) -> Since {
    match backup::live_state(sys, prior) {
        Ok(Some(now)) if now != left => Since::Changed(match prior {
            Prior::Nftables { .. } => "the live ruleset is not what the run left".to_owned(),
            _ => format!("now {now}; the run left {left}"),
        }),
        Ok(_) => Since::AsLeft,
        Err(e) => {
            tracing::warn!(resource = prior.resource(), error = %e, "cannot tell whether a live state changed since its run");
            Since::AsLeft
        }
    }
}

/// Keeps the live tables a rollback of `prior` replaces in the run's history, synced
/// before the restore; returns where. A kernel value needs no copy: the report names it.
pub(super) fn keep_live(
    sys: &System,
    prior: &Prior,
    blobs: &RunBlobs,
) -> Result<Vec<std::path::PathBuf>, RestoreError> {
    let Prior::Nftables {
        family,
        table,
        purged,
        ..
    } = prior
    else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    for name in std::iter::once(table).chain(purged.keys()) {
        if let Some(text) = sys.nft_table(family, name)? {
            let put =
                KeptText::put(&text, blobs).map_err(|e| SystemError::io(&blobs.path(""), e))?;
            kept.push(blobs.path(&put.sha256));
        }
    }
    Ok(kept)
}

/// How `path` differs from `left`, what the run left there: `None` when it does not, as
/// far as undoing `was` goes.
fn changed(
    sys: &System,
    path: &Path,
    was: &PathState,
    left: &LeftState,
    covered: &dyn Fn(&Path) -> bool,
) -> Result<Option<String>, SystemError> {
    let now = sys.entry(path)?;
    Ok(match (left, &now) {
        (LeftState::Missing, Entry::Missing) | (LeftState::Other, Entry::Other) => None,
        (LeftState::File { sha256, .. }, Entry::File(_)) => {
            let found = Fingerprint::of_reader(&mut sys.open_file(path)?)
                .map_err(|e| SystemError::io(path, e))?
                .digest();
            (found.sha256 != *sha256).then(|| "its content is not what the run left".to_owned())
        }
        (LeftState::Symlink { target }, Entry::Symlink(now)) => {
            (now != target).then(|| format!("it links to {} now", now.display()))
        }
        (LeftState::Directory { entries }, Entry::Directory(_)) => {
            let names: Vec<String> = sys
                .list_dir(path)?
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            let made: Vec<&String> = match was {
                // Restored in place: only entries it puts back could meet new ones.
                PathState::Directory { entries: back, .. } => {
                    names.iter().filter(|n| back.contains_key(*n)).collect()
                }
                // Replaced or removed whole: anything the run did not put there.
                _ => names
                    .iter()
                    .filter(|n| !entries.contains(n) && !covered(&path.join(n)))
                    .collect(),
            };
            (!made.is_empty()).then(|| {
                let shown: Vec<&str> = made.iter().take(5).map(|n| n.as_str()).collect();
                let more = made.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("it holds entries made since: {}{more}", shown.join(", "))
            })
        }
        (_, now) => Some(format!(
            "the run left {}, it is {} now",
            left_noun(left),
            now.kind()
        )),
    })
}

fn left_noun(left: &LeftState) -> &'static str {
    match left {
        LeftState::Live { .. } => "a live state",
        LeftState::Missing => "it absent",
        LeftState::File { .. } => "a file",
        LeftState::Directory { .. } => "a directory",
        LeftState::Symlink { .. } => "a symlink",
        LeftState::Other => "a special file",
    }
}

/// The unified diff of restoring `was` at `path`, live → before the run, when either side
/// is a file.
fn diff(
    sys: &System,
    path: &Path,
    was: &PathState,
    blobs: &RunBlobs,
    sensitive: bool,
) -> Option<ContentChange> {
    let live = match sys.entry(path).ok()? {
        Entry::File(_) => Some(sys.read_file(path).ok()?),
        _ => None,
    };
    let before = match was {
        PathState::File { sha256, size, .. } => Some(blobs.get(sha256, *size).ok()?),
        _ => None,
    };
    if live.is_none() && before.is_none() {
        return None;
    }
    let label = path.display();
    let sides = (
        format!("{label} (live)"),
        format!("{label} (before the run)"),
    );
    Some(ContentChange::between_sides(
        &sides,
        live.as_deref(),
        before.as_deref().unwrap_or_default(),
        sensitive,
    ))
}

/// Keeps what stands at `path` (what undoing `was` would replace) in the run's history,
/// synced before the restore; returns where it is, `None` when nothing would be lost.
pub(super) fn keep(
    sys: &System,
    resource: &str,
    path: &Path,
    was: &PathState,
    blobs: &RunBlobs,
) -> Result<Option<std::path::PathBuf>, RestoreError> {
    let now = sys.entry(path)?;
    let (whole, names) = match (was, &now) {
        (_, Entry::Missing) => return Ok(None),
        // Restored in place: only the entries it puts back replace anything.
        (PathState::Directory { entries, .. }, Entry::Directory(_)) => {
            let mut present = Vec::new();
            for name in entries.keys() {
                if sys.entry(&path.join(name))? != Entry::Missing {
                    present.push(OsString::from(name));
                }
            }
            if present.is_empty() {
                return Ok(None);
            }
            (false, present)
        }
        _ => (true, Vec::new()),
    };
    let state = backup::path_state(sys, path, whole, &names, blobs, 0)?;
    let kept = Kept {
        resource: resource.to_owned(),
        path: path.to_path_buf(),
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        state,
    };
    Ok(Some(blobs.keep(&kept)?))
}
