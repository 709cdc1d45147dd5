//! `publish`: turn a source tree into a static, content-addressed bundle directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::error::{BundleError, IoContext};
use super::manifest::{self, FileEntry, Manifest, MAX_CLOCK_SKEW, TOP_LEVEL_DIRS, TOP_LEVEL_FILES};
use super::rollout::{Track, ROLLOUT_SIGNATURE_FILE};
use super::rollout_edit;
use super::signature::SecretKeyFile;
use super::{MANIFEST_FILE, OBJECTS_DIR, SIGNATURE_FILE};
use crate::durable::temp::{self, Sweep};
use crate::durable::{self, FileSpec};

/// What one `publish` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// sha256 of the manifest bytes: the bundle id hosts will report.
    pub id: String,
    /// Number of files in the bundle.
    pub files: usize,
    /// Objects that were not in `out/objects/` before.
    pub new_objects: usize,
    /// Whether `manifest.json.minisig` was written.
    pub signed: bool,
    /// The files are the ones already published; the manifest is still new (a later
    /// `created`), so hosts sent elsewhere come back to it.
    pub unchanged: bool,
}

/// Publish `src` into `out`, unsigned or signed by `signer`, with no message: see
/// [`publish_with`]. Without a `signer`, a bundle signed now is refused.
pub fn publish(
    src: &Path,
    out: &Path,
    signer: Option<&SecretKeyFile>,
) -> Result<Published, BundleError> {
    publish_with(
        src,
        out,
        &PublishOptions {
            signer,
            ..PublishOptions::default()
        },
    )
}

/// Like [`publish`] without a key, removing the signature of a bundle that was signed.
pub fn publish_unsigned(src: &Path, out: &Path) -> Result<Published, BundleError> {
    publish_with(
        src,
        out,
        &PublishOptions {
            unsigned: true,
            ..PublishOptions::default()
        },
    )
}

/// How a bundle is published beyond its content.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishOptions<'a> {
    /// The key that signs the manifest.
    pub signer: Option<&'a SecretKeyFile>,
    /// What this bundle is (a change summary, a VCS revision), kept in the signed manifest
    /// and shown by hosts in their logs, history, status and metrics.
    pub message: Option<&'a str>,
    /// Without a signer, drop the signature of a bundle that is signed now (else refused).
    pub unsigned: bool,
    /// Publish a rollout's candidate (`candidate/manifest.json`), leaving the stable
    /// `manifest.json` as it is.
    pub candidate: bool,
    /// How long hosts accept the manifest: its `expires` is this long after its `created`.
    pub expires: Option<Duration>,
}

