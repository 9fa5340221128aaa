//! Encoding and decoding of worker -> controller messages ([`ToController`]) over the frame map
//! of `frame.rs`. `decode` rejects every frame `encode` could not have produced; it never panics.

use super::frame::*;
use super::*;

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
            ToController::ReaderHorizon { worker: _, version } => w.u64(VERSION_AT, version),
        }
        let frame = w.finish();
        debug_assert_eq!(ToController::decode(&frame), Ok(*self));
        frame
    }

    /// Parses and validates a frame. Rejects (never panics on) anything `encode` could not have
    /// produced: unknown tag, class index >= 8, misaligned slot, occupy `len` outside
    /// `1..=slot size`, allocate `count` outside `1..=ALLOCATE_COUNT_MAX`, and non-zero unused
    /// bytes.
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
            TAG_RETURN_SLOT => ToController::ReturnSlot {
                worker,
                request: r.u64(REQUEST_AT),
                slot: r.slot()?,
            },
            TAG_READER_HORIZON => ToController::ReaderHorizon {
                worker,
                version: r.u64(VERSION_AT),
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
            | ToController::ReturnSlot { worker, .. }
            | ToController::ReaderHorizon { worker, .. } => worker,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            ToController::Allocate { .. } => TAG_ALLOCATE,
            ToController::Occupy { .. } => TAG_OCCUPY,
            ToController::Release { .. } => TAG_RELEASE,
            ToController::ReturnSlot { .. } => TAG_RETURN_SLOT,
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
            ToController::Release { .. } | ToController::ReaderHorizon { .. } => Ok(()),
        }
    }
}
