//! The reserved slots (in worker pools or PUTs in flight), with running totals.
//!
//! Invariant (`check_counts`): the totals (bytes, per class, per worker) equal the map's.

use std::collections::BTreeMap;

use crate::buddy::Slot;
use crate::message::WorkerId;
use crate::size_class::CLASS_COUNT;

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

    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
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
