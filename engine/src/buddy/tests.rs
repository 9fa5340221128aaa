//! Unit and property tests of the buddy allocator (`super`): fixed scenarios of split, merge,
//! mark, grow and exhaustion, the invariant checker catching broken states, and random operation
//! sequences checked against the page-bitmap model.

use super::*;
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
const PAGES_PER_TOP: usize = (SLOT_MAX_BYTES / SLOT_MIN_BYTES) as usize;

/// The allocator under test next to a plain model: one bool per 4 KiB page, `true` = free.
struct Harness {
    allocator: BuddyAllocator,
    pages_free: Vec<bool>,
    live: Vec<Slot>,
}

impl Harness {
    fn new(top_slots: u64) -> Harness {
        let pages = top_slots as usize * PAGES_PER_TOP;
        let allocator = BuddyAllocator::new(top_slots * SLOT_MAX_BYTES);
        Harness {
            allocator,
            pages_free: vec![true; pages],
            live: Vec::new(),
        }
    }

    fn pages(s: Slot) -> std::ops::Range<usize> {
        let first = (s.offset / SLOT_MIN_BYTES) as usize;
        first..first + (s.bytes() / SLOT_MIN_BYTES) as usize
    }

    fn set_pages(&mut self, s: Slot, free: bool) {
        let range = Harness::pages(s);
        assert!(self.pages_free[range.clone()].iter().all(|&f| f != free));
        self.pages_free[range].fill(free);
    }

    /// The model's view of buddy allocation: some aligned run of the class's pages is free.
    fn model_can_allocate(&self, c: SizeClass) -> bool {
        let run = (c.bytes() / SLOT_MIN_BYTES) as usize;
        self.pages_free
            .chunks_exact(run)
            .any(|chunk| chunk.iter().all(|&f| f))
    }

    fn model_error(&self, s: Slot) -> Option<SlotError> {
        let capacity = self.allocator.capacity_bytes();
        if !s.offset.is_multiple_of(s.bytes()) {
            Some(SlotError::Misaligned)
        } else if s.offset >= capacity || s.bytes() > capacity - s.offset {
            Some(SlotError::OutOfRange)
        } else {
            None
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Allocate(c) => self.allocate(class(c % 8)),
            Op::FreeLive(k) if !self.live.is_empty() => {
                let s = self.live.remove(k % self.live.len());
                assert_eq!(self.allocator.free(s), Ok(()));
                self.set_pages(s, true);
            }
            Op::FreeLive(_) => {}
            Op::FreeAny { page, class: c } => {
                self.free_any(slot(u64::from(page) * SLOT_MIN_BYTES, c % 8))
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
                self.mark(Slot { offset, class: c });
            }
            Op::Grow(n) => {
                let top_slots = self.allocator.capacity_bytes() / SLOT_MAX_BYTES;
                let target = (top_slots + u64::from(n % 3)).min(TOP_SLOTS_MAX.max(top_slots));
                self.allocator.grow(target * SLOT_MAX_BYTES);
                self.pages_free
                    .resize(target as usize * PAGES_PER_TOP, true);
            }
        }
        self.check();
    }

    fn allocate(&mut self, c: SizeClass) {
        let expected = self.model_can_allocate(c);
        assert_eq!(self.allocator.can_allocate(c), expected);
        match self.allocator.allocate(c) {
            Some(s) => {
                assert!(expected && s.class == c);
                self.set_pages(s, false);
                self.live.push(s);
            }
            None => assert!(!expected, "allocate({c}) failed with an aligned free run"),
        }
    }

    fn free_any(&mut self, s: Slot) {
        if let Some(index) = self.live.iter().position(|&l| l == s) {
            assert_eq!(self.allocator.free(s), Ok(()));
            self.live.remove(index);
            self.set_pages(s, true);
            return;
        }
        let before = self.allocator.clone();
        let expected = self.model_error(s).unwrap_or(SlotError::NotAllocated);
        assert_eq!(self.allocator.free(s), Err(expected));
        assert_eq!(self.allocator, before, "failed free changed state");
    }

    fn mark(&mut self, s: Slot) {
        let expected = self.model_error(s).or_else(|| {
            let all_free = self.pages_free[Harness::pages(s)].iter().all(|&f| f);
            (!all_free).then_some(SlotError::NotFree)
        });
        let before = self.allocator.clone();
        match (self.allocator.mark_allocated(s), expected) {
            (Ok(()), None) => {
                self.set_pages(s, false);
                self.live.push(s);
            }
            (Err(got), Some(want)) => {
                assert_eq!(got, want);
                assert_eq!(self.allocator, before, "failed mark changed state");
            }
            (got, want) => panic!("mark_allocated({s:?}) = {got:?}, model expects {want:?}"),
        }
    }

    fn check(&self) {
        let a = &self.allocator;
        a.check_invariants();
        let free_pages = self.pages_free.iter().filter(|&&f| f).count() as u64;
        assert_eq!(a.free_bytes(), free_pages * SLOT_MIN_BYTES);
        assert_eq!(
            a.capacity_bytes(),
            self.pages_free.len() as u64 * SLOT_MIN_BYTES
        );
        let mut live = self.live.clone();
        live.sort();
        assert_eq!(a.allocated_iter().collect::<Vec<_>>(), live);
        for c in SizeClass::ALL {
            assert_eq!(a.can_allocate(c), self.model_can_allocate(c), "class {c}");
        }
    }

    fn free_everything(&mut self) {
        // Bounded by the number of live slots, which only shrinks here.
        while let Some(s) = self.live.pop() {
            assert_eq!(self.allocator.free(s), Ok(()));
            self.set_pages(s, true);
            self.check();
        }
        let a = &self.allocator;
        let top_slots = (a.capacity_bytes() / SLOT_MAX_BYTES) as usize;
        assert_eq!(a.free_slots(SizeClass::MAX), top_slots);
        assert!(SizeClass::ALL[..7].iter().all(|&c| a.free_slots(c) == 0));
        assert_eq!((a.allocated_slots(), a.allocated_bytes()), (0, 0));
    }
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
        let mut harness = Harness::new(top_slots);
        harness.check();
        for op in ops {
            harness.apply(op);
        }
        harness.free_everything();
    }

    /// Small classes only: deep splits and long merge chains on a single top-level slot.
    #[test]
    fn small_classes_fill_and_drain_one_top_slot(
        ops in proptest::collection::vec((0u8..3).prop_map(Op::Allocate), 1..200),
        frees in proptest::collection::vec(any::<usize>().prop_map(Op::FreeLive), 0..200),
    ) {
        let mut harness = Harness::new(1);
        for op in ops.into_iter().chain(frees) {
            harness.apply(op);
        }
        harness.free_everything();
    }

    /// Building from the allocated slots (in any order) gives exactly the allocator that
    /// `new` + `mark_allocated` of each gives, and the one the operations produced.
    #[test]
    fn from_allocated_equals_the_allocator_it_describes(
        top_slots in 1u64..=4,
        ops in proptest::collection::vec(op_strategy(), 1..300),
        seed in any::<u64>(),
    ) {
        let mut harness = Harness::new(top_slots);
        for op in ops {
            harness.apply(op);
        }
        let a = &harness.allocator;
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
