//! Opening the history's own files. They are input like any other: a link planted in the
//! state dir must not lead a rollback to read (or append to) a file elsewhere, a FIFO must
//! not hang it, and a file larger than converge ever writes is not read into memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{io_err, HistoryError};

/// The largest `run.json` read: a summary and a few health checks.
pub(super) const MAX_RUN_FILE: u64 = 4 << 20;
/// The largest `backup.jsonl` read: one line per change, a purge's removed tree in one.
pub(super) const MAX_BACKUP_FILE: u64 = 256 << 20;

/// Opens `path` with `options`, never through a link (O_NOFOLLOW) and without waiting on a
/// FIFO (O_NONBLOCK); then refuses anything but a regular file of at most `max` bytes.
pub(super) fn open(options: &mut OpenOptions, path: &Path, max: u64) -> Result<File, HistoryError> {
    let flags = nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC;
    let file = options.custom_flags(flags).open(path).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::ELOOP) {
            HistoryError::NotRegular {
                path: path.to_path_buf(),
                what: "a symbolic link",
            }
        } else {
            io_err(path)(e)
        }
    })?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(HistoryError::NotRegular {
            path: path.to_path_buf(),
            what: crate::system::tree_file::kind_name(&meta.file_type()),
        });
    }
    if meta.len() > max {
        return Err(HistoryError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max,
        });
    }
    Ok(file)
}

/// Opens `path` for reading (see [`open`]).
pub(super) fn open_read(path: &Path, max: u64) -> Result<File, HistoryError> {
    open(OpenOptions::new().read(true), path, max)
}

/// The bytes of `path` (see [`open`]), read to at most `max` even if it grows meanwhile.
pub(super) fn read(path: &Path, max: u64) -> Result<Vec<u8>, HistoryError> {
    let file = open_read(path, max)?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > max {
        return Err(HistoryError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// Whether `e` says the file is not there.
pub(super) fn is_missing(e: &HistoryError) -> bool {
    matches!(e, HistoryError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}
