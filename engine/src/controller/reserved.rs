//! The reserved slots (in worker pools or PUTs in flight), with running totals, and whether
//! handing them back could make a slot of a class (`could_free`).
//!
//! Invariant (`check_counts`): the totals (bytes, per class, per worker) equal the map's. Never
//! changes the allocator.

use std::collections::BTreeMap;

use crate::buddy::{BuddyAllocator, Slot};
use crate::message::WorkerId;
use crate::size_class::{SizeClass, CLASS_COUNT};

use super::WORKERS_MAX;

/// The reserved slots (handed to a worker's pool, not yet occupied or returned) by offset, with
/// running totals so that `stats` (every cycle) and `send_reclaim` need not walk the map.
#[derive(Debug)]
pub(super) struct Reserved {
    pub(super) map: BTreeMap<u64, (Slot, WorkerId)>,
    pub(super) bytes: u64,
    pub(super) slots: [u64; CLASS_COUNT],
    pub(super) per_worker: [u32; WORKERS_MAX],
}

impl Default for Reserved {
    fn default() -> Reserved {
        Reserved {
            map: BTreeMap::new(),
            bytes: 0,
            slots: [0; CLASS_COUNT],
            per_worker: [0; WORKERS_MAX],
        }
    }
}

impl Reserved {
    pub(super) fn insert(
        &mut self,
        offset: u64,
        entry: (Slot, WorkerId),
    ) -> Option<(Slot, WorkerId)> {
        let previous = self.map.insert(offset, entry);
        if let Some(old) = previous {
            self.uncount(old);
        }
        self.bytes += entry.0.bytes();
        self.slots[entry.0.class.index()] += 1;
        self.per_worker[entry.1 as usize] += 1;
        previous
    }

    pub(super) fn remove(&mut self, offset: &u64) -> Option<(Slot, WorkerId)> {
        let removed = self.map.remove(offset);
        if let Some(old) = removed {
            self.uncount(old);
        }
        removed
    }

    pub(super) fn uncount(&mut self, (slot, worker): (Slot, WorkerId)) {
        self.bytes -= slot.bytes();
        self.slots[slot.class.index()] -= 1;
        self.per_worker[worker as usize] -= 1;
    }

    pub(super) fn get(&self, offset: &u64) -> Option<&(Slot, WorkerId)> {
        self.map.get(offset)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &(Slot, WorkerId)> {
        self.map.values()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &(Slot, WorkerId))> {
        self.map.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the allocator would have a free slot of `class` once every reserved slot came
    /// back: some aligned block of `class` holds a reserved slot and nothing allocated but
    /// reserved slots (its free parts and the returned slots then merge into it). A `Reclaim`
    /// is worth sending for `class` only then; otherwise the pools' slots, whatever their
    /// number, cannot give that class a slot (issue: 512 KiB PUTs spun on Reclaim instead of
    /// answering 507 when every 512 KiB block held a stored block). Each block is checked
    /// once (the map is walked in offset order), so the cost is at most the allocated slots
    /// inside blocks that hold a reservation.
    pub(super) fn could_free(&self, class: SizeClass, allocator: &BuddyAllocator) -> bool {
        let class_bytes = class.bytes();
        let mut checked_block = None;
        for &(slot, _) in self.map.values() {
            if slot.class >= class {
                return true;
            }
            let block = slot.offset - slot.offset % class_bytes;
            if checked_block == Some(block) {
                continue;
            }
            checked_block = Some(block);
            let only_reserved = allocator
                .allocated_within(block, class_bytes)
                .all(|s| self.map.get(&s.offset).is_some_and(|&(r, _)| r == s));
            if only_reserved {
                return true;
            }
        }
        false
    }

    /// The running totals agree with the map.
    pub(super) fn check_counts(&self) {
        let mut bytes = 0;
        let mut slots = [0u64; CLASS_COUNT];
        let mut per_worker = [0u32; WORKERS_MAX];
        for (slot, worker) in self.map.values() {
            bytes += slot.bytes();
            slots[slot.class.index()] += 1;
            per_worker[*worker as usize] += 1;
        }
        assert_eq!(bytes, self.bytes, "reserved bytes total");
        assert_eq!(slots, self.slots, "reserved slots per class");
        assert_eq!(per_worker, self.per_worker, "reserved slots per worker");
    }
}
