//! The simulated world: N engine workers and one engine controller — the very types the server
//! runs — over the fake ring, disk, network, queues and clock, stepped on one thread by one
//! seeded scheduler.
//!
//! Each step gathers every actor that can make progress at the current virtual time (a worker
//! with a due completion, a frame in its inbox or a due timer; the controller with frames to take,
//! a cycle due or replies to hand out; a client with something to do), picks one at random and
//! runs it. When nothing is ready the clock jumps to the earliest deadline (the workers' and the
//! controller's `poll_timeout`, the next completion, a client's timer). Every frame crossing a
//! queue is encoded and decoded, so the codec is exercised on every message.
//!
//! A run: start (open the store through `Controller::open`, the server's recovery path), a
//! safety phase with faults and crashes until the requests are issued, a liveness phase with
//! faults healed in which every outstanding request must be answered within a bound, a graceful
//! shutdown that must drain, a clean restart, and a verification sweep that reads back every
//! address the model is certain about. Checks run after every worker step
//! (`Worker::check_invariants`), after every controller cycle (`Controller::check_invariants`),
//! after every recovery (`check_against_store`, no leaked or reserved bytes, the index against
//! the model and the stored bytes against their addresses) and at the drained shutdown (every
//! reserved slot sits in some worker's pool).

use std::collections::VecDeque;
use std::time::Duration;

use engine::controller::{Controller, ControllerStats, CycleOutcome};
use engine::hash::BlockHash;
use engine::health::{self, Observations};
use engine::io::{Op, OpId};
use engine::message::{ToController, ToWorker};
use engine::meta::{MemStore, SharedImage};
use engine::worker::Worker;
use engine::Instant;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clock::Clock;
use crate::controller_io::{CtlIo, ScrubStep, SimScrub, SimSyncThread};
use crate::disk::Disk;
use crate::model::{Known, Model};
use crate::net::Net;
use crate::options::{CrashKind, CrashPlan, CrashPoint, Faults, Options};
use crate::probe;
use crate::queue::FrameQueue;
use crate::ring::{self, FaultCounters, IoEnv, Ring};
use crate::trace::Trace;
use crate::workload::{self, Ctx, Explain, Workload};
use crate::Failure;

/// An armed crash point that has not struck within this much virtual time strikes anyway.
const ARMED_CRASH_PATIENCE_NS: u64 = 50_000_000;
/// Steps at one virtual instant before the run counts as a livelock.
const STEPS_PER_INSTANT_MAX: u64 = 2_000_000;
/// Addresses the final sweep reads back.
const SWEEP_ADDRESSES_MAX: usize = 400;
/// Virtual time an idle node (no request in flight) may take to stop all activity.
const QUIESCENCE_BOUND_NS: u64 = 10_000_000_000;

pub struct WorkerBox {
    pub worker: Worker,
    pub ring: Ring,
    pub to_controller: FrameQueue,
    pub to_worker: FrameQueue,
    /// `worker.poll_timeout()` after its last step.
    timeout: Option<u64>,
}

/// One incarnation of the server process.
pub struct Node {
    pub controller: Controller<MemStore>,
    pub workers: Vec<WorkerBox>,
    /// Occupy frames taken by the controller since its last cycle.
    occupies_waiting: usize,
    /// The last hand-out of replies made no progress (every target queue full).
    outbox_blocked: bool,
    /// A cycle between `start_cycle` and `finish_cycle`: its read replies are out, the workers
    /// run on (and may read the addresses they got) while the controller thread does the
    /// batch's write transaction, fdatasync and commit — the server's order.
    cycle_open: Option<OpenCycle>,
    /// A committed batch whose index the driver is making durable in the background
    /// (`ControllerIo::begin_durable`): done at `due`.
    durable_job: Option<DurableJob>,
    /// The data-sync thread (`controller_io`).
    sync: SimSyncThread,
    /// The engine's scrub over the fake disk, one block after a cycle when due.
    scrub: SimScrub,
}

#[derive(Clone, Copy, Debug)]
struct DurableJob {
    due: u64,
    took: u64,
}

/// What a cycle's second half needs from its first.
#[derive(Clone, Copy, Debug)]
struct OpenCycle {
    messages: usize,
    books_before: Books,
    commits_before: u64,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Ring(usize),
    Inbox(usize),
    Turn(usize),
    Controller,
    Client(usize),
}

