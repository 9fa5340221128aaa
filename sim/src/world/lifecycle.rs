//! The node's lifecycle: start (the server's recovery path through `Controller::open`, with the
//! checks every recovery must pass), crash (what a process crash or a power loss keeps of the
//! disk, the store and the connections) and restart; and the operator's restart of a latched
//! controller.
//!
//! Owns: [`Node`] (one incarnation of the server process: its controller and workers) and the
//! transitions between no node and a running one. Never does: step an actor, or decide when a
//! crash strikes (the scheduler arms planned crashes). Invariant: at most one node runs; a
//! node is started only when none is running.

use std::collections::VecDeque;

use engine::controller::Controller;
use engine::io::Op;
use engine::meta::MetaStore;
use engine::worker::Worker;
use rand::RngExt;

use crate::failure::Failure;
use crate::fake::queue::FrameQueue;
use crate::fake::ring::Ring;
use crate::options::{CrashKind, CrashPlan, CrashPoint};
use crate::oracle::store;
use crate::store::{SimStore, SimView};

use super::controller::{CheckpointJob, OpenCycle};
use super::controller_io::{SimScrub, SimSyncThread};
use super::recovery::Replay;
use super::World;

pub struct WorkerBox {
    pub worker: Worker,
    pub ring: Ring,
    pub to_controller: FrameQueue,
    pub to_worker: FrameQueue,
    /// `worker.poll_timeout()` after its last step.
    pub(super) timeout: Option<u64>,
    /// The worker's own index view (`Worker::serve_reads`), on the store's image.
    pub view: SimView,
}

/// One incarnation of the server process.
pub struct Node {
    pub controller: Controller<SimStore>,
    pub workers: Vec<WorkerBox>,
    /// Occupy frames taken by the controller since its last cycle.
    pub(super) occupies_waiting: usize,
    /// The last hand-out of replies made no progress (every target queue full).
    pub(super) outbox_blocked: bool,
    /// A cycle between `start_cycle` and `finish_cycle`: its read replies are out, the workers
    /// run on (and may read the addresses they got) while the controller thread does the
    /// batch's write transaction, fdatasync and commit — the server's order.
    pub(super) cycle_open: Option<OpenCycle>,
    /// The checkpoint in flight (`ControllerIo::begin_checkpoint`): done at `due`.
    pub(super) checkpoint_job: Option<CheckpointJob>,
    /// The store's commit count when the last checkpoint began (what the next one flushes).
    pub(super) commits_at_checkpoint: u64,
    /// The data-sync thread (`controller_io`).
    pub(super) sync: SimSyncThread,
    /// The engine's scrub over the fake disk, one block after a cycle when due.
    pub(super) scrub: SimScrub,
}

/// The crash plan of a run: planned crashes not yet armed (in order), the armed one (with
/// when it was armed), and a crash due in the middle of or right after the next recovery.
#[derive(Debug)]
pub(super) struct CrashSchedule {
    pub(super) pending: VecDeque<CrashPlan>,
    pub(super) armed: Option<(CrashPlan, u64)>,
    pub(super) after_recovery: Option<CrashKind>,
    /// The next replay of the log fails one of its commits, and the world crashes so.
    pub(super) mid_recovery: Option<CrashKind>,
}

impl CrashSchedule {
    pub(super) fn new(plans: &[CrashPlan]) -> CrashSchedule {
        CrashSchedule {
            pending: plans.iter().copied().collect(),
            armed: None,
            after_recovery: None,
            mid_recovery: None,
        }
    }
}

impl World {
    // -----------------------------------------------------------------------------------------
    // Starting, crashing, restarting.

