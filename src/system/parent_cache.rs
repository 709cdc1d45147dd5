//! The run's resolved parent directories, each pinned by an open descriptor, bounded so that
//! converging any number of directories never runs out of descriptors.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lru::LruCache;

use super::path::PinnedDir;

/// At most this many pinned directories stay open between lookups.
const MOST: usize = 64;

/// A least-recently-used set of pinned directories, keyed by their path as managed paths
/// spell it (before links). An evicted directory is closed (once no path in use holds it) and
/// walked again from the root when next needed, with the same checks as the first time.
#[derive(Debug)]
pub(super) struct ParentCache {
    dirs: Mutex<LruCache<PathBuf, PinnedDir>>,
}

impl ParentCache {
    /// A cache sized well below the soft descriptor limit: a sixteenth of it, between 8 and
    /// [`MOST`], so everything else a run opens (sources, bundles, sockets, the lock) has room.
    pub(super) fn new() -> ParentCache {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
            .unwrap_or(1024);
        ParentCache::with_capacity((soft / 16).clamp(8, MOST))
    }

    fn with_capacity(cap: usize) -> ParentCache {
        let cap = NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN);
        ParentCache {
            dirs: Mutex::new(LruCache::new(cap)),
        }
    }

    /// The deepest of `dir` and its ancestors (the root included) that is cached, with how
    /// many components below the root it covers.
    pub(super) fn nearest(&self, dir: &Path) -> Option<(usize, PinnedDir)> {
        let mut dirs = self.dirs.lock().ok()?;
        let depth = dir.components().count().saturating_sub(1);
        dir.ancestors()
            .enumerate()
            .find_map(|(up, a)| dirs.get(a).map(|d| (depth - up, d.clone())))
    }

    /// Remembers `pinned` as the directory at `dir`, evicting the least recently used one
    /// when full.
    pub(super) fn insert(&self, dir: PathBuf, pinned: PinnedDir) {
        if let Ok(mut dirs) = self.dirs.lock() {
            dirs.put(dir, pinned);
        }
    }

    /// Forgets every directory (after a change to the tree that may have replaced one).
    pub(super) fn clear(&self) {
        if let Ok(mut dirs) = self.dirs.lock() {
            dirs.clear();
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.dirs.lock().map(|d| d.len()).unwrap_or(0)
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.dirs.lock().map(|d| d.cap().get()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::system::{System, SystemError};

    fn tree(dirs: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for i in 0..dirs {
            std::fs::create_dir_all(root.join(format!("srv/d{i}"))).unwrap();
        }
        (dir, root)
    }

    #[test]
    fn the_cache_is_sized_well_below_the_descriptor_limit() {
        let cache = ParentCache::new();
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert!((8..=MOST).contains(&cache.capacity()));
        assert!(cache.capacity() as u64 <= (soft / 16).max(8));
    }

    #[test]
    fn any_number_of_directories_keeps_at_most_the_capacity_open() {
        let (_dir, root) = tree(300);
        let sys = System::new(&root).unwrap();
        for round in 0..2 {
            for i in 0..300 {
                let hp = sys.host_path(Path::new(&format!("/srv/d{i}/f"))).unwrap();
                assert_eq!(
                    hp.shown(),
                    root.join(format!("srv/d{i}/f")),
                    "round {round}"
                );
            }
            assert!(sys.parents.len() <= sys.parents.capacity());
        }
    }

    #[test]
    #[ignore = "needs root (container tier, scripts/test)"]
    fn an_evicted_directory_is_walked_again_with_every_check() {
        let (_dir, root) = tree(1);
        let outside = tempfile::tempdir().unwrap();
        let sys = System::new(&root).unwrap();
        sys.host_path(Path::new("/srv/d0/f")).unwrap();
        for i in 0..sys.parents.capacity() + 1 {
            std::fs::create_dir_all(root.join(format!("other/e{i}"))).unwrap();
            sys.host_path(Path::new(&format!("/other/e{i}/f"))).unwrap();
        }
        // Out of the cache, the directory becomes a link that another user controls: the
        // next walk finds it and refuses, as the first one would have.
        std::fs::rename(root.join("srv/d0"), root.join("srv/d0-moved")).unwrap();
        symlink(outside.path(), root.join("srv/d0")).unwrap();
        std::os::unix::fs::lchown(root.join("srv/d0"), Some(4242), None).unwrap();
        assert!(matches!(
            sys.host_path(Path::new("/srv/d0/f")),
            Err(SystemError::UnsafeLink { uid: 4242, .. })
        ));
    }

    #[test]
    #[ignore = "needs root (container tier, scripts/test)"]
    fn links_below_a_cached_ancestor_resolve_as_from_the_root() {
        let (_dir, root) = tree(1);
        std::fs::create_dir_all(root.join("b")).unwrap();
        symlink("/b", root.join("srv/abs")).unwrap();
        symlink("../../b", root.join("srv/d0/up")).unwrap();
        symlink("d0", root.join("srv/rel")).unwrap();
        let sys = System::new(&root).unwrap();
        // Caches /, /srv and /srv/d0.
        sys.host_path(Path::new("/srv/d0/f")).unwrap();
        let shown = |p: &str| sys.host_path(Path::new(p)).unwrap().shown().to_path_buf();
        assert_eq!(shown("/srv/abs/f"), root.join("b/f"));
        assert_eq!(shown("/srv/d0/up/f"), root.join("b/f"));
        assert_eq!(shown("/srv/rel/f"), root.join("srv/d0/f"));
        // Asked again, each comes from the cache and stays the same.
        assert_eq!(shown("/srv/abs/f"), root.join("b/f"));
        assert_eq!(shown("/srv/d0/up/f"), root.join("b/f"));
        assert_eq!(shown("/srv/rel/f"), root.join("srv/d0/f"));
    }
}
