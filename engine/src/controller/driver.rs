//! What the controller needs from its driver besides the store: the data file's sync, the
//! index's background sync, and a clock reading for figures.
//!
//! Owns no state. The driver implements [`ControllerIo`] (the server over a real file and a
//! `data-sync` thread, the simulator over its fake disk); the engine must never call an OS
//! function here itself. Invariant the driver keeps: at most one data sync and at most one
//! index sync in flight.

use crate::clock::Instant;

use super::durability::IndexDurability;

/// Why a sync of the data file or of the index failed. The controller latches on any of them
/// (a failed fsync is never retried).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SyncError {
    /// The device or the OS reported an error (its own words).
    #[error("{0}")]
    Io(String),
    /// The sync's outcome is unknown: the thread that ran it stopped.
    #[error("the data-sync thread stopped")]
    Stopped,
}

impl From<String> for SyncError {
    fn from(text: String) -> SyncError {
        SyncError::Io(text)
    }
}

/// What the controller needs from its driver besides the store.
pub trait ControllerIo {
    /// Make every completed write to the data file durable (fdatasync). After
    /// [`ControllerIo::begin_sync_data`], waits for that sync instead (its result).
    fn sync_data(&mut self) -> Result<(), SyncError>;
    /// Start making every write completed so far durable, in the background, so that the sync
    /// overlaps the batch's index work; `sync_data` then waits for it. A driver that cannot
    /// sync in the background does nothing here (and syncs in `sync_data`).
    fn begin_sync_data(&mut self) {}
    /// Where this driver makes the index durable. [`IndexDurability::InBackground`]: a
    /// full-durability batch, once its data is durable (`sync_data`), is committed non-durably
    /// (visible, and it survives a process crash), its answers to PUTs and DELETEs are held,
    /// and the controller goes on answering reads while the driver syncs the index
    /// (`begin_durable`); it commits nothing more until [`super::Controller::durable_done`].
    fn index_durability(&self) -> IndexDurability {
        IndexDurability::InCycle
    }
    /// Starts making the index's last commit durable, in the background; the driver then
    /// calls [`super::Controller::durable_done`] with the outcome. Only called when
    /// `index_durability` is `InBackground`, and never while an earlier one is pending.
    fn begin_durable(&mut self) {
        unreachable!("begin_durable on a driver that does not sync in the background");
    }
    /// The current time: for latency figures, and for the relaxed mode's once-a-interval
    /// durable commit (`RELAXED_SYNC_INTERVAL`).
    fn now(&mut self) -> Instant;
}
