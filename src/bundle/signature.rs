//! minisign keys and signatures over `manifest.json`, in the stock minisign file formats.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use minisign::{KeyPair, PublicKey, SecretKey, SignatureBox};

use super::error::{BundleError, IoContext};
use crate::durable::{self, FileSpec};

/// Environment variable holding the password of an encrypted secret key.
pub const PASSWORD_ENV: &str = "CONVERGE_SIGNING_PASSWORD";
/// File name of the public key written by [`generate_keypair`].
pub const PUBLIC_KEY_FILE: &str = "converge.pub";
/// File name of the secret key written by [`generate_keypair`].
pub const SECRET_KEY_FILE: &str = "converge.key";

/// Offset of the KDF algorithm inside a decoded minisign secret key.
const KDF_ALG_RANGE: std::ops::Range<usize> = 2..4;
/// Decoded size of a minisign secret key (algorithms, KDF parameters, keynum, key, checksum).
const SECRET_KEY_LEN: usize = 158;

/// A loaded minisign secret key, ready to sign manifests.
pub struct SecretKeyFile {
    path: PathBuf,
    key: SecretKey,
    public: PublicKey,
}

impl std::fmt::Debug for SecretKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, even in debug logs.
        f.debug_struct("SecretKeyFile")
            .field("path", &self.path)
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl SecretKeyFile {
    /// Load a key, taking the password (if it is encrypted) from `CONVERGE_SIGNING_PASSWORD`.
    pub fn load(path: &Path) -> Result<SecretKeyFile, BundleError> {
        let password = std::env::var(PASSWORD_ENV).ok();
        SecretKeyFile::load_with_password(path, password.as_deref())
    }

    /// Load a key with an explicit password (`None` for an unencrypted key).
    pub fn load_with_password(
        path: &Path,
        password: Option<&str>,
    ) -> Result<SecretKeyFile, BundleError> {
        let text = fs::read_to_string(path).at(path)?;
        let err = |reason: String| BundleError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let encoded = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| err("no key line after the comment".into()))?;
        let raw = BASE64
            .decode(encoded)
            .map_err(|e| err(format!("key line is not base64: {e}")))?;
        if raw.len() != SECRET_KEY_LEN {
            return Err(err(format!(
                "{} bytes, expected a {SECRET_KEY_LEN}-byte minisign secret key",
                raw.len()
            )));
        }
        let key = match &raw[KDF_ALG_RANGE] {
            // `minisign -G -W` writes KDF "none" with an all-zero checksum, which the
            // crate's loader rejects; read the bytes directly, as stock minisign does.
            [0, 0] => SecretKey::from_bytes(&raw).map_err(|e| err(e.to_string()))?,
            b"Sc" => match password {
                // Never pass None to the crate: it would prompt on the terminal.
                None | Some("") => {
                    return Err(err(format!("secret key is encrypted: set {PASSWORD_ENV}")))
                }
                Some(pw) => SecretKey::from_box(text.into(), Some(pw.to_string()))
                    .map_err(|e| err(format!("cannot decrypt secret key: {e}")))?,
            },
            other => {
                return Err(err(format!(
                    "unsupported key encryption {other:?}, expected none or scrypt"
                )))
            }
        };
        let public = PublicKey::from_secret_key(&key)
            .map_err(|e| err(format!("cannot derive public key: {e}")))?;
        let loaded = SecretKeyFile {
            path: path.to_path_buf(),
            key,
            public,
        };
        // A corrupt unencrypted key has no checksum to catch it; a signature that fails
        // to verify with its own public half does.
        loaded.sign(b"converge key self-test", "self-test")?;
        Ok(loaded)
    }

    /// The key id as minisign prints it (16 uppercase hex digits).
    pub fn key_id(&self) -> String {
        key_id(self.key.keynum())
    }

    /// Sign `data` and return the `.minisig` file text (prehashed, like minisign ≥ 0.8).
    pub fn sign(&self, data: &[u8], file_name: &str) -> Result<String, BundleError> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let trusted = format!("timestamp:{ts}\tfile:{file_name}\thashed");
        let sig = minisign::sign(
            Some(&self.public),
            &self.key,
            Cursor::new(data),
            Some(&trusted),
            Some("signature from converge secret key"),
        )
        .map_err(|e| BundleError::Key {
            path: self.path.clone(),
            reason: format!("signing failed: {e}"),
        })?;
        Ok(sig.into_string())
    }
}

/// A public key allowed to sign bundles.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    key: PublicKey,
}

impl TrustedKey {
    /// Parse a public key file's text as `minisign -G` writes it, or its bare base64 line.
    pub fn from_text(text: &str) -> Result<TrustedKey, String> {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .collect();
        let [line] = lines.as_slice() else {
            return Err(format!(
                "expected one base64 key line (optionally after an \"untrusted comment:\" line), found {}",
                lines.len()
            ));
        };
        let key =
            PublicKey::from_base64(line).map_err(|e| format!("not a minisign public key: {e}"))?;
        Ok(TrustedKey { key })
    }

