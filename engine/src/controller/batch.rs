//! The write phase of a cycle: one transaction for release -> allocate -> occupy -> return.

use crate::buddy::Slot;
use crate::hash::BlockHash;
use crate::message::{ErrorCode, OccupyOutcome, ToController, ToWorker, WorkerId};
use crate::meta::{Header, MetaStore, MetaTxn};

use super::ops::{BatchCtx, Counts};
use super::{is_promise, Controller, ControllerIo, Durability, RELAXED_SYNC_INTERVAL, WORKERS_MAX};

/// Replies held until the batch commits.
pub(super) struct Pending {
    pub(super) replies: Vec<(WorkerId, ToWorker)>,
    /// Slots to free once committed (duplicates, returns).
    pub(super) free_after_commit: Vec<Slot>,
    /// Slots to quarantine once committed (releases).
    pub(super) quarantine_after_commit: Vec<Slot>,
    pub(super) needs_sync: bool,
    /// The commit was durable.
    pub(super) durable: bool,
    /// The commit was non-durable and the driver makes it durable in the background.
    pub(super) durable_in_background: bool,
    /// Blocks the batch stored (new ones, not duplicates).
    pub(super) stored: Vec<BlockHash>,
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
        if self.failed.is_some() {
            self.fail_writes(batch);
            return;
        }
        let mut pending = Pending {
            replies: Vec::new(),
            free_after_commit: Vec::new(),
            quarantine_after_commit: Vec::new(),
            needs_sync: false,
            durable: false,
            durable_in_background: false,
            stored: Vec::new(),
            short: false,
            undo: Vec::new(),
        };
        match self.apply_in_txn(batch, &mut pending, io) {
            Ok(()) if pending.durable_in_background => {
                // Committed, not yet durable: what may be done now is done (freed slots
                // are free, released ones wait in `undurable`, slots handed to pools go out:
                // reservations are never promised). The answers to PUTs and DELETEs wait.
                let (held, now): (Vec<_>, Vec<_>) = std::mem::take(&mut pending.replies)
                    .into_iter()
                    .partition(|(_, r)| is_promise(r));
                pending.replies = now;
                self.awaiting_stored.extend(pending.stored.drain(..));
                self.finish_commit(pending);
                self.awaiting_durable = Some(held);
                io.begin_durable();
            }
            Ok(()) => self.finish_commit(pending),
            Err(e) => {
                // Nothing was committed: the allocator and the reservations go back to the
                // committed state, or the books (and the next cycle's check) would be wrong.
                self.undo(pending.undo);
                self.latch(e);
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
    ) -> Result<(), String> {
        let seq = self.header.commit_seq + 1;
        let full = self.config.durability == Durability::Full;
        let in_background =
            full && io.durable_in_background() && !self.config.bugs.ack_before_durable();
        // Every Occupy of the batch was sent after its data write completed, so a sync started
        // now covers them all: let it run while this thread does the index work.
        let occupies = batch
            .iter()
            .any(|m| matches!(m, ToController::Occupy { .. }));
        if full && occupies && !self.config.bugs.ack_before_durable() {
            io.begin_sync_data();
        }
        let mut txn = self.store.begin().map_err(|e| format!("begin: {e}"))?;
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
                if let ToWorker::Occupied {
                    outcome: OccupyOutcome::Stored,
                    ..
                } = reply
                {
                    pending.stored.push(hash);
                }
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
        txn.set_header(&header)
            .map_err(|e| format!("header: {e}"))?;
        // The data first, in either way: a commit, even a non-durable one, may become durable
        // at any later sync of the index (libmdbx syncs at open and close too), so it must
        // never point at data that is not durable.
        if full && pending.needs_sync && !self.config.bugs.ack_before_durable() {
            let t0 = io.now();
            io.sync_data()
                .map_err(|e| format!("fdatasync of the data file: {e}"))?;
            let ns = io.now().saturating_since(t0).as_nanos() as u64;
            self.stats.last_sync_ns = ns;
            self.stats.total_sync_ns += ns;
        }
        // Only index changes a client was promised (stored blocks, deletions) need a durable
        // commit; reservations alone return to free at the next start anyway.
        let promised = pending.needs_sync || !pending.quarantine_after_commit.is_empty();
        let durable = full && promised && !self.config.bugs.ack_before_durable();
        let t0 = io.now();
        // A store may not reuse pages freed after its last durable commit (libmdbx in its
        // no-sync mode): in relaxed mode, still make one commit a second durable.
        let periodic = !durable
            && (self.durable_commit_due || t0 >= self.last_durable_commit + RELAXED_SYNC_INTERVAL);
        // Released slots wait for a durable commit (relaxed mode): when space runs short, make
        // this one durable rather than let PUTs wait up to the interval.
        let pressed = !durable && pending.short && !self.undurable.is_empty();
        let periodic = periodic || pressed;
        if periodic && !full {
            // The durable index must not point at data that is not durable (a power loss would
            // leave torn blocks under it): the relaxed mode's durable commit syncs first.
            io.sync_data()
                .map_err(|e| format!("fdatasync of the data file: {e}"))?;
        }
        let durable = durable || periodic;
        if durable {
            self.last_durable_commit = t0;
            self.durable_commit_due = false;
        }
        // In the background: the index's sync, after this commit (its data is durable above).
        let background = durable && in_background && promised;
        pending.durable = durable && !background;
        pending.durable_in_background = background;
        txn.commit(pending.durable)
            .map_err(|e| format!("commit: {e}"))?;
        let ns = io.now().saturating_since(t0).as_nanos() as u64;
        self.stats.last_commit_ns = ns;
        self.stats.max_commit_ns = self.stats.max_commit_ns.max(ns);
        self.stats.total_commit_ns += ns;
        self.stats.commits += 1;
        self.header = header;
        self.stats.blocks = (self.stats.blocks + counts.blocks_added) - counts.blocks_removed;
        self.stats.used_bytes = (self.stats.used_bytes + counts.used_added) - counts.used_removed;
        self.stats.data_bytes = (self.stats.data_bytes + counts.data_added) - counts.data_removed;
        Ok(())
    }

    pub(super) fn finish_commit(&mut self, pending: Pending) {
        for slot in pending.free_after_commit {
            self.allocator
                .free(slot)
                .expect("a committed duplicate or return was allocated");
        }
        if pending.durable {
            self.quarantine.extend(self.undurable.drain(..));
        }
        for slot in pending.quarantine_after_commit {
            if self.config.bugs.reuse_while_reading() {
                self.allocator
                    .free(slot)
                    .expect("released slot was allocated");
            } else if pending.durable {
                self.quarantine
                    .push_back((self.addresses_sent.clone(), slot));
            } else {
                self.undurable.push((self.addresses_sent.clone(), slot));
            }
        }
        for (worker, reply) in pending.replies {
            self.outbox[worker as usize].push_back(reply);
        }
    }

    /// Answers every write of the batch with an I/O error (after a latch).
    pub(super) fn fail_writes(&mut self, batch: &[ToController]) {
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
