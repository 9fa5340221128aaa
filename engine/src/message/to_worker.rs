//! Encoding and decoding of controller -> worker messages ([`ToWorker`]) over the frame map of
//! `frame.rs`, and the byte values of their enums (outcomes, error codes). `decode` rejects every
//! frame `encode` could not have produced; it never panics.

use super::frame::*;
use super::*;

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
            ToWorker::Error { request, code } => {
                w.u64(REQUEST_AT, request);
                w.u8(FLAG_AT, code.to_u8());
            }
            ToWorker::Reclaim { class } => w.u8(CLASS_AT, class.as_u8()),
            ToWorker::HorizonWanted { version } => w.u64(VERSION_AT, version),
        }
        let frame = w.finish();
        debug_assert_eq!(ToWorker::decode(&frame), Ok(*self));
        frame
    }

    /// Parses and validates a frame. Rejects (never panics on) anything `encode` could not have
    /// produced: unknown tag, class index >= 8, misaligned slot, allocate-done `requested`
    /// outside `1..=ALLOCATE_COUNT_MAX` or `granted > requested`, an outcome or error code out of
    /// range, and non-zero unused bytes.
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
            TAG_ERROR => ToWorker::Error {
                request,
                code: ErrorCode::from_u8(r.u8(FLAG_AT))?,
            },
            TAG_RECLAIM if request == 0 => ToWorker::Reclaim { class: r.class()? },
            TAG_RECLAIM => return Err(DecodeError::NonZeroPadding),
            TAG_HORIZON_WANTED if request == 0 => ToWorker::HorizonWanted {
                version: r.u64(VERSION_AT),
            },
            TAG_HORIZON_WANTED => return Err(DecodeError::NonZeroPadding),
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
            | ToWorker::Error { request, .. } => Some(request),
            ToWorker::Reclaim { .. } | ToWorker::HorizonWanted { .. } => None,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            ToWorker::Allocated { .. } => TAG_ALLOCATED,
            ToWorker::AllocateDone { .. } => TAG_ALLOCATE_DONE,
            ToWorker::Occupied { .. } => TAG_OCCUPIED,
            ToWorker::Released { .. } => TAG_RELEASED,
            ToWorker::Error { .. } => TAG_ERROR,
            ToWorker::Reclaim { .. } => TAG_RECLAIM,
            ToWorker::HorizonWanted { .. } => TAG_HORIZON_WANTED,
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
            ToWorker::Occupied { .. }
            | ToWorker::Released { .. }
            | ToWorker::Error { .. }
            | ToWorker::Reclaim { .. }
            | ToWorker::HorizonWanted { .. } => Ok(()),
        }
    }
}