    /// Read and parse a public key file.
    pub fn from_file(path: &Path) -> Result<TrustedKey, BundleError> {
        let text = fs::read_to_string(path).at(path)?;
        TrustedKey::from_text(&text).map_err(|reason| BundleError::Key {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The key id as minisign prints it.
    pub fn key_id(&self) -> String {
        key_id(self.key.keynum())
    }

    /// The key's base64 line, as in a `.pub` file.
    pub(crate) fn to_base64(&self) -> String {
        self.key.to_base64()
    }
}

/// Check `sig_text` over `data` against `keys`; returns the id of the key that signed.
pub fn verify(
    data: &[u8],
    sig_text: &str,
    keys: &[TrustedKey],
    url: &str,
) -> Result<String, BundleError> {
    let invalid = |reason: String| BundleError::SignatureInvalid {
        url: url.to_string(),
        reason,
        mismatch: false,
    };
    let sig = SignatureBox::from_string(sig_text)
        .map_err(|e| invalid(format!("not a minisign signature: {e}")))?;
    let signer = key_id(sig.keynum());
    let key = keys
        .iter()
        .find(|k| k.key.keynum() == sig.keynum())
        .ok_or_else(|| {
            let trusted: Vec<String> = keys.iter().map(TrustedKey::key_id).collect();
            invalid(format!(
                "signed by key {signer}, which is not trusted (trusted: {})",
                trusted.join(", ")
            ))
        })?;
    // Legacy (non-prehashed) signatures are still Ed25519 over the whole file;
    // accepting them keeps manifests signed by older minisign releases working.
    // The key is the signature's own and legacy signatures are allowed, so what minisign
    // still rejects is a signature that does not match these bytes.
    minisign::verify(&key.key, &sig, Cursor::new(data), true, false, true).map_err(|e| {
        BundleError::SignatureInvalid {
            url: url.to_string(),
            reason: format!("key {signer}: {e}"),
            mismatch: true,
        }
    })?;
    Ok(signer)
}

/// Paths written by [`generate_keypair`].
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    /// `converge.pub`, to distribute to hosts.
    pub public: PathBuf,
    /// `converge.key`, mode 0600, to keep on the publishing machine.
    pub secret: PathBuf,
    /// The key id as minisign prints it.
    pub key_id: String,
}

/// Write a new unencrypted key pair to `dir` (refusing to overwrite), in minisign's formats.
pub fn generate_keypair(dir: &Path) -> Result<KeyPairFiles, BundleError> {
    generate_keypair_with_password(dir, None)
}

/// Like [`generate_keypair`], encrypting the secret key when `password` is non-empty.
pub fn generate_keypair_with_password(
    dir: &Path,
    password: Option<&str>,
) -> Result<KeyPairFiles, BundleError> {
    let public_path = dir.join(PUBLIC_KEY_FILE);
    let secret_path = dir.join(SECRET_KEY_FILE);
    for p in [&public_path, &secret_path] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(BundleError::Key {
                path: p.clone(),
                reason: "already exists; refusing to overwrite a key".into(),
            });
        }
    }
    let key_err = |path: &Path, e: minisign::PError| BundleError::Key {
        path: path.to_path_buf(),
        reason: format!("key generation failed: {e}"),
    };
    let pw = password.unwrap_or("").to_string();
    let encrypted = !pw.is_empty();
    // With an empty password the crate computes the checksum but leaves the KDF marked
    // as scrypt, which stock minisign would then try to decrypt; mark it "none" (0x0000)
    // as `minisign -W` does. The checksum does not cover that field.
    let KeyPair { pk, mut sk } =
        KeyPair::generate_encrypted_keypair(Some(pw)).map_err(|e| key_err(&secret_path, e))?;
    if !encrypted {
        let mut bytes = sk.to_bytes();
        bytes[KDF_ALG_RANGE].copy_from_slice(&[0, 0]);
        sk = SecretKey::from_bytes(&bytes).map_err(|e| key_err(&secret_path, e))?;
    }
    let comment = if encrypted {
        "minisign encrypted secret key"
    } else {
        "minisign secret key"
    };
    let sk_text = sk
        .to_box(Some(comment))
        .map_err(|e| key_err(&secret_path, e))?
        .into_string();
    let id = key_id(pk.keynum());
    let pk_text = format!(
        "untrusted comment: minisign public key {id}\n{}\n",
        pk.to_base64()
    );
    for (path, text, mode) in [
        (&secret_path, sk_text, 0o600),
        (&public_path, pk_text, 0o644),
    ] {
        durable::write_file(path, text.as_bytes(), &FileSpec::mode(mode)).at(path)?;
    }
    Ok(KeyPairFiles {
        public: public_path,
        secret: secret_path,
        key_id: id,
    })
}

/// minisign shows key ids as the little-endian u64 of the keynum in uppercase hex.
fn key_id(keynum: &[u8]) -> String {
    let mut b = [0u8; 8];
    b.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(e: BundleError) -> bool {
        match e {
            BundleError::SignatureInvalid { mismatch, .. } => mismatch,
            other => panic!("not a signature error: {other}"),
        }
    }

    #[test]
    fn only_a_signature_that_does_not_match_the_bytes_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_keypair(dir.path()).unwrap();
        let secret = SecretKeyFile::load(&files.secret).unwrap();
        let trusted = vec![TrustedKey::from_file(&files.public).unwrap()];
        let sig = secret.sign(b"manifest one", "manifest.json").unwrap();
        assert_eq!(
            verify(b"manifest one", &sig, &trusted, "u").unwrap(),
            files.key_id
        );

        let other_dir = dir.path().join("other");
        fs::create_dir(&other_dir).unwrap();
        let other = generate_keypair(&other_dir).unwrap();
        let untrusted = SecretKeyFile::load(&other.secret).unwrap();
        let cases = [
            (b"manifest two".as_slice(), sig.clone(), true),
            (b"manifest one".as_slice(), "not a signature".into(), false),
            (
                b"manifest one".as_slice(),
                untrusted.sign(b"manifest one", "manifest.json").unwrap(),
                false,
            ),
        ];
        for (data, sig, want) in cases {
            let e = verify(data, &sig, &trusted, "u").unwrap_err();
            assert_eq!(mismatch(e), want, "{sig}");
        }
    }
}
