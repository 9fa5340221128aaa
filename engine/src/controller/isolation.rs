//! Slot-reuse protection (SPEC guarantee 4): released slots wait in quarantine until no index
//! view that still has their entry can be in use.
//!
//! Owns the protocol's bookkeeping: per worker, the horizon it reported (`horizon`: no view
//! older than it is in use or will be renewed) and the highest horizon asked for
//! (`horizon_asked`). A slot released by batch `T` is quarantined with `T`; views of version
//! `>= T` no longer have its entry (a view holds whole commits), so the slot returns to the
//! allocator once every worker's horizon is `>= T`. Whenever the quarantine holds a slot some
//! worker's horizon does not cover, that worker is asked (`HorizonWanted`), once per version.
//! Invariants: a horizon never runs ahead of the commits and never goes back; the quarantine
//! is in release order. Must never free a quarantined slot early (the `reuse_while_reading`
//! and `reuse_before_views_end` bugs do).

use crate::message::{ToController, ToWorker};
use crate::meta::MetaStore;

use super::Controller;

impl<M: MetaStore> Controller<M> {
    /// Takes the `ReaderHorizon` reports of a batch.
    pub(super) fn advance_horizons(&mut self, batch: &[ToController]) {
        for m in batch {
            if let ToController::ReaderHorizon { worker, version } = *m {
                assert!(
                    version <= self.header.commit_seq,
                    "horizon {version} ahead of commits ({})",
                    self.header.commit_seq
                );
                let h = &mut self.horizon[worker as usize];
                *h = (*h).max(version);
            }
        }
    }

    /// Frees the quarantined slots every worker's horizon covers.
    pub(super) fn release_quarantine(&mut self) {
        assert_eq!(self.horizon.len(), self.horizon_asked.len());
        let oldest_view = self.horizon.iter().copied().min().unwrap_or(u64::MAX);
        // The known bug: a view one version older than the release still has the entry.
        let covered = if self.config.bugs.reuse_before_views_end() {
            oldest_view.saturating_add(1)
        } else {
            oldest_view
        };
        while let Some(&(released_by, slot)) = self.quarantine.front() {
            if released_by > covered {
                break;
            }
            self.quarantine.pop_front();
            self.allocator
                .free(slot)
                .expect("quarantined slot was allocated");
        }
    }

    /// Asks every worker whose horizon does not cover the newest quarantined slot for one that
    /// does (once per version). Called after slots join the quarantine, with that commit
    /// visible to every view renewed from now on.
    pub(super) fn want_horizons(&mut self) {
        let Some(&(wanted, _)) = self.quarantine.back() else {
            return;
        };
        assert!(wanted <= self.header.commit_seq, "quarantine ahead of commits");
        for (worker, out) in self.outbox.iter_mut().enumerate() {
            if self.horizon[worker] < wanted && self.horizon_asked[worker] < wanted {
                self.horizon_asked[worker] = wanted;
                out.push_back(ToWorker::HorizonWanted { version: wanted });
            }
        }
    }
}
