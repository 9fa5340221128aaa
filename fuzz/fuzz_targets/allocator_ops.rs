//! Fuzzes the buddy allocator (engine/src/buddy.rs) against a page bitmap.
//!
//! The model is one bool per 4 KiB page (`true` = free). Arbitrary sequences of allocate, free
//! (of a live slot or of any slot), mark_allocated and grow must agree with it at every step:
//! allocate returns pages the model has free, and returns `None` exactly when the model has no
//! aligned free run of the class's size; failed calls change nothing; `check_invariants` holds
//! after every step; and freeing everything leaves only whole 512 KiB slots. Capacity stays at
//! most 64 MiB so the model stays small.

#![no_main]

use arbitrary::Arbitrary;
use engine::buddy::{BuddyAllocator, Slot, SlotError};
use engine::size_class::{CLASS_COUNT, SLOT_MAX_BYTES, SLOT_MIN_BYTES};
use engine::SizeClass;
use libfuzzer_sys::fuzz_target;

/// Largest capacity the fuzzer builds: 64 MiB, i.e. 128 top-level slots.
const CAPACITY_BYTES_MAX: u64 = 64 * 1024 * 1024;
const TOP_SLOTS_MAX: u64 = CAPACITY_BYTES_MAX / SLOT_MAX_BYTES;
/// Longest op sequence run per input.
const OPS_MAX: usize = 2048;
const PAGES_PER_TOP: usize = (SLOT_MAX_BYTES / SLOT_MIN_BYTES) as usize;

const _: () = assert!(CAPACITY_BYTES_MAX.is_multiple_of(SLOT_MAX_BYTES));
const _: () = assert!(TOP_SLOTS_MAX >= 1 && TOP_SLOTS_MAX <= 256);

#[derive(Arbitrary, Debug)]
enum Op {
    Allocate {
        class: u8,
    },
    /// Frees the `k % live`-th live slot.
    FreeLive {
        k: u16,
    },
    /// Frees any slot at all (usually not allocated, often misaligned or out of range).
    FreeAny {
        offset: u64,
        class: u8,
    },
    /// Marks any slot at all.
    MarkAny {
        offset: u64,
        class: u8,
    },
    /// Marks the `index`-th aligned slot of `class` (in range more often than `MarkAny`).
    MarkAligned {
        index: u16,
        class: u8,
    },
    /// Grows by `top_slots % 4` top-level slots, up to `CAPACITY_BYTES_MAX`.
    Grow {
        top_slots: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    top_slots: u8,
    ops: Vec<Op>,
}

fn class(raw: u8) -> SizeClass {
    SizeClass::new(raw % CLASS_COUNT as u8).expect("index reduced below CLASS_COUNT")
}

/// The allocator under test and the page-bitmap model it must agree with.
struct Harness {
    allocator: BuddyAllocator,
    pages_free: Vec<bool>,
    live: Vec<Slot>,
}

impl Harness {
    fn new(top_slots: u64) -> Harness {
        assert!((1..=TOP_SLOTS_MAX).contains(&top_slots));
        let allocator = BuddyAllocator::new(top_slots * SLOT_MAX_BYTES);
        let pages_free = vec![true; top_slots as usize * PAGES_PER_TOP];
        Harness {
            allocator,
            pages_free,
            live: Vec::new(),
        }
    }

    fn pages(slot: Slot) -> std::ops::Range<usize> {
        let first = (slot.offset / SLOT_MIN_BYTES) as usize;
        first..first + (slot.bytes() / SLOT_MIN_BYTES) as usize
    }

    fn set_pages(&mut self, slot: Slot, free: bool) {
        let range = Harness::pages(slot);
        assert!(
            self.pages_free[range.clone()].iter().all(|&f| f != free),
            "{slot:?}"
        );
        self.pages_free[range].fill(free);
    }

    /// Buddy allocation succeeds exactly when some aligned run of the class's pages is free.
    fn model_can_allocate(&self, class: SizeClass) -> bool {
        let run = (class.bytes() / SLOT_MIN_BYTES) as usize;
        self.pages_free
            .chunks_exact(run)
            .any(|chunk| chunk.iter().all(|&f| f))
    }

