//! Messages between workers and the controller, and their fixed-size frames.
//!
//! Every message encodes to exactly [`FRAME_BYTES`] little-endian bytes so the SPSC queues carry
//! plain arrays. `decode` validates everything (tag, class range, lengths, alignment, flags) and
//! returns an error for any frame `encode` could not have produced; it never panics.
//!
//! Worker -> controller: allocate (with a count), occupy (with the slot the worker filled),
//! release, get_address, return_slot (an unused reservation), list (for `GET /blocks`) and
//! reader_horizon (the oldest read epoch a worker still has in flight; see `controller`).
//! Controller -> worker: one reply (or a run of item frames and a closing frame) per request.

use crate::buddy::Slot;
use crate::hash::BlockHash;
use crate::size_class::SizeClass;

/// Size of every encoded frame.
pub const FRAME_BYTES: usize = 64;
pub type Frame = [u8; FRAME_BYTES];

/// Which worker sent a message: the return address.
pub type WorkerId = u8;
/// Matches a reply to the worker's request.
pub type RequestId = u64;

/// Largest `count` on one allocate request.
pub const ALLOCATE_COUNT_MAX: u16 = 1024;
/// Largest `limit` on one list request (SPEC: at most 10,000 hashes per listing).
pub const LIST_LIMIT_MAX: u16 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ToController {
    /// Reserve `count` slots of `class` for the worker's pool.
    Allocate {
        worker: WorkerId,
        request: RequestId,
        class: SizeClass,
        count: u16,
    },
    /// The worker wrote a block of `len` bytes (1..=512 KiB, fits `slot.class`) into its reserved
    /// `slot`; record it under `hash` unless that hash is stored already (dedup).
    Occupy {
        worker: WorkerId,
        request: RequestId,
        hash: BlockHash,
        slot: Slot,
        len: u32,
        crc32c: u32,
    },
    /// Delete the block stored under `hash`.
    Release {
        worker: WorkerId,
        request: RequestId,
        hash: BlockHash,
    },
    /// Where is `hash` stored?
    GetAddress {
        worker: WorkerId,
        request: RequestId,
        hash: BlockHash,
    },
    /// A reserved slot the worker will not use: back to free.
    ReturnSlot {
        worker: WorkerId,
        request: RequestId,
        slot: Slot,
    },
    /// Up to `limit` stored hashes in ascending order strictly after `after` (from the start when
    /// `None`).
    List {
        worker: WorkerId,
        request: RequestId,
        after: Option<BlockHash>,
        limit: u16,
    },
    /// The worker has no read in flight whose address came from a reply of epoch < `epoch`.
    ReaderHorizon { worker: WorkerId, epoch: u64 },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OccupyOutcome {
    /// New block recorded (HTTP 201).
    Stored,
    /// The hash was already stored; the slot went back to free (HTTP 200).
    Duplicate,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReleaseOutcome {
    Deleted,
    NotFound,
}

/// Where a block lives, as the index records it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Location {
    pub slot: Slot,
    /// Block length, 1..=slot size.
    pub len: u32,
    pub crc32c: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorCode {
    /// No free slot of the class (allocate) — HTTP 507.
    NoSpace,
    /// The store or the data file failed — HTTP 500.
    Io,
    /// The slot in the message is not reserved by this worker — a worker bug; HTTP 500.
    InvalidSlot,
    /// The controller is shutting down or overloaded — HTTP 503.
    Unavailable,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ToWorker {
    /// One reserved slot for an allocate request (a request for n slots gets up to n of these,
    /// then one `AllocateDone`).
    Allocated { request: RequestId, slot: Slot },
    /// The allocate request is finished: `granted` of `requested` slots were sent. Fewer than
    /// requested means the class has no free space now.
    AllocateDone {
        request: RequestId,
        class: SizeClass,
        requested: u16,
        granted: u16,
    },
    Occupied {
        request: RequestId,
        outcome: OccupyOutcome,
    },
    /// Space of `class` ran short while slots are parked in pools or waiting for readers: hand
    /// every pooled slot back (`ReturnSlot`), and keep PUTs waiting rather than answering 507,
    /// because space may come back. Sent to the short requester too, before its `AllocateDone`.
    Reclaim { class: SizeClass },
    Released {
        request: RequestId,
        outcome: ReleaseOutcome,
    },
    /// Answer to get_address. `epoch` is the controller's read epoch the worker must report in its
    /// reader horizon while it reads that slot.
    Address {
        request: RequestId,
        location: Option<Location>,
        epoch: u64,
    },
    /// One listed block.
    ListItem {
        request: RequestId,
        hash: BlockHash,
        len: u32,
    },
    /// End of a listing: `count` items were sent.
    ListDone { request: RequestId, count: u16 },
    /// The request failed; nothing it asked for was done.
    Error { request: RequestId, code: ErrorCode },
}

/// Why a frame was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    #[error("size class {0} out of range")]
    BadClass(u8),
    #[error("slot offset {0} not aligned to its class")]
    Misaligned(u64),
    #[error("impossible length {0}")]
    BadLength(u64),
    #[error("bad enum value {0}")]
    BadEnum(u8),
    #[error("bad flag byte {0}")]
    BadFlag(u8),
    #[error("non-zero padding")]
    NonZeroPadding,
}

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
//   3       1     flag (Option: 0 = None, 1 = Some) or enum byte (outcome, error code)
//   4       4     len in bytes (u32)
//   8       8     request (u64)
//   16      32    hash
//   16      8     epoch (u64; shares the hash bytes: no variant carries both)
//   48      8     slot offset in bytes (u64)
//   56      4     crc32c (u32)
//   60      2     count / limit / requested (u16)
//   62      2     granted (u16)
//
// `Option<Location>` (Address) is the flag plus class, offset, len and crc32c; with the flag 0
// those bytes are padding. `Option<BlockHash>` (List) is the flag plus the hash bytes.
// ---------------------------------------------------------------------------------------------

const TAG_AT: usize = 0;
const WORKER_AT: usize = 1;
const CLASS_AT: usize = 2;
const FLAG_AT: usize = 3;
const LEN_AT: usize = 4;
const REQUEST_AT: usize = 8;
const HASH_AT: usize = 16;
const EPOCH_AT: usize = 16;
const OFFSET_AT: usize = 48;
const CRC_AT: usize = 56;
const COUNT_AT: usize = 60;
const GRANTED_AT: usize = 62;

const HASH_BYTES: usize = 32;

// The field map is in ascending order without overlap (epoch only overlaps hash, see above), and
// its last field (the largest layout, AllocateDone's `granted`) ends inside the frame.
const _: () = assert!(FLAG_AT < LEN_AT && LEN_AT + 4 <= REQUEST_AT);
const _: () = assert!(REQUEST_AT + 8 <= HASH_AT && HASH_AT + HASH_BYTES <= OFFSET_AT);
const _: () = assert!(EPOCH_AT == HASH_AT && EPOCH_AT + 8 <= HASH_AT + HASH_BYTES);
const _: () = assert!(OFFSET_AT + 8 <= CRC_AT && CRC_AT + 4 <= COUNT_AT);
const _: () = assert!(COUNT_AT + 2 <= GRANTED_AT && GRANTED_AT + 2 <= FRAME_BYTES);
// The byte masks below have one bit per frame byte.
const _: () = assert!(FRAME_BYTES <= u64::BITS as usize);
// Lengths and counts fit their wire fields.
const _: () = assert!(crate::size_class::SLOT_MAX_BYTES <= u32::MAX as u64);
const _: () = assert!(ALLOCATE_COUNT_MAX > 0 && LIST_LIMIT_MAX > 0);

const TAG_ALLOCATE: u8 = 1;
const TAG_OCCUPY: u8 = 2;
const TAG_RELEASE: u8 = 3;
const TAG_GET_ADDRESS: u8 = 4;
const TAG_RETURN_SLOT: u8 = 5;
const TAG_LIST: u8 = 6;
const TAG_READER_HORIZON: u8 = 7;

const TAG_ALLOCATED: u8 = 0x81;
const TAG_ALLOCATE_DONE: u8 = 0x82;
const TAG_OCCUPIED: u8 = 0x83;
const TAG_RELEASED: u8 = 0x84;
const TAG_ADDRESS: u8 = 0x85;
const TAG_LIST_ITEM: u8 = 0x86;
const TAG_LIST_DONE: u8 = 0x87;
const TAG_ERROR: u8 = 0x88;
const TAG_RECLAIM: u8 = 0x89;

// The two directions never share a tag, so a frame sent the wrong way is an `UnknownTag`.
const _: () = assert!(TAG_READER_HORIZON < TAG_ALLOCATED);

/// Bit mask of the frame bytes `at..at + len`.
fn span_mask(at: usize, len: usize) -> u64 {
    assert!(len > 0 && at + len <= FRAME_BYTES);
    let ones = if len == u64::BITS as usize {
        u64::MAX
    } else {
        (1u64 << len) - 1
    };
    ones << at
}

/// Builds a frame field by field; asserts that no two fields overlap.
struct FrameWriter {
    frame: Frame,
    written_mask: u64,
}

impl FrameWriter {
    fn new(tag: u8) -> FrameWriter {
        let mut writer = FrameWriter {
            frame: [0; FRAME_BYTES],
            written_mask: 0,
        };
        writer.bytes(TAG_AT, &[tag]);
        writer
    }

    fn bytes(&mut self, at: usize, value: &[u8]) {
        let mask = span_mask(at, value.len());
        assert!(
            self.written_mask & mask == 0,
            "field at {at} overlaps another field"
        );
        self.written_mask |= mask;
        self.frame[at..at + value.len()].copy_from_slice(value);
    }

    fn u8(&mut self, at: usize, value: u8) {
        self.bytes(at, &[value]);
    }

    fn u16(&mut self, at: usize, value: u16) {
        self.bytes(at, &value.to_le_bytes());
    }

    fn u32(&mut self, at: usize, value: u32) {
        self.bytes(at, &value.to_le_bytes());
    }

    fn u64(&mut self, at: usize, value: u64) {
        self.bytes(at, &value.to_le_bytes());
    }

    fn hash(&mut self, hash: &BlockHash) {
        self.bytes(HASH_AT, &hash.0);
    }

    fn flag(&mut self, value: bool) {
        self.u8(FLAG_AT, u8::from(value));
    }

    fn slot(&mut self, slot: Slot) {
        self.u8(CLASS_AT, slot.class.as_u8());
        self.u64(OFFSET_AT, slot.offset);
    }

    fn location(&mut self, location: Option<Location>) {
        self.flag(location.is_some());
        if let Some(location) = location {
            self.slot(location.slot);
            self.u32(LEN_AT, location.len);
            self.u32(CRC_AT, location.crc32c);
        }
    }

    fn finish(self) -> Frame {
        assert!(self.written_mask & 1 == 1, "a frame always has its tag");
        self.frame
    }
}

/// Reads a frame field by field, remembering which bytes were read so that [`Self::finish`] can
/// check that everything else is zero. Never panics: every offset is a constant inside the frame.
struct FrameReader<'a> {
    frame: &'a Frame,
    read_mask: u64,
}

impl<'a> FrameReader<'a> {
    fn new(frame: &'a Frame) -> FrameReader<'a> {
        FrameReader {
            frame,
            read_mask: 0,
        }
    }

    fn bytes<const N: usize>(&mut self, at: usize) -> [u8; N] {
        self.read_mask |= span_mask(at, N);
        let mut out = [0u8; N];
        out.copy_from_slice(&self.frame[at..at + N]);
        out
    }

    fn u8(&mut self, at: usize) -> u8 {
        self.bytes::<1>(at)[0]
    }

    fn u16(&mut self, at: usize) -> u16 {
        u16::from_le_bytes(self.bytes(at))
    }

    fn u32(&mut self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes(at))
    }

    fn u64(&mut self, at: usize) -> u64 {
        u64::from_le_bytes(self.bytes(at))
    }

    fn hash(&mut self) -> BlockHash {
        BlockHash(self.bytes(HASH_AT))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8(FLAG_AT) {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::BadFlag(other)),
        }
    }

    fn class(&mut self) -> Result<SizeClass, DecodeError> {
        let index = self.u8(CLASS_AT);
        SizeClass::new(index).ok_or(DecodeError::BadClass(index))
    }

    /// The slot's class and offset; alignment is checked by `check_slot`.
    fn slot(&mut self) -> Result<Slot, DecodeError> {
        let class = self.class()?;
        let offset = self.u64(OFFSET_AT);
        Ok(Slot { offset, class })
    }

    fn after(&mut self) -> Result<Option<BlockHash>, DecodeError> {
        Ok(if self.flag()? {
            Some(self.hash())
        } else {
            None
        })
    }

    fn location(&mut self) -> Result<Option<Location>, DecodeError> {
        if !self.flag()? {
            return Ok(None);
        }
        let slot = self.slot()?;
        let len = self.u32(LEN_AT);
        let crc32c = self.u32(CRC_AT);
        Ok(Some(Location { slot, len, crc32c }))
    }

    /// Every byte no field was read from must be zero.
    fn finish(self) -> Result<(), DecodeError> {
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
fn check_slot(slot: Slot) -> Result<(), DecodeError> {
    debug_assert!(slot.class.bytes().is_power_of_two());
    if slot.offset & (slot.class.bytes() - 1) != 0 {
        return Err(DecodeError::Misaligned(slot.offset));
    }
    Ok(())
}

/// `value` is in `1..=max`.
fn check_count(value: u64, max: u64) -> Result<(), DecodeError> {
    if value == 0 || value > max {
        return Err(DecodeError::BadLength(value));
    }
    Ok(())
}

/// A block of `len` bytes in `slot`: aligned slot, `len` in `1..=slot size`.
fn check_block(slot: Slot, len: u32) -> Result<(), DecodeError> {
    check_slot(slot)?;
    check_count(u64::from(len), slot.bytes())
}

impl ToController {
    /// The frame for this message. Panics if the message is invalid (a programmer error): see
    /// the field rules on [`ToController::decode`].
    pub fn encode(&self) -> Frame {
        if let Err(error) = self.check() {
            panic!("encoding an invalid message ({error}): {self:?}");
        }
        let mut w = FrameWriter::new(self.tag());
        w.u8(WORKER_AT, self.worker());
        match *self {
            ToController::Allocate {
                worker: _,
                request,
                class,
                count,
            } => {
                w.u64(REQUEST_AT, request);
                w.u8(CLASS_AT, class.as_u8());
                w.u16(COUNT_AT, count);
            }
            ToController::Occupy {
                worker: _,
                request,
                hash,
                slot,
                len,
                crc32c,
            } => {
                w.u64(REQUEST_AT, request);
                w.hash(&hash);
                w.slot(slot);
                w.u32(LEN_AT, len);
                w.u32(CRC_AT, crc32c);
            }
            ToController::Release {
                worker: _,
                request,
                hash,
            }
            | ToController::GetAddress {
                worker: _,
                request,
                hash,
            } => {
                w.u64(REQUEST_AT, request);
                w.hash(&hash);
            }
            ToController::ReturnSlot {
                worker: _,
                request,
                slot,
            } => {
                w.u64(REQUEST_AT, request);
                w.slot(slot);
            }
            ToController::List {
                worker: _,
                request,
                after,
                limit,
            } => {
                w.u64(REQUEST_AT, request);
                w.flag(after.is_some());
                if let Some(hash) = after {
                    w.hash(&hash);
                }
                w.u16(COUNT_AT, limit);
            }
            ToController::ReaderHorizon { worker: _, epoch } => w.u64(EPOCH_AT, epoch),
        }
        let frame = w.finish();
        debug_assert_eq!(ToController::decode(&frame), Ok(*self));
        frame
    }

    /// Parses and validates a frame. Rejects (never panics on) anything `encode` could not have
    /// produced: unknown tag, class index >= 8, misaligned slot, occupy `len` outside
    /// `1..=slot size`, allocate `count` outside `1..=ALLOCATE_COUNT_MAX`, list `limit` outside
    /// `1..=LIST_LIMIT_MAX`, a flag byte other than 0 or 1, and non-zero unused bytes.
    pub fn decode(frame: &Frame) -> Result<ToController, DecodeError> {
        let mut r = FrameReader::new(frame);
        let tag = r.u8(TAG_AT);
        let worker = r.u8(WORKER_AT);
        let message = match tag {
            TAG_ALLOCATE => {
                let request = r.u64(REQUEST_AT);
                let class = r.class()?;
                let count = r.u16(COUNT_AT);
                ToController::Allocate {
                    worker,
                    request,
                    class,
                    count,
                }
            }
            TAG_OCCUPY => ToController::Occupy {
                worker,
                request: r.u64(REQUEST_AT),
                hash: r.hash(),
                slot: r.slot()?,
                len: r.u32(LEN_AT),
                crc32c: r.u32(CRC_AT),
            },
            TAG_RELEASE => ToController::Release {
                worker,
                request: r.u64(REQUEST_AT),
                hash: r.hash(),
            },
            TAG_GET_ADDRESS => ToController::GetAddress {
                worker,
                request: r.u64(REQUEST_AT),
                hash: r.hash(),
            },
            TAG_RETURN_SLOT => ToController::ReturnSlot {
                worker,
                request: r.u64(REQUEST_AT),
                slot: r.slot()?,
            },
            TAG_LIST => {
                let request = r.u64(REQUEST_AT);
                let after = r.after()?;
                let limit = r.u16(COUNT_AT);
                ToController::List {
                    worker,
                    request,
                    after,
                    limit,
                }
            }
            TAG_READER_HORIZON => ToController::ReaderHorizon {
                worker,
                epoch: r.u64(EPOCH_AT),
            },
            other => return Err(DecodeError::UnknownTag(other)),
        };
        r.finish()?;
        message.check()?;
        debug_assert_eq!(message.tag(), tag);
        Ok(message)
    }

    /// The worker that sent this message (replies go back to it).
    pub fn worker(&self) -> WorkerId {
        match *self {
            ToController::Allocate { worker, .. }
            | ToController::Occupy { worker, .. }
            | ToController::Release { worker, .. }
            | ToController::GetAddress { worker, .. }
            | ToController::ReturnSlot { worker, .. }
            | ToController::List { worker, .. }
            | ToController::ReaderHorizon { worker, .. } => worker,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            ToController::Allocate { .. } => TAG_ALLOCATE,
            ToController::Occupy { .. } => TAG_OCCUPY,
            ToController::Release { .. } => TAG_RELEASE,
            ToController::GetAddress { .. } => TAG_GET_ADDRESS,
            ToController::ReturnSlot { .. } => TAG_RETURN_SLOT,
            ToController::List { .. } => TAG_LIST,
            ToController::ReaderHorizon { .. } => TAG_READER_HORIZON,
        }
    }

    /// The field rules beyond what the types enforce (shared by `encode` and `decode`).
    fn check(&self) -> Result<(), DecodeError> {
        match *self {
            ToController::Allocate { count, .. } => {
                check_count(u64::from(count), u64::from(ALLOCATE_COUNT_MAX))
            }
            ToController::Occupy { slot, len, .. } => check_block(slot, len),
            ToController::ReturnSlot { slot, .. } => check_slot(slot),
            ToController::List { limit, .. } => {
                check_count(u64::from(limit), u64::from(LIST_LIMIT_MAX))
            }
            ToController::Release { .. }
            | ToController::GetAddress { .. }
            | ToController::ReaderHorizon { .. } => Ok(()),
        }
    }
}

impl OccupyOutcome {
    fn to_u8(self) -> u8 {
        match self {
            OccupyOutcome::Stored => 0,
            OccupyOutcome::Duplicate => 1,
        }
    }

    fn from_u8(value: u8) -> Result<OccupyOutcome, DecodeError> {
        match value {
            0 => Ok(OccupyOutcome::Stored),
            1 => Ok(OccupyOutcome::Duplicate),
            other => Err(DecodeError::BadEnum(other)),
        }
    }
}

impl ReleaseOutcome {
    fn to_u8(self) -> u8 {
        match self {
            ReleaseOutcome::Deleted => 0,
            ReleaseOutcome::NotFound => 1,
        }
    }

    fn from_u8(value: u8) -> Result<ReleaseOutcome, DecodeError> {
        match value {
            0 => Ok(ReleaseOutcome::Deleted),
            1 => Ok(ReleaseOutcome::NotFound),
            other => Err(DecodeError::BadEnum(other)),
        }
    }
}

impl ErrorCode {
    fn to_u8(self) -> u8 {
        match self {
            ErrorCode::NoSpace => 0,
            ErrorCode::Io => 1,
            ErrorCode::InvalidSlot => 2,
            ErrorCode::Unavailable => 3,
        }
    }

    fn from_u8(value: u8) -> Result<ErrorCode, DecodeError> {
        match value {
            0 => Ok(ErrorCode::NoSpace),
            1 => Ok(ErrorCode::Io),
            2 => Ok(ErrorCode::InvalidSlot),
            3 => Ok(ErrorCode::Unavailable),
            other => Err(DecodeError::BadEnum(other)),
        }
    }
}

impl ToWorker {
    /// The frame for this message. Panics if the message is invalid (a programmer error): see
    /// the field rules on [`ToWorker::decode`].
    pub fn encode(&self) -> Frame {
        if let Err(error) = self.check() {
            panic!("encoding an invalid message ({error}): {self:?}");
        }
        let mut w = FrameWriter::new(self.tag());
        match *self {
            ToWorker::Allocated { request, slot } => {
                w.u64(REQUEST_AT, request);
                w.slot(slot);
            }
            ToWorker::AllocateDone {
                request,
                class,
                requested,
                granted,
            } => {
                w.u64(REQUEST_AT, request);
                w.u8(CLASS_AT, class.as_u8());
                w.u16(COUNT_AT, requested);
                w.u16(GRANTED_AT, granted);
            }
            ToWorker::Occupied { request, outcome } => {
                w.u64(REQUEST_AT, request);
                w.u8(FLAG_AT, outcome.to_u8());
            }
            ToWorker::Released { request, outcome } => {
                w.u64(REQUEST_AT, request);
                w.u8(FLAG_AT, outcome.to_u8());
            }
            ToWorker::Address {
                request,
                location,
                epoch,
            } => {
                w.u64(REQUEST_AT, request);
                w.location(location);
                w.u64(EPOCH_AT, epoch);
            }
            ToWorker::ListItem { request, hash, len } => {
                w.u64(REQUEST_AT, request);
                w.hash(&hash);
                w.u32(LEN_AT, len);
            }
            ToWorker::ListDone { request, count } => {
                w.u64(REQUEST_AT, request);
                w.u16(COUNT_AT, count);
            }
            ToWorker::Error { request, code } => {
                w.u64(REQUEST_AT, request);
                w.u8(FLAG_AT, code.to_u8());
            }
            ToWorker::Reclaim { class } => w.u8(CLASS_AT, class.as_u8()),
        }
        let frame = w.finish();
        debug_assert_eq!(ToWorker::decode(&frame), Ok(*self));
        frame
    }

    /// Parses and validates a frame. Rejects (never panics on) anything `encode` could not have
    /// produced: unknown tag, class index >= 8, misaligned slot, allocate-done `requested`
    /// outside `1..=ALLOCATE_COUNT_MAX` or `granted > requested`, a location `len` outside
    /// `1..=slot size`, a list item `len` outside `1..=BLOCK_LEN_MAX_BYTES`, a list-done `count`
    /// over `LIST_LIMIT_MAX`, an outcome or error code out of range, a flag byte other than 0 or
    /// 1, and non-zero unused bytes (including the location bytes of an address without one).
    pub fn decode(frame: &Frame) -> Result<ToWorker, DecodeError> {
        let mut r = FrameReader::new(frame);
        let tag = r.u8(TAG_AT);
        let request = r.u64(REQUEST_AT);
        let message = match tag {
            TAG_ALLOCATED => ToWorker::Allocated {
                request,
                slot: r.slot()?,
            },
            TAG_ALLOCATE_DONE => {
                let class = r.class()?;
                let requested = r.u16(COUNT_AT);
                let granted = r.u16(GRANTED_AT);
                ToWorker::AllocateDone {
                    request,
                    class,
                    requested,
                    granted,
                }
            }
            TAG_OCCUPIED => ToWorker::Occupied {
                request,
                outcome: OccupyOutcome::from_u8(r.u8(FLAG_AT))?,
            },
            TAG_RELEASED => ToWorker::Released {
                request,
                outcome: ReleaseOutcome::from_u8(r.u8(FLAG_AT))?,
            },
            TAG_ADDRESS => {
                let location = r.location()?;
                ToWorker::Address {
                    request,
                    location,
                    epoch: r.u64(EPOCH_AT),
                }
            }
            TAG_LIST_ITEM => ToWorker::ListItem {
                request,
                hash: r.hash(),
                len: r.u32(LEN_AT),
            },
            TAG_LIST_DONE => ToWorker::ListDone {
                request,
                count: r.u16(COUNT_AT),
            },
            TAG_ERROR => ToWorker::Error {
                request,
                code: ErrorCode::from_u8(r.u8(FLAG_AT))?,
            },
            TAG_RECLAIM if request == 0 => ToWorker::Reclaim { class: r.class()? },
            TAG_RECLAIM => return Err(DecodeError::NonZeroPadding),
            other => return Err(DecodeError::UnknownTag(other)),
        };
        r.finish()?;
        message.check()?;
        debug_assert_eq!(message.tag(), tag);
        Ok(message)
    }

    /// The request this message answers (every reply answers one).
    pub fn request(&self) -> Option<RequestId> {
        match *self {
            ToWorker::Allocated { request, .. }
            | ToWorker::AllocateDone { request, .. }
            | ToWorker::Occupied { request, .. }
            | ToWorker::Released { request, .. }
            | ToWorker::Address { request, .. }
            | ToWorker::ListItem { request, .. }
            | ToWorker::ListDone { request, .. }
            | ToWorker::Error { request, .. } => Some(request),
            ToWorker::Reclaim { .. } => None,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            ToWorker::Allocated { .. } => TAG_ALLOCATED,
            ToWorker::AllocateDone { .. } => TAG_ALLOCATE_DONE,
            ToWorker::Occupied { .. } => TAG_OCCUPIED,
            ToWorker::Released { .. } => TAG_RELEASED,
            ToWorker::Address { .. } => TAG_ADDRESS,
            ToWorker::ListItem { .. } => TAG_LIST_ITEM,
            ToWorker::ListDone { .. } => TAG_LIST_DONE,
            ToWorker::Error { .. } => TAG_ERROR,
            ToWorker::Reclaim { .. } => TAG_RECLAIM,
        }
    }

    /// The field rules beyond what the types enforce (shared by `encode` and `decode`).
    fn check(&self) -> Result<(), DecodeError> {
        match *self {
            ToWorker::Allocated { slot, .. } => check_slot(slot),
            ToWorker::AllocateDone {
                requested, granted, ..
            } => {
                check_count(u64::from(requested), u64::from(ALLOCATE_COUNT_MAX))?;
                if granted > requested {
                    return Err(DecodeError::BadLength(u64::from(granted)));
                }
                Ok(())
            }
            ToWorker::Address {
                location: Some(location),
                ..
            } => check_block(location.slot, location.len),
            ToWorker::ListItem { len, .. } => {
                check_count(u64::from(len), crate::size_class::BLOCK_LEN_MAX_BYTES)
            }
            ToWorker::ListDone { count, .. } => {
                if count > LIST_LIMIT_MAX {
                    return Err(DecodeError::BadLength(u64::from(count)));
                }
                Ok(())
            }
            ToWorker::Address { location: None, .. }
            | ToWorker::Occupied { .. }
            | ToWorker::Released { .. }
            | ToWorker::Error { .. }
            | ToWorker::Reclaim { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::{BLOCK_LEN_MAX_BYTES, CLASS_COUNT};
    use proptest::prelude::*;

    /// Largest slot offset the strategies draw (a 1 PiB data file).
    const OFFSET_MAX_BYTES: u64 = 1 << 50;

    fn class_strategy() -> impl Strategy<Value = SizeClass> {
        (0..CLASS_COUNT as u8).prop_map(|index| SizeClass::new(index).unwrap())
    }

    /// Aligned slots, with offset 0 and the largest aligned offset drawn often.
    fn slot_strategy() -> impl Strategy<Value = Slot> {
        class_strategy().prop_flat_map(|class| {
            let index_max = OFFSET_MAX_BYTES / class.bytes();
            let index = prop_oneof![Just(0), Just(index_max), 0..=index_max];
            index.prop_map(move |index| Slot {
                offset: index * class.bytes(),
                class,
            })
        })
    }

    /// `1..=max`, with both ends drawn often.
    fn count_strategy(max: u64) -> impl Strategy<Value = u64> {
        prop_oneof![Just(1), Just(max), 1..=max]
    }

    /// A slot and a block length that fits it.
    fn block_strategy() -> impl Strategy<Value = (Slot, u32)> {
        slot_strategy().prop_flat_map(|slot| {
            count_strategy(slot.bytes()).prop_map(move |len| (slot, len as u32))
        })
    }

    fn hash_strategy() -> impl Strategy<Value = BlockHash> {
        prop_oneof![
            Just(BlockHash::ZERO),
            Just(BlockHash([0xff; 32])),
            any::<[u8; 32]>().prop_map(BlockHash),
        ]
    }

    fn to_controller_strategy() -> impl Strategy<Value = ToController> {
        let w = any::<WorkerId>();
        let r = any::<RequestId>();
        let count = count_strategy(u64::from(ALLOCATE_COUNT_MAX)).prop_map(|c| c as u16);
        let limit = count_strategy(u64::from(LIST_LIMIT_MAX)).prop_map(|c| c as u16);
        prop_oneof![
            (w, r, class_strategy(), count).prop_map(|(worker, request, class, count)| {
                ToController::Allocate {
                    worker,
                    request,
                    class,
                    count,
                }
            }),
            (w, r, hash_strategy(), block_strategy(), any::<u32>()).prop_map(
                |(worker, request, hash, (slot, len), crc32c)| ToController::Occupy {
                    worker,
                    request,
                    hash,
                    slot,
                    len,
                    crc32c
                }
            ),
            (w, r, hash_strategy()).prop_map(|(worker, request, hash)| ToController::Release {
                worker,
                request,
                hash
            }),
            (w, r, hash_strategy()).prop_map(|(worker, request, hash)| ToController::GetAddress {
                worker,
                request,
                hash
            }),
            (w, r, slot_strategy()).prop_map(|(worker, request, slot)| {
                ToController::ReturnSlot {
                    worker,
                    request,
                    slot,
                }
            }),
            (w, r, proptest::option::of(hash_strategy()), limit).prop_map(
                |(worker, request, after, limit)| ToController::List {
                    worker,
                    request,
                    after,
                    limit
                }
            ),
            (w, any::<u64>())
                .prop_map(|(worker, epoch)| ToController::ReaderHorizon { worker, epoch }),
        ]
    }

    fn allocate_done_strategy() -> impl Strategy<Value = ToWorker> {
        let requested = count_strategy(u64::from(ALLOCATE_COUNT_MAX)).prop_map(|c| c as u16);
        (any::<RequestId>(), class_strategy(), requested).prop_flat_map(
            |(request, class, requested)| {
                prop_oneof![Just(0), Just(requested), 0..=requested].prop_map(move |granted| {
                    ToWorker::AllocateDone {
                        request,
                        class,
                        requested,
                        granted,
                    }
                })
            },
        )
    }

    fn location_strategy() -> impl Strategy<Value = Option<Location>> {
        let location = (block_strategy(), any::<u32>())
            .prop_map(|((slot, len), crc32c)| Location { slot, len, crc32c });
        proptest::option::of(location)
    }

    fn to_worker_strategy() -> impl Strategy<Value = ToWorker> {
        let r = any::<RequestId>();
        let occupy = prop_oneof![Just(OccupyOutcome::Stored), Just(OccupyOutcome::Duplicate)];
        let release = prop_oneof![
            Just(ReleaseOutcome::Deleted),
            Just(ReleaseOutcome::NotFound)
        ];
        let code = prop_oneof![
            Just(ErrorCode::NoSpace),
            Just(ErrorCode::Io),
            Just(ErrorCode::InvalidSlot),
            Just(ErrorCode::Unavailable),
        ];
        let item_len = count_strategy(BLOCK_LEN_MAX_BYTES).prop_map(|len| len as u32);
        let done_count = prop_oneof![Just(0), Just(LIST_LIMIT_MAX), 0..=LIST_LIMIT_MAX];
        prop_oneof![
            class_strategy().prop_map(|class| ToWorker::Reclaim { class }),
            (r, slot_strategy()).prop_map(|(request, slot)| ToWorker::Allocated { request, slot }),
            allocate_done_strategy(),
            (r, occupy).prop_map(|(request, outcome)| ToWorker::Occupied { request, outcome }),
            (r, release).prop_map(|(request, outcome)| ToWorker::Released { request, outcome }),
            (r, location_strategy(), any::<u64>()).prop_map(|(request, location, epoch)| {
                ToWorker::Address {
                    request,
                    location,
                    epoch,
                }
            }),
            (r, hash_strategy(), item_len).prop_map(|(request, hash, len)| ToWorker::ListItem {
                request,
                hash,
                len
            }),
            (r, done_count).prop_map(|(request, count)| ToWorker::ListDone { request, count }),
            (r, code).prop_map(|(request, code)| ToWorker::Error { request, code }),
        ]
    }

    /// Whatever either decoder accepts re-encodes to exactly `frame`.
    fn assert_canonical(frame: &Frame) {
        if let Ok(message) = ToController::decode(frame) {
            assert_eq!(&message.encode(), frame, "{message:?}");
        }
        if let Ok(message) = ToWorker::decode(frame) {
            assert_eq!(&message.encode(), frame, "{message:?}");
        }
        let both = ToController::decode(frame).is_ok() && ToWorker::decode(frame).is_ok();
        assert!(!both, "a frame belongs to one direction only");
    }

    /// Every single-byte change of `frame` is rejected or yields a message that encodes to it.
    fn assert_mutations_canonical(frame: &Frame) {
        for at in 0..FRAME_BYTES {
            for value in 0..=u8::MAX {
                let mut mutated = *frame;
                mutated[at] = value;
                assert_canonical(&mutated);
            }
        }
    }

    fn sample_slot() -> Slot {
        Slot {
            offset: 3 * 8192,
            class: SizeClass::new(1).unwrap(),
        }
    }

    fn occupy_frame() -> Frame {
        let slot = sample_slot();
        let hash = BlockHash([7; 32]);
        ToController::Occupy {
            worker: 2,
            request: 9,
            hash,
            slot,
            len: 5000,
            crc32c: 1,
        }
        .encode()
    }

    fn address_frame(location: Option<Location>) -> Frame {
        ToWorker::Address {
            request: 4,
            location,
            epoch: 11,
        }
        .encode()
    }

    fn set_u16(frame: &mut Frame, at: usize, value: u16) {
        frame[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn set_u32(frame: &mut Frame, at: usize, value: u32) {
        frame[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn set_u64(frame: &mut Frame, at: usize, value: u64) {
        frame[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    proptest! {
        /// Every valid worker -> controller message survives encode then decode unchanged.
        #[test]
        fn to_controller_round_trips(message in to_controller_strategy()) {
            let frame = message.encode();
            prop_assert!((TAG_ALLOCATE..=TAG_READER_HORIZON).contains(&frame[TAG_AT]));
            prop_assert_eq!(ToController::decode(&frame), Ok(message));
            prop_assert_eq!(ToWorker::decode(&frame), Err(DecodeError::UnknownTag(frame[0])));
        }

        /// Every valid controller -> worker message survives encode then decode unchanged.
        #[test]
        fn to_worker_round_trips(message in to_worker_strategy()) {
            let frame = message.encode();
            prop_assert!((TAG_ALLOCATED..=TAG_RECLAIM).contains(&frame[TAG_AT]));
            prop_assert_eq!(ToWorker::decode(&frame), Ok(message));
            prop_assert_eq!(ToController::decode(&frame), Err(DecodeError::UnknownTag(frame[0])));
        }

        /// A one-byte corruption of a worker -> controller frame is caught or is canonical.
        #[test]
        fn to_controller_mutations_are_rejected_or_canonical(m in to_controller_strategy()) {
            assert_mutations_canonical(&m.encode());
        }

        /// A one-byte corruption of a controller -> worker frame is caught or is canonical.
        #[test]
        fn to_worker_mutations_are_rejected_or_canonical(m in to_worker_strategy()) {
            assert_mutations_canonical(&m.encode());
        }

        /// Arbitrary frames never make decode panic, and what decodes re-encodes to the frame.
        #[test]
        fn arbitrary_frames_never_panic_and_are_canonical(
            frame in proptest::array::uniform::<_, FRAME_BYTES>(any::<u8>())
        ) {
            assert_canonical(&frame);
        }

        /// A valid frame with a few bytes overwritten never panics and stays canonical (this
        /// reaches deeper than fully random frames, which almost always fail on the tag).
        #[test]
        fn corrupted_frames_never_panic_and_are_canonical(
            to_worker in any::<bool>(),
            controller in to_controller_strategy(),
            worker in to_worker_strategy(),
            writes in proptest::collection::vec((0..FRAME_BYTES, any::<u8>()), 1..=4),
        ) {
            let mut frame = if to_worker { worker.encode() } else { controller.encode() };
            for (at, value) in writes {
                frame[at] = value;
            }
            assert_canonical(&frame);
        }
    }

    /// The wire layout is pinned: a change to it must be deliberate.
    #[test]
    fn occupy_layout_is_pinned() {
        let mut expected = [0u8; FRAME_BYTES];
        expected[0] = TAG_OCCUPY;
        expected[1] = 2; // worker
        expected[2] = 1; // class 8 KiB
        set_u32(&mut expected, 4, 5000);
        set_u64(&mut expected, 8, 9);
        expected[16..48].copy_from_slice(&[7; 32]);
        set_u64(&mut expected, 48, 3 * 8192);
        set_u32(&mut expected, 56, 1);
        assert_eq!(occupy_frame(), expected);
    }

    /// Each variant has its own tag, in its direction's range.
    #[test]
    fn every_variant_has_a_distinct_tag() {
        let (request, hash, slot) = (1, BlockHash::ZERO, sample_slot());
        let class = slot.class;
        let controller = [
            ToController::Allocate {
                worker: 0,
                request,
                class,
                count: 1,
            },
            ToController::decode(&occupy_frame()).unwrap(),
            ToController::Release {
                worker: 0,
                request,
                hash,
            },
            ToController::GetAddress {
                worker: 0,
                request,
                hash,
            },
            ToController::ReturnSlot {
                worker: 0,
                request,
                slot,
            },
            ToController::List {
                worker: 0,
                request,
                after: None,
                limit: 1,
            },
            ToController::ReaderHorizon {
                worker: 0,
                epoch: 1,
            },
        ];
        let worker = [
            ToWorker::Allocated { request, slot },
            ToWorker::AllocateDone {
                request,
                class,
                requested: 1,
                granted: 0,
            },
            ToWorker::Occupied {
                request,
                outcome: OccupyOutcome::Stored,
            },
            ToWorker::Released {
                request,
                outcome: ReleaseOutcome::Deleted,
            },
            ToWorker::Address {
                request,
                location: None,
                epoch: 0,
            },
            ToWorker::ListItem {
                request,
                hash,
                len: 1,
            },
            ToWorker::ListDone { request, count: 0 },
            ToWorker::Error {
                request,
                code: ErrorCode::Io,
            },
        ];
        let mut tags: Vec<u8> = controller.iter().map(|m| m.encode()[TAG_AT]).collect();
        assert_eq!(tags, (1..=7).collect::<Vec<u8>>());
        tags.extend(worker.iter().map(|m| m.encode()[TAG_AT]));
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), controller.len() + worker.len());
        assert!(worker.iter().all(|m| m.request() == Some(1)));
    }

    /// Tags of neither direction (and of the other direction) are `UnknownTag`.
    #[test]
    fn unknown_tags_are_rejected() {
        for tag in [0, 8, 0x80, 0x8a, 0xff] {
            let mut frame = [0u8; FRAME_BYTES];
            frame[TAG_AT] = tag;
            assert_eq!(
                ToController::decode(&frame),
                Err(DecodeError::UnknownTag(tag))
            );
            assert_eq!(ToWorker::decode(&frame), Err(DecodeError::UnknownTag(tag)));
        }
        let frame = address_frame(None);
        assert_eq!(
            ToController::decode(&frame),
            Err(DecodeError::UnknownTag(TAG_ADDRESS))
        );
    }

    /// A class index of 8 or more is `BadClass`, wherever a class appears.
    #[test]
    fn class_out_of_range_is_rejected() {
        let slot = sample_slot();
        let class = slot.class;
        let controller = [
            occupy_frame(),
            ToController::Allocate {
                worker: 0,
                request: 0,
                class,
                count: 1,
            }
            .encode(),
            ToController::ReturnSlot {
                worker: 0,
                request: 0,
                slot,
            }
            .encode(),
        ];
        for mut frame in controller {
            frame[CLASS_AT] = 8;
            assert_eq!(ToController::decode(&frame), Err(DecodeError::BadClass(8)));
        }
        let worker = [
            address_frame(Some(Location {
                slot,
                len: 1,
                crc32c: 0,
            })),
            ToWorker::AllocateDone {
                request: 0,
                class,
                requested: 2,
                granted: 1,
            }
            .encode(),
            ToWorker::Allocated { request: 0, slot }.encode(),
        ];
        for mut frame in worker {
            frame[CLASS_AT] = 0xff;
            assert_eq!(ToWorker::decode(&frame), Err(DecodeError::BadClass(0xff)));
        }
    }

    /// A slot offset that is not a multiple of its class size is `Misaligned`.
    #[test]
    fn misaligned_slots_are_rejected() {
        let mut frame = occupy_frame();
        set_u64(&mut frame, OFFSET_AT, 4096); // class 1 is 8 KiB
        assert_eq!(
            ToController::decode(&frame),
            Err(DecodeError::Misaligned(4096))
        );
        let slot = sample_slot();
        let mut frame = ToController::ReturnSlot {
            worker: 0,
            request: 0,
            slot,
        }
        .encode();
        set_u64(&mut frame, OFFSET_AT, u64::MAX);
        assert_eq!(
            ToController::decode(&frame),
            Err(DecodeError::Misaligned(u64::MAX))
        );
        let mut frame = ToWorker::Allocated { request: 0, slot }.encode();
        set_u64(&mut frame, OFFSET_AT, 1);
        assert_eq!(ToWorker::decode(&frame), Err(DecodeError::Misaligned(1)));
        let mut frame = address_frame(Some(Location {
            slot,
            len: 1,
            crc32c: 0,
        }));
        set_u64(&mut frame, OFFSET_AT, 8192 + 512);
        assert_eq!(
            ToWorker::decode(&frame),
            Err(DecodeError::Misaligned(8192 + 512))
        );
    }

    /// Occupy lengths outside `1..=slot size` are `BadLength`.
    #[test]
    fn occupy_length_out_of_range_is_rejected() {
        for len in [0, 8193, u32::MAX] {
            let mut frame = occupy_frame();
            set_u32(&mut frame, LEN_AT, len);
            assert_eq!(
                ToController::decode(&frame),
                Err(DecodeError::BadLength(len.into()))
            );
        }
        let mut frame = occupy_frame();
        set_u32(&mut frame, LEN_AT, 8192);
        assert!(ToController::decode(&frame).is_ok());
    }

    /// Allocate counts and list limits outside their ranges are `BadLength`.
    #[test]
    fn count_and_limit_out_of_range_are_rejected() {
        let class = SizeClass::MIN;
        let allocate = ToController::Allocate {
            worker: 0,
            request: 0,
            class,
            count: 1,
        }
        .encode();
        let list = ToController::List {
            worker: 0,
            request: 0,
            after: None,
            limit: 1,
        }
        .encode();
        for (frame, max) in [(allocate, ALLOCATE_COUNT_MAX), (list, LIST_LIMIT_MAX)] {
            for bad in [0, max + 1, u16::MAX] {
                let mut frame = frame;
                set_u16(&mut frame, COUNT_AT, bad);
                assert_eq!(
                    ToController::decode(&frame),
                    Err(DecodeError::BadLength(bad.into()))
                );
            }
            let mut frame = frame;
            set_u16(&mut frame, COUNT_AT, max);
            assert!(ToController::decode(&frame).is_ok());
        }
    }

    /// AllocateDone needs `requested` in range and `granted <= requested`.
    #[test]
    fn allocate_done_counts_are_checked() {
        let class = SizeClass::MAX;
        let frame = ToWorker::AllocateDone {
            request: 0,
            class,
            requested: 4,
            granted: 4,
        }
        .encode();
        let cases = [
            (4, 5, DecodeError::BadLength(5)),
            (0, 0, DecodeError::BadLength(0)),
            (ALLOCATE_COUNT_MAX + 1, 0, DecodeError::BadLength(1025)),
        ];
        for (requested, granted, error) in cases {
            let mut frame = frame;
            set_u16(&mut frame, COUNT_AT, requested);
            set_u16(&mut frame, GRANTED_AT, granted);
            assert_eq!(ToWorker::decode(&frame), Err(error));
        }
    }

    /// Address locations, list items and list-done counts have length limits too.
    #[test]
    fn reply_lengths_out_of_range_are_rejected() {
        let location = Some(Location {
            slot: sample_slot(),
            len: 1,
            crc32c: 0,
        });
        for len in [0, 8193] {
            let mut frame = address_frame(location);
            set_u32(&mut frame, LEN_AT, len);
            assert_eq!(
                ToWorker::decode(&frame),
                Err(DecodeError::BadLength(len.into()))
            );
        }
        let hash = BlockHash::ZERO;
        let mut frame = ToWorker::ListItem {
            request: 0,
            hash,
            len: 1,
        }
        .encode();
        set_u32(&mut frame, LEN_AT, 0);
        assert_eq!(ToWorker::decode(&frame), Err(DecodeError::BadLength(0)));
        set_u32(&mut frame, LEN_AT, BLOCK_LEN_MAX_BYTES as u32 + 1);
        assert_eq!(
            ToWorker::decode(&frame),
            Err(DecodeError::BadLength(524_289))
        );
        let mut frame = ToWorker::ListDone {
            request: 0,
            count: 0,
        }
        .encode();
        set_u16(&mut frame, COUNT_AT, LIST_LIMIT_MAX + 1);
        assert_eq!(
            ToWorker::decode(&frame),
            Err(DecodeError::BadLength(10_001))
        );
    }

    /// Outcome and error-code bytes out of range are `BadEnum`.
    #[test]
    fn enum_bytes_out_of_range_are_rejected() {
        let frames = [
            (
                ToWorker::Occupied {
                    request: 0,
                    outcome: OccupyOutcome::Duplicate,
                },
                2,
            ),
            (
                ToWorker::Released {
                    request: 0,
                    outcome: ReleaseOutcome::NotFound,
                },
                2,
            ),
            (
                ToWorker::Error {
                    request: 0,
                    code: ErrorCode::Unavailable,
                },
                4,
            ),
        ];
        for (message, first_bad) in frames {
            for bad in [first_bad, 0xff] {
                let mut frame = message.encode();
                frame[FLAG_AT] = bad;
                assert_eq!(ToWorker::decode(&frame), Err(DecodeError::BadEnum(bad)));
            }
        }
    }

    /// Option flags other than 0 or 1 are `BadFlag`.
    #[test]
    fn flags_other_than_zero_or_one_are_rejected() {
        let after = Some(BlockHash([1; 32]));
        let mut frame = ToController::List {
            worker: 0,
            request: 0,
            after,
            limit: 5,
        }
        .encode();
        frame[FLAG_AT] = 2;
        assert_eq!(ToController::decode(&frame), Err(DecodeError::BadFlag(2)));
        let mut frame = address_frame(None);
        frame[FLAG_AT] = 0x80;
        assert_eq!(ToWorker::decode(&frame), Err(DecodeError::BadFlag(0x80)));
    }

    /// Unused bytes, including those of an absent location or `after` hash, must be zero.
    #[test]
    fn nonzero_padding_is_rejected() {
        let mut frame = ToWorker::ListDone {
            request: 0,
            count: 3,
        }
        .encode();
        frame[WORKER_AT] = 1; // ToWorker has no worker byte
        assert_eq!(ToWorker::decode(&frame), Err(DecodeError::NonZeroPadding));
        let mut frame = occupy_frame();
        frame[FRAME_BYTES - 1] = 1;
        assert_eq!(
            ToController::decode(&frame),
            Err(DecodeError::NonZeroPadding)
        );
        for at in [CLASS_AT, LEN_AT, OFFSET_AT + 7, CRC_AT] {
            let mut frame = address_frame(None);
            frame[at] = 1;
            assert_eq!(
                ToWorker::decode(&frame),
                Err(DecodeError::NonZeroPadding),
                "{at}"
            );
        }
        let mut frame = ToController::List {
            worker: 0,
            request: 0,
            after: None,
            limit: 5,
        }
        .encode();
        frame[HASH_AT + 31] = 1;
        assert_eq!(
            ToController::decode(&frame),
            Err(DecodeError::NonZeroPadding)
        );
    }

    /// Encoding an invalid message is a programmer error.
    #[test]
    #[should_panic(expected = "encoding an invalid message")]
    fn encoding_an_invalid_count_panics() {
        let class = SizeClass::MIN;
        ToController::Allocate {
            worker: 0,
            request: 0,
            class,
            count: 0,
        }
        .encode();
    }

    /// Encoding a misaligned slot is a programmer error.
    #[test]
    #[should_panic(expected = "encoding an invalid message")]
    fn encoding_a_misaligned_slot_panics() {
        let slot = Slot {
            offset: 4096,
            class: SizeClass::MAX,
        };
        ToWorker::Allocated { request: 0, slot }.encode();
    }
}
