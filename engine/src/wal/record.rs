//! The log record format (log format version 1): encoder and validating decoder.
//!
//! A record starts on a sector boundary and is padded with zeros to whole sectors (the padding
//! is not covered by any checksum and never read). Header, 64 bytes, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `BBLOGREC` |
//! | 8..10 | log format version (1) |
//! | 10..12 | kind: 1 = batch, 2 = wrap (the next record is at sector 0) |
//! | 12..16 | record length in bytes, header included (a wrap: 64) |
//! | 16..24 | log sequence number (a wrap has the number of the record it announces) |
//! | 24..32 | the batch's `commit_seq` (0 in a wrap) |
//! | 32..40 | run id (drawn at each start, kept in the index's `LogState`) |
//! | 40..48 | node id (the store's) |
//! | 48..52 | op count (0 in a wrap) |
//! | 52..56 | zero |
//! | 56..60 | CRC32C of the body (bytes 64..len) |
//! | 60..64 | CRC32C of bytes 0..60 |
//!
//! Body: the ops in batch order. `Occupy` (tag 1): hash 32, slot offset 8, class 1, length 4,
//! CRC32C 4 = 50 bytes. `Release` (tag 2): hash 32, slot offset 8, class 1 = 42 bytes.
//!
//! The decoder never panics on any input and accepts only canonical bytes: whatever decodes
//! re-encodes to exactly the bytes it came from (fuzzed by `log_record_decode`).

use crate::buddy::Slot;
use crate::hash::BlockHash;
use crate::meta::IndexEntry;
use crate::size_class::SizeClass;

use super::{sectors_for, RECORD_OPS_MAX, SECTOR_BYTES};

pub const RECORD_MAGIC: [u8; 8] = *b"BBLOGREC";
pub const LOG_FORMAT_VERSION: u16 = 1;
pub const RECORD_HEADER_BYTES: usize = 64;
pub const OCCUPY_OP_BYTES: usize = 50;
pub const RELEASE_OP_BYTES: usize = 42;
const TAG_OCCUPY: u8 = 1;
const TAG_RELEASE: u8 = 2;

/// One index change a client was promised: a stored block or a deleted one. Reservations and
/// duplicates are never logged (every reservation returns to free at start anyway).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogOp {
    Occupy {
        hash: BlockHash,
        slot: Slot,
        len: u32,
        crc32c: u32,
    },
    /// Replay deletes by hash; the slot is for `check` and sanity.
    Release { hash: BlockHash, slot: Slot },
}

impl LogOp {
    pub fn hash(&self) -> BlockHash {
        match *self {
            LogOp::Occupy { hash, .. } | LogOp::Release { hash, .. } => hash,
        }
    }

    pub fn slot(&self) -> Slot {
        match *self {
            LogOp::Occupy { slot, .. } | LogOp::Release { slot, .. } => slot,
        }
    }

