//! The controller's driver: frames from the workers, the cycle in the server's order
//! (`start_cycle`, its read replies out, then `finish_cycle` for a seeded time while the
//! workers go on), checkpoints (`poll_checkpoint` after every turn; a begun one runs as a
//! [`CheckpointJob`] on the modelled checkpoint thread), and the hand-out of replies.
//!
//! Owns: the use of `CtlIo` (the controller's `ControllerIo`: the fake disk's fdatasync and
//! log region, the time a cycle spends) and the crash points of a batch (before its data is
//! committed, after its record is written, after its flush, after its commit). Never does:
//! step a worker. Invariant: `Controller::check_invariants` holds after every cycle that moved
//! bytes between free, reserved and used.

use engine::controller::{ControllerStats, CycleOutcome};
use engine::message::{ToController, ToWorker};
use engine::Instant;
use rand::RngExt;

use crate::failure::Failure;
use crate::fake::ring;
use crate::options::CrashPoint;
use crate::trace::reply_detail;

use super::controller_io::{BatchCrash, CtlIo, ScrubStep, SyncTiming};
use super::World;

/// A checkpoint in flight on the modelled checkpoint thread (`ControllerIo::begin_checkpoint`:
/// libmdbx's sync of the index): it ends at `due`. It takes two fdatasyncs plus one disk
/// latency per [`COMMITS_PER_CHECKPOINT_LATENCY`] commits since the last one began (the index
/// pages they dirtied), at most [`CHECKPOINT_LATENCIES_MAX`]: a checkpoint after many batches
/// takes as long as many batch flushes, so the log keeps filling while it runs.
pub(super) const COMMITS_PER_CHECKPOINT_LATENCY: u64 = 1;
pub(super) const CHECKPOINT_LATENCIES_MAX: u64 = 128;

#[derive(Clone, Copy, Debug)]
pub(super) struct CheckpointJob {
    pub(super) due: u64,
    pub(super) took: u64,
}

/// What a cycle's second half needs from its first.
#[derive(Clone, Copy, Debug)]
pub(super) struct OpenCycle {
    messages: usize,
    books_before: Books,
    commits_before: u64,
}

impl World {
    // -----------------------------------------------------------------------------------------
    // The controller.

    pub(super) fn controller_turn(&mut self) -> Result<(), Failure> {
        if self.node.as_ref().is_some_and(|n| n.cycle_open.is_some()) {
            return self.finish_cycle();
        }
        let now = self.clock.now();
        if self.checkpoint_job().is_some_and(|job| job.due <= now) {
            self.complete_checkpoint();
            self.poll_checkpoint();
            self.hand_out_replies();
            return Ok(());
        }
        let node = self.node.as_mut().expect("a node is running");
        for (w, wb) in node.workers.iter_mut().enumerate() {
            if !wb.to_controller.readable(now) {
                continue;
            }
            while let Some(frame) = wb.to_controller.pop() {
                let m = ToController::decode(&frame).expect("a frame the worker encoded decodes");
                assert_eq!(m.worker() as usize, w, "a worker signs its own messages");
                node.controller.handle_message(m);
            }
        }
        let due = node.controller.poll_timeout().is_some_and(|t| t.0 <= now);
        if due {
            if let Some((plan, _)) = self.crash_plan.armed {
                if plan.point == CrashPoint::BeforeCommit && node.occupies_waiting > 0 {
                    self.crash_plan.armed = None;
                    if self.rng.random_bool(0.5) {
                        // A sync in flight is overtaken by this whole one.
                        self.disk.abandon_sync();
                        self.disk.sync();
                    }
                    self.trace
                        .note(now, "crash between the data write and the commit");
                    return self.crash(plan.kind);
                }
            }
            let commits_before = self.store.commits();
            let node = self.node.as_mut().expect("a node is running");
            let books_before = books(&node.controller.stats());
            if let CycleOutcome::Ran { messages } = node.controller.start_cycle(Instant(now)) {
                // The first half (pause, batch, read view) takes time; its replies go out now,
                // as the server pushes them before the batch's fdatasync and commit, and the
                // workers go on while the controller thread does the second half.
                let cost = self
                    .rng
                    .random_range(self.opts.cycle_cost_ns.0..=self.opts.cycle_cost_ns.1);
                self.sched.controller_busy_until = now + cost;
                node.occupies_waiting = 0;
                node.cycle_open = Some(OpenCycle {
                    messages,
                    books_before,
                    commits_before,
                });
                self.trace.ev(
                    now,
                    "cycle-start",
                    [messages as u64, node.controller.outbox_len() as u64, 0, 0],
                );
            }
        }
        self.poll_checkpoint();
        self.hand_out_replies();
        Ok(())
    }

