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

    /// The allocated slots that start in `[offset, offset + len)`, ascending offset. For an
    /// aligned block of some class, these are exactly the slots inside it (slots never straddle
    /// a larger class's boundary).
    pub fn allocated_within(&self, offset: u64, len: u64) -> impl Iterator<Item = Slot> + '_ {
        assert!(len > 0 && offset.checked_add(len).is_some());
        self.allocated
            .range(offset..offset + len)
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
mod tests;
