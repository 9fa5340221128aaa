//! The write phase of a cycle: one transaction for release -> allocate -> occupy -> return,
//! made durable as `DurabilityPolicy::plan` says (full: one log record and one flush of the
//! data file), then committed; replies queued.
//!
//! Invariants: a failed batch commits nothing and undoes every in-memory change it made
//! (`Undo`), so the books match the committed state; freed slots go back to the allocator
//! only after the commit; released ones go to quarantine (or `undurable`) only after it.
//! Must never: commit half of an operation, or answer a PUT or DELETE before the plan allows.

use crate::buddy::Slot;
use crate::message::{ErrorCode, ToController, ToWorker, WorkerId};
use crate::meta::{Header, MetaError, MetaStore, MetaTxn};
use crate::wal::LogOp;

use super::ops::{BatchCtx, Counts};
use super::{
    BatchContent, Commit, Controller, ControllerIo, DataSync, Durability, DurabilityPolicy,
    LatchCause, Logging, SyncError, RELAXED_SYNC_INTERVAL, WORKERS_MAX,
};

/// Why a batch's write transaction failed: nothing of it was committed. Displayed as before
/// the errors were typed (`get: ...`, `fdatasync of the data file: ...`).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum BatchError {
    #[error("begin: {0}")]
    Begin(MetaError),
    #[error("get: {0}")]
    Get(MetaError),
    #[error("delete: {0}")]
    Delete(MetaError),
    #[error("reserve: {0}")]
    Reserve(MetaError),
    #[error("unreserve: {0}")]
    Unreserve(MetaError),
    #[error("put: {0}")]
    Put(MetaError),
    #[error("header: {0}")]
    Header(MetaError),
    #[error("commit: {0}")]
    Commit(MetaError),
    #[error("log state: {0}")]
    LogState(MetaError),
    #[error("write of the log record: {0}")]
    LogWrite(SyncError),
    #[error("fdatasync of the data file: {0}")]
    DataSync(SyncError),
}

/// Replies held until the batch commits.
pub(super) struct Pending {
    pub(super) replies: Vec<(WorkerId, ToWorker)>,
    /// Slots to free once committed (duplicates, returns).
    pub(super) free_after_commit: Vec<Slot>,
    /// Slots to quarantine once committed (releases).
    pub(super) quarantine_after_commit: Vec<Slot>,
    /// The stored blocks and deletions a client is promised, in batch order: the log record.
    pub(super) log_ops: Vec<LogOp>,
    /// How the batch was committed.
    pub(super) commit: Commit,
    /// The `show_before_durable` bug committed the batch before its flush, which then failed:
    /// the commit stands, the promises become I/O errors.
    pub(super) committed_before_failed_flush: bool,
    /// An allocate request of the batch was granted fewer slots than it asked for.
    pub(super) short: bool,
    /// In-memory changes made before the commit, undone if the batch fails.
    pub(super) undo: Vec<Undo>,
}

/// One in-memory change of a batch that a failed commit must take back.
pub(super) enum Undo {
    /// A slot taken from the allocator (and perhaps reserved) for an allocate request.
    Allocated(Slot),
    /// A reservation dropped by an occupy or a return.
    Unreserved(Slot, WorkerId),
}

impl<M: MetaStore> Controller<M> {
    /// Steps 6-10: one write transaction, durable data, commit, replies.
    pub(super) fn write_batch(&mut self, batch: &[ToController], io: &mut impl ControllerIo) {
        debug_assert!(batch.len() <= super::BATCH_MESSAGES_MAX);
        if self.failed.is_some() {
            self.fail_writes(batch);
            return;
        }
        let mut pending = Pending {
            replies: Vec::new(),
            free_after_commit: Vec::new(),
            quarantine_after_commit: Vec::new(),
            log_ops: Vec::new(),
            commit: Commit::NonDurable,
            committed_before_failed_flush: false,
            short: false,
            undo: Vec::new(),
        };
        match self.apply_in_txn(batch, &mut pending, io) {
            Ok(()) => self.finish_commit(pending),
            Err(e) if pending.committed_before_failed_flush => {
                // The bug's order: committed and visible, never made durable.
                for (_, reply) in &mut pending.replies {
                    if let ToWorker::Occupied { request, .. } | ToWorker::Released { request, .. } =
                        *reply
                    {
                        *reply = ToWorker::Error {
                            request,
                            code: ErrorCode::Io,
                        };
                    }
                }
                self.finish_commit(pending);
                self.latch(LatchCause::Batch(e));
            }
            Err(e) => {
                // Nothing was committed: the allocator and the reservations go back to the
                // committed state, or the books (and the next cycle's check) would be wrong.
                self.undo(pending.undo);
                self.latch(LatchCause::Batch(e));
                self.fail_writes(batch);
            }
        }
    }

