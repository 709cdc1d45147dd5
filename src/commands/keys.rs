//! `converge keygen`.

use crate::cli::KeygenArgs;
use converge::bundle;

/// Writes a minisign key pair (password from CONVERGE_SIGNING_PASSWORD when set).
pub fn run(args: &KeygenArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.dir)?;
    let password = std::env::var(bundle::PASSWORD_ENV).ok();
    let files = bundle::generate_keypair_with_password(&args.dir, password.as_deref())?;
    println!(
        "key {}: secret {} (keep it on the publishing machine), public {} (give it to hosts as trusted_keys)",
        files.key_id,
        files.secret.display(),
        files.public.display()
    );
    Ok(0)
}
