//! [`SyntheticLog`]: a log region whose records are made up when read, to time recovery of
//! large logs (100,000 records) without holding them in memory or on disk.
//!
//! Record `seq` (from 1) sits at sector `seq - 1` and holds `ops_per_record` occupies; op `k`
//! of record `seq` stores the 8-byte block "its slot offset, little-endian" in the 4 KiB slot
//! number `(seq - 1) * ops_per_record + k`. Sectors past the last record read as zeros (the
//! end of the log). [`SyntheticBlocks`] reads those blocks back, so the last record verifies.
//! Never writes, reads no clock.

use crate::buddy::Slot;
use crate::hash::BlockHash;
use crate::size_class::SizeClass;
use crate::wal::{
    encode_batch, BlockReader, LogDisk, LogOp, RunStamp, WalIoError, OCCUPY_OP_BYTES,
    RECORD_HEADER_BYTES, SECTOR_BYTES,
};

pub struct SyntheticLog {
    pub stamp: RunStamp,
    pub records: u64,
    pub ops_per_record: u32,
    buf: Vec<u8>,
}

/// The length of every synthetic block.
const BLOCK_LEN_BYTES: u32 = 8;
/// Occupies that fit a one-sector record.
pub const OPS_PER_SECTOR_MAX: u32 =
    ((SECTOR_BYTES as usize - RECORD_HEADER_BYTES) / OCCUPY_OP_BYTES) as u32;

impl SyntheticLog {
    pub fn new(stamp: RunStamp, records: u64, ops_per_record: u32) -> SyntheticLog {
        assert!(records >= 1 && (1..=OPS_PER_SECTOR_MAX).contains(&ops_per_record));
        SyntheticLog {
            stamp,
            records,
            ops_per_record,
            buf: Vec::new(),
        }
    }

    /// The capacity every synthetic slot fits in (a multiple of the largest slot).
    pub fn capacity_bytes(&self) -> u64 {
        let bytes = self.records * u64::from(self.ops_per_record) * SECTOR_BYTES;
        bytes.next_multiple_of(crate::size_class::SLOT_MAX_BYTES)
    }

    fn ops(&self, seq: u64) -> Vec<LogOp> {
        (0..u64::from(self.ops_per_record))
            .map(|k| {
                let offset = ((seq - 1) * u64::from(self.ops_per_record) + k) * 4096;
                let bytes = offset.to_le_bytes();
                LogOp::Occupy {
                    hash: BlockHash::of(&bytes),
                    slot: Slot {
                        offset,
                        class: SizeClass::MIN,
                    },
                    len: BLOCK_LEN_BYTES,
                    crc32c: crc32c::crc32c(&bytes),
                }
            })
            .collect()
    }
}

impl LogDisk for SyntheticLog {
    fn log_sectors(&self) -> u64 {
        self.records + 1
    }

    fn read_log(&mut self, sector: u64, out: &mut [u8]) -> Result<(), WalIoError> {
        assert_eq!(out.len() as u64 % SECTOR_BYTES, 0);
        out.fill(0);
        let mut at = 0usize;
        let mut s = sector;
        while at < out.len() && s < self.records {
            self.buf.clear();
            let ops = self.ops(s + 1);
            encode_batch(self.stamp, s + 1, s + 1, &ops, &mut self.buf);
            assert_eq!(self.buf.len() as u64, SECTOR_BYTES, "one sector per record");
            out[at..at + self.buf.len()].copy_from_slice(&self.buf);
            at += self.buf.len();
            s += 1;
        }
        Ok(())
    }
}

/// The blocks a [`SyntheticLog`]'s records describe.
pub struct SyntheticBlocks;

impl BlockReader for SyntheticBlocks {
    fn read_block(&mut self, slot: Slot, out: &mut [u8]) -> Result<(), WalIoError> {
        let bytes = slot.offset.to_le_bytes();
        let n = out.len().min(bytes.len());
        out[..n].copy_from_slice(&bytes[..n]);
        Ok(())
    }
}
