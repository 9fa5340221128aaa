//! The `data-sync` thread: the data file's fdatasync in the background while the controller
//! goes on (relaxed mode's durable commit), and relaxed mode's writeback kicks. A full-mode
//! batch's flush, which the controller waits for anyway, runs on the controller's own thread
//! through [`SyncThread::finish`] (no hand-off).
//!
//! Owns the thread and its channel; the engine's [`Syncer`] owns the decisions (which sync is
//! in flight, the error of one nobody waited for). Must never touch the index: a checkpoint
//! (`mdbx_env_sync_ex`) waits for libmdbx's writer lock, which the controller's write
//! transaction holds while it waits for this thread's flush, so the two on one thread would
//! deadlock ([`crate::checkpoint`] has its own). Never retries a failed fsync.

use std::fs::File;
use std::time::Duration;

use engine::controller::{DataFinish, SyncError, Syncer};

use crate::helper_thread::HelperThread;

/// A thread that runs the data file's fdatasync in the background
/// (`ControllerIo::begin_sync_data`: relaxed mode's durable commit; [`SyncThread::finish`]
/// syncs on the caller's thread when none was begun): at most one sync in flight. In relaxed durability it also starts the
/// writeback of dirty data pages every [`WRITEBACK_KICK`]
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, no waiting), so that the once-a-second durable
/// commit's fdatasync finds little left to write instead of stalling every PUT behind a second
/// of data. Which sync is in flight, and the error of one nobody waited for, are the engine's
/// [`Syncer`]'s to decide; this struct does the I/O. It never touches the index: checkpoints
/// run on their own thread ([`crate::checkpoint`]).
pub struct SyncThread {
    thread: HelperThread<SyncRequest, Result<(), SyncError>>,
    pub state: Syncer,
}

enum SyncRequest {
    Sync,
    StartWriteback,
}

/// How often relaxed durability starts the data file's writeback (see `Syncer`).
pub const WRITEBACK_KICK: Duration = Duration::from_millis(100);

impl SyncThread {
    pub fn spawn(data: &File) -> std::io::Result<SyncThread> {
        let file = data.try_clone()?;
        let serve = move |request| match request {
            SyncRequest::Sync => {
                Some(crate::datafile::fdatasync(&file).map_err(|e| SyncError::Io(e.to_string())))
            }
            // Only starts I/O: a write error surfaces at the next fdatasync.
            SyncRequest::StartWriteback => {
                crate::datafile::start_writeback(&file);
                None
            }
        };
        Ok(SyncThread {
            thread: HelperThread::spawn("data-sync", serve, || {})?,
            state: Syncer::new(),
        })
    }

    /// Starts a background fdatasync. One begun earlier but never waited for (the batch
    /// failed before its sync point) covers older writes only: it is finished first.
    pub fn begin(&mut self) {
        self.wait();
        self.state.begin_data();
        self.thread.send(SyncRequest::Sync);
    }

    /// Starts the writeback of the data file's dirty pages unless a sync is in flight or the
    /// thread is still busy with the previous request (then this one is not needed).
    pub fn start_writeback(&mut self) {
        if self.state.may_start_writeback() {
            self.thread.try_send(SyncRequest::StartWriteback);
        }
    }

    /// The result of the background sync, or of an fdatasync of `data` now when none runs.
    pub fn finish(&mut self, data: &File) -> Result<(), SyncError> {
        self.wait();
        match self.state.finish_data() {
            DataFinish::Report(result) => result,
            DataFinish::SyncNow => {
                crate::datafile::fdatasync(data).map_err(|e| SyncError::Io(e.to_string()))
            }
        }
    }

    /// Waits for the `Sync` in flight, if one is, and hands its result to the state machine.
    fn wait(&mut self) {
        if self.state.data_in_flight() {
            let result = self.thread.recv().expect("the data-sync thread answers");
            self.state.data_done(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file() -> File {
        tempfile::tempfile().expect("temp file")
    }

    /// fdatasync of a pipe fails (EINVAL): a stand-in for a failing disk.
    fn failing_file() -> File {
        let mut fds = [0; 2];
        // SAFETY: pipe() fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fds[1] is open and owned by nobody else; fds[0] is closed here.
        unsafe {
            libc::close(fds[0]);
            std::os::fd::FromRawFd::from_raw_fd(fds[1])
        }
    }

    #[test]
    fn a_background_sync_reports_its_result_and_a_direct_sync_runs_without_one() {
        let ok = temp_file();
        let mut syncer = SyncThread::spawn(&ok).unwrap();
        syncer.begin();
        assert_eq!(syncer.finish(&ok), Ok(()));
        // None in flight: finish syncs directly.
        assert_eq!(syncer.finish(&ok), Ok(()));
        assert!(syncer.finish(&failing_file()).is_err());
        let bad = failing_file();
        let mut syncer = SyncThread::spawn(&bad).unwrap();
        syncer.begin();
        assert!(syncer.finish(&ok).is_err(), "the background sync's failure");
    }

    #[test]
    fn writeback_kicks_interleave_with_syncs() {
        use std::io::Write;
        let mut f = temp_file();
        let mut syncer = SyncThread::spawn(&f).unwrap();
        for round in 0..20u8 {
            f.write_all(&[round; 8192]).unwrap();
            syncer.start_writeback();
            if round % 3 == 0 {
                syncer.begin();
                // No kick while a sync is in flight: it would be redundant.
                syncer.start_writeback();
                assert_eq!(syncer.finish(&f), Ok(()));
            }
        }
        assert_eq!(syncer.finish(&f), Ok(()));
        // A kick on a file whose sync fails is ignored; the sync still reports the failure.
        let bad = failing_file();
        let mut syncer = SyncThread::spawn(&bad).unwrap();
        syncer.start_writeback();
        syncer.begin();
        assert!(syncer.finish(&f).is_err());
    }

    #[test]
    fn a_failed_background_sync_nobody_waited_for_fails_the_next_sync() {
        let bad = failing_file();
        let ok = temp_file();
        let mut syncer = SyncThread::spawn(&bad).unwrap();
        syncer.begin(); // its batch failed before the sync point: never waited for
        syncer.begin();
        let first = syncer.finish(&ok);
        assert!(first.is_err(), "{first:?}");
        assert!(syncer.state.is_idle());
    }
}
