//! The bundle layer: publishing a source tree as static, content-addressed files, and
//! syncing a host to it with verification, signatures and a last known good fallback.
//!
//! A published bundle is a directory any static web server, object store or CDN can serve:
//! ```text
//! objects/<sha256>        file contents; unchanged files keep their name and URL
//! manifest.json.minisig   optional minisign signature of manifest.json (written first)
//! manifest.json           {"format":1,"created":..,"files":{path:{sha256,size}}} (written last)
//! ```
//! The bundle id is the sha256 of the manifest bytes. A host polls with `If-None-Match`, so
//! an unchanged poll is one 304; otherwise it fetches only objects it lacks, verifies every
//! byte (and the signature, when keys are configured) before anything gets a final name,
//! and switches `state_dir/current` with one rename. See `cache` for the state dir layout.

mod cache;
mod error;
mod fetch;
mod follow;
pub mod manifest;
mod publish;
mod refusal;
pub mod rollout;
mod rollout_edit;
mod signature;
mod source;
mod sync;

pub use cache::{current_dir, manifest_in};
pub use error::BundleError;
pub(crate) use fetch::chain as error_chain;
pub use follow::RolloutHost;
pub use manifest::{FileEntry, Manifest};
pub use publish::{
    private_files, publish, publish_unsigned, publish_with, PublishOptions, Published,
};
pub use refusal::{refuse, stand_in};
pub use rollout::{
    Bucket, Choice, Percent, Rollout, Track, Wariness, CANDIDATE_DIR, ROLLOUT_FILE,
    ROLLOUT_SIGNATURE_FILE,
};
pub use rollout_edit::{
    edit as edit_rollout, read_rollout, RolloutAction, RolloutEdited, RolloutOptions,
};
pub use signature::{
    generate_keypair, generate_keypair_with_password, verify as verify_signature, KeyPairFiles,
    SecretKeyFile, TrustedKey, PASSWORD_ENV, PUBLIC_KEY_FILE, SECRET_KEY_FILE,
};
pub use source::{RedactedUrl, Source};
pub use sync::{
    adopt, adopt_locked, peek, peek_locked, sync, sync_locked, Freshness, Peeked, SyncOptions,
    SyncOutcome, DEFAULT_DEADLINE,
};

/// Name of the manifest in a published bundle.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
/// Name of the detached minisign signature of the manifest.
pub(crate) const SIGNATURE_FILE: &str = "manifest.json.minisig";
/// Directory of content-addressed objects, in a published bundle and in the state dir.
pub(crate) const OBJECTS_DIR: &str = "objects";
