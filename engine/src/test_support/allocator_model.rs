//! The buddy allocator under test next to a plain model: one bool per 4 KiB page (`true` = free).
//!
//! Callers (the proptests in `buddy/tests.rs`, the fuzz target `allocator_ops`) draw operations
//! their own way and apply them through [`AllocatorModel`]'s methods, then call
//! [`AllocatorModel::check`]. Every method asserts that the allocator agrees with the model:
//! allocate returns pages the model has free, and returns `None` exactly when the model has no
//! aligned free run of the class's size; a failed call returns the error the model predicts and
//! changes nothing; freeing everything leaves only whole 512 KiB slots.
//!
//! Invariants: `pages_free.len()` pages cover exactly the allocator's capacity; `live` holds
//! exactly the allocated slots (any order). It must never hide a disagreement: every mismatch
//! panics with the operation that caused it.

use crate::buddy::{BuddyAllocator, Slot, SlotError};
use crate::size_class::{SizeClass, CLASS_COUNT, SLOT_MAX_BYTES, SLOT_MIN_BYTES};

/// 4 KiB pages in one top-level (512 KiB) slot.
pub const PAGES_PER_TOP: usize = (SLOT_MAX_BYTES / SLOT_MIN_BYTES) as usize;

/// The class of index `raw % CLASS_COUNT`: any byte names a class.
pub fn class_of(raw: u8) -> SizeClass {
    SizeClass::new(raw % CLASS_COUNT as u8).expect("index reduced below CLASS_COUNT")
}

/// The allocator under test and the page-bitmap model it must agree with.
pub struct AllocatorModel {
    allocator: BuddyAllocator,
    pages_free: Vec<bool>,
    live: Vec<Slot>,
}

impl AllocatorModel {
    /// A fresh allocator of `top_slots` top-level slots, all free, and its model.
    pub fn new(top_slots: u64) -> AllocatorModel {
        assert!(top_slots >= 1, "model: at least one top-level slot");
        let allocator = BuddyAllocator::new(top_slots * SLOT_MAX_BYTES);
        let pages_free = vec![true; top_slots as usize * PAGES_PER_TOP];
        AllocatorModel {
            allocator,
            pages_free,
            live: Vec::new(),
        }
    }

    /// The allocator under test.
    pub fn allocator(&self) -> &BuddyAllocator {
        &self.allocator
    }

    /// Allocated slots, in the order they were taken.
    pub fn live(&self) -> &[Slot] {
        &self.live
    }

    fn pages(slot: Slot) -> std::ops::Range<usize> {
        let first = (slot.offset / SLOT_MIN_BYTES) as usize;
        first..first + (slot.bytes() / SLOT_MIN_BYTES) as usize
    }

    fn set_pages(&mut self, slot: Slot, free: bool) {
        let range = AllocatorModel::pages(slot);
        assert!(
            self.pages_free[range.clone()].iter().all(|&f| f != free),
            "{slot:?}"
        );
        self.pages_free[range].fill(free);
    }

    /// Buddy allocation succeeds exactly when some aligned run of the class's pages is free.
    pub fn model_can_allocate(&self, class: SizeClass) -> bool {
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

    /// Allocates a slot of `class`; it must succeed exactly when the model has room.
    pub fn allocate(&mut self, class: SizeClass) {
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

    /// Frees the `k % live`-th live slot (nothing when none is live).
    pub fn free_live(&mut self, k: usize) {
        if self.live.is_empty() {
            return;
        }
        let slot = self.live.remove(k % self.live.len());
        assert_eq!(self.allocator.free(slot), Ok(()));
        self.set_pages(slot, true);
    }

    /// Frees any slot at all: a live one succeeds, anything else fails with the model's error
    /// and changes nothing.
    pub fn free_any(&mut self, slot: Slot) {
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

    /// Marks any slot allocated: it succeeds exactly when it is in range, aligned and wholly
    /// free in the model; a failure changes nothing.
    pub fn mark(&mut self, slot: Slot) {
        let expected = self.model_bounds_error(slot).or_else(|| {
            let all_free = self.pages_free[AllocatorModel::pages(slot)]
                .iter()
                .all(|&f| f);
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

    /// Grows by `add_top_slots` top-level slots, but not past `top_slots_max` (a capacity
    /// already above it stays as it is).
    pub fn grow(&mut self, add_top_slots: u64, top_slots_max: u64) {
        let now = self.allocator.capacity_bytes() / SLOT_MAX_BYTES;
        let target = (now + add_top_slots).min(top_slots_max.max(now));
        assert!(target >= now);
        self.allocator.grow(target * SLOT_MAX_BYTES);
        self.pages_free
            .resize(target as usize * PAGES_PER_TOP, true);
    }

    /// The allocator's invariants, and its counters, slots and answers against the model.
    pub fn check(&self) {
        let a = &self.allocator;
        a.check_invariants();
        let free_pages = self.pages_free.iter().filter(|&&f| f).count() as u64;
        assert_eq!(a.free_bytes(), free_pages * SLOT_MIN_BYTES);
        assert_eq!(
            a.capacity_bytes(),
            self.pages_free.len() as u64 * SLOT_MIN_BYTES
        );
        assert_eq!(a.allocated_slots(), self.live.len());
        let mut live = self.live.clone();
        live.sort();
        assert_eq!(
            a.allocated_iter().collect::<Vec<_>>(),
            live,
            "allocated_iter disagrees with the live slots"
        );
        for class in SizeClass::ALL {
            assert_eq!(
                a.can_allocate(class),
                self.model_can_allocate(class),
                "{class}"
            );
        }
    }

    /// Frees every live slot (the allocator's invariants are checked on every free in builds
    /// with debug assertions), then checks that only whole top-level slots are left.
    pub fn free_everything(&mut self) {
        // Bounded by the number of live slots, which only shrinks here.
        while let Some(slot) = self.live.pop() {
            assert_eq!(self.allocator.free(slot), Ok(()));
            self.set_pages(slot, true);
        }
        self.check();
        let a = &self.allocator;
        let top_slots = (a.capacity_bytes() / SLOT_MAX_BYTES) as usize;
        assert_eq!(a.free_slots(SizeClass::MAX), top_slots);
        assert!(SizeClass::ALL[..CLASS_COUNT - 1]
            .iter()
            .all(|&c| a.free_slots(c) == 0));
        assert_eq!((a.allocated_slots(), a.allocated_bytes()), (0, 0));
    }
}