/// What the run did, for the `PASSED` line and the README's speed figure.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub trace_hash: u64,
    pub events: u64,
    pub steps: u64,
    pub requests: u64,
    pub answered: u64,
    pub unanswered: u64,
    pub crashes: u64,
    pub cycles: u64,
    pub virtual_ns: u64,
    pub statuses: Vec<((&'static str, u16), u64)>,
    pub counters: FaultCounters,
    pub edges_put: [bool; 5],
    /// Answers the oracle could check against a certain model state.
    pub checked_reads: u64,
    pub checked_writes: u64,
    /// Requests that waited for a worker's buffer budget, and uploads that went on in small
    /// pieces (summed over every node the run started).
    pub buffer_waits: u64,
    pub small_piece_uploads: u64,
}

pub struct World {
    pub opts: Options,
    pub rng: ChaCha8Rng,
    pub clock: Clock,
    pub image: SharedImage,
    pub disk: Disk,
    pub net: Net,
    pub node: Option<Node>,
    pub trace: Trace,
    pub healed: bool,
    pub counters: FaultCounters,
    read_used: u64,
    write_used: u64,
    /// A sync or commit failure was injected since the last start.
    pub latched: bool,
    /// A batch failed to become durable since the last start (its PUTs and DELETEs were
    /// answered 500 but are committed: they may have happened).
    pub durable_failed: bool,
    pub model: Model,
    pub workload: Workload,
    pub failures: Vec<Failure>,
    pub crashes: u64,
    pub cycles: u64,
    pub steps: u64,
    plan: VecDeque<CrashPlan>,
    armed: Option<(CrashPlan, u64)>,
    crash_after_recovery: Option<CrashKind>,
    ready: Vec<Action>,
    due_clients: Vec<usize>,
    wakes: Vec<(usize, OpId)>,
    accept_wakes: Vec<usize>,
    instant_steps: u64,
    last_now: u64,
    /// The clock does not jump past this (scripted tests step "until quiet").
    pub time_limit: Option<u64>,
    /// Scripted tests: park every ReadAt (WriteAt) until `release_held`.
    pub hold_reads: bool,
    pub hold_writes: bool,
    /// Scripted tests: a batch's background durability job does not finish while set, and
    /// the next one fails when `fail_next_durable` is.
    pub hold_durable: bool,
    pub fail_next_durable: bool,
    /// `Summary::buffer_waits` and `small_piece_uploads` so far.
    buffer_counters: (u64, u64),
    held: Vec<(usize, OpId)>,
    /// Restart the node when its controller latches failed (off in scripted tests).
    pub restart_on_latch: bool,
    /// The controller thread is busy with its last cycle until then.
    controller_busy_until: u64,
}

impl World {
    pub fn new(opts: Options, keep_trace: bool) -> World {
        let rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let workload = Workload::new(&opts);
        World {
            rng,
            clock: Clock::default(),
            image: MemStore::new().image(),
            disk: Disk::new(opts.capacity_bytes),
            net: Net::new(opts.workers),
            node: None,
            trace: Trace::new(keep_trace),
            healed: false,
            counters: FaultCounters::default(),
            read_used: 0,
            write_used: 0,
            latched: false,
            durable_failed: false,
            model: Model::new(),
            workload,
            failures: Vec::new(),
            crashes: 0,
            cycles: 0,
            steps: 0,
            plan: opts.crashes.iter().copied().collect(),
            armed: None,
            crash_after_recovery: None,
            ready: Vec::new(),
            due_clients: Vec::new(),
            wakes: Vec::new(),
            accept_wakes: Vec::new(),
            instant_steps: 0,
            last_now: 0,
            time_limit: None,
            hold_reads: false,
            hold_writes: false,
            hold_durable: false,
            fail_next_durable: false,
            buffer_counters: (0, 0),
            held: Vec::new(),
            restart_on_latch: true,
            controller_busy_until: 0,
            opts,
        }
    }

    fn faults(&self) -> Faults {
        if self.healed {
            Faults::default()
        } else {
            self.opts.faults
        }
    }

    fn first_failure(&mut self) -> Result<(), Failure> {
        if self.failures.is_empty() {
            return Ok(());
        }
        let f = self.failures.remove(0);
        self.trace.note(self.clock.now(), &f.to_string());
        Err(f)
    }

    // -----------------------------------------------------------------------------------------
    // Starting, crashing, restarting.

    /// Opens the store through the server's recovery path, checks it, starts the workers.
    pub fn start(&mut self) -> Result<(), Failure> {
        loop {
            assert!(self.node.is_none());
            // As the server's start: it syncs the data file, then libmdbx's open syncs the
            // index, so whatever the last run committed becomes durable, over durable data.
            self.disk.sync();
            {
                let mut img = self.image.lock().expect("image lock");
                img.fail_next_commit = false;
                img.durable = img.committed.clone();
            }
            self.latched = false;
            self.durable_failed = false;
            let store = MemStore::open(self.image.clone());
            let controller = Controller::open(store, self.opts.controller_config())
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
            self.mark_damaged_blocks();
            self.check_store("recovery")?;
            let workers = (0..self.opts.workers)
                .map(|i| WorkerBox {
                    worker: Worker::new(self.opts.worker_config(i as u8)),
                    ring: Ring::default(),
                    to_controller: FrameQueue::new(self.opts.to_controller_capacity),
                    to_worker: FrameQueue::new(self.opts.to_worker_capacity),
                    timeout: None,
                })
                .collect();
            self.node = Some(Node {
                controller,
                workers,
                occupies_waiting: 0,
                outbox_blocked: false,
                cycle_open: None,
                durable_job: None,
                sync: SimSyncThread::default(),
                scrub: SimScrub::default(),
            });
            if let Some(kind) = self.crash_after_recovery.take() {
                self.trace
                    .note(self.clock.now(), "crash right after recovery");
                self.crash_now(kind);
                continue;
            }
            for w in 0..self.opts.workers {
                self.worker_turn(w);
            }
            return Ok(());
        }
    }

    /// Kills the node: every in-flight op is lost (a WriteAt may leave a prefix), the disk and
    /// the store lose what a crash of `kind` loses, every connection is reset.
    fn crash_now(&mut self, kind: CrashKind) {
        self.crashes += 1;
        self.controller_busy_until = self.clock.now();
        self.trace
            .ev(self.clock.now(), "crash", [self.crashes, kind as u64, 0, 0]);
        if let Some(node) = self.node.take() {
            self.harvest_worker_counters(&node);
            for mut wb in node.workers {
                for (_, entry) in wb.ring.drain() {
                    if let Op::WriteAt {
                        offset,
                        buf,
                        start,
                        end,
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
        let meta_kind = match kind {
            CrashKind::Process => engine::meta::CrashKind::Process,
            CrashKind::PowerLoss => {
                let kept = self
                    .disk
                    .power_loss(&mut self.rng, self.opts.power_loss_keep_p);
                self.trace
                    .ev(self.clock.now(), "power-loss", [kept as u64, 0, 0, 0]);
                engine::meta::CrashKind::PowerLoss
            }
        };
        MemStore::crash(&self.image, meta_kind);
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
    pub fn check_store(&mut self, when: &str) -> Result<(), Failure> {
        let index = self
            .image
            .lock()
            .expect("image lock")
            .committed
            .index
            .clone();
        for (hash, known) in self.model.certain() {
            let stored = index.contains_key(hash);
            let bad = match known {
                Known::Present => !stored,
                Known::Absent => stored,
                Known::Uncertain => false,
            };
            if bad {
                return Err(Failure::Correctness(format!(
                    "{when}: the index {} {hash}, but the model says {known:?}",
                    if stored { "holds" } else { "lacks" }
                )));
            }
        }
        for (hash, entry) in &index {
            let Some(content) = self.model.content_of(hash) else {
                return Err(Failure::Correctness(format!(
                    "{when}: the index holds {hash}, which no client ever stored"
                )));
            };
            if content.len() != entry.len as usize {
                return Err(Failure::Correctness(format!(
                    "{when}: {hash} is indexed with length {} but is {} bytes",
                    entry.len,
                    content.len()
                )));
            }
            let mut bytes = vec![0u8; entry.len as usize];
            self.disk.read(entry.slot.offset, &mut bytes);
            let damaged = self
                .disk
                .is_damaged(entry.slot.offset, u64::from(entry.len));
            if BlockHash::of(&bytes) != *hash && !damaged {
                return Err(Failure::Correctness(format!(
                    "{when}: stored bytes of {hash} at {:?} are corrupt and no fault explains it",
                    entry.slot
                )));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // The scheduler.

    /// One step. `Ok(false)` when nothing at all can happen any more.
    pub fn step(&mut self) -> Result<bool, Failure> {
        self.steps += 1;
        if self.clock.now() == self.last_now {
            self.instant_steps += 1;
            if self.instant_steps > STEPS_PER_INSTANT_MAX {
                let mut ready = Vec::new();
                self.gather(&mut ready);
                let timeouts: Vec<Option<u64>> = self
                    .node
                    .iter()
                    .flat_map(|n| n.workers.iter().map(|wb| wb.timeout))
                    .collect();
                return Err(Failure::Liveness(format!(
                    "livelock: {STEPS_PER_INSTANT_MAX} steps without time passing at {} ns; \
                     ready: {ready:?}; worker timeouts: {timeouts:?}",
                    self.clock.now()
                )));
            }
        } else {
            self.last_now = self.clock.now();
            self.instant_steps = 0;
        }
        if let Some((plan, armed_at)) = self.armed {
            let overdue = self.clock.now() >= armed_at + ARMED_CRASH_PATIENCE_NS;
            if plan.point == CrashPoint::Anywhere || overdue || self.node.is_none() {
                self.armed = None;
                self.crash(plan.kind)?;
                return Ok(true);
            }
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        let next = self.gather(&mut ready);
        if ready.is_empty() {
            self.ready = ready;
            return match next {
                Some(t) if self.time_limit.is_some_and(|limit| t > limit) => Ok(false),
                Some(t) => {
                    self.clock.advance_to(t);
                    Ok(true)
                }
                None => Ok(false),
            };
        }
        let action = ready[self.rng.random_range(0..ready.len())];
        self.ready = ready;
        self.run(action)?;
        self.first_failure()?;
        self.arm_crashes();
        Ok(true)
    }

    fn arm_crashes(&mut self) {
        if self.armed.is_some() || self.healed {
            return;
        }
        if let Some(p) = self.plan.front() {
            if self.workload.issued >= p.after_requests {
                let plan = self.plan.pop_front().expect("front exists");
                self.trace.ev(
                    self.clock.now(),
                    "crash-armed",
                    [plan.point as u64, plan.kind as u64, 0, 0],
                );
                if plan.point == CrashPoint::AfterRecovery {
                    self.crash_after_recovery = Some(CrashKind::Process);
                    self.armed = Some((
                        CrashPlan {
                            point: CrashPoint::Anywhere,
                            ..plan
                        },
                        self.clock.now(),
                    ));
                } else {
                    self.armed = Some((plan, self.clock.now()));
                }
            }
        }
    }

    /// Collects the ready actions; returns the earliest future deadline.
    fn gather(&mut self, ready: &mut Vec<Action>) -> Option<u64> {
        let now = self.clock.now();
        let mut next: Option<u64> = None;
        let mut later = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        if let Some((_, at)) = self.armed {
            later(at + ARMED_CRASH_PATIENCE_NS);
        }
        if let Some(node) = &self.node {
            let mut controller_ready = false;
            for (w, wb) in node.workers.iter().enumerate() {
                if let Some(t) = wb.ring.next_due() {
                    if t <= now {
                        ready.push(Action::Ring(w));
                    } else {
                        later(t);
                    }
                }
                if !wb.to_worker.is_empty() {
                    if wb.to_worker.stalled_until <= now {
                        ready.push(Action::Inbox(w));
                    } else {
                        later(wb.to_worker.stalled_until);
                    }
                }
                let due = wb.timeout.is_some_and(|t| t <= now);
                let can_push = wb.worker.messages_waiting() > 0 && !wb.to_controller.is_full();
                if due || can_push {
                    ready.push(Action::Turn(w));
                } else if let Some(t) = wb.timeout {
                    later(t);
                }
                if !wb.to_controller.is_empty() {
                    if wb.to_controller.stalled_until <= now {
                        controller_ready = true;
                    } else {
                        later(wb.to_controller.stalled_until);
                    }
                }
            }
            if let Some(t) = node.controller.poll_timeout() {
                if t.0 <= now {
                    controller_ready = true;
                } else {
                    later(t.0);
                }
            }
            if node.controller.outbox_len() > 0 && !node.outbox_blocked {
                controller_ready = true;
            }
            if node.cycle_open.is_some() {
                controller_ready = true;
            }
            if let Some(job) = self.durable_job() {
                if job.due <= now {
                    controller_ready = true;
                } else {
                    later(job.due);
                }
            }
            if controller_ready {
                if self.controller_busy_until <= now {
                    ready.push(Action::Controller);
                } else {
                    later(self.controller_busy_until);
                }
            }
        }
        self.due_clients.clear();
        self.workload.due(now, &mut self.due_clients);
        ready.extend(self.due_clients.iter().map(|&c| Action::Client(c)));
        if let Some(t) = self.workload.next_wake() {
            if t > now {
                later(t);
            }
        }
        next
    }

    fn run(&mut self, action: Action) -> Result<(), Failure> {
        match action {
            Action::Ring(w) => self.complete_one(w),
            Action::Inbox(w) => self.worker_inbox(w),
            Action::Turn(w) => self.worker_turn(w),
            Action::Controller => return self.controller_turn(),
            Action::Client(c) => self.client_step(c),
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Workers.

    fn complete_one(&mut self, w: usize) {
        let faults = self.faults();
        let node = self.node.as_mut().expect("a node is running");
        let wb = &mut node.workers[w];
        let id = wb
            .ring
            .pop_due(self.clock.now())
            .expect("the ring had a due op");
        let entry = wb.ring.remove(id);
        let damage = self.counters.misdirected + self.counters.sticky;
        let mut env = IoEnv {
            now: self.clock.now(),
            worker: w,
            net: &mut self.net,
            disk: &mut self.disk,
            rng: &mut self.rng,
            faults,
            counters: &mut self.counters,
        };
        match ring::complete(id, entry, &mut env) {
            Err(parked) => {
                let accept = matches!(parked.op, Op::Accept);
                wb.ring.insert(id, parked.op, None);
                if parked.canceled {
                    wb.ring.get_mut(id).expect("just inserted").canceled = true;
                }
                if accept {
                    wb.ring.accept_parked = Some(id);
                }
            }
            Ok((c, wake)) => {
                let result = match c.result {
                    Ok(n) => n,
                    Err(e) => (1 << 32) | e.0 as u64,
                };
                self.trace
                    .ev(self.clock.now(), "complete", [w as u64, id.0, result, 0]);
                let now = Instant(self.clock.now());
                probe::worker(|| wb.worker.handle_completion(now, c));
                if let Some(h) = wake.conn {
                    self.workload.wake_conn(&self.net, h, self.clock.now());
                }
                self.worker_turn(w);
            }
        }
        if self.counters.misdirected + self.counters.sticky != damage {
            self.mark_damaged_blocks();
        }
    }

    /// Tells the model which stored blocks overlap damaged sectors (after a misdirected write,
    /// and after recovery): reads of them may fail verification.
    fn mark_damaged_blocks(&mut self) {
        let img = self.image.lock().expect("image lock");
        for (hash, e) in &img.committed.index {
            if self.disk.is_damaged(e.slot.offset, u64::from(e.len)) {
                self.model.mark_corrupt(*hash);
            }
        }
    }

    fn worker_inbox(&mut self, w: usize) {
        let node = self.node.as_mut().expect("a node is running");
        let wb = &mut node.workers[w];
        let n = self.rng.random_range(1..=wb.to_worker.len());
        for _ in 0..n {
            let frame = wb.to_worker.pop().expect("counted");
            let m = ToWorker::decode(&frame).expect("a frame the controller encoded decodes");
            self.trace.ev(
                self.clock.now(),
                "to-worker",
                [
                    w as u64,
                    frame[0] as u64,
                    m.request().unwrap_or(0),
                    reply_detail(&m),
                ],
            );
            let now = Instant(self.clock.now());
            probe::worker(|| wb.worker.handle_message(now, m));
        }
        node.outbox_blocked = false;
        self.worker_turn(w);
    }

    /// The worker's loop turn: tick, hand its ops to the ring, push its messages.
    fn worker_turn(&mut self, w: usize) {
        let now = self.clock.now();
        let faults = self.faults();
        let node = self.node.as_mut().expect("a node is running");
        // The server's watchdog, over what this world can see: the index's flush in flight
        // (held or slow), the workers' oldest waits, a latched controller.
        let observations = Observations {
            now: Instant(now),
            controller_beat: None,
            sync_since: node
                .durable_job
                .map(|j| Instant(j.due.saturating_sub(j.took))),
            oldest_wait_since: node
                .workers
                .iter()
                .filter_map(|wb| wb.worker.oldest_wait_since())
                .min(),
            storage_failure: node.controller.failure().map(str::to_string),
            shutting_down: false,
        };
        let verdict = health::verdict(&observations, health::STALL_LIMIT_DEFAULT);
        let wb = &mut node.workers[w];
        wb.worker.set_health(verdict);
        probe::worker(|| wb.worker.tick(Instant(now)));
        while let Some((id, op)) = probe::worker(|| wb.worker.poll_io()) {
            let hold = match op {
                Op::ReadAt { .. } => self.hold_reads,
                Op::WriteAt { .. } => self.hold_writes,
                _ => false,
            };
            if hold {
                self.trace.ev(now, "held", [w as u64, id.0, 0, 0]);
                wb.ring.insert(id, op, None);
                self.held.push((w, id));
                continue;
            }
            submit(
                wb,
                w,
                id,
                op,
                &mut self.net,
                &mut self.disk,
                &mut self.rng,
                &mut self.counters,
                &self.opts,
                &mut self.trace,
                now,
                self.healed,
            );
        }
        let trace = &mut self.trace;
        let queue = &mut wb.to_controller;
        let rng = &mut self.rng;
        let occupies = &mut node.occupies_waiting;
        wb.worker.drain_messages(|m| {
            let frame = m.encode();
            assert_eq!(
                ToController::decode(&frame).as_ref(),
                Ok(m),
                "frame round trip"
            );
            if !queue.push(frame) {
                return false;
            }
            if matches!(m, ToController::Occupy { .. }) {
                *occupies += 1;
            }
            let (request, detail) = message_detail(m);
            trace.ev(
                now,
                "to-controller",
                [w as u64, frame[0] as u64, request, detail],
            );
            if faults.queue_stall > 0.0 && rng.random_bool(faults.queue_stall) {
                queue.stalled_until = now + rng.random_range(10_000..=5_000_000);
            }
            true
        });
        // A deadline at or before `now` after a tick is not handled by the tick: the scheduler
        // keeps running the worker at this instant, and the livelock guard reports it.
        wb.timeout = wb.worker.poll_timeout().map(|t| t.0);
        wb.worker.check_invariants();
    }

    // -----------------------------------------------------------------------------------------
    // The controller.

    fn controller_turn(&mut self) -> Result<(), Failure> {
        if self.node.as_ref().is_some_and(|n| n.cycle_open.is_some()) {
            return self.finish_cycle();
        }
        let now = self.clock.now();
        if self.durable_job().is_some_and(|job| job.due <= now) {
            self.complete_durable();
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
            if let Some((plan, _)) = self.armed {
                if plan.point == CrashPoint::BeforeCommit && node.occupies_waiting > 0 {
                    self.armed = None;
                    if self.rng.random_bool(0.5) {
                        self.disk.sync();
                    }
                    self.trace
                        .note(now, "crash between the data write and the commit");
                    return self.crash(plan.kind);
                }
            }
            let commits_before = self.image.lock().expect("image lock").commits;
            let node = self.node.as_mut().expect("a node is running");
            let books_before = books(&node.controller.stats());
            if let CycleOutcome::Ran { messages } = node.controller.start_cycle(Instant(now)) {
                // The first half (pause, batch, read view) takes time; its replies go out now,
                // as the server pushes them before the batch's fdatasync and commit, and the
                // workers go on while the controller thread does the second half.
                let cost = self
                    .rng
                    .random_range(self.opts.cycle_cost_ns.0..=self.opts.cycle_cost_ns.1);
                self.controller_busy_until = now + cost;
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
        self.hand_out_replies();
        Ok(())
    }

    /// The background durability job that may finish (none while scripted tests hold it).
    fn durable_job(&self) -> Option<DurableJob> {
        self.node
            .as_ref()
            .and_then(|n| n.durable_job)
            .filter(|_| !self.hold_durable)
    }

    /// The driver's background sync of the index is done (or failed: a commit fault); the
    /// controller then sends the batch's answers (or latches).
    fn complete_durable(&mut self) {
        let now = self.clock.now();
        let faults = self.faults();
        let node = self.node.as_mut().expect("a node is running");
        let job = node.durable_job.take().expect("a durable job is due");
        let injected = faults.commit_fail > 0.0 && self.rng.random_bool(faults.commit_fail);
        let result = if std::mem::take(&mut self.fail_next_durable) || injected {
            // The commit stays as it is: visible, surviving a process crash (and made durable
            // by the next start's sync), lost by a power loss before then.
            Err("injected EIO syncing the index".to_string())
        } else {
            let mut img = self.image.lock().expect("image lock");
            img.durable = img.committed.clone();
            Ok(())
        };
        let failed = result.is_err();
        if failed {
            self.latched = true;
            self.durable_failed = true;
        }
        node.controller
            .durable_done(result, std::time::Duration::from_nanos(job.took));
        node.controller.check_invariants();
        self.trace.ev(now, "durable", [failed as u64, 0, 0, 0]);
        self.restart_if_latched(failed, now);
    }

    /// The operator restarts a latched server (a failed fsync is never retried).
    fn restart_if_latched(&mut self, latched: bool, now: u64) {
        let restart = self.restart_on_latch && !self.healed;
        if latched && self.armed.is_none() && restart {
            self.trace
                .note(now, "the controller latched failed: restart");
            let restart = CrashPlan {
                after_requests: 0,
                point: CrashPoint::Anywhere,
                kind: CrashKind::Process,
            };
            self.armed = Some((restart, now));
        }
    }

    /// The second half of an open cycle: one write transaction, fdatasync, commit, replies.
    fn finish_cycle(&mut self) -> Result<(), Failure> {
        let now = self.clock.now();
        let faults = self.faults();
        if faults.commit_fail > 0.0 && self.rng.random_bool(faults.commit_fail) {
            self.image.lock().expect("image lock").fail_next_commit = true;
            self.latched = true;
        }
        let node = self.node.as_mut().expect("a node is running");
        let open = node.cycle_open.take().expect("a cycle is open");
        node.sync.settle_index(node.durable_job.is_some());
        let mut io = CtlIo {
            disk: &mut self.disk,
            rng: &mut self.rng,
            now,
            spent_ns: 0,
            disk_latency_ns: self.opts.disk_latency_ns,
            sync_fail: faults.sync_fail,
            failed: &mut self.latched,
            background: self.opts.durable_in_background,
            durable_begun: false,
            sync: &mut node.sync,
        };
        node.controller.finish_cycle(&mut io);
        if io.durable_begun {
            // The index's sync on the driver's sync thread (two fdatasyncs): the controller
            // thread goes on meanwhile.
            let took = ring::latency(io.rng, self.opts.disk_latency_ns, 0.0)
                + ring::latency(io.rng, self.opts.disk_latency_ns, 0.0);
            node.durable_job = Some(DurableJob {
                due: now + io.spent_ns + took,
                took,
            });
        }
        // Its fdatasync takes the disk's latency: the controller thread takes nothing else
        // meanwhile.
        self.controller_busy_until = now + io.spent_ns;
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
        let committed = self.image.lock().expect("image lock").commits > open.commits_before;
        if committed && self.counters.misdirected + self.counters.sticky > 0 {
            // A block whose own write was misdirected is damaged from its commit on.
            self.mark_damaged_blocks();
        }
        if let Some((plan, _)) = self.armed {
            if plan.point == CrashPoint::AfterCommit && committed {
                self.armed = None;
                self.trace
                    .note(now, "crash between the commit and the replies");
                return self.crash(plan.kind);
            }
        }
        self.hand_out_replies();
        Ok(())
    }

    fn hand_out_replies(&mut self) {
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

    // -----------------------------------------------------------------------------------------
    // Clients.

    fn client_step(&mut self, c: usize) {
        self.wakes.clear();
        self.accept_wakes.clear();
        let counters = self.counters;
        let mut ctx = Ctx {
            now: self.clock.now(),
            opts: &self.opts,
            rng: &mut self.rng,
            net: &mut self.net,
            model: &mut self.model,
            trace: &mut self.trace,
            wakes: &mut self.wakes,
            accept_wakes: &mut self.accept_wakes,
            explain: Explain {
                counters: &counters,
                read_used: &mut self.read_used,
                write_used: &mut self.write_used,
                latched: self.latched,
                durable_failed: self.durable_failed,
                image: &self.image,
                disk: &self.disk,
            },
            healed: self.healed,
            failures: &mut self.failures,
        };
        self.workload.step(c, &mut ctx);
        self.apply_wakes();
    }

    /// Schedules the ring ops that client actions woke.
    fn apply_wakes(&mut self) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        for &(w, op) in &self.wakes {
            let due =
                self.clock.now() + ring::latency(&mut self.rng, self.opts.net_latency_ns, 0.0);
            node.workers[w].ring.schedule(op, due);
        }
        for &w in &self.accept_wakes {
            let ring = &mut node.workers[w].ring;
            if let Some(op) = ring.accept_parked.take() {
                let due =
                    self.clock.now() + ring::latency(&mut self.rng, self.opts.net_latency_ns, 0.0);
                ring.schedule(op, due);
            }
        }
        self.wakes.clear();
        self.accept_wakes.clear();
    }

    /// Lets every held op complete (scripted tests).
    pub fn release_held(&mut self) {
        self.hold_reads = false;
        self.hold_writes = false;
        let node = self.node.as_mut().expect("a node is running");
        for (w, id) in self.held.drain(..) {
            node.workers[w].ring.schedule(id, self.clock.now() + 1_000);
        }
    }

    /// Ops held so far (scripted tests).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Wakes what a scripted client did on the network (a connect, bytes, a close).
    pub fn wake_scripted(&mut self, wakes: Vec<(usize, OpId)>, accept_worker: Option<usize>) {
        self.wakes.extend(wakes);
        self.accept_wakes.extend(accept_worker);
        self.apply_wakes();
    }

    // -----------------------------------------------------------------------------------------
    // Phases.

    fn liveness_bound_ns(&self) -> u64 {
        let o = &self.opts;
        let bound =
            2 * o.request_timeout + o.slot_wait_limit + o.idle_timeout + Duration::from_secs(10);
        bound.as_nanos() as u64
    }

    /// Steps until `done` holds, failing with a liveness error after `bound_ns`.
    pub fn run_until(
        &mut self,
        what: &str,
        bound_ns: u64,
        mut done: impl FnMut(&World) -> bool,
    ) -> Result<(), Failure> {
        let deadline = self.clock.now() + bound_ns;
        while !done(self) {
            let progressed = self.step()?;
            if self.clock.now() > deadline || !progressed {
                let stuck: Vec<String> = self
                    .workload
                    .outstanding()
                    .iter()
                    .take(5)
                    .map(|(c, s, k, t)| format!("client {c} request {s} ({k}) since {t} ns"))
                    .collect();
                return Err(Failure::Liveness(format!(
                    "{what}: not done after {} ms of virtual time{}; outstanding: [{}]",
                    bound_ns / 1_000_000,
                    if progressed {
                        ""
                    } else {
                        " (nothing left to happen)"
                    },
                    stuck.join("; ")
                )));
            }
        }
        Ok(())
    }

    /// Nothing is happening or due: no controller work, no message, no I/O due.
    pub fn quiescent(&self) -> bool {
        let Some(node) = &self.node else { return true };
        let c = &node.controller;
        let controller_idle = c.inbox_len() == 0
            && c.outbox_len() == 0
            && c.poll_timeout().is_none()
            && node.durable_job.is_none();
        controller_idle
            && node.workers.iter().all(|wb| {
                wb.to_controller.is_empty()
                    && wb.to_worker.is_empty()
                    && wb.worker.messages_waiting() == 0
                    && wb.ring.next_due().is_none()
            })
    }

    /// Faults off, crashes off, no new requests; a latched controller is restarted.
    pub fn heal(&mut self) -> Result<(), Failure> {
        // Every seed crashes at least once: a crash armed too late to strike strikes now.
        if let Some((plan, _)) = self.armed.take() {
            self.crash(plan.kind)?;
        }
        if self.crashes == 0 {
            let kind = self.plan.front().map_or(CrashKind::Process, |p| p.kind);
            self.crash(kind)?;
        }
        self.trace.note(self.clock.now(), "heal");
        self.healed = true;
        self.plan.clear();
        self.crash_after_recovery = None;
        self.workload.issuing = false;
        self.workload.wake_all(self.clock.now());
        for wb in self.node.iter_mut().flat_map(|n| n.workers.iter_mut()) {
            wb.to_worker.stalled_until = 0;
            wb.to_controller.stalled_until = 0;
        }
        let failed = self.node.as_ref().is_some_and(|n| n.controller.is_failed());
        if failed || self.node.is_none() {
            self.trace
                .note(self.clock.now(), "restart a latched controller");
            return self.crash(CrashKind::Process);
        }
        Ok(())
    }

    /// Graceful shutdown: stop accepting, drain, then check that no reserved slot leaked.
    pub fn shutdown(&mut self) -> Result<(), Failure> {
        let node = self.node.as_mut().expect("a node is running");
        for wb in &mut node.workers {
            wb.worker.begin_shutdown();
        }
        for w in 0..self.opts.workers {
            self.worker_turn(w);
        }
        let bound = self.liveness_bound_ns();
        self.run_until("graceful shutdown", bound, |world| {
            let node = world.node.as_ref().expect("a node is running");
            node.workers.iter().all(|wb| {
                wb.worker.is_drained()
                    && wb.to_controller.is_empty()
                    && wb.to_worker.is_empty()
                    && wb.worker.messages_waiting() == 0
            }) && node.controller.inbox_len() == 0
                && node.controller.outbox_len() == 0
                && node.cycle_open.is_none()
                && node.durable_job.is_none()
        })?;
        let node = self.node.take().expect("a node is running");
        self.harvest_worker_counters(&node);
        for (w, wb) in node.workers.iter().enumerate() {
            let granted = wb.worker.stats().buffer_granted_bytes;
            if granted != 0 {
                return Err(Failure::Correctness(format!(
                    "worker {w} still grants {granted} buffer bytes after every request ended"
                )));
            }
        }
        let s = node.controller.stats();
        let pooled: u64 = node.workers.iter().map(|wb| wb.worker.pooled_bytes()).sum();
        if !node.controller.is_failed() && s.reserved_bytes != pooled {
            return Err(Failure::Correctness(format!(
                "leak at shutdown: the controller holds {} reserved bytes, the pools {pooled}",
                s.reserved_bytes
            )));
        }
        node.controller.check_invariants();
        node.controller.check_against_store();
        self.trace.ev(
            self.clock.now(),
            "shutdown",
            [s.used_bytes, s.reserved_bytes, s.free_bytes, 0],
        );
        self.net.crash();
        self.workload
            .on_crash(&mut self.model, &mut self.rng, self.clock.now());
        Ok(())
    }

    /// The whole run: safety, liveness, shutdown, restart, sweep.
    pub fn run_all(&mut self) -> Result<Summary, Failure> {
        self.trace.note(0, &format!("seed {}", self.opts.seed));
        self.start()?;
        while self.workload.issued < self.opts.requests {
            if !self.step()? {
                return Err(Failure::Liveness(
                    "the safety phase came to a standstill".into(),
                ));
            }
        }
        self.heal()?;
        let bound = self.liveness_bound_ns();
        self.run_until("liveness after healing", bound, |w| w.workload.all_idle())?;
        // With every request answered and no client active, the node must go quiet: no
        // controller cycle, no message, no I/O due (idle connections and timers may remain).
        let cycles = self.cycles;
        self.run_until(
            "quiescence with no request in flight",
            QUIESCENCE_BOUND_NS,
            |w| w.quiescent(),
        )
        .map_err(|f| match f {
            Failure::Liveness(m) => Failure::Liveness(format!(
                "{m}; {} controller cycles ran meanwhile",
                self.cycles - cycles
            )),
            other => other,
        })?;
        self.shutdown()?;
        self.start()?;
        self.workload.sweep = workload::sweep_requests(&self.model, SWEEP_ADDRESSES_MAX);
        self.workload.wake_all(self.clock.now());
        self.run_until("verification sweep", bound, |w| {
            w.workload.sweep.is_empty() && w.workload.all_idle()
        })?;
        self.first_failure()?;
        self.check_store("final")?;
        Ok(self.summary())
    }

    pub fn summary(&self) -> Summary {
        Summary {
            trace_hash: self.trace.hash(),
            events: self.trace.events(),
            steps: self.steps,
            requests: self.workload.issued,
            answered: self.workload.answered,
            unanswered: self.workload.unanswered,
            crashes: self.crashes,
            cycles: self.cycles,
            virtual_ns: self.clock.now(),
            statuses: self
                .workload
                .statuses
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            counters: self.counters,
            edges_put: self.workload.edges_put,
            checked_reads: self.model.checked_reads,
            checked_writes: self.model.checked_writes,
            buffer_waits: self.buffer_counters.0,
            small_piece_uploads: self.buffer_counters.1,
        }
    }

    /// Adds a node's worker counters the summary reports to the run's totals.
    fn harvest_worker_counters(&mut self, node: &Node) {
        for wb in &node.workers {
            let s = wb.worker.stats();
            self.buffer_counters.0 += s.buffer_waits;
            self.buffer_counters.1 += s.small_piece_uploads;
        }
    }
}

/// Hands one op from a worker to its ring (and handles Cancel's effect on its target).
#[allow(clippy::too_many_arguments)]
fn submit(
    wb: &mut WorkerBox,
    w: usize,
    id: OpId,
    op: Op,
    net: &mut Net,
    disk: &mut Disk,
    rng: &mut ChaCha8Rng,
    counters: &mut FaultCounters,
    opts: &Options,
    trace: &mut Trace,
    now: u64,
    healed: bool,
) {
    trace.ev(now, "submit", [w as u64, id.0, op_code(&op), 0]);
    if let Op::Cancel { target } = op {
        cancel(wb, target, net, rng, now);
    }
    let mut env = IoEnv {
        now,
        worker: w,
        net,
        disk,
        rng,
        faults: Faults::default(),
        counters,
    };
    let due = ring::first_due(&op, &mut env, opts, healed);
    let parked_recv = match (&op, due) {
        (Op::Recv { conn, .. }, None) => Some(conn.0),
        _ => None,
    };
    let accept = matches!(op, Op::Accept);
    wb.ring.insert(id, op, due);
    if due.is_none() {
        if accept {
            wb.ring.accept_parked = Some(id);
        }
        if let Some(h) = parked_recv {
            net.get_mut(h)
                .expect("parked only on a live connection")
                .recv_waiter = Some(id);
        }
    }
}

fn cancel(wb: &mut WorkerBox, target: OpId, net: &mut Net, rng: &mut ChaCha8Rng, now: u64) {
    let Some(entry) = wb.ring.get_mut(target) else {
        return;
    };
    let parked = entry.due.is_none();
    if parked || rng.random_bool(0.5) {
        entry.canceled = true;
    }
    if !parked {
        return;
    }
    let conn = match &entry.op {
        Op::Recv { conn, .. } | Op::Send { conn, .. } => Some(conn.0),
        _ => None,
    };
    if wb.ring.accept_parked == Some(target) {
        wb.ring.accept_parked = None;
    }
    if let Some(c) = conn.and_then(|h| net.get_mut(h)) {
        if c.recv_waiter == Some(target) {
            c.recv_waiter = None;
        }
        if c.send_waiter == Some(target) {
            c.send_waiter = None;
        }
    }
    wb.ring.schedule(target, now + 1_000);
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

/// The first 8 bytes of a hash, for the trace.
pub fn hash_prefix(h: &BlockHash) -> u64 {
    u64::from_be_bytes(h.0[..8].try_into().expect("8 bytes"))
}

/// A message's request id and its most telling field (hash prefix, slot offset, epoch).
fn message_detail(m: &ToController) -> (u64, u64) {
    match *m {
        ToController::Allocate {
            request,
            class,
            count,
            ..
        } => (request, u64::from(class.as_u8()) << 16 | u64::from(count)),
        ToController::Occupy { request, hash, .. } => (request, hash_prefix(&hash)),
        ToController::Release { request, hash, .. }
        | ToController::GetAddress { request, hash, .. } => (request, hash_prefix(&hash)),
        ToController::ReturnSlot { request, slot, .. } => (request, slot.offset),
        ToController::List { request, .. } => (request, 0),
        ToController::ReaderHorizon { epoch, .. } => (0, epoch),
    }
}

/// A reply's slot offset (plus one) where it has one.
fn reply_detail(m: &ToWorker) -> u64 {
    match *m {
        ToWorker::Address {
            location: Some(l), ..
        } => l.slot.offset + 1,
        ToWorker::Allocated { slot, .. } => slot.offset + 1,
        _ => 0,
    }
}

fn op_code(op: &Op) -> u64 {
    match op {
        Op::Accept => 1,
        Op::Recv { .. } => 2,
        Op::Send { .. } => 3,
        Op::ReadAt { .. } => 4,
        Op::WriteAt { .. } => 5,
        Op::Close { .. } => 6,
        Op::Cancel { .. } => 7,
    }
}