    /// The index entry an occupy stores, written by batch `commit_seq`; `None` for a release.
    pub fn index_entry(&self, commit_seq: u64) -> Option<IndexEntry> {
        match *self {
            LogOp::Occupy {
                slot, len, crc32c, ..
            } => Some(IndexEntry {
                slot,
                len,
                crc32c,
                flags: 0,
                commit_seq,
            }),
            LogOp::Release { .. } => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecordKind {
    Batch,
    /// The record this one announces starts at sector 0.
    Wrap,
}

/// Which store and which run wrote a record: a record of another run or node is stale.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RunStamp {
    pub run_id: u64,
    pub node_id: u64,
}

/// A decoded, checked header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecordHeader {
    pub kind: RecordKind,
    /// Header included, padding excluded.
    pub len_bytes: u32,
    pub log_seq: u64,
    pub commit_seq: u64,
    pub stamp: RunStamp,
    pub op_count: u32,
    pub body_crc32c: u32,
}

impl RecordHeader {
    /// Whole sectors the record occupies.
    pub fn sectors(&self) -> u64 {
        sectors_for(u64::from(self.len_bytes))
    }
}

/// A whole decoded record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    pub header: RecordHeader,
    pub ops: Vec<LogOp>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record shorter than its header or its stated length")]
    Short,
    #[error("record magic")]
    Magic,
    #[error("log format version {0} (this build reads {LOG_FORMAT_VERSION})")]
    Version(u16),
    #[error("record header checksum")]
    HeaderChecksum,
    #[error("record kind {0}")]
    Kind(u16),
    #[error("record length {0} does not match its kind and op count")]
    Length(u32),
    #[error("record padding field is not zero")]
    Padding,
    #[error("record body checksum")]
    BodyChecksum,
    #[error("record op {index}: {what}")]
    Op { index: u32, what: &'static str },
}

fn op_bytes(op: &LogOp) -> usize {
    match op {
        LogOp::Occupy { .. } => OCCUPY_OP_BYTES,
        LogOp::Release { .. } => RELEASE_OP_BYTES,
    }
}

/// The sectors a batch record of this many ops fills (header included, no wrap record).
pub fn record_sectors(occupies: u32, releases: u32) -> u64 {
    sectors_for(
        RECORD_HEADER_BYTES as u64
            + u64::from(occupies) * OCCUPY_OP_BYTES as u64
            + u64::from(releases) * RELEASE_OP_BYTES as u64,
    )
}

/// The largest record a batch of this many ops can need, in bytes, padded to whole sectors,
/// plus one sector for a wrap record in front of it.
pub fn record_bytes_max(occupies: u32, releases: u32) -> u64 {
    (record_sectors(occupies, releases) + 1) * SECTOR_BYTES
}

/// Appends a batch record (header, ops, zero padding to whole sectors) to `out`.
pub fn encode_batch(
    stamp: RunStamp,
    log_seq: u64,
    commit_seq: u64,
    ops: &[LogOp],
    out: &mut Vec<u8>,
) {
    assert!(
        !ops.is_empty() && ops.len() <= RECORD_OPS_MAX as usize,
        "{}",
        ops.len()
    );
    assert!(log_seq >= 1 && commit_seq >= 1, "{log_seq} {commit_seq}");
    let start = out.len();
    out.resize(start + RECORD_HEADER_BYTES, 0);
    for op in ops {
        encode_op(op, out);
    }
    let len = out.len() - start;
    let body_crc = crc32c::crc32c(&out[start + RECORD_HEADER_BYTES..]);
    let header = RecordHeader {
        kind: RecordKind::Batch,
        len_bytes: u32::try_from(len).expect("a record is at most a few sectors"),
        log_seq,
        commit_seq,
        stamp,
        op_count: ops.len() as u32,
        body_crc32c: body_crc,
    };
    write_header(&header, &mut out[start..start + RECORD_HEADER_BYTES]);
    let padded = sectors_for(len as u64) * SECTOR_BYTES;
    out.resize(start + padded as usize, 0);
    debug_assert_eq!(
        decode_record(&out[start..]).map(|r| r.ops.len()),
        Ok(ops.len())
    );
}

/// Appends a wrap record (one sector) announcing record `log_seq` at sector 0.
pub fn encode_wrap(stamp: RunStamp, log_seq: u64, out: &mut Vec<u8>) {
    assert!(log_seq >= 1);
    let start = out.len();
    out.resize(start + SECTOR_BYTES as usize, 0);
    let header = RecordHeader {
        kind: RecordKind::Wrap,
        len_bytes: RECORD_HEADER_BYTES as u32,
        log_seq,
        commit_seq: 0,
        stamp,
        op_count: 0,
        body_crc32c: crc32c::crc32c(&[]),
    };
    write_header(&header, &mut out[start..start + RECORD_HEADER_BYTES]);
}

fn write_header(h: &RecordHeader, out: &mut [u8]) {
    assert_eq!(out.len(), RECORD_HEADER_BYTES);
    out[0..8].copy_from_slice(&RECORD_MAGIC);
    out[8..10].copy_from_slice(&LOG_FORMAT_VERSION.to_le_bytes());
    let kind: u16 = match h.kind {
        RecordKind::Batch => 1,
        RecordKind::Wrap => 2,
    };
    out[10..12].copy_from_slice(&kind.to_le_bytes());
    out[12..16].copy_from_slice(&h.len_bytes.to_le_bytes());
    out[16..24].copy_from_slice(&h.log_seq.to_le_bytes());
    out[24..32].copy_from_slice(&h.commit_seq.to_le_bytes());
    out[32..40].copy_from_slice(&h.stamp.run_id.to_le_bytes());
    out[40..48].copy_from_slice(&h.stamp.node_id.to_le_bytes());
    out[48..52].copy_from_slice(&h.op_count.to_le_bytes());
    out[52..56].fill(0);
    out[56..60].copy_from_slice(&h.body_crc32c.to_le_bytes());
    let header_crc = crc32c::crc32c(&out[0..60]);
    out[60..64].copy_from_slice(&header_crc.to_le_bytes());
}

fn encode_op(op: &LogOp, out: &mut Vec<u8>) {
    let before = out.len();
    match *op {
        LogOp::Occupy {
            hash,
            slot,
            len,
            crc32c,
        } => {
            assert!(len >= 1 && u64::from(len) <= slot.bytes(), "{op:?}");
            out.push(TAG_OCCUPY);
            out.extend_from_slice(&hash.0);
            push_slot(slot, out);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&crc32c.to_le_bytes());
        }
        LogOp::Release { hash, slot } => {
            out.push(TAG_RELEASE);
            out.extend_from_slice(&hash.0);
            push_slot(slot, out);
        }
    }
    debug_assert_eq!(out.len() - before, op_bytes(op));
}

fn push_slot(slot: Slot, out: &mut Vec<u8>) {
    assert!(slot.offset.is_multiple_of(slot.bytes()), "{slot:?}");
    out.extend_from_slice(&slot.offset.to_le_bytes());
    out.push(slot.class.as_u8());
}

