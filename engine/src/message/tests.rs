//! Tests of the message codec: every message round-trips through its frame, and frames `encode`
//! could not have produced (bad tags, classes, flags, padding, lengths) are refused.

use super::frame::*;
use super::*;
use crate::size_class::CLASS_COUNT;
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
    slot_strategy()
        .prop_flat_map(|slot| count_strategy(slot.bytes()).prop_map(move |len| (slot, len as u32)))
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
        (w, r, slot_strategy()).prop_map(|(worker, request, slot)| {
            ToController::ReturnSlot {
                worker,
                request,
                slot,
            }
        }),
        (w, any::<u64>())
            .prop_map(|(worker, version)| ToController::ReaderHorizon { worker, version }),
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
    prop_oneof![
        class_strategy().prop_map(|class| ToWorker::Reclaim { class }),
        any::<u64>().prop_map(|version| ToWorker::HorizonWanted { version }),
        (r, slot_strategy()).prop_map(|(request, slot)| ToWorker::Allocated { request, slot }),
        allocate_done_strategy(),
        (r, occupy).prop_map(|(request, outcome)| ToWorker::Occupied { request, outcome }),
        (r, release).prop_map(|(request, outcome)| ToWorker::Released { request, outcome }),
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
        prop_assert!((TAG_ALLOCATED..=TAG_HORIZON_WANTED).contains(&frame[TAG_AT]));
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
        ToController::ReturnSlot {
            worker: 0,
            request,
            slot,
        },
        ToController::ReaderHorizon {
            worker: 0,
            version: 1,
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
        ToWorker::Error {
            request,
            code: ErrorCode::Io,
        },
    ];
    let mut tags: Vec<u8> = controller.iter().map(|m| m.encode()[TAG_AT]).collect();
    // Tags 4 and 6 (get_address, list) are retired, never reused.
    assert_eq!(tags, [1, 2, 3, 5, 7]);
    tags.extend(worker.iter().map(|m| m.encode()[TAG_AT]));
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), controller.len() + worker.len());
    assert!(worker.iter().all(|m| m.request() == Some(1)));
}

/// Tags of neither direction (retired ones too, and of the other direction) are `UnknownTag`.
#[test]
fn unknown_tags_are_rejected() {
    for tag in [0, 4, 6, 8, 0x80, 0x85, 0x86, 0x87, 0x8b, 0xff] {
        let mut frame = [0u8; FRAME_BYTES];
        frame[TAG_AT] = tag;
        assert_eq!(
            ToController::decode(&frame),
            Err(DecodeError::UnknownTag(tag))
        );
        assert_eq!(ToWorker::decode(&frame), Err(DecodeError::UnknownTag(tag)));
    }
    let frame = ToWorker::Allocated {
        request: 4,
        slot: sample_slot(),
    }
    .encode();
    assert_eq!(
        ToController::decode(&frame),
        Err(DecodeError::UnknownTag(TAG_ALLOCATED))
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

/// Allocate counts outside their range are `BadLength`.
#[test]
fn count_out_of_range_is_rejected() {
    let class = SizeClass::MIN;
    let allocate = ToController::Allocate {
        worker: 0,
        request: 0,
        class,
        count: 1,
    }
    .encode();
    for (frame, max) in [(allocate, ALLOCATE_COUNT_MAX)] {
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

/// Unused bytes must be zero.
#[test]
fn nonzero_padding_is_rejected() {
    let mut frame = ToWorker::Released {
        request: 0,
        outcome: ReleaseOutcome::Deleted,
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
        let mut frame = ToWorker::Released {
            request: 0,
            outcome: ReleaseOutcome::Deleted,
        }
        .encode();
        frame[at] = 1;
        assert_eq!(
            ToWorker::decode(&frame),
            Err(DecodeError::NonZeroPadding),
            "{at}"
        );
    }
    let mut frame = ToController::ReturnSlot {
        worker: 0,
        request: 0,
        slot: sample_slot(),
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
