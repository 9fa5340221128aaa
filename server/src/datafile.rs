//! The data file: one preallocated file holding every slot.
//!
//! Layout ([`Layout`]): slots in `[0, capacity)`, the write-ahead log's region in
//! `[capacity, capacity + log)`, then the 4 KiB identity trailer ([`crate::trailer`]).
//! Created under a temporary name and renamed into place when complete; grown (or upgraded
//! from format 1, which had no log region) by writing the new trailer at the new end before
//! the index records the new capacity (or its log); the region is preallocated with the rest;
//! preallocated with `fallocate` so writes never need new extents on the hot path; never
//! shrunk below the index's capacity. Workers read and write slots through io_uring; the
//! controller makes them durable with `fdatasync` once per batch. This module does the file
//! I/O only: what a file's state means is [`crate::identity`]'s decision.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::identity::{DataFile, Tail};
use crate::trailer::{Layout, Trailer, TRAILER_BYTES};

pub const DATA_FILE_NAME: &str = "blocks.data";

/// Whether the data file exists (a dangling or looping symlink is an error naming it).
pub fn exists(dir: &Path) -> Result<bool> {
    let path = dir.join(DATA_FILE_NAME);
    match std::fs::metadata(&path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("inspecting data file {}", path.display())),
    }
}

/// What the data file says about itself, for [`crate::identity::plan`]. `index_end` is where
/// the index says the trailer lies (its capacity plus its log region), where a growth that did
/// not finish left the last trailer.
pub fn inspect(dir: &Path, index_end: Option<u64>) -> Result<DataFile> {
    let path = dir.join(DATA_FILE_NAME);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DataFile::Absent),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let len_bytes = file.metadata()?.len();
    let read_tail = |at: u64| -> Result<Tail> {
        let mut bytes = vec![0u8; TRAILER_BYTES as usize];
        file.read_exact_at(&mut bytes, at)
            .with_context(|| format!("reading {} at {at}", path.display()))?;
        Ok(match Trailer::decode(&bytes) {
            Ok(t) => Tail::Trailer(t),
            Err(_) if bytes.iter().all(|&b| b == 0) => Tail::Zeros,
            Err(e) => Tail::Invalid(e),
        })
    };
    let tail = match len_bytes.checked_sub(TRAILER_BYTES) {
        Some(at) => Some(read_tail(at)?),
        None => None,
    };
    let at_index_end = match (tail, index_end) {
        (Some(Tail::Zeros), Some(end)) if end + TRAILER_BYTES < len_bytes => Some(read_tail(end)?),
        _ => None,
    };
    Ok(DataFile::Present {
        len_bytes,
        tail,
        at_index_end,
    })
}

/// Opens the existing data file for the workers and the controller.
pub fn open(dir: &Path) -> Result<File> {
    let path = dir.join(DATA_FILE_NAME);
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening data file {}", path.display()))
}

