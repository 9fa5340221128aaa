//! The controller: the only owner of the metadata store and the allocator.
//!
//! One cycle (seed plan, steps 0-11): pause if less than the cycle interval has passed since the
//! last run; take the messages the driver drained from the worker queues (in full durability,
//! as many as one log record in the free log space holds); take the reader horizons (index
//! reads never come here: workers read their own views); then one write transaction with
//! release -> allocate -> occupy -> return; write the batch's log record and flush the data
//! file once (through the driver); commit; queue the replies. Replies wait in per-worker outboxes until the driver
//! can push them; a full worker queue delays a reply, never drops it.
//!
//! # Driving it (the server's `control.rs` and the simulator do exactly this)
//!
//! 1. [`Controller::open`] once: recovery (the one index audit, reservations back to free).
//! 2. Every decoded frame from a worker queue goes to [`Controller::handle_message`].
//! 3. [`Controller::start_cycle`]`(now)`: `Paused { until }` (call again then), `Idle`, or
//!    `Ran`: the read answers are in the outboxes; drain them now ([`Controller::drain_outbox`])
//!    so GETs do not wait for the batch's sync and commit, then call
//!    [`Controller::finish_cycle`] with the driver's [`ControllerIo`] (write transaction, data
//!    sync, commit, replies). [`Controller::run_cycle`] does both halves at once.
//! 4. After `finish_cycle`, [`Controller::drain_outbox`] for every worker until empty or full.
//! 5. [`Controller::poll_checkpoint`]`(now, io)`: it may begin a checkpoint
//!    ([`ControllerIo::begin_checkpoint`]); when the driver's checkpoint ends, it reports the
//!    outcome with [`Controller::checkpoint_done`] (between cycles), then drains the outboxes
//!    again (writes that waited for log space run at the next cycle).
//! 6. Sleep until [`Controller::poll_timeout`] (`None`: until a message arrives or the
//!    checkpoint ends).
//!
//! Before [`Controller::open`] on an existing store the driver makes the data file durable and
//! replays the log (`wal::recover`): `open` takes the log as empty.
//!
//! Between cycles the driver may also run the [`Scrub`] (one block per interval) and, in the
//! simulator, [`Controller::check_invariants`] and [`Controller::check_against_store`].
//!
//! # Rooms
//!
//! `batch.rs` the write transaction and its commit, `ops.rs` its
//! operations; `durability.rs` the pure durability plan and the latch; `log.rs` the
//! write-ahead log's record, space and checkpoints;
//! `driver.rs` the driver trait and sync errors; `syncer.rs` the data-sync thread's state
//! machine; `isolation.rs` the read phase (horizons) and slot reuse after readers; `recovery.rs` `open`; `audit.rs` the index
//! audit; `invariants.rs` the self-checks; `reserved.rs` the reservations; `scrub.rs` the scrub;
//! `stats.rs` the figures.
//!
//! Isolation (SPEC guarantee 4) is deferred reuse: a slot released by batch `T` stays in
//! quarantine until every worker has reported (`ReaderHorizon`) that no index view older than
//! `T` is in use and none will be renewed (a view of version `>= T` no longer has the entry).
//! The controller asks for the reports it needs (`HorizonWanted`). Quarantined bytes count as
//! free. Durability of reads: the controller publishes the durable watermark
//! (`MetaStore::publish_durable`) before the replies of a durable batch; views show only the
//! entries of batches at or below it (every commit, since full mode commits after the flush).
//!
//! After any store or sync error the controller latches failed (as redb does): it never retries
//! a failed fsync, answers every further write with an I/O error, and the operator restarts.
//!
//! Must never: do I/O or read a clock itself (time comes as `now` or from `ControllerIo::now`),
//! commit a batch before its record and data are flushed (full), overwrite a log record a
//! crash may still need, or reuse a slot a reader may still read.

mod audit;
mod batch;
mod driver;
mod durability;
mod invariants;
mod isolation;
mod log;
#[cfg(test)]
mod log_tests;
mod ops;
mod recovery;
mod reserved;
mod scrub;
mod stats;
mod syncer;

