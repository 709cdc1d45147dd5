//! The compiled desired state of earlier runs, so a run whose inputs did not change skips
//! loading, rendering and ordering and goes straight to observing (Puppet's cached
//! catalog, keyed on everything planning reads instead of on a timer).
//!
//! An entry is the finished [`Plan`] and the roles it was built for, in
//! `<state_dir>/plan-cache/<key>`. The key is a sha256 over what planning reads: this
//! build of converge, the tree (a verified bundle's id, or the content of a source tree's
//! `roles/`, `templates/` and `nodes.toml`) and where it is, the roles asked for, the
//! vars, the facts and the plan options. Files of `files/` are not in the key, since a tree
//! may hold many a plan never reads: the entry lists the fingerprint of each one its plan
//! uses, and a hit reads them again (as planning would), so an edited one is a miss.
//!
//! Only planning is skipped: observing, diffing and converging are the same code either
//! way, so check stays exactly as honest as apply. A cached plan holds the same resources a
//! fresh one would; its templated files are rendered again only when their bytes are
//! needed, with the templates parsed on that first need.
//!
//! An entry holds its own key and is used only under it, so an entry copied or renamed
//! over another key (another role set, another tree) is not taken for that one. The state
//! dir and the cache in it must belong to the running user and be writable by no one else
//! ([`crate::durable::trust`]), or the run is refused: a planted entry would decide what a
//! root run writes.
//!
//! Otherwise the cache never fails a run: an entry that is unreadable, too large,
//! truncated, corrupt or of another format is ignored and the plan built as before, and a
//! state dir that is missing or not writable means no cache. Entries are written to a temp file and renamed, so runs
//! that hold no lock may read and write them side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::durable::temp::{self, Sweep};
use crate::durable::trust::{self, Untrusted};
use crate::health::HealthCheck;
use crate::plan::{Plan, PlanOptions, Planned, Requirements, Templates};
use crate::resource::content::{self, Fingerprint};
use crate::role::{classify::NODES_FILE, SourceTree};

/// Bumped when the entry layout changes in a way the build id would not show.
const FORMAT: u32 = 1;
/// Entries kept: a few, since hosts and benchmarks alternate between role sets or trees.
const KEEP: usize = 8;
/// The first bytes of an entry; the plan follows, then a sha256 of the plan.
const MAGIC: &[u8; 8] = b"cvgplan\x02";
/// The largest entry read: far above a plan of tens of thousands of files.
const MAX_ENTRY: u64 = 256 << 20;
/// The cache's directory under the state dir.
const DIR: &str = "plan-cache";

/// Whether a run's plan came from the cache: `cached` or `built` in run records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanFrom {
    /// Read back from an earlier run's entry.
    Cached,
    /// Built from the source (and stored, when the cache is usable).
    Built,
}

/// Everything a plan is built from, besides the tree's own content.
pub(crate) struct Inputs<'a> {
    /// The tree planned.
    pub tree: &'a SourceTree,
    /// A verified bundle's id (its content hash); empty for a source tree read in place.
    pub bundle_id: &'a str,
    /// Roles asked for on the command line.
    pub roles: &'a [String],
    /// Roles of the settings.
    pub settings_roles: &'a [String],
    /// The settings' vars with the command line's on top.
    pub overrides: &'a Map<String, Value>,
    /// The host's facts.
    pub facts: &'a Value,
    /// How the plan is built.
    pub options: PlanOptions,
}

/// The plan cache of one state dir.
#[derive(Debug)]
pub(crate) struct PlanCache {
    dir: PathBuf,
}

