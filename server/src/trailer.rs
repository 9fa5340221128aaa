//! The data file's layout and its identity record, a 4 KiB trailer at its end.
//!
//! Owns the byte layout of the trailer and the arithmetic of the file's [`Layout`] (no I/O).
//! Format 2 (the write-ahead log, issue 18): `[0, C)` slots, `[C, C + L)` the log region,
//! the trailer at `C + L`, so the file is `C + L + TRAILER_BYTES` long and the trailer is found
//! at `length - TRAILER_BYTES` without knowing `C` or `L` first. `L` is no trailer field: it is
//! `trailer offset - C`, cross-checked with the index's `LogState` by [`crate::identity`].
//! Format 1 (before the log) had no region: the trailer sat at `C`. An old binary refuses a
//! version-2 trailer with its clear version line, which is why `L` is not stored in bytes
//! 36.. (its decoder calls any non-zero byte there damage).
//!
//! Layout (little-endian):
//!
//! | bytes     | field                                                   |
//! |-----------|---------------------------------------------------------|
//! | 0..8      | magic `BUDDYDAT`                                        |
//! | 8..12     | format version ([`TRAILER_VERSION`])                    |
//! | 12..16    | zero                                                    |
//! | 16..24    | capacity `C` in bytes (where the slots end)             |
//! | 24..32    | node id: the index header's, drawn once at creation     |
//! | 32..36    | CRC32C of bytes 0..32                                   |
//! | 36..4096  | zero                                                    |
//!
//! Invariants: an encoded trailer always decodes to itself; a decoder never panics and accepts
//! nothing but exactly this layout (any other byte, a wrong checksum, a capacity that is not a
//! positive multiple of the largest slot: [`TrailerError`]); a [`Layout`]'s log region is whole
//! sectors and at least `wal::LOG_SECTORS_MIN` of them (zero only for format 1). Must never
//! decide what a trailer *means* for a store: that is [`crate::identity`]'s job.

use engine::size_class::SLOT_MAX_BYTES;
use engine::wal::{LOG_SECTORS_MIN, SECTOR_BYTES};

/// Size of the trailer: one 4 KiB sector, so it never shares a sector with a slot.
pub const TRAILER_BYTES: u64 = 4096;
/// Magic at the start of the trailer.
pub const TRAILER_MAGIC: [u8; 8] = *b"BUDDYDAT";
/// Bumped on any incompatible change of the trailer or of the data file's layout.
pub const TRAILER_VERSION: u32 = 2;
/// The trailer of format 1: no log region, the trailer right after the slots (upgraded in
/// place by `store.rs`).
pub const TRAILER_VERSION_BEFORE_LOG: u32 = 1;
/// Bytes covered by the checksum.
const CHECKED_BYTES: usize = 32;

const _: () = assert!(SLOT_MAX_BYTES.is_multiple_of(TRAILER_BYTES));

/// Where the parts of a data file lie: slots `[0, capacity)`, the log region
/// `[capacity, capacity + log)`, the trailer after it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout {
    pub capacity_bytes: u64,
    /// The log region's size; 0 only in format 1.
    pub log_bytes: u64,
}

impl Layout {
    pub fn new(capacity_bytes: u64, log_bytes: u64) -> Layout {
        assert!(capacity_bytes > 0 && capacity_bytes.is_multiple_of(SLOT_MAX_BYTES));
        assert!(
            log_bytes == 0 || log_bytes_valid(log_bytes),
            "log region of {log_bytes} bytes"
        );
        Layout {
            capacity_bytes,
            log_bytes,
        }
    }

    /// Where the trailer lies (= where the log region ends).
    pub fn trailer_offset(&self) -> u64 {
        self.capacity_bytes + self.log_bytes
    }

    /// The length of the whole file.
    pub fn len_bytes(&self) -> u64 {
        self.trailer_offset() + TRAILER_BYTES
    }

    /// The log region's size in sectors.
    pub fn log_sectors(&self) -> u64 {
        self.log_bytes / SECTOR_BYTES
    }
}

/// Whether `log_bytes` can be a log region: whole sectors, at least `LOG_SECTORS_MIN`.
pub fn log_bytes_valid(log_bytes: u64) -> bool {
    log_bytes.is_multiple_of(SECTOR_BYTES) && log_bytes / SECTOR_BYTES >= LOG_SECTORS_MIN
}

