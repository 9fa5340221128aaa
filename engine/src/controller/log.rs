//! The controller's write-ahead log (issue 18): which batch fits in the log, the batch's
//! record, and checkpoints.
//!
//! Owns the [`LogRing`] and the checkpoint's state. A full-durability batch that promises
//! something is written as one record ([`Controller::write_record`]) before the batch's one
//! flush; the index commit after the flush is non-durable, and a checkpoint
//! ([`Controller::poll_checkpoint`], then the driver's [`Controller::checkpoint_done`]) makes
//! the index durable and frees the log space before it.
//!
//! Invariants:
//! - a batch takes only as many logged messages (occupies, releases) as fit in one record and
//!   in the free log space: the record is placed before the flush, never over a live one;
//! - at most one record is unflushed: the next record is written only in a later cycle, after
//!   this one's flush returned (cycles are sequential);
//! - log space is freed only when a checkpoint has *returned*, up to what was committed when it
//!   began (the `reuse_log_before_checkpoint` bug frees it at the request);
//! - every commit up to `durable_seq` is durable; a checkpoint begins only when none is in
//!   flight and the controller has not latched.
//!
//! Must never: do I/O itself (the driver writes and syncs), or read a clock (time comes in).

use std::time::Duration;

use crate::clock::Instant;
use crate::message::ToController;
use crate::meta::{LogState, MetaStore, MetaTxn};
use crate::wal::{
    encode_batch, encode_wrap, record_sectors, LogOp, LogRing, RunStamp, RECORD_OPS_MAX,
    SECTOR_BYTES,
};

use super::batch::BatchError;
use super::{Controller, ControllerIo, Durability, LatchCause, SyncError, BATCH_MESSAGES_MAX};

/// The server's `ControllerConfig::checkpoint_interval`: a checkpoint is due this long after the
/// last one began, when anything was committed since (it also bounds libmdbx's growth between
/// durable commits). Small on purpose: a checkpoint's
/// fdatasync of the index competes with the batches' flushes on a disk that serializes them, and
/// the less it has to write the shorter the batches wait behind it (measured with wrk, PUT
/// 4 KiB at 32 and 64 connections: p99 29-37 ms at 1 s, 11 ms at 100 ms, 5-7 ms at 20 ms, the
/// same throughput; the build before the log had 4-7 ms).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(20);

/// Whether a checkpoint is running.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Checkpoint {
    Idle,
    /// Began when the index's newest commit was `through_seq`.
    InFlight {
        through_seq: u64,
    },
}

/// Whether writes may run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Space {
    Open,
    /// The first logged message in the inbox did not fit in the free log space: writes wait
    /// (in order) for a checkpoint to return.
    Waiting,
}

/// See the module doc.
#[derive(Debug)]
pub(super) struct Log {
    ring: LogRing,
    stamp: RunStamp,
    checkpoint: Checkpoint,
    /// When the last checkpoint began (or the controller opened).
    last_checkpoint: Instant,
    /// Every commit up to this one is durable (the last checkpoint that returned, or open).
    durable_seq: u64,
    space: Space,
    /// The record being encoded (kept to reuse its allocation).
    buf: Vec<u8>,
}

impl Log {
    /// The log as `open` finds it: empty (recovery replayed it), starting at `state.next`,
    /// everything committed durable.
    pub(super) fn new(state: LogState, node_id: u64, durable_seq: u64) -> Log {
        Log {
            ring: LogRing::new(state.log_sectors, state.next),
            stamp: RunStamp {
                run_id: state.run_id,
                node_id,
            },
            checkpoint: Checkpoint::Idle,
            last_checkpoint: Instant::ZERO,
            durable_seq,
            space: Space::Open,
            buf: Vec::new(),
        }
    }

    /// The `LogState` a commit records: replay starts at the ring's next record.
    pub(super) fn state(&self) -> LogState {
        LogState {
            log_sectors: self.ring.size_sectors(),
            next: self.ring.next(),
            run_id: self.stamp.run_id,
        }
    }

