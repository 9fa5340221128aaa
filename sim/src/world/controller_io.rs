//! The simulated controller's driver (`ControllerIo`): the fake disk's fdatasync on a modelled
//! `data-sync` thread (a sync begun in one step completes after the disk's latency, possibly
//! failing with an injected fault, and its result is waited for later, or only by the next
//! sync when nobody waited), the log record's write into the disk's log region, the start of a
//! checkpoint (the world runs it as a `CheckpointJob`), the crash points inside a batch
//! ([`BatchCrash`]), and the engine's scrub over the fake disk.
//!
//! Borrows the disk, the world's random generator and latch flag for one cycle (`CtlIo`); the
//! node owns the sync thread's state (`SimSyncThread`) and the scrub (`SimScrub`). Which sync
//! is in flight and which error is stale are the engine's `Syncer`'s to decide, as in the
//! server. Must never read a clock of its own (`now` is the cycle's start plus the time spent).
//!
//! Fault model: a data sync fails with probability `sync_fail`; a failed one makes nothing
//! durable and drops the dirty pages for good (`Disk::fail_sync`, fsyncgate). A sync covers
//! what was written when it began (`Disk::begin_sync`) and is durable only once it returns
//! (`Disk::finish_sync`, here when the controller waits for it). Oracle (the
//! latch, [`SimSyncThread::check_latch`]): a controller told that a data sync failed must be
//! latched by the end of that turn, so it acknowledges nothing more. A successful background
//! sync makes durable exactly the writes completed when it began; writes completed between
//! its begin and its wait (the workers run meanwhile) stay dirty.

use std::time::Duration;

use engine::controller::{
    Controller, ControllerIo, DataFinish, Scrub, ScrubOutcome, SyncError, Syncer,
};
use engine::Instant;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::fake::disk::Disk;
use crate::fake::log_region;
use crate::fake::ring;
use crate::store::{SimStore, StoreFiles};

/// Virtual time between two scrubbed blocks.
pub const SCRUB_INTERVAL: Duration = Duration::from_millis(2);

/// The node's `data-sync` thread: the engine's state machine and the sync in flight.
#[derive(Debug, Default)]
pub struct SimSyncThread {
    state: Syncer,
    /// The background data sync in flight: its outcome (drawn when it began) and when it
    /// completes (virtual ns).
    in_flight: Option<(Result<(), SyncError>, u64)>,
    /// `sync_data` answered the controller with an error (it must latch).
    failure_reported: bool,
}

impl SimSyncThread {
    /// The latch oracle, after a controller turn: a controller that was told that a data sync
    /// failed has latched (and so answers every later write with an error).
    pub fn check_latch(&self, controller_failed: bool) -> Result<(), String> {
        if self.failure_reported && !controller_failed {
            return Err(
                "the controller was told a data sync failed and did not latch: it \
                        may acknowledge writes whose data a later sync will never persist"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A crash point of the batch's second half that this driver strikes (the world crashes
/// right after `finish_cycle`, before any reply leaves, so the latch it causes dies with the
/// node).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum BatchCrash {
    /// The batch's record is written (in the page cache), its flush never begins: `sync_data`
    /// fails without syncing.
    AfterLogWrite,
    /// The flush returned, the index commit never happens: the commit fails.
    AfterFlush,
}

/// The controller's driver for one cycle (or one `poll_checkpoint`).
pub(super) struct CtlIo<'a> {
    pub(crate) disk: &'a mut Disk,
    pub(crate) store: &'a StoreFiles,
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) now: u64,
    /// Virtual time spent in this cycle so far (syncs take the disk's latency).
    pub(crate) spent_ns: u64,
    pub(crate) disk_latency_ns: (u64, u64),
    pub(crate) sync_fail: f64,
    pub(crate) failed: &'a mut bool,
    /// `begin_checkpoint` was called.
    pub(crate) checkpoint_begun: bool,
    /// `write_log` was called (a record of this batch is in the page cache).
    pub(crate) log_written: bool,
    /// The armed batch crash point, if any; taken when it strikes.
    pub(crate) crash: Option<BatchCrash>,
    /// The armed crash point struck in this cycle.
    pub(crate) crash_struck: bool,
    pub(crate) sync: &'a mut SimSyncThread,
}

/// When a `CtlIo`'s turn runs and what its fdatasyncs cost.
#[derive(Clone, Copy, Debug)]
pub(super) struct SyncTiming {
    pub(super) now: u64,
    pub(super) disk_latency_ns: (u64, u64),
    pub(super) sync_fail: f64,
}

impl<'a> CtlIo<'a> {
    /// The driver for one controller turn at `timing.now`, with no crash point armed.
    pub(super) fn new(
        disk: &'a mut Disk,
        store: &'a StoreFiles,
        rng: &'a mut ChaCha8Rng,
        failed: &'a mut bool,
        sync: &'a mut SimSyncThread,
        timing: SyncTiming,
    ) -> CtlIo<'a> {
        assert!((0.0..=1.0).contains(&timing.sync_fail));
        CtlIo {
            disk,
            store,
            rng,
            now: timing.now,
            spent_ns: 0,
            disk_latency_ns: timing.disk_latency_ns,
            sync_fail: timing.sync_fail,
            failed,
            checkpoint_begun: false,
            log_written: false,
            crash: None,
            crash_struck: false,
            sync,
        }
    }
}

