//! The controller's self-checks.

use crate::meta::{MetaRead, MetaStore};

use super::Controller;

impl<M: MetaStore> Controller<M> {
    /// The accounting identity and the allocator's own invariants.
    pub fn check_invariants(&self) {
        self.allocator.check_invariants();
        self.check_invariants_cheap();
    }

    pub(super) fn check_invariants_cheap(&self) {
        assert!(
            self.awaiting_durable.is_some() || self.awaiting_stored.is_empty(),
            "blocks are hidden from reads only while their batch is made durable"
        );
        let s = self.stats();
        let quarantined = s.quarantined_bytes;
        assert_eq!(
            self.allocator.allocated_bytes(),
            s.used_bytes + s.reserved_bytes + quarantined,
            "allocated bytes must be exactly used + reserved + quarantined"
        );
        assert_eq!(
            s.free_bytes + s.reserved_bytes + s.used_bytes,
            s.capacity_bytes,
            "SPEC accounting identity"
        );
        self.reserved.check_counts();
        for (offset, (slot, _)) in self.reserved.iter() {
            assert_eq!(*offset, slot.offset);
            debug_assert!(
                self.allocator.is_allocated(*slot),
                "reserved slot must be allocated"
            );
        }
    }

    /// Compares the counters with the store itself (after recovery, in the simulator).
    pub fn check_against_store(&self) {
        let read = self.store.read().expect("read view for the check");
        let mut blocks = 0u64;
        let mut used = 0u64;
        let mut data = 0u64;
        read.for_each_entry(&mut |_, e| {
            blocks += 1;
            used += e.slot.bytes();
            data += u64::from(e.len);
            assert!(
                self.allocator.is_allocated(e.slot),
                "indexed slot {:?} not allocated",
                e.slot
            );
        })
        .expect("index scan");
        assert_eq!(blocks, self.stats.blocks, "block count");
        assert_eq!(used, self.stats.used_bytes, "used bytes");
        assert_eq!(data, self.stats.data_bytes, "data bytes");
        let reservations = read.reservations().expect("reservations");
        assert_eq!(
            reservations.len(),
            self.reserved.len(),
            "persisted reservations"
        );
        self.check_invariants();
    }
}