    /// The checkpoint that may finish (none while scripted tests hold it).
    pub(super) fn checkpoint_job(&self) -> Option<CheckpointJob> {
        self.node
            .as_ref()
            .and_then(|n| n.checkpoint_job)
            .filter(|_| !self.knobs.hold_checkpoint)
    }

    /// What the controller's fdatasyncs cost and how often they fail now.
    fn sync_timing(&self, now: u64) -> SyncTiming {
        SyncTiming {
            now,
            disk_latency_ns: self.opts.disk_latency_ns,
            sync_fail: self.faults().sync_fail,
        }
    }

    /// The controller's `poll_checkpoint` between cycles: a checkpoint it begins runs as a
    /// [`CheckpointJob`] for two fdatasyncs' latency.
    pub(super) fn poll_checkpoint(&mut self) {
        let now = self.clock.now();
        let timing = self.sync_timing(now);
        let node = self.node.as_mut().expect("a node is running");
        if node.cycle_open.is_some() || node.checkpoint_job.is_some() {
            return;
        }
        let (disk, store, rng) = (&mut self.disk, &self.store, &mut self.rng);
        let mut io = CtlIo::new(disk, store, rng, &mut self.latched, &mut node.sync, timing);
        node.controller.poll_checkpoint(Instant(now), &mut io);
        assert!(!io.log_written, "no record outside a cycle");
        if io.checkpoint_begun {
            let commits = self.store.commits();
            let dirty = commits.saturating_sub(node.commits_at_checkpoint);
            node.commits_at_checkpoint = commits;
            let latencies =
                (2 + dirty / COMMITS_PER_CHECKPOINT_LATENCY).min(CHECKPOINT_LATENCIES_MAX);
            let took = (0..latencies)
                .map(|_| ring::latency(io.rng, self.opts.disk_latency_ns, 0.0))
                .sum();
            node.checkpoint_job = Some(CheckpointJob {
                due: now + took,
                took,
            });
            self.trace
                .ev(now, "checkpoint-begin", [took, latencies, 0, 0]);
        }
    }

    /// The checkpoint is done (or failed: a commit fault): the store's durable image becomes
    /// its committed one (the newest commit, at least the checkpoint's target), and the
    /// controller frees the log space it covers (or latches).
    pub(super) fn complete_checkpoint(&mut self) {
        let now = self.clock.now();
        let faults = self.faults();
        let node = self.node.as_mut().expect("a node is running");
        let job = node.checkpoint_job.take().expect("a checkpoint is due");
        let injected = faults.commit_fail > 0.0 && self.rng.random_bool(faults.commit_fail);
        let result = if std::mem::take(&mut self.knobs.fail_next_checkpoint) || injected {
            // The index stays as it is: committed (surviving a process crash, and made
            // durable by the next start), rolled back by a power loss to the last checkpoint.
            Err("injected EIO syncing the index".to_string())
        } else {
            let store = node.controller.store();
            store.make_durable().map_err(|e| e.to_string())
        };
        let failed = result.is_err();
        if failed {
            self.latched = true;
        }
        node.controller
            .checkpoint_done(result, std::time::Duration::from_nanos(job.took));
        node.controller.check_invariants();
        self.trace.ev(now, "checkpoint", [failed as u64, 0, 0, 0]);
        self.restart_if_latched(failed, now);
    }