pub use audit::{audit_index, IndexAudit, IndexProblem};
pub use batch::BatchError;
pub use driver::{ControllerIo, SyncError};
pub use durability::{
    BatchContent, Commit, CommitPlan, DataSync, Durability, DurabilityPolicy, LatchCause, Logging,
    RELAXED_SYNC_INTERVAL,
};
pub use log::CHECKPOINT_INTERVAL;
pub use recovery::OpenError;
pub use scrub::{Scrub, ScrubOutcome, ScrubRead, SCRUB_KNOWN_CORRUPT_MAX};
pub use stats::ControllerStats;
pub use syncer::{DataFinish, Syncer};

use std::collections::VecDeque;
use std::time::Duration;

use crate::buddy::{BuddyAllocator, Slot};
use crate::bugs::Bugs;
use crate::clock::Instant;
use crate::message::{ToController, ToWorker, WorkerId};
use crate::meta::{Header, MetaStore};

use reserved::Reserved;

/// Default pause between cycles (seed: 100 us).
pub const CYCLE_INTERVAL_DEFAULT: Duration = Duration::from_micros(100);
/// Most workers one controller serves (worker ids are a u8).
pub const WORKERS_MAX: usize = 64;
/// Most messages handled in one cycle; the rest wait for the next.
pub const BATCH_MESSAGES_MAX: usize = 65_536;

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub capacity_bytes: u64,
    pub workers: usize,
    pub cycle_interval: Duration,
    pub durability: Durability,
    /// Used only when the store is created.
    pub node_id: u64,
    /// The log region's size in 4 KiB sectors: written into a new store's `LogState`; an
    /// existing store's must be the same (`OpenError::LogRegion`).
    pub log_sectors: u64,
    /// The run id of a new store's log records (an existing store's comes from `wal::recover`).
    pub run_id: u64,
    /// How long after the last checkpoint began the next is due when anything was committed
    /// since ([`CHECKPOINT_INTERVAL`] in the server).
    pub checkpoint_interval: Duration,
    pub bugs: Bugs,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CycleOutcome {
    /// Less than the cycle interval since the last run: call again at `until`.
    Paused { until: Instant },
    /// Nothing to do.
    Idle,
    /// A cycle ran over this many messages.
    Ran { messages: usize },
}

pub struct Controller<M: MetaStore> {
    store: M,
    config: ControllerConfig,
    header: Header,
    allocator: BuddyAllocator,
    /// Slots held by worker pools (or by PUTs in flight), by offset.
    reserved: Reserved,
    /// Released slots waiting for readers, with the sequence number of the batch that released
    /// them (ascending: batches commit in order).
    quarantine: VecDeque<(u64, Slot)>,
    /// Released slots the durable index may still point at (relaxed mode: the release was
    /// committed, not yet durably): they join the quarantine at the next durable commit, so a
    /// power loss that brings a deleted block back finds its bytes intact, not a reused slot.
    undurable: Vec<(u64, Slot)>,
    /// Per worker: no index view older than this is in use or will be renewed.
    horizon: Vec<u64>,
    /// Per worker: the highest horizon asked for (`HorizonWanted`).
    horizon_asked: Vec<u64>,
    inbox: Vec<ToController>,
    /// The batch between `start_cycle` and `finish_cycle`.
    writes_pending: Option<Vec<ToController>>,
    outbox: Vec<VecDeque<ToWorker>>,
    last_run: Option<Instant>,
    last_durable_commit: Instant,
    /// Relaxed mode, since `open`: no durable commit yet. The last run's non-durable deletes
    /// are committed but not durable, so the first write batch (before any slot is handed out)
    /// syncs the data file and commits durably.
    durable_commit_due: bool,
    /// The write-ahead log and its checkpoints.
    log: log::Log,
    failed: Option<durability::Latched>,
    stats: ControllerStats,
}

impl<M: MetaStore> Controller<M> {
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn store(&self) -> &M {
        &self.store
    }

    /// Consumes the controller, giving back its store (shutdown, crash tests).
    pub fn into_store(self) -> M {
        self.store
    }

    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Takes one message drained from a worker queue.
    pub fn handle_message(&mut self, message: ToController) {
        assert!(
            (message.worker() as usize) < self.config.workers,
            "{message:?}"
        );
        self.inbox.push(message);
    }