/// The part of an entry read before the plan: what must hold for the plan to be used, and
/// the context its templated files render with.
#[derive(Serialize, Deserialize)]
struct Header {
    /// The key the entry was stored under: an entry is used under that key only.
    key: String,
    /// Each `files/` source the plan reads, as planning fingerprinted it.
    sources: Vec<(PathBuf, Fingerprint)>,
    /// The run's `{facts, vars}` as JSON text, when the plan has templated files.
    context: Option<String>,
    /// The roles the plan was built for (the record names them).
    roles: Vec<String>,
    /// How many plan items follow, one after another, then the health checks and the
    /// requirements: read into an array of the right size, not one grown by doubling.
    items: u64,
}

impl PlanCache {
    /// The cache in `state_dir`, when the state dir exists and the cache's directory is
    /// there or can be made; `None` otherwise (a checkout checked by a user without one).
    /// A state dir or cache that someone else could have written is refused.
    pub fn open(state_dir: &Path) -> Result<Option<PlanCache>, Untrusted> {
        if !state_dir.is_dir() {
            tracing::debug!(dir = %state_dir.display(), "no state dir: plans are not cached");
            return Ok(None);
        }
        let dir = state_dir.join(DIR);
        trust::check(state_dir, false)?;
        trust::check(&dir, true)?;
        // 0700: a plan holds desired content of sensitive files (inline content, vars).
        let usable = crate::durable::ensure_dir(&dir, 0o700).and_then(|()| {
            use nix::unistd::{access, AccessFlags};
            access(
                &dir,
                AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK,
            )
            .map_err(std::io::Error::from)
        });
        if let Err(e) = usable {
            tracing::debug!(dir = %dir.display(), error = %e, "plans are not cached");
            return Ok(None);
        }
        Ok(Some(PlanCache { dir }))
    }

    /// The key of a plan built from `inputs`; `None` when the tree cannot be read whole
    /// (planning will say why).
    pub fn key(inputs: &Inputs) -> Option<String> {
        let mut h = Sha256::new();
        let mut part = |name: &str, bytes: &[u8]| {
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        part("format", &FORMAT.to_le_bytes());
        part("build", env!("CONVERGE_BUILD_ID").as_bytes());
        part("tree", inputs.tree.root().as_os_str().as_encoded_bytes());
        if inputs.bundle_id.is_empty() {
            part("content", &tree_content(inputs.tree)?);
        } else {
            part("bundle", inputs.bundle_id.as_bytes());
        }
        part("roles", &json(&inputs.roles)?);
        part("settings roles", &json(&inputs.settings_roles)?);
        part("vars", &json(inputs.overrides)?);
        part("facts", &json(inputs.facts)?);
        part("keep rendered", &[inputs.options.keep_rendered as u8]);
        Some(hex::encode(h.finalize()))
    }

    /// The plan stored under `key`, and its roles, when there is a sound entry whose
    /// `files/` sources are unchanged.
    pub fn load(&self, key: &str, tree: &SourceTree) -> Option<(Plan, Vec<String>)> {
        let path = self.dir.join(key);
        let bytes = match read_entry(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(entry = %path.display(), error = %e, "no cached plan");
                return None;
            }
        };
        match decode(&bytes, key, tree) {
            Ok(loaded) => {
                // Kept among the newest: pruning goes by modification time.
                let touched = std::fs::File::open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                if let Err(e) = touched {
                    tracing::debug!(entry = %path.display(), error = %e, "cannot touch the cached plan");
                }
                tracing::debug!(entry = %path.display(), "plan read from the cache");
                Some(loaded)
            }
            Err(why) => {
                tracing::debug!(entry = %path.display(), why, "cached plan not used");
                None
            }
        }
    }

    /// Stores `plan` and its `roles` under `key`, then keeps only the newest entries.
    /// Failures are logged, never returned: the run has its plan either way.
    pub fn store(&self, key: &str, plan: &Plan, roles: &[String]) {
        match self.write(key, plan, roles) {
            Ok(()) => tracing::debug!(key, "plan cached"),
            Err(why) => tracing::debug!(key, why, "plan not cached"),
        }
        self.prune();
    }