    /// Opens the store through the server's recovery path (the data file's sync, the store's
    /// open, the log's replay, `Controller::open`), checks it, starts the workers.
    pub fn start(&mut self) -> Result<(), Failure> {
        loop {
            assert!(self.node.is_none());
            // As the server's start: it syncs the data file, then libmdbx's open syncs the
            // index, so whatever the last run committed becomes durable, over durable data.
            self.disk.sync();
            self.latched = false;
            self.durable_failed = false;
            let mut store = self
                .store
                .open()
                .map_err(|e| Failure::Correctness(format!("opening the store failed: {e}")))?;
            let run_id = match self.replay_log(&mut store)? {
                Replay::Done { run_id } => run_id,
                Replay::Crashed(kind) => {
                    drop(store);
                    self.crash_now(kind);
                    continue;
                }
            };
            let controller = Controller::open(store, self.opts.controller_config(run_id))
                .map_err(|e| Failure::Correctness(format!("recovery failed: {e}")))?;
            self.trace.ev(
                self.clock.now(),
                "open",
                [self.crashes, controller.header().commit_seq, 0, 0],
            );
            controller.check_against_store();
            let s = controller.stats();
            if s.reserved_bytes != 0 || s.quarantined_bytes != 0 {
                return Err(Failure::Correctness(format!(
                    "after recovery {} bytes are still reserved and {} quarantined",
                    s.reserved_bytes, s.quarantined_bytes
                )));
            }
            if s.free_bytes + s.used_bytes != s.capacity_bytes {
                return Err(Failure::Correctness(format!(
                    "leak after recovery: free {} + used {} != capacity {}",
                    s.free_bytes, s.used_bytes, s.capacity_bytes
                )));
            }
            let views: Vec<SimView> = (0..self.opts.workers)
                .map(|_| controller.store().view())
                .collect::<Result<_, _>>()
                .map_err(|e| Failure::Correctness(format!("a worker's view: {e}")))?;
            let workers = views
                .into_iter()
                .enumerate()
                .map(|(i, view)| WorkerBox {
                    worker: Worker::new(self.opts.worker_config(i as u8)),
                    ring: Ring::default(),
                    to_controller: FrameQueue::new(self.opts.to_controller_capacity),
                    to_worker: FrameQueue::new(self.opts.to_worker_capacity),
                    timeout: None,
                    view,
                })
                .collect();
            self.node = Some(Node {
                controller,
                workers,
                occupies_waiting: 0,
                outbox_blocked: false,
                cycle_open: None,
                checkpoint_job: None,
                commits_at_checkpoint: self.store.commits(),
                sync: SimSyncThread::default(),
                scrub: SimScrub::default(),
            });
            self.mark_damaged_blocks();
            self.check_store("recovery")?;
            if let Some(kind) = self.crash_plan.after_recovery.take() {
                self.trace
                    .note(self.clock.now(), "crash right after recovery");
                self.crash_now(kind);
                continue;
            }
            self.publish_stats();
            for w in 0..self.opts.workers {
                self.worker_turn(w);
            }
            return Ok(());
        }
    }

    /// Kills the node: every in-flight op is lost (a WriteAt may leave a prefix), the disk and
    /// the store lose what a crash of `kind` loses, every connection is reset.
    pub(super) fn crash_now(&mut self, kind: CrashKind) {
        self.crashes += 1;
        self.sched.controller_busy_until = self.clock.now();
        self.trace
            .ev(self.clock.now(), "crash", [self.crashes, kind as u64, 0, 0]);
        if self.node.is_some() {
            // Damage found now makes its blocks uncertain across the crash (`Model::crash`).
            self.mark_damaged_blocks();
        }
        if let Some(node) = self.node.take() {
            self.harvest_worker_counters(&node);
            for mut wb in node.workers {
                for (_, entry) in wb.ring.drain() {
                    if let Op::WriteAt {
                        offset,
                        buf,
                        start,
                        end,
                        ..
                    } = entry.op
                    {
                        if self.rng.random_bool(0.5) {
                            let n = self.rng.random_range(0..=end - start);
                            if n > 0 {
                                self.disk.write(offset, &buf[start..start + n], true);
                            }
                        }
                    }
                }
            }
            drop(node.controller);
        }
        let relaxed = self.opts.durability == engine::controller::Durability::Relaxed;
        // The data-sync thread died with the process: its sync in flight never returned.
        self.disk.abandon_sync();
        let meta_kind = match kind {
            CrashKind::Process => engine::meta::CrashKind::Process,
            CrashKind::PowerLoss => {
                let (keep_p, torn_p) = (self.opts.power_loss_keep_p, self.opts.torn_sector_p);
                let lost = self.disk.power_loss(&mut self.rng, keep_p, torn_p);
                self.trace
                    .ev(self.clock.now(), "power-loss", [lost.kept, lost.torn, 0, 0]);
                engine::meta::CrashKind::PowerLoss
            }
        };
        self.store.crash(meta_kind);
        self.net.crash();
        self.workload
            .on_crash(&mut self.model, &mut self.rng, self.clock.now());
        self.model.crash(kind == CrashKind::PowerLoss && relaxed);
    }

    /// A crash and the restart after it.
    pub fn crash(&mut self, kind: CrashKind) -> Result<(), Failure> {
        self.crash_now(kind);
        self.start()
    }

    /// The index against the model, and every stored block's bytes against its address.
    /// Panics without a running node (the index is read through its store).
    pub fn check_store(&mut self, when: &str) -> Result<(), Failure> {
        let node = self.node.as_ref().expect("a node is running");
        let read = node.controller.store().read();
        let read = read.map_err(|e| Failure::Correctness(format!("{when}: reading: {e}")))?;
        store::check_store(when, &read, &self.disk, &self.model)
    }

    pub(super) fn mark_damaged_blocks(&mut self) {
        let node = self.node.as_ref().expect("a node is running");
        let read = node.controller.store().read().expect("a read of the index");
        store::mark_damaged_blocks(&read, &self.disk, &mut self.model);
    }

    /// The operator restarts a latched server (a failed fsync is never retried).
    pub(super) fn restart_if_latched(&mut self, latched: bool, now: u64) {
        let restart = self.knobs.restart_on_latch && !self.healed;
        if latched && self.crash_plan.armed.is_none() && restart {
            self.trace
                .note(now, "the controller latched failed: restart");
            let restart = CrashPlan {
                after_requests: 0,
                point: CrashPoint::Anywhere,
                kind: CrashKind::Process,
            };
            self.crash_plan.armed = Some((restart, now));
        }
    }
}