    /// The argument error the allocator must report for `slot`, if any.
    fn model_bounds_error(&self, slot: Slot) -> Option<SlotError> {
        let capacity = self.allocator.capacity_bytes();
        if !slot.offset.is_multiple_of(slot.bytes()) {
            Some(SlotError::Misaligned)
        } else if slot.offset >= capacity || slot.bytes() > capacity - slot.offset {
            Some(SlotError::OutOfRange)
        } else {
            None
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Allocate { class: c } => self.allocate(class(c)),
            Op::FreeLive { k } if !self.live.is_empty() => {
                let slot = self.live.remove(usize::from(k) % self.live.len());
                assert_eq!(self.allocator.free(slot), Ok(()));
                self.set_pages(slot, true);
            }
            Op::FreeLive { .. } => {}
            Op::FreeAny { offset, class: c } => self.free_any(Slot {
                offset,
                class: class(c),
            }),
            Op::MarkAny { offset, class: c } => self.mark(Slot {
                offset,
                class: class(c),
            }),
            Op::MarkAligned { index, class: c } => {
                let c = class(c);
                self.mark(Slot {
                    offset: u64::from(index) * c.bytes(),
                    class: c,
                });
            }
            Op::Grow { top_slots } => {
                let now = self.allocator.capacity_bytes() / SLOT_MAX_BYTES;
                let target = (now + u64::from(top_slots % 4)).min(TOP_SLOTS_MAX);
                self.allocator.grow(target * SLOT_MAX_BYTES);
                self.pages_free
                    .resize(target as usize * PAGES_PER_TOP, true);
            }
        }
        self.check();
    }

    fn allocate(&mut self, class: SizeClass) {
        let expected = self.model_can_allocate(class);
        assert_eq!(self.allocator.can_allocate(class), expected);
        match self.allocator.allocate(class) {
            Some(slot) => {
                assert!(
                    expected,
                    "allocate({class}) succeeded with no aligned free run"
                );
                assert_eq!(slot.class, class);
                self.set_pages(slot, false);
                self.live.push(slot);
            }
            None => assert!(
                !expected,
                "allocate({class}) failed with an aligned free run"
            ),
        }
    }

    fn free_any(&mut self, slot: Slot) {
        if let Some(index) = self.live.iter().position(|&l| l == slot) {
            assert_eq!(self.allocator.free(slot), Ok(()));
            self.live.remove(index);
            self.set_pages(slot, true);
            return;
        }
        let before = self.allocator.clone();
        let expected = self
            .model_bounds_error(slot)
            .unwrap_or(SlotError::NotAllocated);
        assert_eq!(self.allocator.free(slot), Err(expected), "{slot:?}");
        assert_eq!(self.allocator, before, "failed free changed state");
    }

    fn mark(&mut self, slot: Slot) {
        let expected = self.model_bounds_error(slot).or_else(|| {
            let all_free = self.pages_free[Harness::pages(slot)].iter().all(|&f| f);
            (!all_free).then_some(SlotError::NotFree)
        });
        let before = self.allocator.clone();
        match (self.allocator.mark_allocated(slot), expected) {
            (Ok(()), None) => {
                self.set_pages(slot, false);
                self.live.push(slot);
            }
            (Err(got), Some(want)) => {
                assert_eq!(got, want, "{slot:?}");
                assert_eq!(self.allocator, before, "failed mark changed state");
            }
            (got, want) => panic!("mark_allocated({slot:?}) = {got:?}, model expects {want:?}"),
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
        assert_eq!(a.allocated_slots(), self.live.len());
        for class in SizeClass::ALL {
            assert_eq!(
                a.can_allocate(class),
                self.model_can_allocate(class),
                "{class}"
            );
        }
    }

    fn free_everything(&mut self) {
        let mut live = self.allocator.allocated_iter().collect::<Vec<_>>();
        let mut model = self.live.clone();
        model.sort();
        assert_eq!(live, model, "allocated_iter disagrees with the live slots");
        // Bounded by the number of live slots, which only shrinks here.
        while let Some(slot) = live.pop() {
            assert_eq!(self.allocator.free(slot), Ok(()));
            self.set_pages(slot, true);
        }
        self.live.clear();
        self.check();
        let a = &self.allocator;
        let top_slots = (a.capacity_bytes() / SLOT_MAX_BYTES) as usize;
        assert_eq!(a.free_slots(SizeClass::MAX), top_slots);
        assert!(SizeClass::ALL[..CLASS_COUNT - 1]
            .iter()
            .all(|&c| a.free_slots(c) == 0));
    }
}

fuzz_target!(|input: Input| {
    let top_slots = u64::from(input.top_slots) % TOP_SLOTS_MAX + 1;
    let mut harness = Harness::new(top_slots);
    harness.check();
    for op in input.ops.into_iter().take(OPS_MAX) {
        harness.apply(op);
    }
    harness.free_everything();
});
