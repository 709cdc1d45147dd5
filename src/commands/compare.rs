//! `converge compare A B`: what differs between two snapshots (or a snapshot and this host).

use std::path::Path;

use anyhow::{anyhow, bail};

use crate::cli::{ColorChoice, CompareArgs, Format};
use converge::compare::{self, render, IgnoreList};
use converge::report::human::Style;
use converge::snapshot::{self, Options, Snapshot, SnapshotError};

/// The word that stands for this host instead of a snapshot file.
pub const LIVE: &str = "live";

/// Exit 0 when equal, 2 when they differ; bad input is an error (exit 1).
pub fn run(args: &CompareArgs, color: ColorChoice) -> anyhow::Result<i32> {
    if args.print_ignore {
        show!("{}", IgnoreList::defaults_toml());
        return Ok(0);
    }
    let (Some(a), Some(b)) = (&args.a, &args.b) else {
        bail!(
            "compare needs two snapshots: converge compare A B (a file, or `live` for this host)"
        );
    };
    let ignore = match &args.ignore {
        Some(path) => IgnoreList::load(path)?,
        None => IgnoreList::defaults(),
    };
    let (sa, sb) = load_pair(a, b, &args.root, &args.config, &args.secrets, false)?;
    let diffs = compare::compare(&sa, &sb, &ignore, (a, b));
    let notes = compare::notes(&sa, &sb, (a, b));
    match args.format {
        Format::Human => show!(
            "{}",
            render::human(
                &diffs,
                &notes,
                (a, b),
                Style::new(super::run::use_color(color))
            )
        ),
        Format::Json => show!("{}", render::json(&diffs, &notes, (a, b))),
    }
    Ok(if diffs.is_empty() { 0 } else { 2 })
}

/// A snapshot file; a located problem in it is reported like any located error.
pub fn load(path: &Path) -> anyhow::Result<Snapshot> {
    Snapshot::load(path).map_err(|e| match e {
        SnapshotError::Invalid(d) => anyhow::Error::new(d),
        e => e.into(),
    })
}

/// Both sides; a `live` side records the same paths as the file it is compared with, so
/// neither side reports files the other never looked at. The secret patterns (`secrets`,
/// and those either file was taken with) hold on both sides, and a path secret on one
/// side is secret on the other. `include_private`: a live side records private files' text.
pub fn load_pair(
    a: &str,
    b: &str,
    root: &Path,
    config: &Path,
    secrets: &[String],
    include_private: bool,
) -> anyhow::Result<(Snapshot, Snapshot)> {
    if a == LIVE && b == LIVE {
        bail!("compare: at most one side can be `live`");
    }
    let file = |name: &str| -> anyhow::Result<Snapshot> {
        let mut snap = load(Path::new(name))?;
        snap.keep_secret(secrets)?;
        Ok(snap)
    };
    let live = |other: &Snapshot| -> anyhow::Result<Snapshot> {
        let sys = super::system(root, config)?;
        let mut patterns = secrets.to_vec();
        patterns.extend(other.host.secrets.iter().cloned());
        let options = Options {
            paths: other.host.paths.iter().map(Into::into).collect(),
            selected: other
                .host
                .selected
                .iter()
                .map(|(p, s)| (p.into(), *s))
                .collect(),
            secrets: patterns,
            include_private,
        };
        snapshot::take(&sys, &options)
            .map_err(|e| anyhow!("cannot take a snapshot of this host: {e}"))
    };
    let (mut sa, mut sb) = if a == LIVE {
        let sb = file(b)?;
        (live(&sb)?, sb)
    } else {
        let sa = file(a)?;
        let sb = if b == LIVE { live(&sa)? } else { file(b)? };
        (sa, sb)
    };
    // The patterns either file was taken with hold for the other side as well.
    let recorded: Vec<String> = [&sa, &sb]
        .iter()
        .flat_map(|s| s.host.secrets.iter().cloned())
        .collect();
    sa.keep_secret(&recorded)?;
    sb.keep_secret(&recorded)?;
    Snapshot::share_secrets(&mut sa, &mut sb);
    Ok((sa, sb))
}
