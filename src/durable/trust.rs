//! Whether a state dir may be believed. Bundles, cached plans, run records and backups in
//! it decide what a root run writes where, so whoever can change them controls the host.
//! As ssh does for its keys, a state dir is used only when it and everything in it belong
//! to the running user and no one else can write them; links in it are never followed, and
//! FIFOs, sockets and devices have no business there.
//!
//! Once a directory passes, no one else can add to it or change it, so one check when the
//! state dir is opened covers the run.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why a state dir is not used.
#[derive(Debug, thiserror::Error)]
#[error("state dir {dir}: {path}: {why}; converge uses a state dir only when it and everything in it belong to uid {uid} and are not writable by group or others (fix the owner or mode, or remove it)")]
pub struct Untrusted {
    /// The state dir.
    pub dir: PathBuf,
    /// The offending entry.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: String,
    /// The running user, who must own everything.
    pub uid: u32,
}

/// Checks `dir` itself and, when `deep`, everything under it, without following links.
/// A missing `dir` passes (there is nothing to believe yet).
pub fn check(dir: &Path, deep: bool) -> Result<(), Untrusted> {
    let uid = nix::unistd::geteuid().as_raw();
    let fail = |path: &Path, why: String| Untrusted {
        dir: dir.to_path_buf(),
        path: path.to_path_buf(),
        why,
        uid,
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(dir, e.to_string())),
    };
    if meta.file_type().is_symlink() {
        return Err(fail(dir, "is a symbolic link (give its real path)".into()));
    }
    entry(&meta, uid).map_err(|why| fail(dir, why))?;
    if !deep {
        return Ok(());
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| fail(&d, e.to_string()))?;
        for e in entries {
            let e = e.map_err(|e| fail(&d, e.to_string()))?;
            let path = e.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Another run's temp file, gone since the listing.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(fail(&path, err.to_string())),
            };
            entry(&meta, uid).map_err(|why| fail(&path, why))?;
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// What is wrong with one entry, if anything.
fn entry(meta: &std::fs::Metadata, uid: u32) -> Result<(), String> {
    let kind = meta.file_type();
    if kind.is_fifo() || kind.is_socket() || kind.is_block_device() || kind.is_char_device() {
        return Err("is a FIFO, socket or device, not a file or directory".into());
    }
    if meta.uid() != uid {
        return Err(format!("belongs to uid {}", meta.uid()));
    }
    // A link's own mode means nothing; its owner (checked above) is what counts.
    if !kind.is_symlink() && meta.mode() & 0o022 != 0 {
        return Err(format!(
            "is writable by {} (mode {:04o})",
            if meta.mode() & 0o020 != 0 {
                "its group"
            } else {
                "others"
            },
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    #[ignore = "needs root (container tier, scripts/test)"]
    fn only_a_dir_of_the_running_user_that_no_one_else_can_write_passes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("runs")).unwrap();
        std::fs::write(d.join("runs/r.json"), "{}").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", d.join("current")).unwrap();
        check(d, true).unwrap();

        std::fs::set_permissions(d.join("runs"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(d, true).unwrap_err();
        assert_eq!(e.path, d.join("runs"));
        assert_eq!(e.why, "is writable by its group (mode 0777)");
        // Only the top when not deep.
        check(d, false).unwrap();
        std::fs::set_permissions(d.join("runs"), std::fs::Permissions::from_mode(0o700)).unwrap();

        nix::unistd::mkfifo(&d.join("runs/f"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = check(d, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "state dir {}: {}: is a FIFO, socket or device, not a file or directory; converge uses a state dir only when it and everything in it belong to uid {} and are not writable by group or others (fix the owner or mode, or remove it)",
                d.display(),
                d.join("runs/f").display(),
                nix::unistd::geteuid()
            )
        );
        std::fs::remove_file(d.join("runs/f")).unwrap();

        std::os::unix::fs::lchown(d.join("current"), Some(65534), None).unwrap();
        let e = check(d, true).unwrap_err();
        assert_eq!(e.why, "belongs to uid 65534");
        std::fs::remove_file(d.join("current")).unwrap();

        std::os::unix::fs::symlink(d.join("runs"), d.join("link")).unwrap();
        let e = check(&d.join("link"), true).unwrap_err();
        assert_eq!(e.why, "is a symbolic link (give its real path)");
        check(&d.join("missing"), true).unwrap();
    }
}
