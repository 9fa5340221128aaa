//! Unit and property tests of the buddy allocator (`super`): fixed scenarios of split, merge,
//! mark, grow and exhaustion, the invariant checker catching broken states, and random operation
//! sequences checked against the page-bitmap model (`test_support::allocator_model`).

use super::*;
use crate::test_support::allocator_model::{AllocatorModel, PAGES_PER_TOP};
use proptest::prelude::*;

const KIB: u64 = 1024;

fn class(index: u8) -> SizeClass {
    SizeClass::new(index).unwrap()
}

fn slot(offset: u64, index: u8) -> Slot {
    Slot {
        offset,
        class: class(index),
    }
}

#[test]
fn new_allocator_is_all_free_top_level_slots() {
    let a = BuddyAllocator::new(4 * SLOT_MAX_BYTES);
    assert_eq!(a.capacity_bytes(), 4 * SLOT_MAX_BYTES);
    assert_eq!(a.free_bytes(), 4 * SLOT_MAX_BYTES);
    assert_eq!(a.allocated_bytes(), 0);
    assert_eq!(a.free_slots(SizeClass::MAX), 4);
    assert!(SizeClass::ALL[..7].iter().all(|&c| a.free_slots(c) == 0));
    a.check_invariants();
}

#[test]
#[should_panic(expected = "multiple of")]
fn new_rejects_a_capacity_that_is_not_a_multiple_of_512k() {
    BuddyAllocator::new(SLOT_MAX_BYTES + 4 * KIB);
}

#[test]
fn allocate_splits_down_and_free_merges_back_up() {
    let mut a = BuddyAllocator::new(SLOT_MAX_BYTES);
    let s = a.allocate(SizeClass::MIN).unwrap();
    assert_eq!(s, slot(0, 0));
    // One free buddy at every class below the top: 4k at 4k, 8k at 8k, ..., 256k at 256k.
    for c in &SizeClass::ALL[..7] {
        assert_eq!(a.free_slots(*c), 1);
    }
    assert_eq!(a.free_slots(SizeClass::MAX), 0);
    assert_eq!(a.free_bytes(), SLOT_MAX_BYTES - 4 * KIB);
    a.free(s).unwrap();
    assert_eq!(a.free_slots(SizeClass::MAX), 1);
    assert_eq!(a.free_bytes(), SLOT_MAX_BYTES);
    assert_eq!(a.allocated_slots(), 0);
}

#[test]
fn allocate_takes_the_lowest_offset_and_reuses_split_halves_first() {
    let mut a = BuddyAllocator::new(2 * SLOT_MAX_BYTES);
    assert_eq!(a.allocate(class(0)), Some(slot(0, 0)));
    assert_eq!(a.allocate(class(0)), Some(slot(4 * KIB, 0)));
    assert_eq!(a.allocate(class(1)), Some(slot(8 * KIB, 1)));
    assert_eq!(a.allocate(class(7)), Some(slot(SLOT_MAX_BYTES, 7)));
    assert_eq!(a.allocate(class(2)), Some(slot(16 * KIB, 2)));
    let offsets: Vec<u64> = a.allocated_iter().map(|s| s.offset).collect();
    assert_eq!(offsets, vec![0, 4 * KIB, 8 * KIB, 16 * KIB, SLOT_MAX_BYTES]);
}

#[test]
fn free_rejects_wrong_slots_without_changing_state() {
    let mut a = BuddyAllocator::new(SLOT_MAX_BYTES);
    let s = a.allocate(class(1)).unwrap();
    let before = a.clone();
    assert_eq!(a.free(slot(0, 0)), Err(SlotError::NotAllocated));
    assert_eq!(a.free(slot(0, 2)), Err(SlotError::NotAllocated));
    assert_eq!(a.free(slot(8 * KIB, 1)), Err(SlotError::NotAllocated));
    assert_eq!(a.free(slot(4 * KIB, 1)), Err(SlotError::Misaligned));
    assert_eq!(a.free(slot(SLOT_MAX_BYTES, 0)), Err(SlotError::OutOfRange));
    assert_eq!(a.free(slot(u64::MAX - 4095, 0)), Err(SlotError::OutOfRange));
    assert_eq!(a, before);
    a.free(s).unwrap();
    assert_eq!(a.free(s), Err(SlotError::NotAllocated), "double free");
    assert_eq!(a.free_slots(SizeClass::MAX), 1);
}

#[test]
fn mark_allocated_carves_exactly_the_slot() {
    let mut a = BuddyAllocator::new(2 * SLOT_MAX_BYTES);
    let s = slot(SLOT_MAX_BYTES + 64 * KIB, 4);
    a.mark_allocated(s).unwrap();
    assert!(a.is_allocated(s));
    assert!(!a.is_allocated(slot(s.offset, 3)));
    assert_eq!(a.allocated_bytes(), 64 * KIB);
    // The untouched top-level slot stays whole; the other splits into 64k, 128k and 256k.
    assert_eq!(a.free_slots(class(7)), 1);
    assert_eq!((a.free_slots(class(4)), a.free_slots(class(5))), (1, 1));
    assert_eq!(a.free_slots(class(6)), 1);
    assert_eq!(a.allocate(class(4)), Some(slot(SLOT_MAX_BYTES, 4)));
    a.free(s).unwrap();
    a.free(slot(SLOT_MAX_BYTES, 4)).unwrap();
    assert_eq!(a.free_slots(class(7)), 2);
}

