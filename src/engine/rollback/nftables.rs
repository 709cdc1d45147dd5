//! Putting nftables tables back as a run found them: the table as it was (or none), and
//! the tables a purge deleted, in one transaction.

use std::collections::BTreeMap;

use super::RestoreError;
use crate::history::{KeptText, Prior, RunBlobs};
use crate::resource::nftables;
use crate::system::{Host, System};

/// The kept text of `kept`.
fn text(blobs: &RunBlobs, kept: &KeptText) -> Result<String, RestoreError> {
    let bytes = blobs.get(&kept.sha256, kept.size)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One table as it is now and as it was (`None`: not there).
struct Side {
    name: String,
    now: Option<String>,
    was: Option<String>,
}

/// What a run's record keeps of a table: `Prior::Nftables`'s fields.
#[derive(Clone, Copy)]
struct Before<'a> {
    family: &'a str,
    table: &'a str,
    was: Option<&'a KeptText>,
    purged: &'a BTreeMap<String, KeptText>,
}

impl<'a> Before<'a> {
    fn of(prior: &'a Prior) -> Option<Before<'a>> {
        match prior {
            Prior::Nftables {
                family,
                table,
                was,
                purged,
                ..
            } => Some(Before {
                family,
                table,
                was: was.as_ref(),
                purged,
            }),
            _ => None,
        }
    }
}

/// The table and the purged ones, as they are now against as they were.
fn sides(sys: &System, b: &Before, blobs: &RunBlobs) -> Result<Vec<Side>, RestoreError> {
    let Before {
        family,
        table,
        was,
        purged,
    } = *b;
    let mut out = Vec::new();
    let kept = was.map(|k| text(blobs, k)).transpose()?;
    out.push(Side {
        name: table.to_owned(),
        now: sys.nft_table(family, table)?,
        was: kept,
    });
    for (name, k) in purged {
        out.push(Side {
            name: name.clone(),
            now: sys.nft_table(family, name)?,
            was: Some(text(blobs, k)?),
        });
    }
    Ok(out)
}

/// What restoring would change, if anything.
pub(super) fn differs(
    sys: &System,
    prior: &Prior,
    blobs: &RunBlobs,
) -> Result<Option<String>, RestoreError> {
    let Some(b) = Before::of(prior).filter(|_| sys.is_live()) else {
        return Ok(None);
    };
    let b = &b;
    let family = b.family;
    let changed: Vec<String> = sides(sys, b, blobs)?
        .into_iter()
        .filter(|s| !nftables::same_listing(s.now.as_deref(), s.was.as_deref()))
        .map(|s| match s.was {
            Some(_) => format!("table {family} {} as before the run", s.name),
            None => format!("delete table {family} {}", s.name),
        })
        .collect();
    Ok((!changed.is_empty()).then(|| changed.join("; ")))
}

/// Loads the tables as they were, in one `nft -f`.
pub(super) fn restore(
    host: &Host,
    prior: &Prior,
    blobs: &RunBlobs,
    notes: &mut Vec<String>,
) -> Result<(), RestoreError> {
    let sys = host.system();
    let Some(b) = Before::of(prior) else {
        return Ok(());
    };
    let b = &b;
    if !sys.is_live() {
        notes.push("the live ruleset is not managed under --root".into());
        return Ok(());
    }
    let mut script = Vec::new();
    for s in sides(sys, b, blobs)? {
        if !nftables::same_listing(s.now.as_deref(), s.was.as_deref()) {
            script.extend(nftables::restore_script(
                b.family,
                &s.name,
                s.was.as_deref(),
            ));
        }
    }
    if !script.is_empty() {
        host.nft_load(&script, &format!("restore-{}-{}.nft", b.family, b.table))?;
    }
    Ok(())
}
