//! The buddy allocator: which slots of the data file are free and which hold a block.
//!
//! It owns one free list per size class (a `BTreeSet` of offsets) and the map of allocated slots
//! (offset -> class). A request takes the lowest-offset free block of its class, or splits the
//! lowest-offset block of the smallest larger class that has one; a freed slot merges with its
//! buddy, class by class, up to 512 KiB (top-level slots never merge).
//!
//! Invariants, checked by [`BuddyAllocator::check_invariants`] on entry and exit of every mutating
//! method in builds with debug assertions:
//! - every block, free or allocated, is aligned to its size and lies inside the capacity;
//! - no two blocks overlap, and together they cover the capacity: every byte is free or allocated
//!   exactly once;
//! - no free block has its buddy free at the same class (below 512 KiB, buddies always merge);
//! - the cached byte counters match the sets.
//!
//! It must never hand out a byte twice, never change state on a call that returns an error, and
//! never depend on anything but its call sequence (ordered collections only; no I/O, no clock).

use std::collections::{BTreeMap, BTreeSet};

use crate::size_class::{SizeClass, CLASS_COUNT, SLOT_MAX_BYTES, SLOT_MIN_BYTES};

/// Largest capacity: 1 PiB, which keeps every `offset + bytes` far from `u64` overflow.
pub const CAPACITY_BYTES_MAX: u64 = 1 << 50;

const _: () = assert!(CAPACITY_BYTES_MAX.is_multiple_of(SLOT_MAX_BYTES));
const _: () = assert!(SLOT_MAX_BYTES.is_power_of_two());
const _: () = assert!(SLOT_MIN_BYTES.is_power_of_two());
const _: () = assert!(CLASS_COUNT >= 2);

/// A slot of the data file: `class.bytes()` bytes at `offset` (aligned to its size).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Slot {
    pub offset: u64,
    pub class: SizeClass,
}

impl Slot {
    pub fn bytes(self) -> u64 {
        self.class.bytes()
    }
    pub fn end(self) -> u64 {
        self.offset + self.class.bytes()
    }
}

/// Why a slot given to [`BuddyAllocator::free`] or [`BuddyAllocator::mark_allocated`] was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SlotError {
    #[error("slot offset is not aligned to its class size")]
    Misaligned,
    #[error("slot extends past the allocator's capacity")]
    OutOfRange,
    #[error("no slot is allocated at this offset with this class")]
    NotAllocated,
    #[error("slot overlaps space that is not free")]
    NotFree,
}

/// Free lists per class plus the allocated map; see the module docs for the invariants.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BuddyAllocator {
    capacity_bytes: u64,
    /// Indexed by `SizeClass::index()`: offsets of free blocks of exactly that class.
    free_offsets: [BTreeSet<u64>; CLASS_COUNT],
    /// Offset -> class of every allocated slot.
    allocated: BTreeMap<u64, SizeClass>,
    free_bytes: u64,
    allocated_bytes: u64,
    /// Known bug for the simulator to catch: `free` does not merge buddies.
    #[cfg(feature = "sim-bugs")]
    skip_merge: bool,
}

impl BuddyAllocator {
    /// An allocator of `capacity_bytes` (a positive multiple of 512 KiB), all free as top-level
    /// 512 KiB slots.
    pub fn new(capacity_bytes: u64) -> BuddyAllocator {
        assert!(capacity_bytes > 0, "buddy: capacity must be positive");
        assert!(
            capacity_bytes.is_multiple_of(SLOT_MAX_BYTES),
            "buddy: capacity {capacity_bytes} is not a multiple of {SLOT_MAX_BYTES}"
        );
        assert!(
            capacity_bytes <= CAPACITY_BYTES_MAX,
            "buddy: capacity {capacity_bytes} exceeds {CAPACITY_BYTES_MAX}"
        );
        let mut allocator = BuddyAllocator {
            capacity_bytes,
            free_offsets: std::array::from_fn(|_| BTreeSet::new()),
            allocated: BTreeMap::new(),
            free_bytes: capacity_bytes,
            allocated_bytes: 0,
            #[cfg(feature = "sim-bugs")]
            skip_merge: false,
        };
        allocator.add_top_slots(0, capacity_bytes);
        assert_eq!(
            allocator.free_slots(SizeClass::MAX) as u64,
            capacity_bytes / SLOT_MAX_BYTES
        );
        allocator.debug_check();
        allocator
    }

