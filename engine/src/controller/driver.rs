//! What the controller needs from its driver besides the store: the data file's sync, the
//! log region's writes, the index's checkpoints, and a clock reading.
//!
//! Owns no state. The driver implements [`ControllerIo`] (the server over a real file and a
//! `data-sync` thread, the simulator over its fake disk); the engine must never call an OS
//! function here itself. Invariant the driver keeps: at most one data sync and at most one
//! checkpoint in flight, on different threads.

use crate::clock::Instant;

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
    /// Make every completed write to the data file durable (fdatasync), the log region
    /// included. After [`ControllerIo::begin_sync_data`], waits for that sync instead (its
    /// result).
    fn sync_data(&mut self) -> Result<(), SyncError>;
    /// Start making every write completed so far durable, in the background; `sync_data` then
    /// waits for it. A driver that cannot sync in the background does nothing here (and syncs
    /// in `sync_data`). Full durability never calls it (the flush must cover the batch's log
    /// record, written after the batch's index work); relaxed mode's durable commit and the
    /// `ack_before_log_durable` bug do.
    fn begin_sync_data(&mut self) {}
    /// Writes whole 4 KiB sectors of the log region (`bytes.len()` is a multiple of 4096) from
    /// `sector` on: at `capacity_bytes + sector * 4096` of the data file. No sync: the batch's
    /// `sync_data` that follows covers it.
    fn write_log(&mut self, sector: u64, bytes: &[u8]) -> Result<(), SyncError>;
    /// Starts a checkpoint: make the index's newest commit durable, on another thread than the
    /// data sync's (the controller's write transaction holds the index's writer lock while it
    /// waits for the batch's flush). When it ends, the driver calls
    /// [`super::Controller::checkpoint_done`] between cycles. Never called while one is in
    /// flight; commits go on meanwhile.
    fn begin_checkpoint(&mut self);
    /// The current time: for latency figures, the relaxed mode's once-a-interval durable
    /// commit (`RELAXED_SYNC_INTERVAL`) and the checkpoint interval.
    fn now(&mut self) -> Instant;
}
