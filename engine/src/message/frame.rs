//! The frame's field map: where each field sits in the 64-byte frame, the tags, and a writer and
//! reader that refuse overlapping fields and check that unused bytes are zero.
//!
//! It owns the byte layout only; it must never know which message carries which field (that is
//! `to_controller.rs` / `to_worker.rs`). Invariants (checked at compile time below): fields do
//! not overlap except `version` over `hash` (no message carries both), and every field ends inside
//! the frame.

use super::*;

// ---------------------------------------------------------------------------------------------
// Codec.
//
// Byte 0 is the tag; every other field sits at one fixed offset shared by all variants that carry
// it, little-endian. Bytes a variant does not use are zero, and `decode` rejects them otherwise,
// so every valid message has exactly one frame (canonical encoding).
//
//   offset  size  field
//   0       1     tag: ToController 1..=7, ToWorker 0x81..=0x88
//   1       1     worker (ToController only)
//   2       1     size class (slot class, or the class of an allocate)
//   3       1     enum byte (outcome, error code)
//   4       4     len in bytes (u32)
//   8       8     request (u64)
//   16      32    hash
//   16      8     version (u64; shares the hash bytes: no variant carries both)
//   48      8     slot offset in bytes (u64)
//   56      4     crc32c (u32)
//   60      2     count / limit / requested (u16)
//   62      2     granted (u16)
//
// Retired tags (never reused, so an old frame is an `UnknownTag`): 4 and 6 (get_address and
// list, whose answers were 0x85-0x87: the workers read the index from their own views).
// ---------------------------------------------------------------------------------------------

pub(super) const TAG_AT: usize = 0;
pub(super) const WORKER_AT: usize = 1;
pub(super) const CLASS_AT: usize = 2;
pub(super) const FLAG_AT: usize = 3;
pub(super) const LEN_AT: usize = 4;
pub(super) const REQUEST_AT: usize = 8;
pub(super) const HASH_AT: usize = 16;
pub(super) const VERSION_AT: usize = 16;
pub(super) const OFFSET_AT: usize = 48;
pub(super) const CRC_AT: usize = 56;
pub(super) const COUNT_AT: usize = 60;
pub(super) const GRANTED_AT: usize = 62;

pub(super) const HASH_BYTES: usize = 32;

// The field map is in ascending order without overlap (version only overlaps hash, see above), and
// its last field (the largest layout, AllocateDone's `granted`) ends inside the frame.
const _: () = assert!(FLAG_AT < LEN_AT && LEN_AT + 4 <= REQUEST_AT);
const _: () = assert!(REQUEST_AT + 8 <= HASH_AT && HASH_AT + HASH_BYTES <= OFFSET_AT);
const _: () = assert!(VERSION_AT == HASH_AT && VERSION_AT + 8 <= HASH_AT + HASH_BYTES);
const _: () = assert!(OFFSET_AT + 8 <= CRC_AT && CRC_AT + 4 <= COUNT_AT);
const _: () = assert!(COUNT_AT + 2 <= GRANTED_AT && GRANTED_AT + 2 <= FRAME_BYTES);
// The byte masks below have one bit per frame byte.
const _: () = assert!(FRAME_BYTES <= u64::BITS as usize);
// Lengths and counts fit their wire fields.
const _: () = assert!(crate::size_class::SLOT_MAX_BYTES <= u32::MAX as u64);
const _: () = assert!(ALLOCATE_COUNT_MAX > 0);

pub(super) const TAG_ALLOCATE: u8 = 1;
pub(super) const TAG_OCCUPY: u8 = 2;
pub(super) const TAG_RELEASE: u8 = 3;
pub(super) const TAG_RETURN_SLOT: u8 = 5;
pub(super) const TAG_READER_HORIZON: u8 = 7;

pub(super) const TAG_ALLOCATED: u8 = 0x81;
pub(super) const TAG_ALLOCATE_DONE: u8 = 0x82;
pub(super) const TAG_OCCUPIED: u8 = 0x83;
pub(super) const TAG_RELEASED: u8 = 0x84;
pub(super) const TAG_ERROR: u8 = 0x88;
pub(super) const TAG_RECLAIM: u8 = 0x89;
pub(super) const TAG_HORIZON_WANTED: u8 = 0x8a;

// The two directions never share a tag, so a frame sent the wrong way is an `UnknownTag`.
const _: () = assert!(TAG_READER_HORIZON < TAG_ALLOCATED);

/// Bit mask of the frame bytes `at..at + len`.
pub(super) fn span_mask(at: usize, len: usize) -> u64 {
    assert!(len > 0 && at + len <= FRAME_BYTES);
    let ones = if len == u64::BITS as usize {
        u64::MAX
    } else {
        (1u64 << len) - 1
    };
    ones << at
}