    /// An allocator of `capacity_bytes` in which exactly `slots` are allocated (any order), built
    /// in one pass over the slots sorted by offset: what recovery does with the index's slots.
    /// Equivalent to `new` followed by `mark_allocated` of each slot, without walking the free
    /// lists per slot (startup with a million blocks). Refuses a misaligned, out-of-range or
    /// overlapping slot; the caller can then find the culprit with `mark_allocated`.
    pub fn from_allocated(
        capacity_bytes: u64,
        mut slots: Vec<Slot>,
    ) -> Result<BuddyAllocator, SlotError> {
        let mut allocator = BuddyAllocator::new(capacity_bytes);
        for &slot in &slots {
            allocator.check_bounds(slot)?;
        }
        slots.sort_unstable_by_key(|s| s.offset);
        for pair in slots.windows(2) {
            if pair[0].end() > pair[1].offset {
                return Err(SlotError::NotFree);
            }
        }
        let mut free: [Vec<u64>; CLASS_COUNT] = std::array::from_fn(|_| Vec::new());
        let mut rest = &slots[..];
        let mut top = 0;
        while top < capacity_bytes {
            let end = top + SLOT_MAX_BYTES;
            let n = rest.partition_point(|s| s.offset < end);
            let (inside, after) = rest.split_at(n);
            carve(top, SizeClass::MAX, inside, &mut free);
            rest = after;
            top = end;
        }
        assert!(rest.is_empty(), "every slot lies below the capacity");
        let allocated_bytes: u64 = slots.iter().map(|s| s.bytes()).sum();
        // Sorted input: both collections are built in bulk.
        allocator.free_offsets = free.map(BTreeSet::from_iter);
        allocator.allocated = slots.iter().map(|s| (s.offset, s.class)).collect();
        allocator.allocated_bytes = allocated_bytes;
        allocator.free_bytes = capacity_bytes - allocated_bytes;
        allocator.debug_check();
        Ok(allocator)
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// The lowest-offset free slot of `class`, splitting the lowest-offset block of the smallest
    /// larger class when `class` has none; `None` when no free block of `class` or larger exists.
    pub fn allocate(&mut self, class: SizeClass) -> Option<Slot> {
        self.debug_check();
        let source = self.smallest_free_class(class)?;
        assert!(source >= class);
        let offset = self.free_offsets[source.index()]
            .pop_first()
            .expect("buddy: smallest_free_class returned an empty class");
        // Keep the lower half at every split; the upper half goes to the next smaller free list.
        let mut current = source;
        while current > class {
            current = current
                .smaller()
                .expect("buddy: split below the smallest class");
            let inserted = self.free_offsets[current.index()].insert(offset + current.bytes());
            assert!(inserted, "buddy: split half at {offset} already free");
        }
        let slot = Slot { offset, class };
        assert!(slot.offset.is_multiple_of(slot.bytes()) && slot.end() <= self.capacity_bytes);
        let previous = self.allocated.insert(slot.offset, slot.class);
        assert!(
            previous.is_none(),
            "buddy: handed out allocated offset {offset}"
        );
        self.free_bytes -= slot.bytes();
        self.allocated_bytes += slot.bytes();
        self.debug_check();
        Some(slot)
    }

    /// Frees exactly an allocated slot (same offset and class) and merges it with free buddies up
    /// to 512 KiB. On `Err` nothing changes.
    pub fn free(&mut self, slot: Slot) -> Result<(), SlotError> {
        self.debug_check();
        self.check_bounds(slot)?;
        if self.allocated.get(&slot.offset) != Some(&slot.class) {
            return Err(SlotError::NotAllocated);
        }
        let removed = self.allocated.remove(&slot.offset);
        assert_eq!(removed, Some(slot.class));
        self.allocated_bytes -= slot.bytes();
        self.free_bytes += slot.bytes();

        let (mut offset, mut class) = (slot.offset, slot.class);
        while let Some(larger) = class.larger() {
            if self.merge_skipped() {
                break;
            }
            let buddy = offset ^ class.bytes();
            if !self.free_offsets[class.index()].remove(&buddy) {
                break;
            }
            offset = offset.min(buddy);
            class = larger;
            assert!(
                offset.is_multiple_of(class.bytes()),
                "buddy: merged block {offset} misaligned"
            );
        }
        let inserted = self.free_offsets[class.index()].insert(offset);
        assert!(
            inserted,
            "buddy: freed block {offset} ({class}) was already free"
        );
        self.debug_check();
        Ok(())
    }

    /// Carves exactly `slot` out of free space (rebuilding from the index at startup).
    /// `Err(NotFree)` if any byte of it is not free. On `Err` nothing changes.
    pub fn mark_allocated(&mut self, slot: Slot) -> Result<(), SlotError> {
        self.debug_check();
        self.check_bounds(slot)?;
        // Buddies always merge, so a wholly free aligned slot lies inside one free block.
        let (mut offset, mut class) = self.free_container(slot).ok_or(SlotError::NotFree)?;
        assert!(offset <= slot.offset && slot.end() <= offset + class.bytes());
        let removed = self.free_offsets[class.index()].remove(&offset);
        assert!(removed);
        while class > slot.class {
            class = class
                .smaller()
                .expect("buddy: split below the smallest class");
            let upper = offset + class.bytes();
            let (keep, spare) = if slot.offset < upper {
                (offset, upper)
            } else {
                (upper, offset)
            };
            let inserted = self.free_offsets[class.index()].insert(spare);
            assert!(inserted, "buddy: split half at {spare} already free");
            offset = keep;
        }
        assert_eq!(offset, slot.offset);
        let previous = self.allocated.insert(slot.offset, slot.class);
        assert!(
            previous.is_none(),
            "buddy: marked offset {offset} was allocated"
        );
        self.free_bytes -= slot.bytes();
        self.allocated_bytes += slot.bytes();
        self.debug_check();
        Ok(())
    }

    /// Extends the capacity to `new_capacity_bytes` (>= the old one, a multiple of 512 KiB); the
    /// new space is free as top-level slots.
    pub fn grow(&mut self, new_capacity_bytes: u64) {
        self.debug_check();
        assert!(
            new_capacity_bytes >= self.capacity_bytes,
            "buddy: cannot shrink from {} to {new_capacity_bytes}",
            self.capacity_bytes
        );
        assert!(
            new_capacity_bytes.is_multiple_of(SLOT_MAX_BYTES),
            "buddy: capacity {new_capacity_bytes} is not a multiple of {SLOT_MAX_BYTES}"
        );
        assert!(
            new_capacity_bytes <= CAPACITY_BYTES_MAX,
            "buddy: capacity {new_capacity_bytes} exceeds {CAPACITY_BYTES_MAX}"
        );
        self.add_top_slots(self.capacity_bytes, new_capacity_bytes);
        self.free_bytes += new_capacity_bytes - self.capacity_bytes;
        self.capacity_bytes = new_capacity_bytes;
        self.debug_check();
    }

    /// Whether exactly this slot (offset and class) is allocated.
    pub fn is_allocated(&self, slot: Slot) -> bool {
        self.allocated.get(&slot.offset) == Some(&slot.class)
    }

    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    pub fn allocated_bytes(&self) -> u64 {
        self.allocated_bytes
    }

    /// Number of free blocks on `class`'s free list (not counting larger blocks).
    pub fn free_slots(&self, class: SizeClass) -> usize {
        self.free_offsets[class.index()].len()
    }

    pub fn allocated_slots(&self) -> usize {
        self.allocated.len()
    }

    /// Whether `allocate(class)` would succeed: some free block of `class` or larger exists.
    pub fn can_allocate(&self, class: SizeClass) -> bool {
        self.smallest_free_class(class).is_some()
    }

    /// Every allocated slot, ascending offset.
    pub fn allocated_iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.allocated
            .iter()
            .map(|(&offset, &class)| Slot { offset, class })
    }

