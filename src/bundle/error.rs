//! One error type for the whole bundle layer, split into the three kinds a caller acts on.

use std::io;
use std::path::PathBuf;

use super::source::RedactedUrl;

/// Everything that can go wrong while publishing or syncing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The source string is not a usable `file://`, `http(s)://` URL or path.
    #[error("invalid source {:?}: {reason}", RedactedUrl(.source_str).to_string())]
    InvalidSource {
        /// The string as given.
        source_str: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A local filesystem operation failed (state dir, publish output, key file).
    #[error("{path}: {source}")]
    Io {
        /// The path that was being read or written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The source tree contains something `publish` refuses to ship.
    #[error("source tree {path}: {reason}")]
    SourceTree {
        /// The offending entry.
        path: PathBuf,
        /// What is wrong and what was expected instead.
        reason: String,
    },
    /// The server could not be reached or the connection broke before a full answer.
    #[error("{}: {reason}", RedactedUrl(.url))]
    Unreachable {
        /// The URL requested.
        url: String,
        /// Connect refused, timeout, reset, ...
        reason: String,
    },
    /// The server answered with a status other than 200 (or 304 for the manifest).
    #[error("{}: HTTP status {status}, expected 200", RedactedUrl(.url))]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status received.
        status: u16,
    },
    /// The body ended before the announced or expected length.
    #[error("{}: body truncated: {reason}", RedactedUrl(.url))]
    Truncated {
        /// The URL requested.
        url: String,
        /// What was expected and what arrived.
        reason: String,
    },
    /// `manifest.json` is not a valid format-1 manifest.
    #[error("{}: malformed manifest: {reason}", RedactedUrl(.url))]
    ManifestMalformed {
        /// Where the manifest came from.
        url: String,
        /// The first problem found.
        reason: String,
    },
    /// A manifest or signature is larger than any real one could be.
    #[error("{}: larger than the {limit}-byte limit", RedactedUrl(.url))]
    TooLarge {
        /// The URL or path read.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// An object's bytes do not match the manifest.
    #[error("{} ({path}): content mismatch: expected {expected}, got {actual}", RedactedUrl(.url))]
    ObjectMismatch {
        /// The object URL.
        url: String,
        /// The bundle path the object was meant for.
        path: String,
        /// sha256/size the manifest promised.
        expected: String,
        /// sha256/size that arrived.
        actual: String,
    },
    /// Keys are configured but the source has no `manifest.json.minisig`.
    #[error("{}: signature required (trusted keys are configured) but none is published", RedactedUrl(.url))]
    SignatureMissing {
        /// The signature URL.
        url: String,
    },
    /// The signature exists but does not verify with any trusted key.
    #[error("{}: signature rejected: {reason}", RedactedUrl(.url))]
    SignatureInvalid {
        /// The signature URL.
        url: String,
        /// Unknown key id, bad signature, unparsable file, ...
        reason: String,
        /// A well-formed signature by a trusted key that does not match the manifest read:
        /// tampering, or a publish caught between writing the signature and the manifest.
        mismatch: bool,
    },
    /// The manifest was published before the bundle this host already has. Its signature
    /// may be valid: an old signed manifest stays valid forever, which is exactly what a
    /// replay or a stale mirror relies on.
    #[error("{}: manifest created {created} is not newer than the current bundle (created {current_created}): possible replay or rollback; publish again to move hosts to it (every publish is dated after the last)", RedactedUrl(.url))]
    OlderThanCurrent {
        /// The manifest URL.
        url: String,
        /// `created` of the manifest served.
        created: String,
        /// `created` of the current bundle's manifest.
        current_created: String,
    },
    /// The source still serves a bundle this host refused because it cannot be planned.
    #[error("{}: bundle {id} was refused earlier and is still served: {reason}", RedactedUrl(.url))]
    RefusedEarlier {
        /// The manifest URL.
        url: String,
        /// The refused bundle.
        id: String,
        /// Why it was refused.
        reason: String,
    },
    /// A directory source holds something other than a regular file where a file belongs.
    #[error("{path}: is {what}, not a regular file; refused without reading it")]
    SpecialFile {
        /// The path in the source.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The manifest is dated too far ahead of this host's clock to be ordered safely.
    #[error("{}: manifest created {created} lies in the future (this host's clock says {now}; more than 5m ahead): the publisher's clock or this host's is wrong; fix it and publish again", RedactedUrl(.url))]
    CreatedInFuture {
        /// The manifest URL.
        url: String,
        /// `created` of the manifest served.
        created: String,
        /// This host's time.
        now: String,
    },
    /// A signed manifest or rollout file whose `expires` has passed.
    #[error("{}: refused: {reason}", RedactedUrl(.url))]
    Expired {
        /// The manifest or rollout file URL.
        url: String,
        /// When it expired, and what that means.
        reason: String,
    },
    /// `rollout.json` is not a valid rollout file.
    #[error("{}: malformed rollout file: {reason}", RedactedUrl(.url))]
    RolloutMalformed {
        /// The rollout file URL.
        url: String,
        /// The first problem found.
        reason: String,
    },
    /// The source answered 403 for the `rollout.json` this host has followed: the file may
    /// be there and unreadable, or gone from an object store that says "forbidden" for a
    /// missing key; either way, which bundle to follow is unknown.
    #[error("{}: HTTP status 403: the source refuses to serve the rollout file this host follows, so which bundle it should follow is unknown; make the file readable by the web server, or end a rollout with `converge rollout OUT promote` or `halt` rather than by deleting its file", RedactedUrl(.url))]
    RolloutForbidden {
        /// The rollout file URL.
        url: String,
    },
    /// The rollout file was written before the one this host already follows: a replay, or a
    /// mirror serving an old copy.
    #[error("{}: rollout file created {created} is not newer than the one this host follows (created {current_created}): possible replay or a stale mirror; every rollout command dates its file after the last", RedactedUrl(.url))]
    RolloutOlder {
        /// The rollout file URL.
        url: String,
        /// `created` of the rollout file served.
        created: String,
        /// `created` of the rollout file this host accepted last.
        current_created: String,
    },
    /// The rollout file is dated too far ahead of this host's clock to be ordered safely.
    #[error("{}: rollout file created {created} lies in the future (this host's clock says {now}; more than 5m ahead): the publisher's clock or this host's is wrong", RedactedUrl(.url))]
    RolloutInFuture {
        /// The rollout file URL.
        url: String,
        /// `created` of the rollout file served.
        created: String,
        /// This host's time.
        now: String,
    },
    /// The manifest served for a track is not the bundle the rollout file names for it.
    #[error("{}: is bundle {id}, but rollout.json names {named} as the {track} bundle: a publish or rollout command in progress, or mixed-up files; the host keeps its bundle until they agree", RedactedUrl(.url))]
    RolloutMismatch {
        /// The manifest URL.
        url: String,
        /// `stable` or `candidate`.
        track: &'static str,
        /// Id of the manifest served.
        id: String,
        /// Id the rollout file names.
        named: String,
    },
    /// A rollout command cannot do its job on this bundle dir; nothing was written.
    #[error("{path}: {reason}", path = path.display())]
    RolloutRefused {
        /// The rollout file (or the manifest) concerned.
        path: PathBuf,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The source failed and, with keys configured, no kept bundle is known to be signed by
    /// one of them, so there is nothing safe to fall back to.
    #[error("no bundle signed by a trusted key is available ({kept}); sync failed: {reason}")]
    NoTrustedBundle {
        /// Why each kept bundle does not qualify.
        kept: String,
        /// The error of the sync itself.
        reason: String,
    },
    /// A minisign key file could not be loaded or written.
    #[error("key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong and what was expected.
        reason: String,
    },
    /// A publish without a key would leave a signed bundle unsigned.
    #[error("{path}: the bundle is signed, and publishing without --key would leave it unsigned, so every host that trusts a key would refuse it; pass --key SECRET_KEY, or --unsigned to drop the signature on purpose; nothing was changed", path = path.display())]
    WouldUnsign {
        /// The signature file that is there now.
        path: PathBuf,
    },
    /// The local state dir is inconsistent (e.g. an object on disk no longer matches its name).
    #[error("state {path}: {reason}")]
    LocalState {
        /// The file or dir concerned.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The state dir's lock could not be taken.
    #[error(transparent)]
    Lock(#[from] crate::durable::LockError),
}

impl BundleError {
    /// A stable name for what went wrong, for JSON records (`error_kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            BundleError::InvalidSource { .. } => "invalid_source",
            BundleError::Io { .. } => "io",
            BundleError::SourceTree { .. } => "source_tree",
            BundleError::Unreachable { .. } => "unreachable",
            BundleError::HttpStatus { .. } => "http_status",
            BundleError::Truncated { .. } => "truncated",
            BundleError::ManifestMalformed { .. } => "manifest_malformed",
            BundleError::TooLarge { .. } => "too_large",
            BundleError::ObjectMismatch { .. } => "object_mismatch",
            BundleError::SignatureMissing { .. } => "signature_missing",
            BundleError::SignatureInvalid { .. } => "signature_invalid",
            BundleError::OlderThanCurrent { .. } => "older_than_current",
            BundleError::RefusedEarlier { .. } => "refused_earlier",
            BundleError::SpecialFile { .. } => "special_file",
            BundleError::CreatedInFuture { .. } => "created_in_future",
            BundleError::Expired { .. } => "expired",
            BundleError::RolloutMalformed { .. } => "rollout_malformed",
            BundleError::RolloutForbidden { .. } => "rollout_forbidden",
            BundleError::RolloutOlder { .. } => "rollout_older",
            BundleError::RolloutInFuture { .. } => "rollout_in_future",
            BundleError::RolloutMismatch { .. } => "rollout_mismatch",
            BundleError::RolloutRefused { .. } => "rollout_refused",
            BundleError::NoTrustedBundle { .. } => "no_trusted_bundle",
            BundleError::Key { .. } => "key",
            BundleError::WouldUnsign { .. } => "would_unsign",
            BundleError::LocalState { .. } => "local_state",
            BundleError::Lock(e) => e.kind(),
        }
    }

    /// True when the source answered but what it served cannot be trusted.
    ///
    /// Callers alert differently on this: an unreachable source is an outage,
    /// bad content is a broken publish or tampering.
    pub fn is_bad_content(&self) -> bool {
        matches!(
            self,
            BundleError::ManifestMalformed { .. }
                | BundleError::TooLarge { .. }
                | BundleError::ObjectMismatch { .. }
                | BundleError::SignatureMissing { .. }
                | BundleError::SignatureInvalid { .. }
                | BundleError::OlderThanCurrent { .. }
                | BundleError::CreatedInFuture { .. }
                | BundleError::SpecialFile { .. }
                | BundleError::RefusedEarlier { .. }
                | BundleError::Expired { .. }
                | BundleError::RolloutMalformed { .. }
                | BundleError::RolloutOlder { .. }
                | BundleError::RolloutInFuture { .. }
                | BundleError::RolloutMismatch { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        BundleError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Attach a path to an `io::Result`, so every local error names the file concerned.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, BundleError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, BundleError> {
        self.map_err(|e| BundleError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_names_the_place_and_the_expectation() {
        let u = || "http://h/b/manifest.json".to_string();
        let cases: Vec<(BundleError, &str, bool)> = vec![
            (
                BundleError::InvalidSource {
                    source_str: "ftp://x".into(),
                    reason: "unsupported scheme".into(),
                },
                "invalid source \"ftp://x\": unsupported scheme",
                false,
            ),
            (
                BundleError::io("/var/lib/converge", io::Error::from(io::ErrorKind::NotFound)),
                "/var/lib/converge: entity not found",
                false,
            ),
            (
                BundleError::SourceTree {
                    path: "/src".into(),
                    reason: "has no roles/ directory".into(),
                },
                "source tree /src: has no roles/ directory",
                false,
            ),
            (
                BundleError::Unreachable {
                    url: u(),
                    reason: "connection refused".into(),
                },
                "http://h/b/manifest.json: connection refused",
                false,
            ),
            (
                BundleError::HttpStatus {
                    url: u(),
                    status: 503,
                },
                "http://h/b/manifest.json: HTTP status 503, expected 200",
                false,
            ),
            (
                BundleError::Truncated {
                    url: u(),
                    reason: "Content-Length 10, received 5".into(),
                },
                "http://h/b/manifest.json: body truncated: Content-Length 10, received 5",
                false,
            ),
            (
                BundleError::ManifestMalformed {
                    url: u(),
                    reason: "not JSON".into(),
                },
                "http://h/b/manifest.json: malformed manifest: not JSON",
                true,
            ),
            (
                BundleError::TooLarge { url: u(), limit: 5 },
                "http://h/b/manifest.json: larger than the 5-byte limit",
                true,
            ),
            (
                BundleError::ObjectMismatch {
                    url: "http://h/b/objects/ab".into(),
                    path: "roles/web.toml".into(),
                    expected: "sha256 ab size 1".into(),
                    actual: "sha256 cd size 1".into(),
                },
                "http://h/b/objects/ab (roles/web.toml): content mismatch: expected sha256 ab size 1, got sha256 cd size 1",
                true,
            ),
            (
                BundleError::SignatureMissing {
                    url: "http://h/b/manifest.json.minisig".into(),
                },
                "http://h/b/manifest.json.minisig: signature required (trusted keys are configured) but none is published",
                true,
            ),
            (
                BundleError::SignatureInvalid {
                    url: "s".into(),
                    reason: "bad".into(),
                    mismatch: true,
                },
                "s: signature rejected: bad",
                true,
            ),
            (
                BundleError::OlderThanCurrent {
                    url: u(),
                    created: "2026-01-01T00:00:00Z".into(),
                    current_created: "2026-02-01T00:00:00Z".into(),
                },
                "http://h/b/manifest.json: manifest created 2026-01-01T00:00:00Z is not newer than the current bundle (created 2026-02-01T00:00:00Z): possible replay or rollback; publish again to move hosts to it (every publish is dated after the last)",
                true,
            ),
            (
                BundleError::NoTrustedBundle {
                    kept: "current bundle ab is unsigned".into(),
                    reason: "s: signature rejected: bad".into(),
                },
                "no bundle signed by a trusted key is available (current bundle ab is unsigned); sync failed: s: signature rejected: bad",
                false,
            ),
            (
                BundleError::Key {
                    path: "/k".into(),
                    reason: "secret key is encrypted".into(),
                },
                "key /k: secret key is encrypted",
                false,
            ),
            (
                BundleError::LocalState {
                    path: "/s/objects/ab".into(),
                    reason: "changed".into(),
                },
                "state /s/objects/ab: changed",
                false,
            ),
        ];
        for (err, msg, bad) in cases {
            assert_eq!(err.to_string(), msg);
            assert_eq!(err.is_bad_content(), bad, "{msg}");
        }
    }
}