    /// The second half of an open cycle: one write transaction, fdatasync, commit, replies.
    pub(super) fn finish_cycle(&mut self) -> Result<(), Failure> {
        let now = self.clock.now();
        let faults = self.faults();
        if faults.commit_fail > 0.0 && self.rng.random_bool(faults.commit_fail) {
            self.store.fail_next_commit();
            self.latched = true;
        }
        let timing = self.sync_timing(now);
        let node = self.node.as_mut().expect("a node is running");
        let open = node.cycle_open.take().expect("a cycle is open");
        let crash = match self.crash_plan.armed {
            Some((plan, _)) if plan.point == CrashPoint::AfterLogWrite => {
                Some(BatchCrash::AfterLogWrite)
            }
            Some((plan, _)) if plan.point == CrashPoint::AfterFlush => Some(BatchCrash::AfterFlush),
            _ => None,
        };
        let (disk, store, rng) = (&mut self.disk, &self.store, &mut self.rng);
        let mut io = CtlIo::new(disk, store, rng, &mut self.latched, &mut node.sync, timing);
        io.crash = crash;
        node.controller.finish_cycle(&mut io);
        assert!(!io.checkpoint_begun, "checkpoints begin between cycles");
        let (crash_struck, log_written) = (io.crash_struck, io.log_written);
        if crash_struck {
            let (plan, _) = self.crash_plan.armed.take().expect("the armed crash point");
            self.trace
                .note(now, &format!("crash inside a batch: {:?}", plan.point));
            return self.crash(plan.kind);
        }
        if log_written && node.controller.is_failed() {
            // The batch's record may be durable (or replayed from the page cache after a
            // process crash) though its PUTs and DELETEs are answered 500: they may happen.
            self.durable_failed = true;
        }
        // Its fdatasync takes the disk's latency: the controller thread takes nothing else
        // meanwhile.
        self.sched.controller_busy_until = now + io.spent_ns;
        self.cycles += 1;
        match node.scrub.step(now, &node.controller, &self.disk) {
            Err(e) => return Err(Failure::Correctness(e)),
            Ok(ScrubStep::Checked(offset, outcome)) => {
                self.trace.ev(now, "scrub", [offset, outcome as u64, 0, 0]);
            }
            Ok(ScrubStep::Nothing) => {}
        }
        // The full check after every cycle that moved a byte between free, reserved and used
        // (with debug assertions the allocator also checks itself on entry and exit of every
        // allocate and free).
        if books(&node.controller.stats()) != open.books_before {
            node.controller.check_invariants();
        }
        self.trace.ev(
            now,
            "cycle",
            [
                open.messages as u64,
                node.controller.outbox_len() as u64,
                node.controller.is_failed() as u64,
                0,
            ],
        );
        let latched = node.controller.is_failed();
        self.restart_if_latched(latched, now);
        let committed = self.store.commits() > open.commits_before;
        if committed && self.counters.misdirected + self.counters.sticky > 0 {
            // A block whose own write was misdirected is damaged from its commit on.
            self.mark_damaged_blocks();
        }
        if let Some((plan, _)) = self.crash_plan.armed {
            if plan.point == CrashPoint::AfterCommit && committed {
                self.crash_plan.armed = None;
                self.trace
                    .note(now, "crash between the commit and the replies");
                return self.crash(plan.kind);
            }
        }
        self.poll_checkpoint();
        self.hand_out_replies();
        Ok(())
    }

    pub(super) fn hand_out_replies(&mut self) {
        self.publish_stats();
        let now = self.clock.now();
        let faults = self.faults();
        let node = self.node.as_mut().expect("a node is running");
        let before = node.controller.outbox_len();
        for (w, wb) in node.workers.iter_mut().enumerate() {
            let queue = &mut wb.to_worker;
            let trace = &mut self.trace;
            let rng = &mut self.rng;
            node.controller.drain_outbox(w as u8, |m| {
                let frame = m.encode();
                assert_eq!(ToWorker::decode(&frame).as_ref(), Ok(m), "frame round trip");
                if !queue.push(frame) {
                    return false;
                }
                let request = m.request().unwrap_or(0);
                trace.ev(
                    now,
                    "reply",
                    [w as u64, frame[0] as u64, request, reply_detail(m)],
                );
                if faults.queue_stall > 0.0 && rng.random_bool(faults.queue_stall) {
                    queue.stalled_until = now + rng.random_range(10_000..=5_000_000);
                }
                true
            });
        }
        let after = node.controller.outbox_len();
        node.outbox_blocked = after > 0 && after == before;
    }
}

/// The allocator's figures a cycle may change: free, reserved, used and quarantined bytes, and
/// the free slots per class.
/// The allocator's books: free, reserved, used and quarantined bytes, free slots per class.
type Books = (u64, u64, u64, u64, [u64; 8]);

fn books(s: &ControllerStats) -> Books {
    (
        s.free_bytes,
        s.reserved_bytes,
        s.used_bytes,
        s.quarantined_bytes,
        s.free_slots,
    )
}
