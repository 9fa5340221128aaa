//! Walking the log: the [`LogDisk`] and [`BlockReader`] traits the drivers implement, and
//! [`Scanner`], which yields the valid records from a position in order and says why it
//! stopped. [`recover`](super::recover) and [`audit`](super::audit) share it.
//!
//! A record at the scan position is *valid* iff it decodes ([`decode_record`]: magic,
//! version, checksums, ops), carries the expected run and node, has exactly the expected
//! sequence number and fits the region. A wrap record moves the position to sector 0 (same
//! sequence number). The first invalid record ends the walk; nothing after it is read.
//!
//! The scanner never writes, never panics on any bytes on disk and walks at most one region's
//! worth of sectors (a loop of wrap records cannot keep it going; a live log spans at most
//! the region less one sector).

use crate::buddy::Slot;

use super::record::{
    decode_header, decode_record, decode_torn_prefix, Record, RecordError, RecordKind, RunStamp,
};
use super::{LogPos, SECTOR_BYTES};

/// An I/O error from a driver's disk (the engine only carries its text).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("log I/O error: {0}")]
pub struct WalIoError(pub String);

/// Read access to the log region (the server: the data file past the slots; the simulator:
/// its fake disk). Sectors are numbered from the start of the region.
pub trait LogDisk {
    fn log_sectors(&self) -> u64;
    /// Fills `out` (a whole number of sectors) from `sector` on; never past the region.
    fn read_log(&mut self, sector: u64, out: &mut [u8]) -> Result<(), WalIoError>;
}

/// Read access to the slots, to verify the blocks of the last record.
pub trait BlockReader {
    /// Fills `out` with the first `out.len()` bytes of `slot`.
    fn read_block(&mut self, slot: Slot, out: &mut [u8]) -> Result<(), WalIoError>;
}

/// One valid record and where it was.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ScannedRecord {
    pub at: LogPos,
    pub record: Record,
}

/// Why a walk stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScanEnd {
    /// Still walking.
    Open,
    /// The bytes at the position are not a valid record (torn, zero, garbage).
    Invalid { at: LogPos, why: RecordError },
    /// A well-formed record of another run or node (left from before the last recovery).
    OtherRun { at: LogPos },
    /// A well-formed record of this run with another sequence number (an older lap).
    Stale { at: LogPos, found_seq: u64 },
    /// The record would run past the end of the region, or a wrap sat at sector 0.
    OutOfRegion { at: LogPos },
    /// A whole region's worth of sectors was walked.
    ReadLimit { at: LogPos },
}

impl ScanEnd {
    /// Where the walk stopped: the position after the last valid record.
    pub fn at(&self) -> Option<LogPos> {
        match *self {
            ScanEnd::Open => None,
            ScanEnd::Invalid { at, .. }
            | ScanEnd::OtherRun { at }
            | ScanEnd::Stale { at, .. }
            | ScanEnd::OutOfRegion { at }
            | ScanEnd::ReadLimit { at } => Some(at),
        }
    }
}

/// What the walk does with a record whose header checks out but whose body checksum fails.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TornRecords {
    /// It ends the walk (always, but under the known bug).
    End,
    /// The known bug `replay_torn_record`: the ops that still decode are yielded.
    Replay,
}

pub struct Scanner<'d, D: LogDisk> {
    disk: &'d mut D,
    stamp: RunStamp,
    torn: TornRecords,
    pos: LogPos,
    sectors_read: u64,
    end: ScanEnd,
    buf: Vec<u8>,
}

impl<'d, D: LogDisk> Scanner<'d, D> {
    /// Walks records of `stamp` from `start` on.
    pub fn new(disk: &'d mut D, stamp: RunStamp, start: LogPos) -> Scanner<'d, D> {
        assert!(start.sector < disk.log_sectors(), "{start:?}");
        Scanner {
            disk,
            stamp,
            torn: TornRecords::End,
            pos: start,
            sectors_read: 0,
            end: ScanEnd::Open,
            buf: Vec::new(),
        }
    }

    /// Sets what a torn record does to the walk (only the known bug replays one).
    pub fn with_torn_records(mut self, torn: TornRecords) -> Scanner<'d, D> {
        self.torn = torn;
        self
    }

