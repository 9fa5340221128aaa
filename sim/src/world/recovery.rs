//! The write-ahead log's replay at start (issue 18), between the store's open and
//! `Controller::open`, as the server's `store::open_for_serving` does it: a new run id drawn
//! from the seed, `engine::wal::recover` over the fake disk (`fake::log_region::DiskLog`),
//! and the planned crash in the middle of it (`CrashPoint::MidRecovery`: the store fails its
//! k-th commit of the replay, and the world crashes and starts again).
//!
//! Owns: the run id's draw and the mid-recovery fault. Never does: open the controller, or
//! decide when the crash is planned (the scheduler arms it). Invariant: the fault is cleared
//! before `Controller::open`, so no commit outside the replay fails by it; a replay that fails
//! for any other reason is a [`Failure::Recovery`].

use engine::meta::{MetaError, MetaRead, MetaStore};
use engine::wal::{recover, RecoverError};
use rand::RngExt;

use crate::failure::Failure;
use crate::fake::log_region::DiskLog;
use crate::options::CrashKind;
use crate::store::SimStore;

use super::World;

/// Commits of a replay the mid-recovery fault may let through before it fails one: the
/// simulated log (at most 256 sectors) is replayed in one transaction, then the durable one
/// that ends the replay.
const MID_RECOVERY_COMMITS_MAX: u64 = 1;

/// How the replay at start ended.
pub(super) enum Replay {
    /// The log is replayed (or there was none): open the controller with this run id.
    Done { run_id: u64 },
    /// The planned crash struck in the middle of the replay: crash with this kind and start
    /// again.
    Crashed(CrashKind),
}

impl World {
    /// Replays the log into `store` (opened, not yet under a controller).
    pub(super) fn replay_log(&mut self, store: &mut SimStore) -> Result<Replay, Failure> {
        let read = store.read().map_err(meta_failure)?;
        let state = read.log_state().map_err(meta_failure)?;
        drop(read);
        let run_id = if state.is_some() {
            self.draw_run_id(state.map(|s| s.run_id))
        } else {
            1
        };
        let Some(state) = state else {
            // A store the controller has not yet created (or from before the log).
            return Ok(Replay::Done { run_id });
        };
        let mid_recovery = self.crash_plan.mid_recovery.take();
        if mid_recovery.is_some() {
            let commits = self.rng.random_range(0..=MID_RECOVERY_COMMITS_MAX);
            self.store.fail_commit_after(commits);
        }
        let (mut log, mut blocks) = (DiskLog::new(&self.disk), DiskLog::new(&self.disk));
        let outcome = recover(store, &mut log, &mut blocks, run_id, self.opts.bugs);
        self.store.clear_commit_faults();
        match (outcome, mid_recovery) {
            (Ok(done), _) => {
                self.trace.ev(
                    self.clock.now(),
                    "replay",
                    [done.records, done.ops, done.occupies_dropped, done.next.seq],
                );
                Ok(Replay::Done { run_id })
            }
            (Err(RecoverError::Meta(MetaError::Io(_))), Some(kind)) => {
                self.trace.note(
                    self.clock.now(),
                    &format!("crash in the middle of the replay from {:?}", state.next),
                );
                Ok(Replay::Crashed(kind))
            }
            (Err(e), _) => Err(Failure::Recovery(format!(
                "replaying the log from {:?} failed: {e}",
                state.next
            ))),
        }
    }

    /// A run id for this start: from the seed, never the stored one (`recover` asserts it)
    /// and never zero.
    fn draw_run_id(&mut self, stored: Option<u64>) -> u64 {
        loop {
            let id: u64 = self.rng.random();
            if id != 0 && Some(id) != stored {
                return id;
            }
        }
    }
}

fn meta_failure(e: MetaError) -> Failure {
    Failure::Correctness(format!("reading the store at start: {e}"))
}