/// Decodes and checks a header (magic, version, header checksum, kind, length against kind
/// and op count, zero field). `bytes` needs at least the 64 header bytes.
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, RecordError> {
    let b = bytes.get(..RECORD_HEADER_BYTES).ok_or(RecordError::Short)?;
    if b[0..8] != RECORD_MAGIC {
        return Err(RecordError::Magic);
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != LOG_FORMAT_VERSION {
        return Err(RecordError::Version(version));
    }
    if crc32c::crc32c(&b[0..60]) != u32_at(b, 60) {
        return Err(RecordError::HeaderChecksum);
    }
    let kind = match u16::from_le_bytes([b[10], b[11]]) {
        1 => RecordKind::Batch,
        2 => RecordKind::Wrap,
        other => return Err(RecordError::Kind(other)),
    };
    if b[52..56] != [0; 4] {
        return Err(RecordError::Padding);
    }
    let header = RecordHeader {
        kind,
        len_bytes: u32_at(b, 12),
        log_seq: u64_at(b, 16),
        commit_seq: u64_at(b, 24),
        stamp: RunStamp {
            run_id: u64_at(b, 32),
            node_id: u64_at(b, 40),
        },
        op_count: u32_at(b, 48),
        body_crc32c: u32_at(b, 56),
    };
    check_shape(&header)?;
    Ok(header)
}

/// Length, op count and sequence numbers must agree with the kind.
fn check_shape(h: &RecordHeader) -> Result<(), RecordError> {
    let len = u64::from(h.len_bytes);
    let header = RECORD_HEADER_BYTES as u64;
    let ok = match h.kind {
        RecordKind::Wrap => len == header && h.op_count == 0 && h.commit_seq == 0 && h.log_seq >= 1,
        RecordKind::Batch => {
            let ops = u64::from(h.op_count);
            h.op_count >= 1
                && h.op_count <= RECORD_OPS_MAX
                && h.log_seq >= 1
                && h.commit_seq >= 1
                && len >= header + ops * RELEASE_OP_BYTES as u64
                && len <= header + ops * OCCUPY_OP_BYTES as u64
        }
    };
    if ok {
        Ok(())
    } else {
        Err(RecordError::Length(h.len_bytes))
    }
}

/// Decodes a whole record from `bytes` (which may run on past its length: padding, following
/// sectors). Every check of [`decode_header`], then the body checksum and every op.
pub fn decode_record(bytes: &[u8]) -> Result<Record, RecordError> {
    let header = decode_header(bytes)?;
    let len = header.len_bytes as usize;
    let body = bytes
        .get(RECORD_HEADER_BYTES..len)
        .ok_or(RecordError::Short)?;
    if crc32c::crc32c(body) != header.body_crc32c {
        return Err(RecordError::BodyChecksum);
    }
    let mut ops = Vec::with_capacity(header.op_count as usize);
    let mut at = 0usize;
    for index in 0..header.op_count {
        let (op, used) = decode_op(&body[at..]).map_err(|what| RecordError::Op { index, what })?;
        ops.push(op);
        at += used;
    }
    if at != body.len() {
        return Err(RecordError::Length(header.len_bytes));
    }
    Ok(Record { header, ops })
}

/// The known bug `replay_torn_record` (`Bugs::replay_torn_record`): a record whose header
/// checks out but whose body checksum fails, with the ops that still decode from its start.
/// `None` when the header does not decode or no op does.
pub fn decode_torn_prefix(bytes: &[u8]) -> Option<Record> {
    let header = decode_header(bytes).ok()?;
    let body = bytes.get(RECORD_HEADER_BYTES..header.len_bytes as usize)?;
    let mut ops = Vec::new();
    let mut at = 0usize;
    while ops.len() < header.op_count as usize {
        let Ok((op, used)) = decode_op(&body[at..]) else {
            break;
        };
        ops.push(op);
        at += used;
    }
    assert!(ops.len() <= header.op_count as usize);
    (!ops.is_empty()).then_some(Record { header, ops })
}

fn decode_op(b: &[u8]) -> Result<(LogOp, usize), &'static str> {
    let tag = *b.first().ok_or("missing")?;
    let need = match tag {
        TAG_OCCUPY => OCCUPY_OP_BYTES,
        TAG_RELEASE => RELEASE_OP_BYTES,
        _ => return Err("unknown tag"),
    };
    let b = b.get(..need).ok_or("truncated")?;
    let hash = BlockHash(b[1..33].try_into().map_err(|_| "hash")?);
    let offset = u64_at(b, 33);
    let class = SizeClass::new(b[41]).ok_or("class")?;
    if !offset.is_multiple_of(class.bytes()) {
        return Err("slot misaligned");
    }
    let slot = Slot { offset, class };
    let op = if tag == TAG_OCCUPY {
        let len = u32_at(b, 42);
        if len == 0 || u64::from(len) > class.bytes() {
            return Err("length out of range");
        }
        LogOp::Occupy {
            hash,
            slot,
            len,
            crc32c: u32_at(b, 46),
        }
    } else {
        LogOp::Release { hash, slot }
    };
    Ok((op, need))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("caller checked the length"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("caller checked the length"))
}