    /// The position after the last record yielded (where the next one would go).
    pub fn pos(&self) -> LogPos {
        self.pos
    }

    pub fn end(&self) -> ScanEnd {
        self.end
    }

    /// The next valid record, or `None` once the walk has ended (see [`Scanner::end`]).
    pub fn next_record(&mut self) -> Result<Option<ScannedRecord>, WalIoError> {
        while self.end == ScanEnd::Open {
            match self.step()? {
                Step::Record(r) => return Ok(Some(r)),
                Step::Wrapped => continue,
                Step::End(end) => self.end = end,
            }
        }
        Ok(None)
    }

    fn step(&mut self) -> Result<Step, WalIoError> {
        let region = self.disk.log_sectors();
        let at = self.pos;
        if self.sectors_read >= region {
            return Ok(Step::End(ScanEnd::ReadLimit { at }));
        }
        self.read(at.sector, 1)?;
        let header = match decode_header(&self.buf) {
            Ok(h) => h,
            Err(why) => return Ok(Step::End(ScanEnd::Invalid { at, why })),
        };
        if header.stamp != self.stamp {
            return Ok(Step::End(ScanEnd::OtherRun { at }));
        }
        if header.log_seq != at.seq {
            let found_seq = header.log_seq;
            return Ok(Step::End(ScanEnd::Stale { at, found_seq }));
        }
        let sectors = header.sectors();
        if at.sector + sectors > region {
            return Ok(Step::End(ScanEnd::OutOfRegion { at }));
        }
        if header.kind == RecordKind::Wrap {
            if at.sector == 0 {
                return Ok(Step::End(ScanEnd::OutOfRegion { at }));
            }
            self.sectors_read += region - at.sector;
            self.pos.sector = 0;
            return Ok(Step::Wrapped);
        }
        if sectors > 1 {
            self.read(at.sector, sectors)?;
        }
        let record = match decode_record(&self.buf) {
            Ok(r) => r,
            Err(RecordError::BodyChecksum) if self.torn == TornRecords::Replay => {
                match decode_torn_prefix(&self.buf) {
                    Some(r) => r,
                    None => {
                        let why = RecordError::BodyChecksum;
                        return Ok(Step::End(ScanEnd::Invalid { at, why }));
                    }
                }
            }
            Err(why) => return Ok(Step::End(ScanEnd::Invalid { at, why })),
        };
        debug_assert_eq!(record.header, header);
        self.sectors_read += sectors;
        self.pos = LogPos {
            seq: at.seq + 1,
            sector: (at.sector + sectors) % region,
        };
        Ok(Step::Record(ScannedRecord { at, record }))
    }

    fn read(&mut self, sector: u64, sectors: u64) -> Result<(), WalIoError> {
        assert!(sector + sectors <= self.disk.log_sectors());
        self.buf.clear();
        self.buf.resize((sectors * SECTOR_BYTES) as usize, 0);
        self.disk.read_log(sector, &mut self.buf)
    }
}

enum Step {
    Record(ScannedRecord),
    Wrapped,
    End(ScanEnd),
}

/// Whether every occupy of `record` describes bytes that are on disk: SHA-256 of its `len`
/// bytes equals its hash. One flag per op (`true` for releases).
pub fn verify_blocks<B: BlockReader>(
    blocks: &mut B,
    record: &Record,
    buf: &mut Vec<u8>,
) -> Result<Vec<bool>, WalIoError> {
    let mut ok = Vec::with_capacity(record.ops.len());
    for op in &record.ops {
        ok.push(match *op {
            super::LogOp::Occupy {
                hash, slot, len, ..
            } => {
                buf.clear();
                buf.resize(len as usize, 0);
                blocks.read_block(slot, buf)?;
                crate::hash::BlockHash::of(buf) == hash
            }
            super::LogOp::Release { .. } => true,
        });
    }
    assert_eq!(ok.len(), record.ops.len());
    Ok(ok)
}
