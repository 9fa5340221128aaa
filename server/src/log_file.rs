//! The write-ahead log's I/O over the data file (issue 18): [`FileLog`] reads and writes the
//! log region `[region_offset, region_offset + sectors * 4096)`, [`FileBlocks`] reads slots
//! for the verification of the last record. Both implement the engine's `wal` traits, so
//! `engine::wal::recover` and `audit` run over the real file.
//!
//! Owns no policy: where the region lies is the caller's (the trailer's, once trailer v2
//! lands; see docs/design/18-one-flush-per-batch.md), what to write the engine's `LogRing`'s.
//! Never reads or writes outside the region (asserted), never syncs: the batch's one
//! fdatasync of the data file covers the record.

use std::fs::File;
use std::os::unix::fs::FileExt;

use engine::buddy::Slot;
use engine::wal::{BlockReader, LogDisk, WalIoError, SECTOR_BYTES};

/// The log region of a data file.
pub struct FileLog<'f> {
    file: &'f File,
    region_offset: u64,
    sectors: u64,
}

impl<'f> FileLog<'f> {
    pub fn new(file: &'f File, region_offset: u64, sectors: u64) -> FileLog<'f> {
        assert!(region_offset.is_multiple_of(SECTOR_BYTES) && sectors > 0);
        FileLog {
            file,
            region_offset,
            sectors,
        }
    }

    /// Writes whole sectors from `sector` on (a record, or a wrap record).
    pub fn write_log(&mut self, sector: u64, bytes: &[u8]) -> std::io::Result<()> {
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
        self.file
            .read_exact_at(out, at)
            .map_err(|e| WalIoError(format!("reading the log at byte {at}: {e}")))
    }
}

/// The slots of a data file (for `BlockReader`).
pub struct FileBlocks<'f> {
    file: &'f File,
    capacity_bytes: u64,
}

impl<'f> FileBlocks<'f> {
    pub fn new(file: &'f File, capacity_bytes: u64) -> FileBlocks<'f> {
        FileBlocks {
            file,
            capacity_bytes,
        }
    }
}

impl BlockReader for FileBlocks<'_> {
    fn read_block(&mut self, slot: Slot, out: &mut [u8]) -> Result<(), WalIoError> {
        assert!(out.len() as u64 <= slot.bytes() && slot.end() <= self.capacity_bytes);
        self.file
            .read_exact_at(out, slot.offset)
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
