//! `converge capture`: a role that makes NEW match OLD, written into a source tree.

use std::path::Path;

use anyhow::anyhow;

use crate::cli::CaptureArgs;
use converge::capture::{self, Request};
use converge::compare::IgnoreList;
use converge::plan::PlanOptions;
use converge::role::SourceTree;
use converge::snapshot::{self, Options};

/// Captures, writes, then proves the role loads and plans as `validate` would.
pub fn run(args: &CaptureArgs) -> anyhow::Result<i32> {
    // Refuse a wrong output before observing anything.
    capture::source_of(&args.output, &args.role)?;
    capture::refuse_existing(&args.output, &args.role, args.force)?;
    let ignore = match &args.ignore {
        Some(path) => IgnoreList::load(path)?,
        None => IgnoreList::defaults(),
    };
    let (old, new) = match &args.against {
        Some(against) => {
            let (a, b) = super::compare::load_pair(
                &args.from,
                against,
                &args.root,
                &args.config,
                &args.secrets,
                args.include_private,
            )?;
            (a, Some(b))
        }
        None if args.from == super::compare::LIVE => {
            let sys = super::system(&args.root, &args.config)?;
            let options = Options {
                secrets: args.secrets.clone(),
                include_private: args.include_private,
                ..Options::default()
            };
            let snap = snapshot::take(&sys, &options)
                .map_err(|e| anyhow!("cannot take a snapshot of this host: {e}"))?;
            (snap, None)
        }
        None => {
            let mut snap = super::compare::load(Path::new(&args.from))?;
            snap.keep_secret(&args.secrets)?;
            (snap, None)
        }
    };
    let role = capture::capture(&Request {
        role: &args.role,
        from: (&old, &args.from),
        against: new.as_ref().zip(args.against.as_deref()),
        remove_extra: args.remove_extra,
        ignore: &ignore,
    })?;
    // Written aside first and planned there: a role that does not pass validate, or a
    // write that fails midway, leaves the source as it was.
    let staged = capture::stage(&role, &args.output, args.force)?;
    let src = capture::source_of(&args.output, &args.role)?;
    let tree = SourceTree::open(staged.tree())?;
    let facts = super::facts(None, Path::new("/"))?;
    converge::pipeline::plan(
        &tree,
        std::slice::from_ref(&args.role),
        &Default::default(),
        &facts,
        PlanOptions::default(),
    )
    .map_err(|errors| super::Findings {
        summary: format!(
            "capture: the captured role {} does not pass validate: nothing was written",
            args.output.display()
        ),
        errors,
    })?;
    staged.commit()?;
    let entries = role.sysctl.len()
        + role.groups.len()
        + role.users.len()
        + role.packages.len()
        + role.directories.len()
        + role.files.len()
        + role.symlinks.len()
        + role.absent.len()
        + role.services.len()
        + role.execs.len()
        + role.kernel_modules.len()
        + role.nftables.len();
    say!(
        "capture: wrote {} ({entries} entr{}, {} file{} under {}); {} thing{} seen but not captured (listed at its top)",
        args.output.display(),
        if entries == 1 { "y" } else { "ies" },
        role.files.len(),
        if role.files.len() == 1 { "" } else { "s" },
        src.join("files").join(&args.role).display(),
        role.notes.len(),
        if role.notes.len() == 1 { "" } else { "s" },
    );
    Ok(0)
}
