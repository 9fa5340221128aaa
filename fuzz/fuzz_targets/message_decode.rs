//! Fuzzes the message codec (engine/src/message/).
//!
//! The input's first 64 bytes (zero-padded) are a frame: neither decoder may panic on it, a frame
//! that decodes must be the canonical encoding of its message, and no frame belongs to both
//! directions. The same bytes also drive a structured, always-valid message that must survive
//! encode then decode unchanged.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use engine::buddy::Slot;
use engine::message::{
    ErrorCode, Frame, OccupyOutcome, ReleaseOutcome, ToController, ToWorker, ALLOCATE_COUNT_MAX,
    FRAME_BYTES,
};
use engine::size_class::CLASS_COUNT;
use engine::{BlockHash, SizeClass};
use libfuzzer_sys::fuzz_target;

/// A slot drawn as (class, slot index): always aligned.
#[derive(Arbitrary, Debug)]
struct SlotSpec {
    class: u8,
    index: u64,
}

impl SlotSpec {
    fn slot(&self) -> Slot {
        let class = class(self.class);
        Slot {
            offset: self.index.wrapping_mul(class.bytes()),
            class,
        }
    }

    /// A length in `1..=slot size` from any `u32`.
    fn len(&self, raw: u32) -> u32 {
        in_range(u64::from(raw), self.slot().bytes()) as u32
    }
}

/// Mirrors the message enums with unconstrained fields; `message` maps them onto valid messages.
#[derive(Arbitrary, Debug)]
enum Spec {
    Allocate {
        worker: u8,
        request: u64,
        class: u8,
        count: u16,
    },
    Occupy {
        worker: u8,
        request: u64,
        hash: [u8; 32],
        slot: SlotSpec,
        len: u32,
        crc32c: u32,
    },
    Release {
        worker: u8,
        request: u64,
        hash: [u8; 32],
    },
    ReturnSlot {
        worker: u8,
        request: u64,
        slot: SlotSpec,
    },
    ReaderHorizon {
        worker: u8,
        version: u64,
    },
    Allocated {
        request: u64,
        slot: SlotSpec,
    },
    AllocateDone {
        request: u64,
        class: u8,
        requested: u16,
        granted: u16,
    },
    Occupied {
        request: u64,
        duplicate: bool,
    },
    Released {
        request: u64,
        not_found: bool,
    },
    Error {
        request: u64,
        code: u8,
    },
    HorizonWanted {
        version: u64,
    },
}

fn class(raw: u8) -> SizeClass {
    SizeClass::new(raw % CLASS_COUNT as u8).expect("reduced into range")
}

/// `raw` mapped into `1..=max`.
fn in_range(raw: u64, max: u64) -> u64 {
    1 + raw % max
}

enum Message {
    ToController(ToController),
    ToWorker(ToWorker),
}

impl Spec {
    fn message(self) -> Message {
        use Message::{ToController as C, ToWorker as W};
        let count_max = u64::from(ALLOCATE_COUNT_MAX);
        match self {
            Spec::Allocate {
                worker,
                request,
                class: c,
                count,
            } => {
                let count = in_range(count.into(), count_max) as u16;
                C(ToController::Allocate {
                    worker,
                    request,
                    class: class(c),
                    count,
                })
            }
            Spec::Occupy {
                worker,
                request,
                hash,
                slot,
                len,
                crc32c,
            } => C(ToController::Occupy {
                worker,
                request,
                hash: BlockHash(hash),
                slot: slot.slot(),
                len: slot.len(len),
                crc32c,
            }),
            Spec::Release {
                worker,
                request,
                hash,
            } => C(ToController::Release {
                worker,
                request,
                hash: BlockHash(hash),
            }),
            Spec::ReturnSlot {
                worker,
                request,
                slot,
            } => C(ToController::ReturnSlot {
                worker,
                request,
                slot: slot.slot(),
            }),
            Spec::ReaderHorizon { worker, version } => {
                C(ToController::ReaderHorizon { worker, version })
            }
            other => W(other.into_worker_message()),
        }
    }

    fn into_worker_message(self) -> ToWorker {
        match self {
            Spec::Allocated { request, slot } => ToWorker::Allocated {
                request,
                slot: slot.slot(),
            },
            Spec::AllocateDone {
                request,
                class: c,
                requested,
                granted,
            } => {
                let requested = in_range(requested.into(), ALLOCATE_COUNT_MAX.into()) as u16;
                let granted = granted % (requested + 1);
                ToWorker::AllocateDone {
                    request,
                    class: class(c),
                    requested,
                    granted,
                }
            }
            Spec::Occupied { request, duplicate } => {
                let outcome = if duplicate {
                    OccupyOutcome::Duplicate
                } else {
                    OccupyOutcome::Stored
                };
                ToWorker::Occupied { request, outcome }
            }
            Spec::Released { request, not_found } => {
                let outcome = if not_found {
                    ReleaseOutcome::NotFound
                } else {
                    ReleaseOutcome::Deleted
                };
                ToWorker::Released { request, outcome }
            }
            Spec::Error { request, code } => {
                let codes = [
                    ErrorCode::NoSpace,
                    ErrorCode::Io,
                    ErrorCode::InvalidSlot,
                    ErrorCode::Unavailable,
                ];
                ToWorker::Error {
                    request,
                    code: codes[usize::from(code) % codes.len()],
                }
            }
            Spec::HorizonWanted { version } => ToWorker::HorizonWanted { version },
            _ => unreachable!("to-controller specs are handled in `message`"),
        }
    }
}

/// Neither decoder panics; what decodes is canonical; no frame decodes both ways.
fn check_frame(frame: &Frame) {
    let controller = ToController::decode(frame);
    if let Ok(message) = controller {
        assert_eq!(&message.encode(), frame, "not canonical: {message:?}");
        assert_eq!(ToController::decode(&message.encode()), Ok(message));
    }
    let worker = ToWorker::decode(frame);
    if let Ok(message) = worker {
        assert_eq!(&message.encode(), frame, "not canonical: {message:?}");
        assert_eq!(ToWorker::decode(&message.encode()), Ok(message));
    }
    assert!(
        controller.is_err() || worker.is_err(),
        "frame decodes in both directions"
    );
}

/// A valid message survives encode then decode, and only in its own direction.
fn check_message(message: Message) {
    match message {
        Message::ToController(message) => {
            let frame = message.encode();
            assert_eq!(ToController::decode(&frame), Ok(message));
            assert!(ToWorker::decode(&frame).is_err());
        }
        Message::ToWorker(message) => {
            let frame = message.encode();
            assert_eq!(ToWorker::decode(&frame), Ok(message));
            assert!(ToController::decode(&frame).is_err());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut frame: Frame = [0; FRAME_BYTES];
    let len = data.len().min(FRAME_BYTES);
    frame[..len].copy_from_slice(&data[..len]);
    check_frame(&frame);

    if let Ok(spec) = Spec::arbitrary(&mut Unstructured::new(data)) {
        check_message(spec.message());
    }
});
