//! Durability: the modes, what the driver provides, the latch, and the background sync's outcome.

use std::time::Duration;

use crate::clock::Instant;
use crate::message::{ErrorCode, ToWorker};
use crate::meta::MetaStore;

use super::{is_promise, Controller};

/// In relaxed mode, the longest time between durable commits (bounds index growth, see
/// `apply_in_txn`).
pub const RELAXED_SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Durability {
    /// fdatasync of the data file and a durable commit before any PUT is acknowledged.
    Full,
    /// No fsync: survives a process crash, not power loss.
    Relaxed,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Relaxed => "relaxed",
        }
    }
}

/// What the controller needs from its driver besides the store.
pub trait ControllerIo {
    /// Make every completed write to the data file durable (fdatasync). After
    /// [`ControllerIo::begin_sync_data`], waits for that sync instead (its result).
    fn sync_data(&mut self) -> Result<(), String>;
    /// Start making every write completed so far durable, in the background, so that the sync
    /// overlaps the batch's index work; `sync_data` then waits for it. A driver that cannot
    /// sync in the background does nothing here (and syncs in `sync_data`).
    fn begin_sync_data(&mut self) {}
    /// Whether this driver makes the index durable in the background (`begin_durable`). Then a
    /// full-durability batch, once its data is durable (`sync_data`), is committed non-durably
    /// (visible, and it survives a process crash), its answers to PUTs and DELETEs are held,
    /// and the controller goes on answering reads while the driver syncs the index; it commits
    /// nothing more until [`Controller::durable_done`].
    fn durable_in_background(&self) -> bool {
        false
    }
    /// Starts making the index's last commit durable, in the background; the driver then
    /// calls [`Controller::durable_done`] with the outcome. Only called when
    /// `durable_in_background` is true, and never while an earlier one is pending.
    fn begin_durable(&mut self) {
        unreachable!("begin_durable on a driver that does not sync in the background");
    }
    /// The current time, for latency figures only (never for decisions).
    fn now(&mut self) -> Instant;
}

impl<M: MetaStore> Controller<M> {
    pub(super) fn latch(&mut self, reason: String) {
        if self.failed.is_none() {
            self.failed = Some(reason);
            self.stats.failed = true;
        }
    }

    /// The outcome of `ControllerIo::begin_durable`, and how long it took. On success the
    /// batch's replies go out and its released slots join the quarantine. On failure the
    /// controller latches: the batch stays committed (visible, and it survives a process crash,
    /// not a power loss), but no PUT or DELETE of it is acknowledged: they get I/O errors.
    pub fn durable_done(&mut self, result: Result<(), String>, took: Duration) {
        let replies = self
            .awaiting_durable
            .take()
            .expect("durable_done without a batch awaiting durability");
        self.awaiting_stored.clear();
        let ns = took.as_nanos() as u64;
        self.stats.last_sync_ns = ns;
        self.stats.total_sync_ns += ns;
        let ok = match result {
            Ok(()) => {
                self.quarantine.extend(self.undurable.drain(..));
                true
            }
            Err(e) => {
                self.latch(format!("making a batch durable: {e}"));
                false
            }
        };
        for (worker, mut reply) in replies {
            if !ok {
                if let ToWorker::Occupied { request, .. } | ToWorker::Released { request, .. } =
                    reply
                {
                    reply = ToWorker::Error {
                        request,
                        code: ErrorCode::Io,
                    };
                }
            }
            assert!(
                !ok || is_promise(&reply),
                "only promises wait for durability"
            );
            self.outbox[worker as usize].push_back(reply);
        }
    }
}
