//! The host's state dir: object store, materialised bundles, `current`/`previous` links.
//!
//! Layout (every name appears only once complete; see `crate::durable`):
//! ```text
//! state_dir/run.lock                 the state dir's lock, held for the whole run
//! state_dir/objects/<sha256>         verified content, shared by all bundles
//! state_dir/bundles/<id>/            a materialised bundle (+ .manifest.json)
//! state_dir/current -> bundles/<id>  what the engine reads
//! state_dir/previous -> bundles/<id> last known good before current, kept for rollback
//! state_dir/sync.json                ETag, signer, track and fetch time of `current`, and
//!                                    the signer and fetch time of `previous`
//! state_dir/rollout.json             the last rollout file accepted from the source, its
//!                                    ETag and signer: the floor for the next one
//! ```

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::error::{BundleError, IoContext};
use super::manifest::{is_sha256_hex, Manifest};
use super::rollout::Track;
use super::OBJECTS_DIR;
use crate::durable::temp::{self, Sweep};
use crate::durable::{self, FileSpec, StateLock};

const BUNDLES_DIR: &str = "bundles";
const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
const SYNC_STATE: &str = "sync.json";
/// Copy of the verified manifest inside each materialised bundle; hidden and outside the
/// allowed top-level names, so it can never collide with bundle content.
pub(crate) const BUNDLE_MANIFEST: &str = ".manifest.json";

/// What we remember about the bundle `current` points at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SyncState {
    /// The source it came from; an ETag from another source means nothing.
    pub source: String,
    /// The bundle id this state describes.
    pub id: String,
    /// ETag of the manifest, for the next conditional GET.
    pub etag: Option<String>,
    /// Key id that signed it, if a signature was verified.
    pub signer: Option<String>,
    /// Unix seconds when this bundle was first fetched.
    pub fetched_at: u64,
    /// The bundle `current` replaced. Recorded so a fallback can tell whether `previous`
    /// was signed by a key trusted now; absent in state files written before this field.
    #[serde(default)]
    pub previous: Option<BundleRecord>,
    /// A bundle this host fetched and then refused because it cannot be planned here; while
    /// the source serves it, it is refused again without being downloaded or planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedBundle>,
    /// Whose manifest `current` is: the stable one, or the candidate of a rollout. The ETag
    /// is only sent again for the same track.
    #[serde(default)]
    pub track: Track,
}

/// A verified bundle this host will not converge, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RefusedBundle {
    /// The bundle id.
    pub id: String,
    /// Why it was refused (the first planning error).
    pub reason: String,
}

/// What we remember about a kept bundle other than the one `sync.json` is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct BundleRecord {
    /// The bundle id.
    pub id: String,
    /// Key id that signed it, if a signature was verified.
    pub signer: Option<String>,
    /// Unix seconds when this bundle was first fetched.
    pub fetched_at: u64,
}

impl SyncState {
    /// What this state records about bundle `id`, whether it is the one described at the
    /// top level or `previous`. Looking at both matters after a crash between the switch
    /// and the state write, when the top level still describes what is now `previous`.
    pub fn record(&self, id: &str) -> Option<BundleRecord> {
        if self.id == id {
            return Some(BundleRecord {
                id: self.id.clone(),
                signer: self.signer.clone(),
                fetched_at: self.fetched_at,
            });
        }
        self.previous.clone().filter(|p| p.id == id)
    }
}

/// The manifest a materialised bundle was built from (`None` when it cannot be read: it is
/// only ever written complete, so that means the dir is not a bundle of this store).
pub fn manifest_in(bundle_dir: &Path) -> Option<Manifest> {
    let bytes = fs::read(bundle_dir.join(BUNDLE_MANIFEST)).ok()?;
    Manifest::parse(
        &bytes,
        &bundle_dir.join(BUNDLE_MANIFEST).display().to_string(),
    )
    .ok()
}

/// The directory of the bundle `current` points at in the state dir whose lock `lock` is,
/// when there is one.
pub fn current_dir(lock: &StateLock) -> Option<PathBuf> {
    let state = StateDir { root: lock.dir() };
    state.current().map(|id| state.bundle_dir(&id))
}

/// The bundle store of a state dir whose lock this run holds.
pub(crate) struct StateDir<'l> {
    root: &'l Path,
}