    pub(super) fn undo(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Allocated(slot) => {
                    self.reserved.remove(&slot.offset);
                    self.allocator
                        .free(slot)
                        .expect("an undone allocation was allocated");
                }
                Undo::Unreserved(slot, worker) => {
                    let previous = self.reserved.insert(slot.offset, (slot, worker));
                    assert!(previous.is_none(), "an undone reservation was free");
                }
            }
        }
        debug_assert!(self
            .reserved
            .values()
            .all(|(s, _)| self.allocator.is_allocated(*s)));
    }

    pub(super) fn apply_in_txn(
        &mut self,
        batch: &[ToController],
        pending: &mut Pending,
        io: &mut impl ControllerIo,
    ) -> Result<(), BatchError> {
        let seq = self.header.commit_seq + 1;
        let policy = DurabilityPolicy {
            mode: self.config.durability,
            ack_before_durable: self.config.bugs.ack_before_durable(),
            ack_before_log_durable: self.config.bugs.ack_before_log_durable(),
        };
        let promises = batch.iter().any(|m| {
            matches!(
                m,
                ToController::Occupy { .. } | ToController::Release { .. }
            )
        });
        if policy.begins_data_sync(promises) {
            io.begin_sync_data();
        }
        let mut txn = self.store.begin().map_err(BatchError::Begin)?;
        let mut counts = Counts::default();
        let mut ctx = BatchCtx {
            allocator: &mut self.allocator,
            reserved: &mut self.reserved,
            seq,
            quarantined: !self.quarantine.is_empty() || !self.undurable.is_empty(),
            reclaim_sent: [0; WORKERS_MAX],
        };
        for m in batch {
            if let ToController::Release {
                worker,
                request,
                hash,
            } = *m
            {
                let outcome = ctx.release(&mut txn, hash, pending, &mut counts)?;
                pending
                    .replies
                    .push((worker, ToWorker::Released { request, outcome }));
            }
        }
        for m in batch {
            if let ToController::Allocate {
                worker,
                request,
                class,
                count,
            } = *m
            {
                ctx.allocate(&mut txn, worker, request, class, count, pending)?;
            }
        }
        for m in batch {
            if let ToController::Occupy {
                worker,
                request,
                hash,
                slot,
                len,
                crc32c,
            } = *m
            {
                let reply = ctx.occupy(
                    &mut txn,
                    worker,
                    request,
                    hash,
                    slot,
                    len,
                    crc32c,
                    pending,
                    &mut counts,
                )?;
                pending.replies.push((worker, reply));
            }
        }
        for m in batch {
            if let ToController::ReturnSlot {
                worker,
                request: _,
                slot,
            } = *m
            {
                ctx.return_slot(&mut txn, worker, slot, pending)?;
            }
        }
        let header = Header {
            commit_seq: seq,
            ..self.header
        };
        txn.set_header(&header).map_err(BatchError::Header)?;
        let content = BatchContent {
            stored: pending
                .log_ops
                .iter()
                .any(|op| matches!(op, LogOp::Occupy { .. })),
            released: !pending.quarantine_after_commit.is_empty(),
            short_while_undurable: pending.short && !self.undurable.is_empty(),
        };
        let before = io.now();
        let due =
            self.durable_commit_due || before >= self.last_durable_commit + RELAXED_SYNC_INTERVAL;
        let plan = policy.plan(content, due);
        if plan.logging == Logging::Record {
            let ops = std::mem::take(&mut pending.log_ops);
            self.log.write_record(&mut txn, &ops, seq, io)?;
            self.stats.log_records_written += 1;
        }
        pending.commit = plan.commit;
        let early =
            plan.data_sync == DataSync::ForLogRecord && self.config.bugs.show_before_durable();
        let mut txn = Some(txn);
        if early {
            // The bug: committed (and, in `finish_commit`, published) before the flush.
            let txn = txn.take().expect("not committed yet");
            txn.commit(false).map_err(BatchError::Commit)?;
        }
        // The data first: a commit, even a non-durable one, may become durable at any later
        // sync of the index (a checkpoint; libmdbx syncs at open and close too), so it must
        // never point at data or a record that is not durable.
        let t0 = if plan.data_sync == DataSync::ForLogRecord {
            let synced = io.sync_data();
            if !(self.config.bugs.ack_after_failed_sync() && synced.is_err()) {
                if let Err(e) = synced {
                    if early {
                        drop(txn);
                        pending.committed_before_failed_flush = true;
                        self.committed(header, &counts);
                    }
                    return Err(BatchError::DataSync(e));
                }
            }
            let ns = io.now().saturating_since(before).as_nanos() as u64;
            self.stats.last_sync_ns = ns;
            self.stats.total_sync_ns += ns;
            io.now()
        } else {
            before
        };
        if plan.data_sync == DataSync::ForDurableIndex {
            // The durable index must not point at data that is not durable (a power loss would
            // leave torn blocks under it): the relaxed mode's durable commit syncs first.
            io.sync_data().map_err(BatchError::DataSync)?;
        }
        if plan.commit.is_durable() {
            self.last_durable_commit = t0;
            self.durable_commit_due = false;
        }
        if let Some(txn) = txn.take() {
            txn.commit(plan.commit == Commit::Durable)
                .map_err(BatchError::Commit)?;
        }
        drop(txn);
        if plan.logging == Logging::Record {
            self.log.record_committed();
        }
        let ns = io.now().saturating_since(t0).as_nanos() as u64;
        self.stats.last_commit_ns = ns;
        self.stats.max_commit_ns = self.stats.max_commit_ns.max(ns);
        self.stats.total_commit_ns += ns;
        self.committed(header, &counts);
        Ok(())
    }

    /// The books after a commit: the header and the figures.
    fn committed(&mut self, header: Header, counts: &Counts) {
        self.stats.commits += 1;
        self.header = header;
        self.stats.blocks = (self.stats.blocks + counts.blocks_added) - counts.blocks_removed;
        self.stats.used_bytes = (self.stats.used_bytes + counts.used_added) - counts.used_removed;
        self.stats.data_bytes = (self.stats.data_bytes + counts.data_added) - counts.data_removed;
    }

    pub(super) fn finish_commit(&mut self, pending: Pending) {
        assert!(
            self.failed.is_none(),
            "a latched controller commits nothing"
        );
        assert!(
            pending.log_ops.is_empty()
                || self.config.durability == Durability::Relaxed
                || self.config.bugs.ack_before_durable(),
            "a promise went unlogged"
        );
        for slot in pending.free_after_commit {
            self.allocator
                .free(slot)
                .expect("a committed duplicate or return was allocated");
        }
        // Full mode: a release is durable once its record's flush returned.
        let durable =
            pending.commit == Commit::Durable || self.config.durability == Durability::Full;
        if durable {
            self.quarantine.extend(self.undurable.drain(..));
        }
        // The batch just committed released these: views of this version no longer have them.
        let released_by = self.header.commit_seq;
        for slot in pending.quarantine_after_commit {
            if self.config.bugs.reuse_while_reading() {
                self.allocator
                    .free(slot)
                    .expect("released slot was allocated");
            } else if durable {
                self.quarantine.push_back((released_by, slot));
            } else {
                self.undurable.push((released_by, slot));
            }
        }
        // Full mode: every commit is over a durable record and durable data; relaxed promises
        // no power-loss durability. Views may show it, before the replies, so a GET after a
        // 201 on the same connection finds the block.
        self.store.publish_durable(self.header.commit_seq);
        self.want_horizons();
        for (worker, reply) in pending.replies {
            self.outbox[worker as usize].push_back(reply);
        }
    }

    /// Answers every write of the batch with an I/O error (after a latch).
    pub(super) fn fail_writes(&mut self, batch: &[ToController]) {
        assert!(self.failed.is_some(), "writes fail only under a latch");
        for m in batch {
            let (worker, request) = match *m {
                // Not `AllocateDone` with nothing granted: that means "no space" (507),
                // and space is not what is missing.
                ToController::Allocate {
                    worker, request, ..
                }
                | ToController::Occupy {
                    worker, request, ..
                }
                | ToController::Release {
                    worker, request, ..
                } => (worker, request),
                _ => continue,
            };
            self.outbox[worker as usize].push_back(ToWorker::Error {
                request,
                code: ErrorCode::Io,
            });
        }
    }
}
