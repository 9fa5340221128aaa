//! The write-ahead log's I/O over the data file (issue 18): [`FileLog`] reads and writes the
//! log region `[region_offset, region_offset + sectors * 4096)`, [`FileBlocks`] reads slots
//! for the verification of the last record. Both implement the engine's `wal` traits, so
//! `engine::wal::recover` and `audit` run over the real file.
//!
//! Recovery and `check` read through [`DiskReads`]: the data file opened again with
//! `O_DIRECT`, so they see what the disk holds, not the page cache. After a failed fdatasync
//! Linux keeps the unwritten pages in the cache, clean, readable and never persisted: a
//! buffered read would replay a record (and verify blocks) that a later power loss takes,
//! while a client told `500` re-uploads, meets the replayed entry and is told "stored".
//!
//! Owns no policy: where the region lies is the trailer's, what to write the engine's
//! `LogRing`'s. Never reads or writes outside the region (asserted), never syncs: the batch's
//! one fdatasync of the data file covers the record.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;

/// The alignment of `O_DIRECT` reads (offsets, lengths and buffers).
const DIRECT_ALIGN: usize = 4096;

/// The data file opened again for reads that bypass the page cache (see the module doc).
pub struct DiskReads {
    file: File,
    direct: bool,
}

impl DiskReads {
    /// Opens `data` again with `O_DIRECT`. A filesystem that refuses it (tmpfs) gets buffered
    /// reads and one warning line: it has no disk under its page cache to disagree with.
    pub fn open(data: &File) -> std::io::Result<DiskReads> {
        let path = format!("/proc/self/fd/{}", data.as_raw_fd());
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
        {
            Ok(file) => Ok(DiskReads { file, direct: true }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(
                    "the data file's filesystem refuses O_DIRECT: the log's replay reads \
                     through the page cache"
                );
                Ok(DiskReads {
                    file: data.try_clone()?,
                    direct: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    pub fn log(&self, region_offset: u64, sectors: u64) -> FileLog<'_> {
        FileLog {
            direct: self.direct,
            ..FileLog::new(&self.file, region_offset, sectors)
        }
    }

    pub fn blocks(&self, capacity_bytes: u64) -> FileBlocks<'_> {
        FileBlocks {
            direct: self.direct,
            ..FileBlocks::new(&self.file, capacity_bytes)
        }
    }
}

/// Reads `out.len()` bytes at `at`; with `direct`, through an aligned buffer of whole
/// 4 KiB units (`at` must be aligned; slots and log sectors are).
fn read_exact_at(file: &File, direct: bool, out: &mut [u8], at: u64) -> std::io::Result<()> {
    if !direct {
        return file.read_exact_at(out, at);
    }
    assert!(at.is_multiple_of(DIRECT_ALIGN as u64), "{at}");
    let len = out.len().div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
    let mut bounce = vec![0u8; len + DIRECT_ALIGN];
    let start = bounce.as_ptr().align_offset(DIRECT_ALIGN);
    let aligned = &mut bounce[start..start + len];
    file.read_exact_at(aligned, at)?;
    out.copy_from_slice(&aligned[..out.len()]);
    Ok(())
}

use engine::buddy::Slot;
use engine::wal::{BlockReader, LogDisk, WalIoError, SECTOR_BYTES};

/// The log region of a data file.
pub struct FileLog<'f> {
    file: &'f File,
    region_offset: u64,
    sectors: u64,
    /// `file` is open with `O_DIRECT` (see [`DiskReads`]).
    direct: bool,
}

impl<'f> FileLog<'f> {
    pub fn new(file: &'f File, region_offset: u64, sectors: u64) -> FileLog<'f> {
        assert!(region_offset.is_multiple_of(SECTOR_BYTES) && sectors > 0);
        FileLog {
            file,
            region_offset,
            sectors,
            direct: false,
        }
    }

    /// Writes whole sectors from `sector` on (a record, or a wrap record).
    pub fn write_log(&mut self, sector: u64, bytes: &[u8]) -> std::io::Result<()> {
        assert!(!self.direct, "writes go through the page cache");
        self.check_range(sector, bytes.len());
        self.file
            .write_all_at(bytes, self.region_offset + sector * SECTOR_BYTES)
    }

    fn check_range(&self, sector: u64, len_bytes: usize) {
        let len_bytes = len_bytes as u64;
        assert!(len_bytes.is_multiple_of(SECTOR_BYTES), "{len_bytes}");
        assert!(
            sector + len_bytes / SECTOR_BYTES <= self.sectors,
            "{sector} + {len_bytes} bytes past the region of {} sectors",
            self.sectors
        );
    }
}

impl LogDisk for FileLog<'_> {
    fn log_sectors(&self) -> u64 {
        self.sectors
    }

    fn read_log(&mut self, sector: u64, out: &mut [u8]) -> Result<(), WalIoError> {
        self.check_range(sector, out.len());
        let at = self.region_offset + sector * SECTOR_BYTES;
        read_exact_at(self.file, self.direct, out, at)
            .map_err(|e| WalIoError(format!("reading the log at byte {at}: {e}")))
    }
}

/// The slots of a data file (for `BlockReader`).
pub struct FileBlocks<'f> {
    file: &'f File,
    capacity_bytes: u64,
    /// `file` is open with `O_DIRECT` (see [`DiskReads`]).
    direct: bool,
}

impl<'f> FileBlocks<'f> {
    pub fn new(file: &'f File, capacity_bytes: u64) -> FileBlocks<'f> {
        FileBlocks {
            file,
            capacity_bytes,
            direct: false,
        }
    }
}

impl BlockReader for FileBlocks<'_> {
    fn read_block(&mut self, slot: Slot, out: &mut [u8]) -> Result<(), WalIoError> {
        assert!(out.len() as u64 <= slot.bytes() && slot.end() <= self.capacity_bytes);
        read_exact_at(self.file, self.direct, out, slot.offset)
            .map_err(|e| WalIoError(format!("reading the block at byte {}: {e}", slot.offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::meta::{Header, LogState, MetaRead, MetaStore, MetaTxn, FORMAT_VERSION};
    use engine::wal::{audit, encode_batch, recover, LogOp, LogPos, RunStamp};
    use engine::{BlockHash, SizeClass};

    const CAPACITY_BYTES: u64 = 1 << 20;
    const LOG_SECTORS: u64 = 16;

    /// `DiskReads` reads what was written (flushed first by the kernel), whatever the length,
    /// through its aligned buffer; the filesystem under the tests accepts O_DIRECT or falls
    /// back to buffered reads.
    #[test]
    fn disk_reads_see_the_written_bytes_at_any_length() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("data"))
            .unwrap();
        file.set_len(CAPACITY_BYTES + LOG_SECTORS * SECTOR_BYTES)
            .unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        file.write_all_at(&bytes, 8192).unwrap();
        file.write_all_at(&[9u8; 4096], CAPACITY_BYTES + 4096)
            .unwrap();
        let reads = DiskReads::open(&file).unwrap();
        let mut blocks = reads.blocks(CAPACITY_BYTES);
        for len in [1usize, 100, 4096, 4097, 10_000] {
            let mut out = vec![0u8; len];
            let slot = Slot {
                offset: 8192,
                class: SizeClass::new(2).unwrap(),
            };
            blocks.read_block(slot, &mut out).unwrap();
            assert_eq!(out, bytes[..len], "{len}");
        }
        let mut sector = vec![0u8; 4096];
        reads
            .log(CAPACITY_BYTES, LOG_SECTORS)
            .read_log(1, &mut sector)
            .unwrap();
        assert_eq!(sector, vec![9u8; 4096]);
    }

    /// Records written through `FileLog` into a real file replay into libmdbx; a block whose
    /// bytes are not in the file is dropped from the last record.
    #[test]
    fn records_written_to_the_file_replay_into_libmdbx() {
        let dir = tempfile::tempdir().unwrap();
        let file = tempfile::tempfile().unwrap();
        file.set_len(CAPACITY_BYTES + LOG_SECTORS * SECTOR_BYTES)
            .unwrap();
        let stamp = RunStamp {
            run_id: 3,
            node_id: 4,
        };
        let mut log = FileLog::new(&file, CAPACITY_BYTES, LOG_SECTORS);
        let mut hashes = Vec::new();
        for seq in 1..=3u64 {
            let bytes = vec![seq as u8; 100];
            let slot = Slot {
                offset: seq * 4096,
                class: SizeClass::MIN,
            };
            if seq < 3 {
                file.write_all_at(&bytes, slot.offset).unwrap(); // The last block never lands.
            }
            let op = LogOp::Occupy {
                hash: BlockHash::of(&bytes),
                slot,
                len: 100,
                crc32c: crc32c::crc32c(&bytes),
            };
            hashes.push(BlockHash::of(&bytes));
            let mut record = Vec::new();
            encode_batch(stamp, seq, seq, &[op], &mut record);
            log.write_log(seq - 1, &record).unwrap();
        }
        let mut store = crate::mdbx::MdbxStore::open(dir.path(), 1 << 26).unwrap();
        let mut txn = store.begin().unwrap();
        let header = Header {
            format_version: FORMAT_VERSION,
            capacity_bytes: CAPACITY_BYTES,
            node_id: stamp.node_id,
            commit_seq: 0,
        };
        txn.set_header(&header).unwrap();
        let start = LogPos { seq: 1, sector: 0 };
        txn.set_log_state(&LogState {
            log_sectors: LOG_SECTORS,
            next: start,
            run_id: stamp.run_id,
        })
        .unwrap();
        txn.commit(true).unwrap();
        let mut blocks = FileBlocks::new(&file, CAPACITY_BYTES);
        let report = audit(&store.read().unwrap(), &mut log, &mut blocks).unwrap();
        assert_eq!((report.pending_records, report.unflushed_occupies), (3, 1));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let out = recover(
            &mut store,
            &mut log,
            &mut blocks,
            9,
            engine::bugs::Bugs::NONE,
        )
        .unwrap();
        assert_eq!((out.records, out.occupies_dropped), (3, 1));
        let read = store.read().unwrap();
        assert!(read.get(&hashes[0]).unwrap().is_some());
        assert!(read.get(&hashes[1]).unwrap().is_some());
        assert_eq!(
            read.get(&hashes[2]).unwrap(),
            None,
            "its bytes never landed"
        );
        assert_eq!(
            read.log_state().unwrap().unwrap().next,
            LogPos { seq: 4, sector: 3 }
        );
    }
}