/// Publish `src` into `out`: objects first, then the signature, then `manifest.json` last.
///
/// The source tree is read strictly: only `roles/`, `templates/`, `files/` and
/// `nodes.toml` at the top (hidden entries such as `.git` are skipped, anything else is
/// an error so that a typo like `role/` cannot silently publish an empty role set);
/// symlinks are followed only when relative, inside the tree, and pointing at a
/// regular file; everything else (fifos, devices, dir symlinks) is refused.
///
/// Without a `signer`, a bundle in `out` that is signed now is refused unless
/// `options.unsigned`: hosts that trust a key would refuse every later poll.
pub fn publish_with(
    src: &Path,
    out: &Path,
    options: &PublishOptions,
) -> Result<Published, BundleError> {
    let signer = options.signer;
    let track = if options.candidate {
        Track::Candidate
    } else {
        Track::Stable
    };
    let manifest_path = out.join(track.manifest_path());
    let sig_path = out.join(track.signature_path());
    if signer.is_none() && !options.unsigned {
        for signed in [out.join(SIGNATURE_FILE), out.join(ROLLOUT_SIGNATURE_FILE)] {
            if fs::symlink_metadata(&signed).is_ok() {
                return Err(BundleError::WouldUnsign { path: signed });
            }
        }
    }
    // Read before anything is written: a rollout file that cannot be read stops the publish.
    let rollout = rollout_edit::read_rollout(out)?;
    if track == Track::Candidate && !out.join(MANIFEST_FILE).is_file() {
        return Err(BundleError::RolloutRefused {
            path: out.join(MANIFEST_FILE),
            reason: "no stable bundle to roll a candidate out from: publish without --candidate first; nothing was changed"
                .into(),
        });
    }
    if let Some(message) = options.message {
        manifest::check_message(message).map_err(|reason| BundleError::SourceTree {
            path: src.to_path_buf(),
            reason: format!("--message: {reason}"),
        })?;
    }
    let files = collect_tree(src)?;
    let objects_dir = out.join(OBJECTS_DIR);
    durable::ensure_dir(&objects_dir, 0o755).at(&objects_dir)?;
    if let Some(dir) = manifest_path.parent() {
        durable::ensure_dir(dir, 0o755).at(dir)?;
    }
    // Temp files of a publish that was killed; never referenced, so safe to drop.
    for d in [out, &objects_dir] {
        temp::sweep(d, Sweep::Dead).at(d)?;
    }

    let mut entries = BTreeMap::new();
    let mut new_objects = 0;
    for (rel, abs) in &files {
        let bytes = fs::read(abs).at(abs)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let object = objects_dir.join(&sha256);
        let present = fs::metadata(&object).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !present {
            durable::write_file(&object, &bytes, &FileSpec::mode(0o644)).at(&object)?;
            new_objects += 1;
        }
        entries.insert(
            rel.clone(),
            FileEntry {
                sha256,
                size: bytes.len() as u64,
            },
        );
    }

    // Always a new manifest, ordered after the one it replaces: hosts refuse a manifest that
    // is not newer than theirs, so republishing unchanged content must still move a host
    // that was sent elsewhere back to this bundle.
    let previous = read_manifest(&manifest_path);
    let unchanged = previous.as_ref().is_some_and(|m| m.files == entries);
    // A candidate is dated after the stable bundle too, so promoting it keeps the order.
    let stable = (track == Track::Candidate)
        .then(|| read_manifest(&out.join(MANIFEST_FILE)))
        .flatten();
    let previous = [previous, stable]
        .into_iter()
        .flatten()
        .max_by_key(|m| m.created_at().ok());
    if let Some(prev) = &previous {
        if prev
            .created_at()
            .is_ok_and(|c| c > SystemTime::now() + MAX_CLOCK_SKEW)
        {
            tracing::warn!(
                created = %prev.created,
                "the previous manifest is dated in the future (a wrong clock at its publish); the new one is dated now"
            );
        }
    }
    let mut manifest = Manifest {
        message: options.message.map(str::to_owned),
        ..Manifest::next_after(entries, previous.as_ref(), SystemTime::now())
    };
    manifest.set_validity(options.expires);
    let bytes = manifest.to_bytes();
    write_signed(&manifest_path, &sig_path, &bytes, signer)?;
    let id = hex::encode(Sha256::digest(&bytes));
    if let Some(rollout) = rollout {
        rollout_edit::follow_publish(out, &rollout, track, &id, signer)?;
    }
    tracing::info!(
        id = %id,
        files = files.len(),
        new_objects,
        signed = signer.is_some(),
        unchanged,
        track = %track,
        "published bundle to {}",
        out.display()
    );
    Ok(Published {
        id,
        files: files.len(),
        new_objects,
        signed: signer.is_some(),
        unchanged,
    })
}

/// The manifest at `path`, when there is a valid one.
pub(crate) fn read_manifest(path: &Path) -> Option<Manifest> {
    fs::read(path)
        .ok()
        .and_then(|b| Manifest::parse(&b, "").ok())
}

/// Writes `bytes` to `path` with its detached signature at `sig_path` (by `signer`, or
/// removed without one): the signature first, so once a client can see the new file its
/// signature is already there.
pub(crate) fn write_signed(
    path: &Path,
    sig_path: &Path,
    bytes: &[u8],
    signer: Option<&SecretKeyFile>,
) -> Result<(), BundleError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(MANIFEST_FILE);
    match signer {
        Some(key) => {
            let sig = key.sign(bytes, name)?;
            durable::write_file(sig_path, sig.as_bytes(), &FileSpec::mode(0o644)).at(sig_path)?;
        }
        None => match fs::remove_file(sig_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BundleError::io(sig_path, e)),
        },
    }
    // Static servers derive ETags from mtime (in seconds) and size, as nginx does: a
    // second publish within the same second could keep the old ETag, and hosts would get
    // 304 for a file they do not have. These mtimes therefore strictly increase.
    let now = SystemTime::now();
    let mtime = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(|old| {
            let next = old + std::time::Duration::from_secs(1);
            if now >= next {
                now
            } else {
                next
            }
        });
    let spec = FileSpec {
        mtime,
        ..FileSpec::mode(0o644)
    };
    durable::write_file(path, bytes, &spec).at(path)
}

