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