    /// Messages waiting for the next cycle.
    pub fn inbox_len(&self) -> usize {
        self.inbox.len()
    }

    /// When the controller next wants to run: `None` when idle (no messages waiting, or only
    /// writes that wait for log space, and no checkpoint due by the clock).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let cycle = if self.inbox.is_empty()
            || self.log.waits_for_space() && !self.inbox.iter().any(is_horizon)
        {
            None
        } else {
            Some(match self.last_run {
                Some(t) => t + self.config.cycle_interval,
                None => Instant::ZERO,
            })
        };
        match (cycle, self.checkpoint_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs one cycle if the pause has passed.
    pub fn run_cycle(&mut self, now: Instant, io: &mut impl ControllerIo) -> CycleOutcome {
        let outcome = self.start_cycle(now);
        if matches!(outcome, CycleOutcome::Ran { .. }) {
            self.finish_cycle(io);
        }
        outcome
    }

    /// Steps 0-5 of a cycle: the pause, the batch, and the readers' horizons (which may free
    /// quarantined slots before this cycle allocates). `Ran` must be followed by
    /// `finish_cycle`.
    pub fn start_cycle(&mut self, now: Instant) -> CycleOutcome {
        assert!(self.writes_pending.is_none(), "finish_cycle was not called");
        if let Some(last) = self.last_run {
            let until = last + self.config.cycle_interval;
            if now < until {
                self.stats.pauses += 1;
                return CycleOutcome::Paused { until };
            }
        }
        if self.inbox.is_empty() {
            return CycleOutcome::Idle;
        }
        if self.log.waits_for_space() && !self.inbox.iter().any(is_horizon) {
            // Writes wait for a checkpoint to free log space; nothing else to do.
            return CycleOutcome::Idle;
        }
        let batch = self.take_batch();
        if batch.is_empty() {
            return CycleOutcome::Idle;
        }
        self.last_run = Some(now);
        self.stats.cycles += 1;
        self.stats.last_batch_messages = batch.len() as u64;
        self.stats.max_batch_messages = self.stats.max_batch_messages.max(batch.len() as u64);
        self.stats.messages_total += batch.len() as u64;
        let messages = batch.len();
        self.take_horizons(&batch);
        self.writes_pending = Some(batch);
        CycleOutcome::Ran { messages }
    }

    /// Steps 6-10 of a cycle started by [`Controller::start_cycle`]: one write transaction,
    /// durable data, commit, replies.
    pub fn finish_cycle(&mut self, io: &mut impl ControllerIo) {
        let batch = self.writes_pending.take().expect("start_cycle ran a batch");
        assert!(!batch.is_empty(), "a cycle that ran has messages");
        let writes = batch.iter().any(|m| !is_horizon(m));
        if writes {
            self.write_batch(&batch, io);
        }
        if cfg!(debug_assertions) {
            self.check_invariants_cheap();
        }
    }

    /// Gives queued replies for `worker` to `push` until it refuses one (queue full).
    pub fn drain_outbox(&mut self, worker: WorkerId, mut push: impl FnMut(&ToWorker) -> bool) {
        assert!((worker as usize) < self.config.workers, "worker {worker}");
        let drop_when_full = self.config.bugs.drop_reply_when_full();
        let out = &mut self.outbox[worker as usize];
        while let Some(reply) = out.front() {
            if push(reply) {
                out.pop_front();
            } else {
                if drop_when_full {
                    out.pop_front();
                }
                break;
            }
        }
    }

    /// Replies waiting in all outboxes.
    pub fn outbox_len(&self) -> usize {
        self.outbox.iter().map(VecDeque::len).sum()
    }

    /// Why the controller latched failed, if it did (the text of [`Controller::latch_cause`]).
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_ref().map(|l| l.text.as_str())
    }

    /// Why the controller latched failed, if it did.
    pub fn latch_cause(&self) -> Option<&LatchCause> {
        self.failed.as_ref().map(|l| &l.cause)
    }
}

/// Read-side bookkeeping (a reader horizon): taken at the start of a cycle, also while writes
/// wait for log space. Every index read is answered by the workers' own views.
fn is_horizon(m: &ToController) -> bool {
    matches!(m, ToController::ReaderHorizon { .. })
}
