//! A writable overlayfs view of a read-only lower tree, torn down on Drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::rootfs::mounts_below;
use super::stale::{reap_once, OVERLAY_PREFIX};
use super::tools::{output_text, require_root};

/// An overlay mount whose upper/work dirs live in a private TempDir.
pub struct Overlay {
    merged: PathBuf,
    // Declared last so it is removed only after Drop unmounted `merged`.
    scratch: TempDir,
}

impl Overlay {
    /// Mounts a fresh overlay over `lower`; writes never reach `lower`.
    pub fn mount(lower: &Path) -> Overlay {
        require_root();
        reap_once();
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{OVERLAY_PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("create overlay scratch dir");
        let base = scratch.path();
        for d in ["up", "work", "merged"] {
            fs::create_dir(base.join(d)).expect("create overlay dir");
        }
        let merged = base.join("merged");
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            base.join("up").display(),
            base.join("work").display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .output()
            .expect("spawn mount");
        assert!(
            out.status.success(),
            "overlay mount of {} failed\n{}",
            lower.display(),
            output_text(&out)
        );
        Overlay { merged, scratch }
    }

    /// The merged, writable tree.
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// A private directory next to the overlay for logs and shared files.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Unmounts everything at or below the merged dir; returns leftovers.
    pub fn unmount(&self) -> Vec<PathBuf> {
        let mut points = mounts_below(&self.merged);
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in &points {
            let ok = Command::new("umount")
                .arg(p)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Something still holds it (a dying process); detach so the
                // TempDir can go and the kernel frees it when unused.
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
        mounts_below(&self.merged)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let left = self.unmount();
        if !left.is_empty() {
            eprintln!("support: could not unmount {left:?}");
        }
    }
}