/// The files under `files/` of the source tree `src` that are not world-readable, with
/// their permission bits. Bundle objects are world-readable, so publishing one puts its
/// text in front of anyone who can fetch the bundle; capture writes content that was
/// private on its host (and that its role marks `sensitive`) this way.
pub fn private_files(src: &Path) -> Result<Vec<(String, u32)>, BundleError> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for (rel, abs) in collect_tree(src)? {
        if !rel.starts_with("files/") {
            continue;
        }
        let mode = fs::metadata(&abs).at(&abs)?.permissions().mode() & 0o7777;
        if mode & 0o004 == 0 {
            out.push((rel, mode));
        }
    }
    Ok(out)
}

/// Bundle path → file to read, sorted, after applying the strictness rules.
fn collect_tree(src: &Path) -> Result<BTreeMap<String, PathBuf>, BundleError> {
    let root = src.canonicalize().at(src)?;
    if !root.join("roles").is_dir() {
        return Err(BundleError::SourceTree {
            path: root,
            reason: "has no roles/ directory".into(),
        });
    }
    let mut out = BTreeMap::new();
    for entry in sorted_entries(&root)? {
        let name = file_name(&entry)?;
        if name.starts_with('.') {
            tracing::debug!("skipping hidden {}", entry.display());
            continue;
        }
        let meta = fs::symlink_metadata(&entry).at(&entry)?;
        if TOP_LEVEL_DIRS.contains(&name.as_str()) {
            if !meta.is_dir() {
                return Err(BundleError::SourceTree {
                    path: entry,
                    reason: "must be a real directory (not a file or a symlink)".into(),
                });
            }
            walk(&root, &entry, &name, &mut out)?;
        } else if TOP_LEVEL_FILES.contains(&name.as_str()) {
            add_file(&root, &entry, name, &mut out)?;
        } else {
            // A config repository also holds a README, CI files and the like; they are not
            // part of the bundle. (A missing roles/ is refused before publishing.)
            tracing::info!(entry = %entry.display(), "not published: not part of a bundle");
        }
    }
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    out: &mut BTreeMap<String, PathBuf>,
) -> Result<(), BundleError> {
    for entry in sorted_entries(dir)? {
        let child = format!("{rel}/{}", file_name(&entry)?);
        let meta = fs::symlink_metadata(&entry).at(&entry)?;
        if meta.is_dir() {
            walk(root, &entry, &child, out)?;
        } else {
            add_file(root, &entry, child, out)?;
        }
    }
    Ok(())
}

fn add_file(
    root: &Path,
    path: &Path,
    rel: String,
    out: &mut BTreeMap<String, PathBuf>,
) -> Result<(), BundleError> {
    let refuse = |reason: String| BundleError::SourceTree {
        path: path.to_path_buf(),
        reason,
    };
    manifest::validate_path(&rel).map_err(&refuse)?;
    let meta = fs::symlink_metadata(path).at(path)?;
    let target = if meta.file_type().is_symlink() {
        let link = fs::read_link(path).at(path)?;
        if link.is_absolute() {
            return Err(refuse(format!(
                "symlink to absolute path {}; only relative links inside the tree are allowed",
                link.display()
            )));
        }
        let resolved = path.canonicalize().at(path)?;
        if !resolved.starts_with(root) {
            return Err(refuse(format!(
                "symlink escapes the source tree (resolves to {})",
                resolved.display()
            )));
        }
        if !fs::metadata(&resolved).at(&resolved)?.is_file() {
            return Err(refuse(
                "symlink to something other than a regular file".into(),
            ));
        }
        resolved
    } else if meta.is_file() {
        path.to_path_buf()
    } else {
        return Err(refuse(
            "not a regular file, directory or symlink to a file".into(),
        ));
    };
    out.insert(rel, target);
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, BundleError> {
    let mut entries = fs::read_dir(dir)
        .at(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .at(dir)?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> Result<String, BundleError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| BundleError::SourceTree {
            path: path.to_path_buf(),
            reason: "file name is not valid UTF-8".into(),
        })
}
