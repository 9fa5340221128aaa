//! The write-ahead log (issue 18): one flush per durable batch.
//!
//! In durability `full`, a batch's index changes are written as one checksummed,
//! sequence-numbered record into a region of the data file, so the one fdatasync that makes
//! the batch's blocks durable makes its record durable too; libmdbx is committed without syncs
//! and made durable later by a *checkpoint*, after which the log space it covers is reused.
//!
//! What lives here (all pure: the disk is reached only through [`LogDisk`] and
//! [`BlockReader`], whose implementations live in the drivers):
//! - `record.rs`: the on-disk record format (log format version 1), its encoder and a
//!   validating decoder that never panics (fuzz target `log_record_decode`);
//! - `ring.rs`: [`LogRing`], the space accounting of the region (where the next record goes,
//!   wrap-around, reuse only after a checkpoint has *returned*);
//! - `scan.rs`: [`Scanner`], which walks the valid records from a position, and the
//!   [`LogDisk`]/[`BlockReader`] traits;
//! - `recover.rs`: [`recover`], replay at start (in order, idempotent, a torn record ends it);
//! - `audit.rs`: [`audit`], the same walk without applying, for `buddy-blocks check`.
//!
//! Invariants the rest of the system relies on:
//! - a record starts on a sector boundary and is never rewritten while live (between the
//!   durable index's replay start and the newest record);
//! - at most one record is unflushed at any time: record `k + 1` is written only after
//!   record `k`'s flush returned. So when replay meets an invalid record, nothing after it was
//!   ever acknowledged, and only the *last* valid record may describe blocks never flushed;
//! - sequence numbers grow by one per batch record; a wrap record carries the sequence number
//!   of the record it announces and sends the reader to sector 0.
//!
//! How a user drives it (the order matters; each step asserts the one before):
//! - a batch: [`record_bytes_max`] for the space check, [`encode_batch`], [`LogRing::place`]
//!   (`LogFull`: the writes wait, reads go on, a checkpoint is due), write the wrap record if
//!   the placement has one ([`encode_wrap`]) and the record, [`LogRing::appended`], flush the
//!   data file (the one flush), commit the index non-durably with the `LogState` at
//!   [`LogRing::next`], then [`LogRing::commit_done`];
//! - a checkpoint: [`LogRing::begin_checkpoint`] (returns the target), the driver makes the
//!   index durable, then [`LogRing::checkpoint_returned`] (frees the space) or
//!   [`LogRing::checkpoint_failed`];
//! - at start, before the controller opens: make the data file durable, then [`recover`],
//!   and build the ring with `LogRing::new(log_sectors, recovered.next)`.
//!
//! This module never does I/O itself, never reads a clock and never draws a random number
//! (the run id is an argument).

mod audit;
mod record;
mod recover;
mod ring;
mod scan;
#[cfg(test)]
mod tests;

pub use audit::{audit, AuditProblem, AuditReport};
pub use record::{
    decode_header, decode_record, decode_torn_prefix, encode_batch, encode_wrap, record_bytes_max,
    record_sectors, LogOp, Record, RecordError, RecordHeader, RecordKind, RunStamp,
    LOG_FORMAT_VERSION, OCCUPY_OP_BYTES, RECORD_HEADER_BYTES, RECORD_MAGIC, RELEASE_OP_BYTES,
};
pub use recover::{recover, RecoverError, Recovered, RECOVER_OPS_PER_TXN, RECOVER_RECORDS_PER_TXN};
pub use ring::{CheckpointState, LogFull, LogRing, Placement};
pub use scan::{BlockReader, LogDisk, ScanEnd, ScannedRecord, Scanner, TornRecords, WalIoError};

/// The log's unit of space: every record starts on a sector boundary and fills whole sectors.
pub const SECTOR_BYTES: u64 = 4096;
/// The smallest log region (so that a batch record of [`RECORD_OPS_MAX`] ops always fits in a
/// quarter of it, with room to wrap).
pub const LOG_SECTORS_MIN: u64 = 16;
/// The most ops one record holds (a batch with more is split by the controller).
pub const RECORD_OPS_MAX: u32 = 256;

const _: () = assert!(SECTOR_BYTES.is_power_of_two());
const _: () = assert!(
    (RECORD_HEADER_BYTES as u64 + RECORD_OPS_MAX as u64 * OCCUPY_OP_BYTES as u64)
        <= LOG_SECTORS_MIN / 4 * SECTOR_BYTES
);

/// A place in the log: the sequence number of the record that goes (or went) there, and its
/// first sector (`0..log_sectors`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LogPos {
    pub seq: u64,
    pub sector: u64,
}

/// How many whole sectors `len_bytes` of record need.
pub fn sectors_for(len_bytes: u64) -> u64 {
    len_bytes.div_ceil(SECTOR_BYTES)
}
