//! Slot-reuse protection (SPEC guarantee 4): released slots wait in quarantine for readers.
//!
//! Owns the protocol's bookkeeping: per worker, the address replies sent (`addresses_sent`)
//! and the horizon the worker reported (`horizon`: every reply numbered below it is finished).
//! A released slot is quarantined with the counts sent up to its release and returns to the
//! allocator once every worker's horizon has passed them. Invariants: a horizon never runs
//! ahead of the replies sent (+1) and never goes back; the quarantine is in release order.
//! Must never free a quarantined slot early (the `reuse_while_reading` bug does).

use crate::message::ToController;
use crate::meta::MetaStore;

use super::Controller;

impl<M: MetaStore> Controller<M> {
    /// Takes the `ReaderHorizon` reports of a batch.
    pub(super) fn advance_horizons(&mut self, batch: &[ToController]) {
        for m in batch {
            if let ToController::ReaderHorizon {
                worker,
                address_seq,
            } = *m
            {
                let h = &mut self.horizon[worker as usize];
                assert!(
                    address_seq <= self.addresses_sent[worker as usize] + 1,
                    "horizon ahead of replies"
                );
                *h = (*h).max(address_seq);
            }
        }
    }

    pub(super) fn release_quarantine(&mut self) {
        assert_eq!(self.horizon.len(), self.addresses_sent.len());
        while let Some((sent, slot)) = self.quarantine.front() {
            let done = sent.iter().zip(self.horizon.iter()).all(|(s, h)| h > s);
            if !done {
                break;
            }
            let slot = *slot;
            self.quarantine.pop_front();
            self.allocator
                .free(slot)
                .expect("quarantined slot was allocated");
        }
    }
}
