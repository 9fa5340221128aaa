//! The controller's self-checks: the accounting identity, the allocator's own invariants, the
//! reservations' totals, and (`check_against_store`) the store itself through the one index
//! audit. The simulator calls them after every cycle and recovery; they never change state.

use crate::meta::MetaStore;

use super::audit::audit_index;
use super::Controller;

impl<M: MetaStore> Controller<M> {
    /// The accounting identity and the allocator's own invariants.
    pub fn check_invariants(&self) {
        self.allocator.check_invariants();
        self.check_invariants_cheap();
    }

    pub(super) fn check_invariants_cheap(&self) {
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
        self.log.check_invariants();
        for (offset, (slot, _)) in self.reserved.iter() {
            assert_eq!(*offset, slot.offset);
            debug_assert!(
                self.allocator.is_allocated(*slot),
                "reserved slot must be allocated"
            );
        }
    }

    /// Compares the counters with the store itself through the one index audit
    /// ([`audit_index`]): after recovery and at shutdown, in the simulator.
    pub fn check_against_store(&self) {
        let read = self.store.read().expect("read view for the check");
        let capacity_bytes = self.allocator.capacity_bytes();
        let audit = audit_index(&read, capacity_bytes, |_, e| {
            assert!(
                self.allocator.is_allocated(e.slot),
                "indexed slot {:?} not allocated",
                e.slot
            );
        })
        .expect("index scan");
        assert_eq!(audit.blocks, self.stats.blocks, "block count");
        assert_eq!(audit.used_bytes, self.stats.used_bytes, "used bytes");
        assert_eq!(audit.data_bytes, self.stats.data_bytes, "data bytes");
        assert_eq!(
            audit.reservations.len(),
            self.reserved.len(),
            "persisted reservations"
        );
        assert!(audit.is_clean(), "index audit: {:?}", audit.problems);
        self.check_invariants();
    }
}