    /// Panics with a message naming the broken invariant (see the module docs).
    pub fn check_invariants(&self) {
        assert!(
            self.capacity_bytes > 0 && self.capacity_bytes.is_multiple_of(SLOT_MAX_BYTES),
            "buddy: capacity {} is not a positive multiple of {SLOT_MAX_BYTES}",
            self.capacity_bytes
        );
        assert!(
            self.capacity_bytes <= CAPACITY_BYTES_MAX,
            "buddy: capacity over the limit"
        );
        let blocks = self.blocks_by_offset();
        let (mut end_prev, mut free_sum, mut allocated_sum) = (0u64, 0u64, 0u64);
        for (&offset, &(class, is_free)) in &blocks {
            let bytes = class.bytes();
            assert!(
                offset.is_multiple_of(bytes),
                "buddy: block {offset} ({class}) misaligned"
            );
            assert!(
                offset >= end_prev,
                "buddy: block {offset} ({class}) overlaps the previous"
            );
            assert!(
                offset + bytes <= self.capacity_bytes,
                "buddy: block {offset} ({class}) ends past capacity {}",
                self.capacity_bytes
            );
            end_prev = offset + bytes;
            if is_free {
                free_sum += bytes;
            } else {
                allocated_sum += bytes;
            }
        }
        assert_eq!(
            free_sum, self.free_bytes,
            "buddy: free_bytes counter disagrees with lists"
        );
        assert_eq!(
            allocated_sum, self.allocated_bytes,
            "buddy: allocated_bytes counter wrong"
        );
        // Sorted, disjoint and inside capacity: equal sums mean the blocks tile it exactly.
        assert_eq!(
            free_sum + allocated_sum,
            self.capacity_bytes,
            "buddy: free + allocated bytes do not cover the capacity"
        );
        for class in SizeClass::ALL.into_iter().filter(|&c| c < SizeClass::MAX) {
            let list = &self.free_offsets[class.index()];
            for &offset in list {
                let buddy = offset ^ class.bytes();
                assert!(
                    !list.contains(&buddy),
                    "buddy: unmerged buddies: free {class} blocks at {offset} and {buddy}"
                );
            }
        }
    }

