//! `converge keygen`.

use std::io::IsTerminal;

use anyhow::{bail, Context};

use crate::cli::KeygenArgs;
use converge::bundle;

/// Writes a minisign key pair, its secret key encrypted when a passphrase is given (a file,
/// CONVERGE_SIGNING_PASSWORD, or asked for on the terminal), and says which it is.
pub fn run(args: &KeygenArgs) -> anyhow::Result<i32> {
    let password = passphrase(args)?;
    std::fs::create_dir_all(&args.dir)?;
    let files = bundle::generate_keypair_with_password(&args.dir, password.as_deref())?;
    let secret = if password.is_some() {
        format!(
            "encrypted; publish reads its passphrase from {}",
            bundle::PASSWORD_ENV
        )
    } else {
        "NOT encrypted: whoever can read it can sign bundles; keygen --encrypt protects it \
         with a passphrase"
            .to_owned()
    };
    showln!(
        "key {}: secret {} ({secret}; keep it on the publishing machine), public {} (give it to hosts as trusted_keys)",
        files.key_id,
        files.secret.display(),
        files.public.display()
    );
    Ok(0)
}

/// The passphrase to encrypt with; `None`: the key stays unencrypted (what scripts get
/// unless they pass one).
fn passphrase(args: &KeygenArgs) -> anyhow::Result<Option<String>> {
    if let Some(file) = &args.passphrase_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--passphrase-file {}", file.display()))?;
        let first = text.lines().next().unwrap_or_default();
        if first.is_empty() {
            bail!(
                "--passphrase-file {}: the first line is empty: expected the passphrase",
                file.display()
            );
        }
        return Ok(Some(first.to_owned()));
    }
    if let Some(pw) = std::env::var(bundle::PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(Some(pw));
    }
    if !std::io::stdin().is_terminal() {
        if args.encrypt {
            bail!(
                "--encrypt asks for the passphrase on a terminal, and stdin is not one: \
                 pass --passphrase-file FILE (or set {})",
                bundle::PASSWORD_ENV
            );
        }
        return Ok(None);
    }
    let ask = if args.encrypt {
        "Passphrase for the secret key: "
    } else {
        "Passphrase for the secret key (empty: leave it unencrypted): "
    };
    let first = rpassword::prompt_password(ask).context("reading the passphrase")?;
    if first.is_empty() {
        if args.encrypt {
            bail!("--encrypt: the passphrase is empty; nothing was written");
        }
        return Ok(None);
    }
    let again = rpassword::prompt_password("The same passphrase again: ")
        .context("reading the passphrase")?;
    if again != first {
        bail!("the two passphrases differ; nothing was written");
    }
    Ok(Some(first))
}