    fn write(&self, key: &str, plan: &Plan, roles: &[String]) -> Result<(), String> {
        // No fsync: an entry torn by a crash fails its checksum and is planned again.
        let mut tmp = temp::file_in(&self.dir).map_err(|e| e.to_string())?;
        encode(key, plan, roles, &mut tmp)?;
        tmp.persist(self.dir.join(key))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Removes all but the [`KEEP`] newest entries, and temp files a killed run left.
    fn prune(&self) {
        // Runs that hold no lock write here too: only a dead run's temp files are leftovers.
        if let Err(e) = temp::sweep(&self.dir, Sweep::Dead) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "cannot sweep the plan cache");
        }
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(temp::PREFIX) {
                // Another run's entry, being written.
                continue;
            }
            let Ok(modified) = e.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            entries.push((modified, e.path()));
        }
        if entries.len() <= KEEP {
            return;
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, path) in entries.into_iter().skip(KEEP) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::debug!(entry = %path.display(), error = %e, "cannot prune cached plan");
            }
        }
    }
}

/// The bytes of the entry at `path`: a regular file (a link is not followed, and a FIFO
/// is not waited on) of at most [`MAX_ENTRY`] bytes.
fn read_entry(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_ENTRY {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_ENTRY} bytes"
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ENTRY + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ENTRY {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_ENTRY} bytes"
        )));
    }
    Ok(bytes)
}

/// A value of the key as JSON text: serde_json's maps are sorted, so equal values give
/// equal text.
fn json<T: Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(value).ok()
}

/// A sha256 over every file planning may read in a source tree: `roles/` (includes are
/// roles too), `templates/` (partials included) and `nodes.toml`, each with its path.
fn tree_content(tree: &SourceTree) -> Option<Vec<u8>> {
    let mut files = Vec::new();
    for dir in ["roles", "templates"] {
        collect(tree.root(), Path::new(dir), &mut files).ok()?;
    }
    files.sort();
    let mut h = Sha256::new();
    for rel in files
        .iter()
        .map(PathBuf::as_path)
        .chain([Path::new(NODES_FILE)])
    {
        // Read a chunk at a time: a role of thousands of files is megabytes.
        let found = Fingerprint::of_file(&tree.root().join(rel));
        let fingerprint = match found {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel == Path::new(NODES_FILE) => {
                h.update(b"no nodes.toml");
                continue;
            }
            Err(_) => return None,
        };
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(fingerprint.sha256);
        h.update(fingerprint.size.to_le_bytes());
    }
    Some(h.finalize().to_vec())
}

/// Every file under `root/rel`, as paths relative to `root`. Anything but a regular file
/// or directory (a FIFO, a socket) makes the tree uncacheable: planning refuses it anyway.
fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(root.join(rel)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        // Followed like planning follows them: a linked role or template counts by content.
        let meta = std::fs::metadata(root.join(&path))?;
        if meta.is_dir() {
            collect(root, &path, out)?;
        } else if meta.is_file() {
            out.push(path);
        } else {
            return Err(std::io::Error::other("not a regular file"));
        }
    }
    Ok(())
}

