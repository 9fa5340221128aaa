//! The data file: one preallocated file holding every slot.
//!
//! Created (or grown) with `fallocate` to the configured capacity so writes never need new
//! extents on the hot path; never shrunk. Workers read and write it through io_uring; the
//! controller makes it durable with `fdatasync` once per batch.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const DATA_FILE_NAME: &str = "blocks.data";

/// Opens (creating if needed) the data file and makes it at least `capacity_bytes` long.
pub fn open(dir: &Path, capacity_bytes: u64) -> Result<File> {
    let path = dir.join(DATA_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening data file {}", path.display()))?;
    let len = file.metadata()?.len();
    if len < capacity_bytes {
        // SAFETY: plain syscall on an open descriptor we own.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, capacity_bytes as i64) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
                file.set_len(capacity_bytes)?;
            } else {
                bail!(
                    "preallocating {} bytes for {}: {err}",
                    capacity_bytes,
                    path.display()
                );
            }
        }
        fdatasync(&file).context("syncing the grown data file")?;
    }
    Ok(file)
}

/// Makes the data file's bytes durable before the index is opened, if the file exists.
///
/// Opening the index (libmdbx) makes its last commit durable, and after a process crash (or a
/// failed background sync of the index, full durability) that commit may point at blocks the
/// last run wrote but never synced: they are still in the page cache, and this makes them
/// durable first, so a later power loss cannot leave the durable index over lost bytes.
pub fn sync_before_open(dir: &Path) -> Result<()> {
    let path = dir.join(DATA_FILE_NAME);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    fdatasync(&file).with_context(|| {
        format!(
            "syncing {} before opening the index: the disk reported a write error, so blocks \
             the last run wrote may be lost; fix the disk, then run `buddy-blocks check \
             --repair` on this directory",
            path.display()
        )
    })
}

/// Starts writing back every dirty page of `file` without waiting (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE` only). Durability still needs `fdatasync`, which also reports any
/// write error this writeback meets. Errors here are ignored for that reason.
pub fn start_writeback(file: &File) {
    // SAFETY: plain syscall on an open descriptor we own; offset 0, length 0 = to the end.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

pub fn fdatasync(file: &File) -> std::io::Result<()> {
    // SAFETY: plain syscall on an open descriptor we own.
    let rc = unsafe { libc::fdatasync(file.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_before_open_needs_no_data_file_and_syncs_one() {
        let dir = tempfile::tempdir().unwrap();
        sync_before_open(dir.path()).expect("a fresh directory has no data file yet");
        let f = open(dir.path(), 512 * 1024).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"block", 0).unwrap();
        sync_before_open(dir.path()).expect("an existing data file is synced");
        // A data file that cannot be opened is an error naming it, not a silent skip.
        let unreadable = dir.path().join("sub");
        std::fs::create_dir_all(&unreadable).unwrap();
        std::os::unix::fs::symlink(unreadable.join("loop"), unreadable.join(DATA_FILE_NAME))
            .unwrap();
        std::os::unix::fs::symlink(unreadable.join(DATA_FILE_NAME), unreadable.join("loop"))
            .unwrap();
        let err = sync_before_open(&unreadable).unwrap_err();
        assert!(format!("{err:#}").contains(DATA_FILE_NAME), "{err:#}");
    }
}
