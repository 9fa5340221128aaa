//! Messages between workers and the controller, and their fixed-size frames.
//!
//! Every message encodes to exactly [`FRAME_BYTES`] little-endian bytes so the SPSC queues carry
//! plain arrays. `decode` validates everything (tag, class range, lengths, alignment) and
//! returns an error for any frame `encode` could not have produced; it never panics.
//!
//! Worker -> controller: allocate (with a count), occupy (with the slot the worker filled),
//! release, return_slot (an unused reservation) and reader_horizon (the oldest index-view
//! version the worker still has a lookup or read in flight from; see `controller::isolation`).
//! Index reads never travel here: each worker reads its own view (`meta::IndexView`).
//! Controller -> worker: one reply per request, plus `Reclaim` and `HorizonWanted`.
//!
//! Files: `mod.rs` (here) the message types; `frame.rs` the frame's field map (offsets, tags) and
//! the checked writer/reader; `to_controller.rs` and `to_worker.rs` encode and decode each
//! direction; `tests.rs` the round-trip and rejection tests (also fuzzed:
//! `fuzz/fuzz_targets/message_decode.rs`).

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
    /// A reserved slot the worker will not use: back to free.
    ReturnSlot {
        worker: WorkerId,
        request: RequestId,
        slot: Slot,
    },
    /// The worker's reader horizon: every index view it still uses (a snapshot held, or a read
    /// of a slot it looked up) has `version >= version`, and so will every view it renews from
    /// now on. Never goes back; sent only while the controller wants a higher one
    /// (`HorizonWanted`); never ahead of the commits (a view cannot be newer than the index).
    ReaderHorizon { worker: WorkerId, version: u64 },
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
    /// The request failed; nothing it asked for was done.
    Error { request: RequestId, code: ErrorCode },
    /// Slots released by batch `version` wait for this worker: report a horizon of at least
    /// `version` as soon as no view older than it is in use. Sent after commit `version` is
    /// visible, so every view renewed after this message arrives has `version >= version`.
    HorizonWanted { version: u64 },
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
    #[error("non-zero padding")]
    NonZeroPadding,
}

mod frame;
mod to_controller;
mod to_worker;

#[cfg(test)]
mod tests;