    /// Turns on (or off) the known bug: `free` stops merging buddies.
    #[cfg(feature = "sim-bugs")]
    pub fn inject_skip_merge(&mut self, on: bool) {
        self.debug_check();
        self.skip_merge = on;
        assert_eq!(self.skip_merge, on);
    }

    #[cfg(feature = "sim-bugs")]
    fn merge_skipped(&self) -> bool {
        self.skip_merge
    }

    #[cfg(not(feature = "sim-bugs"))]
    fn merge_skipped(&self) -> bool {
        false
    }

    /// Puts the top-level slots of `[start, end)` on the 512 KiB free list (counters untouched).
    fn add_top_slots(&mut self, start: u64, end: u64) {
        assert!(start <= end && end <= CAPACITY_BYTES_MAX);
        assert!(start.is_multiple_of(SLOT_MAX_BYTES) && end.is_multiple_of(SLOT_MAX_BYTES));
        let top = &mut self.free_offsets[SizeClass::MAX.index()];
        // Bounded by CAPACITY_BYTES_MAX / SLOT_MAX_BYTES iterations.
        for offset in (start..end).step_by(SLOT_MAX_BYTES as usize) {
            let inserted = top.insert(offset);
            assert!(inserted, "buddy: new top-level slot {offset} already free");
        }
    }

    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }

    /// `Misaligned` or `OutOfRange` for a slot that cannot exist here; overflow-safe for any
    /// offset.
    fn check_bounds(&self, slot: Slot) -> Result<(), SlotError> {
        assert!(self.capacity_bytes >= SLOT_MAX_BYTES);
        assert!(slot.bytes() <= SLOT_MAX_BYTES);
        if !slot.offset.is_multiple_of(slot.bytes()) {
            return Err(SlotError::Misaligned);
        }
        if slot.offset >= self.capacity_bytes || slot.bytes() > self.capacity_bytes - slot.offset {
            return Err(SlotError::OutOfRange);
        }
        Ok(())
    }

    /// The smallest class at or above `class` whose free list is not empty.
    fn smallest_free_class(&self, class: SizeClass) -> Option<SizeClass> {
        let found = SizeClass::ALL[class.index()..]
            .iter()
            .copied()
            .find(|c| !self.free_offsets[c.index()].is_empty());
        assert!(found.is_none_or(|c| c >= class));
        found
    }

    /// The free block (offset, class) that contains all of `slot`, if there is one.
    fn free_container(&self, slot: Slot) -> Option<(u64, SizeClass)> {
        assert!(slot.offset.is_multiple_of(slot.bytes()));
        let found = SizeClass::ALL[slot.class.index()..]
            .iter()
            .map(|&c| (slot.offset & !(c.bytes() - 1), c))
            .find(|(offset, c)| self.free_offsets[c.index()].contains(offset));
        assert!(found.is_none_or(|(offset, c)| offset <= slot.offset && c >= slot.class));
        found
    }

    /// Every block, free (`true`) or allocated, by offset; panics when two share an offset.
    fn blocks_by_offset(&self) -> BTreeMap<u64, (SizeClass, bool)> {
        let free = SizeClass::ALL.into_iter().flat_map(|c| {
            self.free_offsets[c.index()]
                .iter()
                .map(move |&o| (o, c, true))
        });
        let allocated = self.allocated.iter().map(|(&o, &c)| (o, c, false));
        let mut blocks = BTreeMap::new();
        for (offset, class, is_free) in free.chain(allocated) {
            if let Some(other) = blocks.insert(offset, (class, is_free)) {
                panic!(
                    "buddy: blocks overlap at {offset}: ({class}, free {is_free}) and {other:?}"
                );
            }
        }
        assert_eq!(blocks.len(), self.allocated.len() + self.free_block_count());
        blocks
    }

    fn free_block_count(&self) -> usize {
        self.free_offsets.iter().map(BTreeSet::len).sum()
    }
}

/// The free blocks of the block at `offset` of `class`, given the allocated slots inside it
/// (sorted, aligned, not overlapping), appended per class in ascending offset order.
fn carve(offset: u64, class: SizeClass, inside: &[Slot], free: &mut [Vec<u64>; CLASS_COUNT]) {
    match inside {
        [] => free[class.index()].push(offset),
        [only] if only.offset == offset && only.class == class => {}
        _ => {
            // Aligned slots that do not overlap and lie inside a block are smaller than it.
            assert!(
                inside.iter().all(|s| s.class < class),
                "buddy: slot larger than the block holding it"
            );
            let half = class
                .smaller()
                .expect("a block holding a smaller slot can split");
            let mid = offset + half.bytes();
            let n = inside.partition_point(|s| s.offset < mid);
            carve(offset, half, &inside[..n], free);
            carve(mid, half, &inside[n..], free);
        }
    }
}

#[cfg(test)]
mod tests {
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
}