/// Writes the entry of `plan` to `out`: [`MAGIC`], the header and the plan, and a sha256
/// of both.
fn encode<W: std::io::Write>(
    key: &str,
    plan: &Plan,
    roles: &[String],
    mut out: W,
) -> Result<W, String> {
    let mut sources = Vec::new();
    for item in &plan.items {
        if let Some(content) = item.resource.content() {
            if let Some(path) = content.path() {
                sources.push((path.to_path_buf(), content.fingerprint()));
            }
        }
    }
    let context = match &plan.templates {
        Some(t) => Some(t.context_json()?),
        None => None,
    };
    let header = Header {
        key: key.to_owned(),
        sources,
        context,
        roles: roles.to_vec(),
        items: plan.items.len() as u64,
    };
    out.write_all(MAGIC).map_err(|e| e.to_string())?;
    // Streamed: a plan of thousands of files is never held a second time, serialized.
    let hashed = Hashed {
        inner: out,
        hash: Sha256::new(),
    };
    let buffered = std::io::BufWriter::with_capacity(content::CHUNK, hashed);
    let mut buffered = postcard::to_io(&header, buffered).map_err(|e| e.to_string())?;
    for item in &plan.items {
        buffered = postcard::to_io(item, buffered).map_err(|e| e.to_string())?;
    }
    let buffered = postcard::to_io(&plan.health, buffered).map_err(|e| e.to_string())?;
    let buffered = postcard::to_io(&plan.requires, buffered).map_err(|e| e.to_string())?;
    let Hashed { mut inner, hash } = buffered.into_inner().map_err(|e| e.to_string())?;
    inner
        .write_all(&hash.finalize())
        .map_err(|e| e.to_string())?;
    Ok(inner)
}

/// A writer that hashes what goes through it.
struct Hashed<W> {
    inner: W,
    hash: Sha256,
}

impl<W: std::io::Write> std::io::Write for Hashed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hash.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn decode(bytes: &[u8], key: &str, tree: &SourceTree) -> Result<(Plan, Vec<String>), String> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a plan cache entry of this format")?;
    if rest.len() < 32 {
        return Err("truncated".into());
    }
    let (payload, sum) = rest.split_at(rest.len() - 32);
    if Sha256::digest(payload).as_slice() != sum {
        return Err("checksum mismatch (truncated or corrupt)".into());
    }
    let (header, body) =
        postcard::take_from_bytes::<Header>(payload).map_err(|e| format!("header: {e}"))?;
    if header.key != key {
        return Err(format!("stored under key {}, not this one", header.key));
    }
    for (path, planned) in &header.sources {
        let now =
            Fingerprint::of_file(path).map_err(|e| format!("source {}: {e}", path.display()))?;
        if now != *planned {
            return Err(format!("source {} changed", path.display()));
        }
    }
    let templates = header
        .context
        .map(|json| Arc::new(Templates::lazy(tree.templates_dir(), json)));
    let read = || -> Result<(Vec<Planned>, Vec<HealthCheck>, Requirements), String> {
        let plan_error = |e: postcard::Error| format!("plan: {e}");
        // Every item takes at least a byte: a count beyond that is not this entry's.
        let count = usize::try_from(header.items).unwrap_or(usize::MAX);
        if count > body.len() {
            return Err("plan: more items than bytes".into());
        }
        let mut items = Vec::with_capacity(count);
        let mut rest = body;
        for _ in 0..count {
            let (item, more) = postcard::take_from_bytes::<Planned>(rest).map_err(plan_error)?;
            items.push(item);
            rest = more;
        }
        let (health, rest) =
            postcard::take_from_bytes::<Vec<HealthCheck>>(rest).map_err(plan_error)?;
        let requires = postcard::from_bytes::<Requirements>(rest).map_err(plan_error)?;
        Ok((items, health, requires))
    };
    let (mut items, health, requires) = match &templates {
        Some(t) => content::with_revive(t.revive(), read)?,
        None => read()?,
    };
    share_names(&mut items);
    let plan = Plan {
        items,
        health,
        requires,
        templates,
    };
    Ok((plan, header.roles))
}

/// One copy of each role name and role file for all the items that name it, as a freshly
/// built plan has: thousands of items would otherwise each hold their own.
fn share_names(items: &mut [Planned]) {
    let mut roles: Vec<Arc<str>> = Vec::new();
    let mut files: Vec<Arc<Path>> = Vec::new();
    for item in items {
        match roles.iter().find(|r| **r == item.role) {
            Some(r) => item.role = r.clone(),
            None => roles.push(item.role.clone()),
        }
        match files.iter().find(|f| **f == item.at.file) {
            Some(f) => item.at.file = f.clone(),
            None => files.push(item.at.file.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
