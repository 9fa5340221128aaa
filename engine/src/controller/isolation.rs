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
    /// Steps 4-5 of a cycle: the readers' horizons first, then the quarantined slots they let
    /// go (before this cycle allocates).
    pub(super) fn take_horizons(&mut self, batch: &[ToController]) {
        assert!(batch.len() <= super::BATCH_MESSAGES_MAX);
        self.advance_horizons(batch);
        self.release_quarantine();
    }

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
        assert!(
            wanted <= self.header.commit_seq,
            "quarantine ahead of commits"
        );
        for (worker, out) in self.outbox.iter_mut().enumerate() {
            if self.horizon[worker] < wanted && self.horizon_asked[worker] < wanted {
                self.horizon_asked[worker] = wanted;
                out.push_back(ToWorker::HorizonWanted { version: wanted });
            }
        }
    }
}

/// Also the controller's other unit tests' rig (`Clock`, `cycle`).
#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bugs::Bugs;
    use crate::clock::Instant;
    use crate::controller::{ControllerConfig, ControllerIo, Durability, SyncError};
    use crate::hash::BlockHash;
    use crate::meta::MemStore;
    use crate::size_class::SizeClass;

    /// Data syncs that succeed; each cycle 1 ms later.
    pub(in crate::controller) struct Clock(pub(in crate::controller) u64);

    impl ControllerIo for Clock {
        fn sync_data(&mut self) -> Result<(), SyncError> {
            Ok(())
        }
        fn write_log(&mut self, _sector: u64, _bytes: &[u8]) -> Result<(), SyncError> {
            Ok(())
        }
        fn begin_checkpoint(&mut self) {}
        fn now(&mut self) -> Instant {
            self.0 += 1_000_000;
            Instant(self.0)
        }
    }

    /// One message, one cycle: what worker 0 is sent.
    pub(in crate::controller) fn cycle(
        c: &mut Controller<MemStore>,
        io: &mut Clock,
        m: ToController,
    ) -> Vec<ToWorker> {
        c.handle_message(m);
        let now = io.now();
        c.run_cycle(now, io);
        let mut out = Vec::new();
        c.drain_outbox(0, |r| {
            out.push(*r);
            true
        });
        out
    }

    /// A fresh controller over 1 MiB (two 512 KiB blocks), one worker, full durability.
    pub(in crate::controller) fn one_mib_controller() -> Controller<MemStore> {
        let config = ControllerConfig {
            capacity_bytes: 1 << 20,
            workers: 1,
            cycle_interval: Duration::ZERO,
            durability: Durability::Full,
            node_id: 1,
            log_sectors: 64,
            run_id: 1,
            checkpoint_interval: crate::controller::CHECKPOINT_INTERVAL,
            bugs: Bugs::NONE,
        };
        Controller::open(MemStore::new(), config).expect("open")
    }

    /// A slot released by batch T stays quarantined while a horizon is T-1 (a view renewed
    /// before the delete still maps the hash to it) and is freed at T.
    #[test]
    fn a_released_slot_waits_for_every_horizon_to_reach_its_release() {
        let mut c = one_mib_controller();
        let mut io = Clock(0);
        let class = SizeClass::new(0).expect("class 0");
        let alloc = ToController::Allocate {
            worker: 0,
            request: 1,
            class,
            count: 1,
        };
        let [ToWorker::Allocated { slot, .. }, ..] = cycle(&mut c, &mut io, alloc)[..] else {
            panic!("a slot is granted");
        };
        let hash = BlockHash([7; 32]);
        let occupy = ToController::Occupy {
            worker: 0,
            request: 2,
            hash,
            slot,
            len: 10,
            crc32c: 0,
        };
        cycle(&mut c, &mut io, occupy);
        let release = ToController::Release {
            worker: 0,
            request: 3,
            hash,
        };
        let replies = cycle(&mut c, &mut io, release);
        let released_by = c.header().commit_seq;
        assert!(
            replies.contains(&ToWorker::HorizonWanted {
                version: released_by
            }),
            "{replies:?}"
        );
        assert_eq!(c.stats().quarantined_bytes, slot.bytes());
        let early = ToController::ReaderHorizon {
            worker: 0,
            version: released_by - 1,
        };
        cycle(&mut c, &mut io, early);
        assert_eq!(
            c.stats().quarantined_bytes,
            slot.bytes(),
            "a view at T-1 holds it"
        );
        let done = ToController::ReaderHorizon {
            worker: 0,
            version: released_by,
        };
        cycle(&mut c, &mut io, done);
        assert_eq!(c.stats().quarantined_bytes, 0, "every view is at T: free");
        c.check_invariants();
    }
}