impl CtlIo<'_> {
    /// One fdatasync of the fake disk begins: its latency and outcome (drawn now; the disk
    /// applies it when the sync returns, [`CtlIo::settle`]).
    fn draw_sync(&mut self) -> (Result<(), SyncError>, u64) {
        let latency_ns = ring::latency(self.rng, self.disk_latency_ns, 0.0);
        self.disk.begin_sync();
        if self.sync_fail > 0.0 && self.rng.random_bool(self.sync_fail) {
            *self.failed = true;
            return (Err(SyncError::Io("injected EIO".into())), latency_ns);
        }
        (Ok(()), latency_ns)
    }

    /// The fdatasync in flight returns with `result`: what it began with is durable, or its
    /// dirty pages are dropped for good (fsyncgate).
    fn settle(&mut self, result: &Result<(), SyncError>) {
        match result {
            Ok(()) => self.disk.finish_sync(),
            Err(_) => {
                self.disk.fail_sync();
            }
        }
    }

    /// Waits for the background data sync in flight, if one is (the controller thread blocks
    /// until it completes), and hands its result to the state machine.
    fn wait_data(&mut self) {
        if self.sync.state.data_in_flight() {
            let (result, done_at) = self.sync.in_flight.take().expect("a sync in flight");
            let at = self.now + self.spent_ns;
            self.spent_ns += done_at.saturating_sub(at);
            self.settle(&result);
            self.sync.state.data_done(result);
        }
        assert!(self.sync.in_flight.is_none());
    }
}

impl ControllerIo for CtlIo<'_> {
    fn begin_sync_data(&mut self) {
        self.wait_data();
        self.sync.state.begin_data();
        let (result, latency_ns) = self.draw_sync();
        self.sync.in_flight = Some((result, self.now + self.spent_ns + latency_ns));
    }

    fn sync_data(&mut self) -> Result<(), SyncError> {
        if self.log_written && self.crash == Some(BatchCrash::AfterLogWrite) {
            // The process dies before the flush: the record stays in the page cache only.
            self.crash = None;
            self.crash_struck = true;
            return Err(SyncError::Stopped);
        }
        self.wait_data();
        let result = match self.sync.state.finish_data() {
            DataFinish::Report(result) => result,
            DataFinish::SyncNow => {
                let (result, latency_ns) = self.draw_sync();
                self.spent_ns += latency_ns;
                self.settle(&result);
                result
            }
        };
        self.sync.failure_reported |= result.is_err();
        if result.is_ok() && self.log_written && self.crash == Some(BatchCrash::AfterFlush) {
            // The process dies between the flush and the index commit.
            self.crash = None;
            self.crash_struck = true;
            self.store.fail_next_commit();
        }
        result
    }

    fn write_log(&mut self, sector: u64, bytes: &[u8]) -> Result<(), SyncError> {
        log_region::write_log(self.disk, sector, bytes);
        self.log_written = true;
        Ok(())
    }

    fn begin_checkpoint(&mut self) {
        assert!(!self.checkpoint_begun, "one checkpoint at a time");
        self.checkpoint_begun = true;
    }

    fn now(&mut self) -> Instant {
        Instant(self.now + self.spent_ns)
    }
}

/// The engine's scrub over the fake disk, with its oracle: a block it finds corrupt must lie
/// on sectors the disk damaged (a misdirected or lost write) or turned bad.
pub struct SimScrub {
    scrub: Scrub,
}

/// What one scrub step did.
pub enum ScrubStep {
    /// Not due, or the end of a pass.
    Nothing,
    /// Checked a block: (offset, outcome).
    Checked(u64, ScrubOutcome),
}

impl Default for SimScrub {
    fn default() -> SimScrub {
        SimScrub {
            scrub: Scrub::new(SCRUB_INTERVAL),
        }
    }
}

impl SimScrub {
    /// Checks one block if due. `Err` names a corruption the disk never injected.
    pub fn step(
        &mut self,
        now: u64,
        controller: &Controller<SimStore>,
        disk: &Disk,
    ) -> Result<ScrubStep, String> {
        let read = engine::meta::MetaStore::read(controller.store())
            .map_err(|e| format!("scrub: read view: {e}"))?;
        let Some(request) = self
            .scrub
            .poll_read(Instant(now), &read)
            .map_err(|e| format!("scrub: index: {e}"))?
        else {
            return Ok(ScrubStep::Nothing);
        };
        let len = u64::from(request.len);
        let bad = disk.is_bad(request.offset, len);
        if !bad {
            disk.read(request.offset, self.scrub.buffer());
        }
        let outcome = self.scrub.handle_read(!bad);
        let injected = bad || disk.may_differ(request.offset, len);
        if outcome != ScrubOutcome::Intact && !injected {
            return Err(format!(
                "scrub found {} at offset {} corrupt, but the disk damaged none of its sectors",
                request.hash, request.offset
            ));
        }
        Ok(ScrubStep::Checked(request.offset, outcome))
    }
}