    /// Whether a record of `occupies` + `releases` ops fits now (in one record, and in the free
    /// space without overwriting a live record).
    fn fits(&self, occupies: u32, releases: u32) -> bool {
        let ops = occupies + releases;
        if ops > RECORD_OPS_MAX {
            return false;
        }
        let sectors = record_sectors(occupies, releases);
        sectors <= self.ring.record_sectors_max() && self.ring.place(sectors).is_ok()
    }

    /// Writes batch `commit_seq`'s record (and a wrap record first when it does not fit before
    /// the end of the region), then records in `txn` where replay must start after it. The
    /// batch's flush follows; its commit then calls [`Log::record_committed`].
    pub(super) fn write_record(
        &mut self,
        txn: &mut impl MetaTxn,
        ops: &[LogOp],
        commit_seq: u64,
        io: &mut impl ControllerIo,
    ) -> Result<(), BatchError> {
        assert!(!ops.is_empty() && ops.len() <= RECORD_OPS_MAX as usize);
        assert_eq!(
            self.ring.committed(),
            self.ring.next(),
            "one record unflushed at most: the last one's batch committed"
        );
        self.buf.clear();
        let log_seq = self.ring.next().seq;
        encode_batch(self.stamp, log_seq, commit_seq, ops, &mut self.buf);
        let sectors = self.buf.len() as u64 / SECTOR_BYTES;
        let placement = self
            .ring
            .place(sectors)
            .expect("take_batch checked that the batch's record fits");
        if let Some(wrap_at) = placement.wrap_at {
            let mut wrap = Vec::with_capacity(SECTOR_BYTES as usize);
            encode_wrap(self.stamp, log_seq, &mut wrap);
            io.write_log(wrap_at, &wrap).map_err(BatchError::LogWrite)?;
        }
        io.write_log(placement.at.sector, &self.buf)
            .map_err(BatchError::LogWrite)?;
        self.ring.appended(placement);
        txn.set_log_state(&self.state())
            .map_err(BatchError::LogState)?;
        Ok(())
    }

    /// The batch's commit (after its flush) succeeded: its record is no longer the unflushed
    /// one.
    pub(super) fn record_committed(&mut self) {
        self.ring.commit_done();
    }

    /// Every commit up to `seq` is durable (a durable commit at open).
    pub(super) fn durable_through(&mut self, seq: u64) {
        assert!(seq >= self.durable_seq && self.checkpoint == Checkpoint::Idle);
        self.durable_seq = seq;
    }

    pub(super) fn waits_for_space(&self) -> bool {
        self.space == Space::Waiting
    }

    pub(super) fn check_invariants(&self) {
        self.ring.check_invariants();
        if let Checkpoint::InFlight { through_seq, .. } = self.checkpoint {
            assert!(through_seq >= self.durable_seq);
        }
    }
}

impl<M: MetaStore> Controller<M> {
    /// The next batch from the inbox, in order. In full mode it stops before the first logged
    /// message (occupy, release) that would not fit in one record in the free log space; the
    /// reader horizons behind it are taken too (they never wait). When nothing logged fits,
    /// writes wait for a checkpoint ([`Space::Waiting`]).
    pub(super) fn take_batch(&mut self) -> Vec<ToController> {
        let logged = self.config.durability == Durability::Full
            && !self.config.bugs.ack_before_durable()
            && self.failed.is_none();
        let limit = self.inbox.len().min(BATCH_MESSAGES_MAX);
        let (mut occupies, mut releases) = (0u32, 0u32);
        let mut cut = None;
        if logged {
            for (i, m) in self.inbox[..limit].iter().enumerate() {
                let (o, r) = match m {
                    ToController::Occupy { .. } => (1, 0),
                    ToController::Release { .. } => (0, 1),
                    _ => continue,
                };
                if !self.log.fits(occupies + o, releases + r) {
                    cut = Some(i);
                    break;
                }
                occupies += o;
                releases += r;
            }
        }
        let mut batch: Vec<ToController> = self.inbox.drain(..cut.unwrap_or(limit)).collect();
        match cut {
            None => self.log.space = Space::Open,
            Some(_) => {
                // Horizons never wait behind writes.
                self.inbox.retain(|m| {
                    let take = super::is_horizon(m) && batch.len() < BATCH_MESSAGES_MAX;
                    if take {
                        batch.push(*m);
                    }
                    !take
                });
                let stuck = occupies + releases == 0;
                if stuck && self.log.space == Space::Open {
                    self.stats.log_full_waits += 1;
                }
                self.log.space = if stuck { Space::Waiting } else { Space::Open };
            }
        }
        batch
    }