#[test]
fn mark_allocated_refuses_space_that_is_not_free_without_changing_state() {
    let mut a = BuddyAllocator::new(SLOT_MAX_BYTES);
    a.mark_allocated(slot(32 * KIB, 2)).unwrap();
    let before = a.clone();
    assert_eq!(a.mark_allocated(slot(32 * KIB, 2)), Err(SlotError::NotFree));
    assert_eq!(a.mark_allocated(slot(36 * KIB, 0)), Err(SlotError::NotFree));
    assert_eq!(a.mark_allocated(slot(0, 6)), Err(SlotError::NotFree));
    assert_eq!(
        a.mark_allocated(slot(4 * KIB, 2)),
        Err(SlotError::Misaligned)
    );
    assert_eq!(
        a.mark_allocated(slot(SLOT_MAX_BYTES, 7)),
        Err(SlotError::OutOfRange)
    );
    assert_eq!(a, before);
    assert_eq!(a.mark_allocated(slot(48 * KIB, 2)), Ok(()));
}

#[test]
fn grow_adds_free_top_level_slots_after_the_old_end() {
    let mut a = BuddyAllocator::new(SLOT_MAX_BYTES);
    assert_eq!(a.allocate(class(7)), Some(slot(0, 7)));
    assert_eq!(a.allocate(class(0)), None);
    a.grow(SLOT_MAX_BYTES);
    assert_eq!(a.free_bytes(), 0, "growing to the same capacity is a no-op");
    a.grow(3 * SLOT_MAX_BYTES);
    assert_eq!(a.free_slots(SizeClass::MAX), 2);
    assert_eq!(a.free_bytes(), 2 * SLOT_MAX_BYTES);
    assert_eq!(a.allocate(class(0)), Some(slot(SLOT_MAX_BYTES, 0)));
}

#[test]
#[should_panic(expected = "cannot shrink")]
fn grow_refuses_to_shrink() {
    BuddyAllocator::new(2 * SLOT_MAX_BYTES).grow(SLOT_MAX_BYTES);
}

#[test]
fn exhaustion_returns_none_and_can_allocate_agrees() {
    let mut a = BuddyAllocator::new(SLOT_MAX_BYTES);
    let slots: Vec<Slot> = (0..16).map(|_| a.allocate(class(3)).unwrap()).collect();
    assert!(slots.windows(2).all(|w| w[0].end() == w[1].offset));
    assert_eq!(a.free_bytes(), 0);
    assert!(!a.can_allocate(class(3)) && !a.can_allocate(class(0)));
    assert_eq!(a.allocate(class(0)), None);
    a.free(slots[5]).unwrap();
    assert!(a.can_allocate(class(0)) && !a.can_allocate(class(4)));
    assert_eq!(a.allocate(class(4)), None);
    assert_eq!(a.allocate(class(0)), Some(slot(5 * 32 * KIB, 0)));
}

#[test]
#[should_panic(expected = "unmerged buddies")]
fn check_invariants_catches_unmerged_buddies() {
    let mut a = BuddyAllocator::new(SLOT_MAX_BYTES);
    a.free_offsets[SizeClass::MAX.index()].clear();
    a.free_offsets[6].insert(0);
    a.free_offsets[6].insert(256 * KIB);
    a.check_invariants();
}

#[test]
#[should_panic(expected = "overlap")]
fn check_invariants_catches_overlap() {
    let mut a = BuddyAllocator::new(SLOT_MAX_BYTES);
    a.free_offsets[0].insert(4 * KIB);
    a.check_invariants();
}

#[test]
#[should_panic(expected = "cover the capacity")]
fn check_invariants_catches_lost_space() {
    let mut a = BuddyAllocator::new(2 * SLOT_MAX_BYTES);
    a.free_offsets[SizeClass::MAX.index()].remove(&SLOT_MAX_BYTES);
    a.free_bytes -= SLOT_MAX_BYTES;
    a.check_invariants();
}

#[cfg(feature = "sim-bugs")]
#[test]
#[should_panic(expected = "unmerged buddies")]
fn injected_skip_merge_is_caught_by_the_invariants() {
    let mut a = BuddyAllocator::new(SLOT_MAX_BYTES);
    let first = a.allocate(class(0)).unwrap();
    let second = a.allocate(class(0)).unwrap();
    a.inject_skip_merge(true);
    a.free(first).unwrap();
    a.free(second).unwrap();
    a.check_invariants();
}

/// One random step against the allocator and the page-bitmap model.
#[derive(Clone, Debug)]
enum Op {
    Allocate(u8),
    /// Frees the `k % live`-th live slot.
    FreeLive(usize),
    /// Frees an arbitrary (usually bogus) slot at `page * 4 KiB`.
    FreeAny {
        page: u32,
        class: u8,
    },
    /// Marks an arbitrary slot; `align` rounds the offset down to the class size first.
    Mark {
        page: u32,
        class: u8,
        align: bool,
    },
    /// Grows by this many top-level slots (bounded by `TOP_SLOTS_MAX`).
    Grow(u8),
}