/// What the data file says about itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Trailer {
    pub format_version: u32,
    /// Slot bytes; the log region starts at this offset (format 1: the trailer did).
    pub capacity_bytes: u64,
    pub node_id: u64,
}

/// Why the last 4 KiB of a file are not a trailer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TrailerError {
    #[error("no identity trailer (wrong magic)")]
    Magic,
    #[error("the identity trailer's checksum does not match (damaged)")]
    Checksum,
    #[error("the identity trailer has bytes set that must be zero (damaged)")]
    Padding,
    #[error("the identity trailer's capacity is not a positive multiple of 512 KiB (damaged)")]
    Capacity,
}

impl Trailer {
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.capacity_bytes > 0 && self.capacity_bytes.is_multiple_of(SLOT_MAX_BYTES));
        assert!(self.node_id != 0, "a node id is never zero");
        let mut out = vec![0u8; TRAILER_BYTES as usize];
        out[0..8].copy_from_slice(&TRAILER_MAGIC);
        out[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        out[16..24].copy_from_slice(&self.capacity_bytes.to_le_bytes());
        out[24..32].copy_from_slice(&self.node_id.to_le_bytes());
        let crc = crc32c::crc32c(&out[..CHECKED_BYTES]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(Trailer::decode(&out), Ok(*self));
        out
    }

    /// Decodes a trailer of any format version (the caller refuses versions it cannot read).
    pub fn decode(bytes: &[u8]) -> Result<Trailer, TrailerError> {
        assert_eq!(
            bytes.len() as u64,
            TRAILER_BYTES,
            "a trailer is one 4 KiB sector"
        );
        if bytes[0..8] != TRAILER_MAGIC {
            return Err(TrailerError::Magic);
        }
        let crc = u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes"));
        if crc != crc32c::crc32c(&bytes[..CHECKED_BYTES]) {
            return Err(TrailerError::Checksum);
        }
        if bytes[12..16].iter().chain(&bytes[36..]).any(|&b| b != 0) {
            return Err(TrailerError::Padding);
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let capacity_bytes = u64_at(16);
        if capacity_bytes == 0 || !capacity_bytes.is_multiple_of(SLOT_MAX_BYTES) {
            return Err(TrailerError::Capacity);
        }
        Ok(Trailer {
            format_version: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
            capacity_bytes,
            node_id: u64_at(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trailer {
        Trailer {
            format_version: TRAILER_VERSION,
            capacity_bytes: 64 << 20,
            node_id: 0x1234_5678_9abc_def1,
        }
    }

    #[test]
    fn a_trailer_round_trips() {
        let t = sample();
        let bytes = t.encode();
        assert_eq!(bytes.len() as u64, TRAILER_BYTES);
        assert_eq!(&bytes[0..8], b"BUDDYDAT");
        assert_eq!(Trailer::decode(&bytes), Ok(t));
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let good = sample().encode();
        for at in [0usize, 8, 13, 16, 24, 33, 36, 2000, 4095] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(
                Trailer::decode(&bad).is_err(),
                "byte {at} changed was accepted"
            );
        }
        assert_eq!(
            Trailer::decode(&[0u8; TRAILER_BYTES as usize]),
            Err(TrailerError::Magic)
        );
    }

    #[test]
    fn a_layout_places_the_trailer_after_the_log() {
        let l = Layout::new(1 << 20, 64 * 4096);
        assert_eq!(l.trailer_offset(), (1 << 20) + 64 * 4096);
        assert_eq!(l.len_bytes(), l.trailer_offset() + 4096);
        assert_eq!(l.log_sectors(), 64);
        assert!(!log_bytes_valid(15 * 4096) && !log_bytes_valid(16 * 4096 + 1));
        assert!(log_bytes_valid(16 * 4096));
        assert_eq!(Layout::new(1 << 19, 0).len_bytes(), (1 << 19) + 4096);
    }

    #[test]
    fn a_bad_capacity_with_a_good_checksum_is_refused() {
        let mut bytes = sample().encode();
        bytes[16..24].copy_from_slice(&4096u64.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..CHECKED_BYTES]);
        bytes[32..36].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Trailer::decode(&bytes), Err(TrailerError::Capacity));
    }
}