    /// Begins a checkpoint through `io` if one is due: the log is at least half full, writes
    /// wait for log space, or `config.checkpoint_interval` has passed since the last one began and
    /// something was committed since. Call once per loop turn, after the cycle and the
    /// outboxes. Full durability only; never after a latch; one at a time.
    pub fn poll_checkpoint(&mut self, now: Instant, io: &mut impl ControllerIo) {
        assert!(
            self.writes_pending.is_none(),
            "poll_checkpoint inside a cycle"
        );
        if self.config.durability != Durability::Full
            || self.failed.is_some()
            || self.log.checkpoint != Checkpoint::Idle
        {
            return;
        }
        let ring = &self.log.ring;
        let half_full = ring.used_sectors() * 2 >= ring.size_sectors();
        let stale = self.header.commit_seq > self.log.durable_seq
            && now >= self.log.last_checkpoint + self.config.checkpoint_interval;
        if !(half_full || self.log.waits_for_space() || stale) {
            return;
        }
        self.log.ring.begin_checkpoint();
        if self.config.bugs.reuse_log_before_checkpoint() {
            // The bug: the space is free before the checkpoint made the index durable.
            self.log.ring.checkpoint_returned();
        }
        self.log.checkpoint = Checkpoint::InFlight {
            through_seq: self.header.commit_seq,
        };
        self.log.last_checkpoint = now;
        io.begin_checkpoint();
    }

    /// When [`Controller::poll_checkpoint`] next wants to run by the clock (`None`: not by the
    /// clock; a batch or a `checkpoint_done` wakes the driver anyway).
    pub(super) fn checkpoint_deadline(&self) -> Option<Instant> {
        let idle = self.config.durability == Durability::Full
            && self.failed.is_none()
            && self.log.checkpoint == Checkpoint::Idle;
        (idle && self.header.commit_seq > self.log.durable_seq)
            .then(|| self.log.last_checkpoint + self.config.checkpoint_interval)
    }

    /// A checkpoint began ([`ControllerIo::begin_checkpoint`]) and its outcome is owed.
    pub fn checkpoint_in_flight(&self) -> bool {
        self.log.checkpoint != Checkpoint::Idle
    }

    /// The outcome of the checkpoint begun by `ControllerIo::begin_checkpoint`, and how long it
    /// took. On success the log space it covers is free again and writes waiting for space go
    /// on. On failure the controller latches: the acknowledged batches are safe in the log (the
    /// next start replays them), but the log can no longer be freed.
    pub fn checkpoint_done(&mut self, result: Result<(), impl Into<SyncError>>, took: Duration) {
        let Checkpoint::InFlight { through_seq, .. } = self.log.checkpoint else {
            panic!("checkpoint_done without a checkpoint in flight");
        };
        assert!(
            self.writes_pending.is_none(),
            "checkpoint_done inside a cycle"
        );
        self.log.checkpoint = Checkpoint::Idle;
        let bug_freed = self.config.bugs.reuse_log_before_checkpoint();
        match result.map_err(Into::into) {
            Ok(()) => {
                if !bug_freed {
                    self.log.ring.checkpoint_returned();
                }
                self.log.durable_seq = through_seq;
                self.log.space = Space::Open;
                let ns = took.as_nanos() as u64;
                self.stats.checkpoints += 1;
                self.stats.last_checkpoint_ns = ns;
                self.stats.total_checkpoint_ns += ns;
            }
            Err(e) => {
                if !bug_freed {
                    self.log.ring.checkpoint_failed();
                }
                self.latch(LatchCause::Checkpoint(e));
            }
        }
        self.log.check_invariants();
    }

    /// The log's figures for `/stats`.
    pub(super) fn log_figures(&self) -> (u64, u64) {
        let ring = &self.log.ring;
        (ring.used_sectors() * SECTOR_BYTES, ring.live_records())
    }
}