impl<'l> StateDir<'l> {
    /// Creates the layout if needed and sweeps leftovers of killed runs (the lock itself swept
    /// the state dir's top level).
    pub fn open(lock: &'l StateLock) -> Result<StateDir<'l>, BundleError> {
        StateDir::at(lock.dir())
    }

    /// A store in a scratch dir this process made for itself, which no other run can see.
    pub fn scratch(dir: &'l Path) -> Result<StateDir<'l>, BundleError> {
        StateDir::at(dir)
    }

    fn at(root: &'l Path) -> Result<StateDir<'l>, BundleError> {
        let dir = StateDir { root };
        // 0700: bundles may carry secrets under files/.
        for d in [dir.objects(), dir.bundles()] {
            durable::ensure_dir(&d, 0o700).at(&d)?;
            temp::sweep(&d, Sweep::Locked).at(&d)?;
        }
        Ok(dir)
    }

    /// The state dir itself.
    pub(crate) fn root(&self) -> &Path {
        self.root
    }

    fn objects(&self) -> PathBuf {
        self.root.join(OBJECTS_DIR)
    }

    fn bundles(&self) -> PathBuf {
        self.root.join(BUNDLES_DIR)
    }

    /// Where bundle `id` is (or would be) materialised.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundles().join(id)
    }

    /// Id of the bundle `current` points at, if it points at a complete one.
    pub fn current(&self) -> Option<String> {
        self.link_target(CURRENT)
    }

    /// Id of the bundle `previous` points at, if it points at a complete one.
    pub fn previous(&self) -> Option<String> {
        self.link_target(PREVIOUS)
    }

    /// The verified manifest kept inside materialised bundle `id`, if readable.
    pub fn manifest(&self, id: &str) -> Option<Manifest> {
        let path = self.bundle_dir(id).join(BUNDLE_MANIFEST);
        let bytes = fs::read(&path).ok()?;
        Manifest::parse(&bytes, &path.display().to_string()).ok()
    }

    fn link_target(&self, link: &str) -> Option<String> {
        let target = fs::read_link(self.root.join(link)).ok()?;
        let id = target.strip_prefix(BUNDLES_DIR).ok()?.to_str()?.to_string();
        (is_sha256_hex(&id) && self.bundle_dir(&id).is_dir()).then_some(id)
    }

    /// True if a verified object with this name and size is in the store.
    pub(crate) fn has_object(&self, sha256: &str, size: u64) -> bool {
        fs::metadata(self.objects().join(sha256)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// A temp file inside the object store, so the final rename stays on one filesystem.
    pub(crate) fn object_temp(&self) -> Result<NamedTempFile, BundleError> {
        temp::file_in(&self.objects()).at(self.objects())
    }

    /// A fresh scratch dir for a look that must not touch this state (under `bundles/`, so
    /// a run killed while holding one leaves a temp entry the next open sweeps).
    pub(crate) fn scratch_dir(&self) -> Result<tempfile::TempDir, BundleError> {
        temp::dir_in(&self.bundles()).at(self.bundles())
    }

    /// Hard-link the objects `manifest` needs that `other` already holds into this store
    /// (copied where no link can be made, as from a scratch dir on another filesystem), so
    /// a sync downloads only what is new. Best effort: anything not taken over is fetched,
    /// and every object is re-hashed when materialised.
    pub(crate) fn link_objects_from(&self, other: &StateDir, manifest: &Manifest) {
        for entry in manifest.files.values() {
            if other.has_object(&entry.sha256, entry.size)
                && !self.has_object(&entry.sha256, entry.size)
            {
                let from = other.objects().join(&entry.sha256);
                if fs::hard_link(&from, self.objects().join(&entry.sha256)).is_err() {
                    let copied = self.object_temp().ok().and_then(|mut tmp| {
                        let mut src = fs::File::open(&from).ok()?;
                        std::io::copy(&mut src, tmp.as_file_mut()).ok()?;
                        Some(tmp)
                    });
                    if let Some(tmp) = copied {
                        let _ = self.commit_object(tmp, &entry.sha256);
                    }
                }
            }
        }
    }

    /// Give a verified temp file its final content-addressed name.
    pub(crate) fn commit_object(
        &self,
        tmp: NamedTempFile,
        sha256: &str,
    ) -> Result<(), BundleError> {
        tmp.as_file().sync_all().at(tmp.path())?;
        let dest = self.objects().join(sha256);
        tmp.persist(&dest)
            .map_err(|e| BundleError::io(&dest, e.error))?;
        Ok(())
    }

    /// Make object renames durable before anything refers to them.
    pub(crate) fn sync_objects(&self) -> Result<(), BundleError> {
        durable::sync_dir(&self.objects()).at(self.objects())
    }

    /// Build `bundles/<id>/` from the object store (in a temp dir, renamed when complete).
    ///
    /// Each file is a hard link to its object, so a bundle that differs from the last in
    /// one file costs one object's write, not a copy of every file: the objects' content
    /// was made durable when they were stored, and only the new directories need an fsync.
    /// Where a link cannot be made (a filesystem without them, an object at its link limit)
    /// the file is copied instead. Each object is re-hashed first: one damaged on disk is
    /// deleted (so the next sync fetches it again) instead of being materialised.
    pub fn materialise(
        &self,
        id: &str,
        manifest: &Manifest,
        manifest_bytes: &[u8],
    ) -> Result<PathBuf, BundleError> {
        let final_dir = self.bundle_dir(id);
        if final_dir.is_dir() {
            // Only ever renamed into place complete, so it is reusable as is.
            return Ok(final_dir);
        }
        let tmp = temp::dir_in(&self.bundles()).at(self.bundles())?;
        let mut dirs = BTreeSet::new();
        for (rel, entry) in &manifest.files {
            let dest = super::manifest::join_rel(tmp.path(), rel);
            let parent = dest.parent().expect("bundle paths have a parent");
            if dirs.insert(parent.to_path_buf()) {
                fs::create_dir_all(parent).at(parent)?;
            }
            let object = self.objects().join(&entry.sha256);
            let actual = hash_file(&object)?;
            if actual != entry.sha256 {
                let _ = fs::remove_file(&object);
                return Err(BundleError::LocalState {
                    path: object,
                    reason: format!(
                        "object content changed on disk (sha256 {actual}); removed, will be fetched again"
                    ),
                });
            }
            if let Err(e) = fs::hard_link(&object, &dest) {
                tracing::debug!(object = %object.display(), "cannot link ({e}); copying");
                copy_durably(&object, &dest)?;
            }
        }
        let mpath = tmp.path().join(BUNDLE_MANIFEST);
        fs::write(&mpath, manifest_bytes).at(&mpath)?;
        File::open(&mpath).and_then(|f| f.sync_all()).at(&mpath)?;
        for d in dirs.iter().rev() {
            durable::sync_dir(d).at(d)?;
        }
        durable::sync_dir(tmp.path()).at(tmp.path())?;
        let built = tmp.keep();
        fs::rename(&built, &final_dir).at(&final_dir)?;
        durable::sync_dir(&self.bundles()).at(self.bundles())?;
        Ok(final_dir)
    }

    /// Point `current` at `id`, moving the old current to `previous`.
    ///
    /// `previous` is swapped first: a crash in between leaves both on the old bundle,
    /// which is still a complete, verified state.
    pub fn switch(&self, id: &str) -> Result<(), BundleError> {
        let old = self.current();
        if old.as_deref() == Some(id) {
            return Ok(());
        }
        let swap = |link: &str, id: &str| {
            let link = self.root.join(link);
            durable::swap_symlink(&link, &Path::new(BUNDLES_DIR).join(id)).at(link)
        };
        if let Some(old) = old {
            swap(PREVIOUS, &old)?;
        }
        swap(CURRENT, id)
    }

    /// Point both `current` and `previous` at `id`: a return to a kept bundle, after which
    /// the bundle that was current is no longer kept (the next gc removes it).
    pub(crate) fn reset_to(&self, id: &str) -> Result<(), BundleError> {
        let target = Path::new(BUNDLES_DIR).join(id);
        for link in [PREVIOUS, CURRENT] {
            let link = self.root.join(link);
            durable::swap_symlink(&link, &target).at(link)?;
        }
        Ok(())
    }

    /// Delete bundles other than current and previous, and objects neither of them uses.
    pub(crate) fn gc(&self) -> Result<(), BundleError> {
        let keep: Vec<String> = [self.current(), self.previous()]
            .into_iter()
            .flatten()
            .collect();
        for entry in fs::read_dir(self.bundles()).at(self.bundles())? {
            let entry = entry.at(self.bundles())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) && !name.starts_with(temp::PREFIX) {
                tracing::debug!("removing old bundle {name}");
                durable::remove_tree(&entry.path()).at(entry.path())?;
            }
        }
        let mut used = BTreeSet::new();
        for id in &keep {
            // Without a readable manifest we cannot tell what is in use: keep everything.
            let Some(m) = self.manifest(id) else {
                return Ok(());
            };
            used.extend(m.files.into_values().map(|e| e.sha256));
        }
        for entry in fs::read_dir(self.objects()).at(self.objects())? {
            let entry = entry.at(self.objects())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_sha256_hex(&name) && !used.contains(&name) {
                fs::remove_file(entry.path()).at(entry.path())?;
            }
        }
        Ok(())
    }

    /// The saved sync state, if present and readable.
    pub(crate) fn load_state(&self) -> Option<SyncState> {
        let bytes = fs::read(self.root.join(SYNC_STATE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Persist the sync state atomically.
    pub(crate) fn save_state(&self, state: &SyncState) -> Result<(), BundleError> {
        let mut bytes = serde_json::to_vec_pretty(state).expect("state serialises");
        bytes.write_all(b"\n").expect("vec write");
        let path = self.root.join(SYNC_STATE);
        durable::write_file(&path, &bytes, &FileSpec::mode(0o600)).at(path)
    }

    /// When bundle `id` was fetched: from the state file, else the bundle dir's mtime.
    pub fn fetched_at(&self, id: &str) -> SystemTime {
        match self.load_state() {
            Some(s) if s.id == id => UNIX_EPOCH + Duration::from_secs(s.fetched_at),
            _ => fs::metadata(self.bundle_dir(id))
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH),
        }
    }
}

/// The sha256 of the file at `path`.
fn hash_file(path: &Path) -> Result<String, BundleError> {
    let mut input = File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut input, &mut hasher).at(path)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Copy `src` to a new file `dest` and fsync it.
fn copy_durably(src: &Path, dest: &Path) -> Result<(), BundleError> {
    let mut input = File::open(src).at(src)?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .at(dest)?;
    io::copy(&mut input, &mut output).at(dest)?;
    output.sync_all().at(dest)
}
