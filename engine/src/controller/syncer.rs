//! The data file's sync as the driver runs it on another thread: which sync is in flight, and
//! the error of a background sync nobody waited for (it must not be lost: it fails the next
//! sync, since the data it covered may be lost).
//!
//! Sans-IO: the driver does the syncs (a `data-sync` thread in the server) and reports their
//! results; this state machine says what to do next. It never waits, syncs or reads a clock.
//! Driver protocol, in this order:
//! - before [`Syncer::begin_data`] or [`Syncer::finish_data`], if
//!   [`Syncer::data_in_flight`], wait for that sync and hand its result to
//!   [`Syncer::data_done`];
//! - [`Syncer::finish_data`] says whether the result is known ([`DataFinish::Report`]) or the
//!   driver must sync now itself ([`DataFinish::SyncNow`]).
//!
//! Checkpoints of the index are not the data sync's business: they run on their own thread
//! (see `ControllerIo::begin_checkpoint`).
//!
//! Invariants: at most one data sync in flight; a failed sync's error is reported exactly
//! once.

use super::driver::SyncError;

/// The data sync's state.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
enum DataFlight {
    #[default]
    Idle,
    /// Started (`begin_data`); its result not yet handed in.
    InFlight,
    /// Its result, handed in by the driver, not yet reported.
    Done(Result<(), SyncError>),
}

/// What `finish_data` tells the driver.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DataFinish {
    /// The outcome of the batch's sync (the background one, or an earlier one's failure).
    Report(Result<(), SyncError>),
    /// No sync was started for this batch: the driver syncs now and that is the outcome.
    SyncNow,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct Syncer {
    data: DataFlight,
    /// A background data sync's failure that nobody waited for (its batch failed before its
    /// sync point, or had nothing to sync): the next sync reports it.
    stale_error: Option<SyncError>,
}

impl Syncer {
    pub fn new() -> Syncer {
        Syncer::default()
    }

    /// A data sync was started and its result is not yet handed in: the driver waits for it
    /// before calling anything else here.
    pub fn data_in_flight(&self) -> bool {
        self.data == DataFlight::InFlight
    }

    /// The result of the data sync in flight.
    pub fn data_done(&mut self, result: Result<(), SyncError>) {
        assert_eq!(self.data, DataFlight::InFlight, "no data sync in flight");
        self.data = DataFlight::Done(result);
    }

    /// A result handed in but not reported: its failure must still surface at a later sync.
    fn keep_unreported(&mut self) {
        assert!(
            !self.data_in_flight(),
            "wait for the data sync in flight first"
        );
        if let DataFlight::Done(Err(e)) = std::mem::take(&mut self.data) {
            self.stale_error.get_or_insert(e);
        }
    }

    /// The driver starts a background data sync (`ControllerIo::begin_sync_data`). One begun
    /// earlier but never reported covers older writes only: its result was handed in first.
    pub fn begin_data(&mut self) {
        self.keep_unreported();
        self.data = DataFlight::InFlight;
    }

    /// The batch's sync point (`ControllerIo::sync_data`).
    pub fn finish_data(&mut self) -> DataFinish {
        assert!(
            !self.data_in_flight(),
            "wait for the data sync in flight first"
        );
        let done = std::mem::take(&mut self.data);
        if let Some(e) = self.stale_error.take() {
            // A background sync whose result nobody waited for failed: the data it covered
            // may be lost, so this sync fails too (the controller latches; never retried).
            return DataFinish::Report(Err(e));
        }
        match done {
            DataFlight::Done(result) => DataFinish::Report(result),
            DataFlight::Idle => DataFinish::SyncNow,
            DataFlight::InFlight => unreachable!("checked above"),
        }
    }

    /// Whether a writeback kick is useful now: not while a sync is in flight.
    pub fn may_start_writeback(&self) -> bool {
        !self.data_in_flight()
    }

    /// A failure no sync has reported yet (at shutdown: to be logged).
    pub fn take_unreported(&mut self) -> Option<SyncError> {
        if !self.data_in_flight() {
            self.keep_unreported();
        }
        self.stale_error.take()
    }

    /// Nothing in flight, nothing unreported.
    pub fn is_idle(&self) -> bool {
        self.data == DataFlight::Idle && self.stale_error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eio() -> SyncError {
        SyncError::Io("EIO".into())
    }

    #[test]
    fn a_background_sync_reports_its_result_and_without_one_the_driver_syncs() {
        let mut s = Syncer::new();
        s.begin_data();
        assert!(s.data_in_flight() && !s.may_start_writeback());
        s.data_done(Ok(()));
        assert_eq!(s.finish_data(), DataFinish::Report(Ok(())));
        assert_eq!(s.finish_data(), DataFinish::SyncNow);
        s.begin_data();
        s.data_done(Err(eio()));
        assert_eq!(s.finish_data(), DataFinish::Report(Err(eio())));
        assert!(s.is_idle());
    }

    #[test]
    fn a_failed_sync_nobody_waited_for_fails_the_next_sync_once() {
        let mut s = Syncer::new();
        s.begin_data(); // its batch failed before the sync point
        s.data_done(Err(eio()));
        s.begin_data();
        s.data_done(Ok(()));
        assert_eq!(s.finish_data(), DataFinish::Report(Err(eio())));
        assert!(s.is_idle());
        assert_eq!(s.finish_data(), DataFinish::SyncNow, "reported once");
    }

    #[test]
    fn shutdown_takes_an_unreported_failure() {
        let mut s = Syncer::new();
        s.begin_data();
        s.data_done(Err(eio()));
        assert_eq!(s.take_unreported(), Some(eio()));
        assert!(s.is_idle());
    }

    #[test]
    #[should_panic(expected = "wait for the data sync in flight first")]
    fn finishing_before_the_result_is_handed_in_is_a_driver_bug() {
        let mut s = Syncer::new();
        s.begin_data();
        s.finish_data();
    }
}
