//! The `checkpoint` thread: makes the index's newest commit durable when the controller asks
//! (`ControllerIo::begin_checkpoint`, durability `full`), so the log space it covers can be
//! reused (issue 18).
//!
//! Owns the thread, its channel and the start time of the checkpoint in flight (for the
//! watchdog). A checkpoint is `IndexSync::sync` (`mdbx_env_sync_ex(force)`: fdatasync of the
//! index, steady meta page, fdatasync); it makes durable at least every commit made before it
//! began, which is what `Controller::checkpoint_done` frees. Its own thread, never the
//! data-sync thread's: the controller's write transaction holds libmdbx's writer lock while it
//! waits for the batch's flush, and the sync takes that lock for its meta page, so on one
//! thread the flush would queue behind a sync that waits for the transaction (deadlock).
//! Commits go on while it runs.
//!
//! The thread ends when this is dropped (it holds the index, which must be closed when the
//! controller's store is: [`HelperThread`] waits for it).
//!
//! Invariants: at most one checkpoint in flight; its outcome is handed out exactly once
//! ([`CheckpointThread::poll`] or [`CheckpointThread::wait`]). Must never retry a failed sync
//! (the controller latches).

use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use engine::controller::SyncError;

use crate::helper_thread::HelperThread;
use crate::mdbx::IndexSync;

/// Test-only: `BUDDY_BLOCKS_TEST_NO_CHECKPOINT=1` keeps checkpoints off, so the log keeps
/// every record until the next start replays it (to time a long replay). Unset, it costs
/// nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Checkpoints {
    On,
    /// Test-only (see above).
    Off,
}

impl Checkpoints {
    pub fn from_env() -> Checkpoints {
        match std::env::var_os("BUDDY_BLOCKS_TEST_NO_CHECKPOINT") {
            Some(v) if v == "1" => Checkpoints::Off,
            _ => Checkpoints::On,
        }
    }
}

pub struct CheckpointThread {
    thread: HelperThread<(), Result<(), SyncError>>,
    /// The checkpoint in flight, since when.
    since: Option<Instant>,
}

impl CheckpointThread {
    /// Starts the thread; it unparks the thread that spawns it (the controller's) whenever a
    /// checkpoint ends.
    pub fn spawn(index: IndexSync) -> std::io::Result<CheckpointThread> {
        let controller = std::thread::current();
        let serve = move |()| Some(index.sync().map_err(SyncError::Io));
        Ok(CheckpointThread {
            thread: HelperThread::spawn("checkpoint", serve, move || controller.unpark())?,
            since: None,
        })
    }

    /// Begins a checkpoint (none may be in flight).
    pub fn begin(&mut self) {
        assert!(self.since.is_none(), "one checkpoint at a time");
        self.thread.send(());
        self.since = Some(Instant::now());
    }

    /// Whether a checkpoint is in flight.
    pub fn in_flight(&self) -> bool {
        self.since.is_some()
    }

    /// The outcome of the checkpoint in flight once it ended, and how long it took.
    pub fn poll(&mut self) -> Option<(Result<(), SyncError>, Duration)> {
        let since = self.since?;
        let result = match self.thread.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return None,
            // The thread died (it panicked): the checkpoint's outcome is unknown.
            Err(TryRecvError::Disconnected) => Err(SyncError::Stopped),
        };
        self.since = None;
        Some((result, since.elapsed()))
    }

    /// Waits for the checkpoint in flight, if one is (shutdown).
    pub fn wait(&mut self) -> Option<(Result<(), SyncError>, Duration)> {
        let since = self.since.take()?;
        let result = self.thread.recv().unwrap_or(Err(SyncError::Stopped));
        Some((result, since.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::meta::{Header, MetaStore, MetaTxn, FORMAT_VERSION};

    /// A checkpoint runs while the controller's thread keeps committing, and reports once.
    #[test]
    fn a_checkpoint_runs_beside_commits_and_reports_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::mdbx::MdbxStore::open(dir.path(), 1 << 26).unwrap();
        let mut thread = CheckpointThread::spawn(store.index_sync()).unwrap();
        assert!(thread.poll().is_none() && thread.wait().is_none());
        for seq in 1..=20u64 {
            let mut txn = store.begin().unwrap();
            txn.set_header(&Header {
                format_version: FORMAT_VERSION,
                capacity_bytes: 1 << 20,
                node_id: 1,
                commit_seq: seq,
            })
            .unwrap();
            txn.commit(false).unwrap();
            if !thread.in_flight() {
                thread.begin();
            }
            if let Some((result, _)) = thread.poll() {
                assert_eq!(result, Ok(()));
            }
        }
        if let Some((result, _)) = thread.wait() {
            assert_eq!(result, Ok(()));
        }
        assert!(!thread.in_flight());
        assert!(thread.poll().is_none());
    }
}