/// Creates the data file of a new store: under a temporary name, preallocated, its trailer
/// written and synced, then renamed into place and the directory synced, so that
/// `blocks.data` either does not exist or is complete.
pub fn create(dir: &Path, trailer: &Trailer, log_bytes: u64) -> Result<File> {
    let path = dir.join(DATA_FILE_NAME);
    let temporary = dir.join(format!("{DATA_FILE_NAME}.new"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .with_context(|| format!("creating data file {}", temporary.display()))?;
    place_trailer(&file, trailer, log_bytes)
        .and_then(|()| zero_log_region(&file, &Layout::new(trailer.capacity_bytes, log_bytes)))
        .with_context(|| format!("preparing data file {}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("renaming {} into place", temporary.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(file)
}

/// Makes `file` exactly `Layout { trailer.capacity_bytes, log_bytes }.len_bytes()` long with
/// `trailer` at its end, durably: preallocates what is missing (keeping the length; the log
/// region included), writes the trailer (which sets the length when the file grows), syncs,
/// then cuts any bytes past it (a growth that stopped half-way) and syncs again. A crash at
/// any point leaves either the previous trailer where the index says, or the new one: see
/// [`crate::identity::plan`]. Bytes left in the new log region (an old trailer, old slots)
/// are not records of the running log (magic, run id), so they are never replayed.
pub fn place_trailer(file: &File, trailer: &Trailer, log_bytes: u64) -> Result<()> {
    let layout = Layout::new(trailer.capacity_bytes, log_bytes);
    let len_bytes = layout.len_bytes();
    let old_len_bytes = file.metadata()?.len();
    if old_len_bytes < len_bytes {
        // SAFETY: plain syscall on an open descriptor we own.
        let rc = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                old_len_bytes as i64,
                (len_bytes - old_len_bytes) as i64,
            )
        };
        let err = std::io::Error::last_os_error();
        if rc != 0 && err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            bail!("preallocating {len_bytes} bytes: {err} (is the disk full?)");
        }
    }
    file.write_all_at(&trailer.encode(), layout.trailer_offset())
        .context("writing the identity trailer")?;
    fdatasync(file).context("syncing the identity trailer")?;
    if old_len_bytes > len_bytes {
        file.set_len(len_bytes)?;
        fdatasync(file).context("syncing the data file's length")?;
    }
    assert_eq!(file.metadata()?.len(), len_bytes);
    Ok(())
}

/// Writes zeros over the log region of `layout` and syncs them. A preallocated range is
/// "unwritten" to the filesystem, and the first write to each of its blocks makes the next
/// fdatasync write the file's extent tree too (measured: a 4 KiB PUT's flush took 540 us on a
/// fresh file, 315 us on a written one); every batch's record goes into the log, so a region
/// written once costs nothing more at each flush. Zeros are never a valid record.
///
/// Call it only where the region is new (create, upgrade) or moved after the log was replayed
/// (growth), after `place_trailer` (so a crash while zeroing leaves the new trailer in place
/// and garbage in the region): never over a region that may hold records still to replay.
pub fn zero_log_region(file: &File, layout: &Layout) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK as usize];
    let (start, end) = (layout.capacity_bytes, layout.trailer_offset());
    let mut at = start;
    while at < end {
        let n = CHUNK.min(end - at);
        file.write_all_at(&zeros[..n as usize], at)
            .context("writing zeros over the log region")?;
        at += n;
    }
    fdatasync(file).context("syncing the log region's zeros")
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

    const LOG_BYTES: u64 = 16 * 4096;

    #[test]
    fn the_sync_before_open_needs_no_data_file_and_syncs_one() {
        let dir = tempfile::tempdir().unwrap();
        sync_before_open(dir.path()).expect("a fresh directory has no data file yet");
        let trailer = Trailer {
            format_version: crate::trailer::TRAILER_VERSION,
            capacity_bytes: 512 * 1024,
            node_id: 1,
        };
        let f = create(dir.path(), &trailer, LOG_BYTES).unwrap();
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

    #[test]
    fn a_growth_whose_new_trailer_was_lost_still_opens_at_the_old_size() {
        use crate::identity::{plan, IndexFacts, Plan};
        use engine::meta::{Header, LogState, FORMAT_VERSION};
        use engine::wal::LogPos;
        let dir = tempfile::tempdir().unwrap();
        let small = Trailer {
            format_version: crate::trailer::TRAILER_VERSION,
            capacity_bytes: 512 * 1024,
            node_id: 5,
        };
        let file = create(dir.path(), &small, LOG_BYTES).unwrap();
        assert!(!dir.path().join(format!("{DATA_FILE_NAME}.new")).exists());
        let header = Header {
            format_version: FORMAT_VERSION,
            capacity_bytes: small.capacity_bytes,
            node_id: 5,
            commit_seq: 1,
        };
        let log = LogState {
            log_sectors: LOG_BYTES / 4096,
            next: LogPos { seq: 1, sector: 0 },
            run_id: 9,
        };
        let facts = IndexFacts {
            header: Some(header),
            log: Some(log),
            has_blocks: true,
            has_reservations: false,
        };
        // The index still records the small capacity throughout.
        let opens_with = |trailer: Trailer| {
            let data = inspect(dir.path(), Some(small.capacity_bytes + LOG_BYTES)).unwrap();
            assert_eq!(
                plan(dir.path(), &facts, &data),
                Ok(Plan::Open {
                    header,
                    trailer,
                    log
                })
            );
        };
        let assert_len = |t: &Trailer| {
            assert_eq!(
                file.metadata().unwrap().len(),
                Layout::new(t.capacity_bytes, LOG_BYTES).len_bytes()
            );
        };
        opens_with(small);
        let big = Trailer {
            capacity_bytes: 4 * small.capacity_bytes,
            ..small
        };
        place_trailer(&file, &big, LOG_BYTES).unwrap();
        assert_len(&big);
        // Grown before the index recorded it: opens, with the grown trailer.
        opens_with(big);
        // A power loss kept the new length but not the new trailer: the old one still holds.
        let big_end = Layout::new(big.capacity_bytes, LOG_BYTES).trailer_offset();
        file.write_all_at(&[0u8; TRAILER_BYTES as usize], big_end)
            .unwrap();
        opens_with(small);
        // Finishing the growth at the old size cuts the file back to that size.
        place_trailer(&file, &small, LOG_BYTES).unwrap();
        assert_len(&small);
        opens_with(small);
    }
}
