//! `converge rollout OUT start|set|halt|promote|show`: the signed rollout state of a bundle dir.

use crate::cli::{RolloutArgs, RolloutCommand, RolloutSign};

use converge::bundle::{self, Rollout, RolloutAction, RolloutOptions, SecretKeyFile};

/// Carries out one rollout command and prints the state it leaves.
pub fn run(args: &RolloutArgs) -> anyhow::Result<i32> {
    let (action, sign) = match &args.action {
        RolloutCommand::Start { percent, sign } => {
            (RolloutAction::Start { percent: *percent }, sign)
        }
        RolloutCommand::Set { percent, sign } => (RolloutAction::Set { percent: *percent }, sign),
        RolloutCommand::Halt { sign } => (RolloutAction::Halt, sign),
        RolloutCommand::Promote { sign } => (RolloutAction::Promote, sign),
        RolloutCommand::Advance { gate, sign } => {
            return super::advance::run(&args.out, gate, sign);
        }
        RolloutCommand::Show => {
            match bundle::read_rollout(&args.out)? {
                Some(r) => showln!("{}", describe(&r)),
                None => showln!(
                    "no rollout in {}: every host follows {}",
                    args.out.display(),
                    args.out.join("manifest.json").display()
                ),
            }
            return Ok(0);
        }
    };
    let RolloutSign { key, expires } = sign;
    let signer = key.as_deref().map(SecretKeyFile::load).transpose()?;
    let edited = bundle::edit_rollout(
        &args.out,
        action,
        &RolloutOptions {
            signer: signer.as_ref(),
            expires: *expires,
        },
    )
    .map_err(|e| anyhow::anyhow!("rollout: {e}"))?;
    if let Some(id) = &edited.promoted {
        showln!("promoted the candidate: stable bundle is now {id}");
    }
    showln!("{}", describe(&edited.rollout));
    Ok(0)
}

/// One line per fact of the rollout state, for people.
fn describe(r: &Rollout) -> String {
    let mut lines = vec![format!("stable:    {}", r.stable)];
    match &r.candidate {
        Some(c) => {
            lines.push(format!("candidate: {c}"));
            let state = if r.halted {
                format!("halted (every host on stable; was at {} %)", r.percent)
            } else {
                format!("{} % of hosts on the candidate", r.percent)
            };
            lines.push(format!("rollout:   {state}"));
        }
        None => lines.push("candidate: none (every host on stable)".into()),
    }
    lines.push(format!("created:   {}", r.created));
    lines.push(format!(
        "expires:   {}",
        r.expires.as_deref().unwrap_or("never")
    ));
    lines.join("\n")
}