/// Builds a frame field by field; asserts that no two fields overlap.
pub(super) struct FrameWriter {
    frame: Frame,
    written_mask: u64,
}

impl FrameWriter {
    pub(super) fn new(tag: u8) -> FrameWriter {
        let mut writer = FrameWriter {
            frame: [0; FRAME_BYTES],
            written_mask: 0,
        };
        writer.bytes(TAG_AT, &[tag]);
        writer
    }

    pub(super) fn bytes(&mut self, at: usize, value: &[u8]) {
        let mask = span_mask(at, value.len());
        assert!(
            self.written_mask & mask == 0,
            "field at {at} overlaps another field"
        );
        self.written_mask |= mask;
        self.frame[at..at + value.len()].copy_from_slice(value);
    }

    pub(super) fn u8(&mut self, at: usize, value: u8) {
        self.bytes(at, &[value]);
    }

    pub(super) fn u16(&mut self, at: usize, value: u16) {
        self.bytes(at, &value.to_le_bytes());
    }

    pub(super) fn u32(&mut self, at: usize, value: u32) {
        self.bytes(at, &value.to_le_bytes());
    }

    pub(super) fn u64(&mut self, at: usize, value: u64) {
        self.bytes(at, &value.to_le_bytes());
    }

    pub(super) fn hash(&mut self, hash: &BlockHash) {
        self.bytes(HASH_AT, &hash.0);
    }

    pub(super) fn slot(&mut self, slot: Slot) {
        self.u8(CLASS_AT, slot.class.as_u8());
        self.u64(OFFSET_AT, slot.offset);
    }

    pub(super) fn finish(self) -> Frame {
        assert!(self.written_mask & 1 == 1, "a frame always has its tag");
        self.frame
    }
}

/// Reads a frame field by field, remembering which bytes were read so that [`Self::finish`] can
/// check that everything else is zero. Never panics: every offset is a constant inside the frame.
pub(super) struct FrameReader<'a> {
    frame: &'a Frame,
    read_mask: u64,
}

impl<'a> FrameReader<'a> {
    pub(super) fn new(frame: &'a Frame) -> FrameReader<'a> {
        FrameReader {
            frame,
            read_mask: 0,
        }
    }

    pub(super) fn bytes<const N: usize>(&mut self, at: usize) -> [u8; N] {
        self.read_mask |= span_mask(at, N);
        let mut out = [0u8; N];
        out.copy_from_slice(&self.frame[at..at + N]);
        out
    }

    pub(super) fn u8(&mut self, at: usize) -> u8 {
        self.bytes::<1>(at)[0]
    }

    pub(super) fn u16(&mut self, at: usize) -> u16 {
        u16::from_le_bytes(self.bytes(at))
    }

    pub(super) fn u32(&mut self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes(at))
    }

    pub(super) fn u64(&mut self, at: usize) -> u64 {
        u64::from_le_bytes(self.bytes(at))
    }

    pub(super) fn hash(&mut self) -> BlockHash {
        BlockHash(self.bytes(HASH_AT))
    }

    pub(super) fn class(&mut self) -> Result<SizeClass, DecodeError> {
        let index = self.u8(CLASS_AT);
        SizeClass::new(index).ok_or(DecodeError::BadClass(index))
    }

    /// The slot's class and offset; alignment is checked by `check_slot`.
    pub(super) fn slot(&mut self) -> Result<Slot, DecodeError> {
        let class = self.class()?;
        let offset = self.u64(OFFSET_AT);
        Ok(Slot { offset, class })
    }

    /// Every byte no field was read from must be zero.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        let padding_nonzero = (0..FRAME_BYTES)
            .any(|at| self.read_mask & span_mask(at, 1) == 0 && self.frame[at] != 0);
        if padding_nonzero {
            return Err(DecodeError::NonZeroPadding);
        }
        Ok(())
    }
}

/// A slot's offset is a multiple of its size (a power of two, so a mask test; this also keeps
/// clear of `u64::is_multiple_of`, newer than the workspace's rust-version 1.85).
pub(super) fn check_slot(slot: Slot) -> Result<(), DecodeError> {
    debug_assert!(slot.class.bytes().is_power_of_two());
    if slot.offset & (slot.class.bytes() - 1) != 0 {
        return Err(DecodeError::Misaligned(slot.offset));
    }
    Ok(())
}

/// `value` is in `1..=max`.
pub(super) fn check_count(value: u64, max: u64) -> Result<(), DecodeError> {
    if value == 0 || value > max {
        return Err(DecodeError::BadLength(value));
    }
    Ok(())
}

/// A block of `len` bytes in `slot`: aligned slot, `len` in `1..=slot size`.
pub(super) fn check_block(slot: Slot, len: u32) -> Result<(), DecodeError> {
    check_slot(slot)?;
    check_count(u64::from(len), slot.bytes())
}