/// Capacity limit of the property test, in top-level slots (8 MiB).
const TOP_SLOTS_MAX: u64 = 16;

/// Applies one drawn step to the allocator and its page-bitmap model, then checks them.
fn apply(model: &mut AllocatorModel, op: Op) {
    match op {
        Op::Allocate(c) => model.allocate(class(c % 8)),
        Op::FreeLive(k) => model.free_live(k),
        Op::FreeAny { page, class: c } => {
            model.free_any(slot(u64::from(page) * SLOT_MIN_BYTES, c % 8))
        }
        Op::Mark {
            page,
            class: c,
            align,
        } => {
            let c = class(c % 8);
            let mut offset = u64::from(page) * SLOT_MIN_BYTES;
            if align {
                offset -= offset % c.bytes();
            }
            model.mark(Slot { offset, class: c });
        }
        Op::Grow(n) => model.grow(u64::from(n % 3), TOP_SLOTS_MAX),
    }
    model.check();
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let page_max = (TOP_SLOTS_MAX as u32 + 1) * PAGES_PER_TOP as u32;
    prop_oneof![
        5 => (0u8..8).prop_map(Op::Allocate),
        3 => any::<usize>().prop_map(Op::FreeLive),
        1 => (0..page_max, 0u8..8).prop_map(|(page, class)| Op::FreeAny { page, class }),
        2 => (0..page_max, 0u8..8, any::<bool>())
            .prop_map(|(page, class, align)| Op::Mark { page, class, align }),
        1 => (0u8..3).prop_map(Op::Grow),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random allocate/free/mark/grow sequences agree with the page bitmap at every step,
    /// and freeing everything restores whole top-level slots.
    #[test]
    fn agrees_with_page_bitmap_model(
        top_slots in 1u64..=4,
        ops in proptest::collection::vec(op_strategy(), 1..300),
    ) {
        let mut model = AllocatorModel::new(top_slots);
        model.check();
        for op in ops {
            apply(&mut model, op);
        }
        model.free_everything();
    }

    /// Small classes only: deep splits and long merge chains on a single top-level slot.
    #[test]
    fn small_classes_fill_and_drain_one_top_slot(
        ops in proptest::collection::vec((0u8..3).prop_map(Op::Allocate), 1..200),
        frees in proptest::collection::vec(any::<usize>().prop_map(Op::FreeLive), 0..200),
    ) {
        let mut model = AllocatorModel::new(1);
        for op in ops.into_iter().chain(frees) {
            apply(&mut model, op);
        }
        model.free_everything();
    }

    /// Building from the allocated slots (in any order) gives exactly the allocator that
    /// `new` + `mark_allocated` of each gives, and the one the operations produced.
    #[test]
    fn from_allocated_equals_the_allocator_it_describes(
        top_slots in 1u64..=4,
        ops in proptest::collection::vec(op_strategy(), 1..300),
        seed in any::<u64>(),
    ) {
        let mut model = AllocatorModel::new(top_slots);
        for op in ops {
            apply(&mut model, op);
        }
        let a = model.allocator();
        let mut slots: Vec<Slot> = a
            .allocated
            .iter()
            .map(|(&offset, &class)| Slot { offset, class })
            .collect();
        // A deterministic shuffle: recovery sees the slots in hash order.
        let mut x = seed | 1;
        for i in (1..slots.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            slots.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut marked = BuddyAllocator::new(a.capacity_bytes());
        for &s in &slots {
            marked.mark_allocated(s).unwrap();
        }
        let built = BuddyAllocator::from_allocated(a.capacity_bytes(), slots).unwrap();
        prop_assert_eq!(&built, a);
        prop_assert_eq!(&built, &marked);
    }
}

#[test]
fn from_allocated_refuses_bad_slot_sets() {
    let cap = 2 * SLOT_MAX_BYTES;
    let overlap = vec![slot(0, 1), slot(0, 0)];
    assert_eq!(
        BuddyAllocator::from_allocated(cap, overlap),
        Err(SlotError::NotFree)
    );
    let inside_bigger = vec![slot(8 * KIB, 0), slot(0, 2)];
    assert_eq!(
        BuddyAllocator::from_allocated(cap, inside_bigger),
        Err(SlotError::NotFree)
    );
    assert_eq!(
        BuddyAllocator::from_allocated(cap, vec![slot(4 * KIB, 1)]),
        Err(SlotError::Misaligned)
    );
    assert_eq!(
        BuddyAllocator::from_allocated(cap, vec![slot(2 * SLOT_MAX_BYTES, 0)]),
        Err(SlotError::OutOfRange)
    );
    let a = BuddyAllocator::from_allocated(cap, vec![slot(4 * KIB, 0)]).unwrap();
    assert_eq!(a.allocated_bytes(), 4 * KIB);
    a.check_invariants();
}
