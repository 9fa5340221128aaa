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
//!
//! Layout: this file holds [`World`] and the run's [`Summary`]; [`lifecycle`] starts, crashes
//! and restarts the node; [`scheduler`] picks what runs next; [`workers`], [`controller`] and
//! [`clients`] drive each kind of actor over the fakes; [`publish`] hands the controller's
//! figures to the workers; [`phases`] strings the run together.
//! The world depends on the workload, the oracle and the fakes; nothing below depends on it.

mod clients;
mod controller;
mod controller_io;
mod knobs;
mod lifecycle;
mod phases;
mod publish;
mod recovery;
mod scheduler;
mod watchdog;
mod workers;

use lifecycle::CrashSchedule;
use scheduler::Schedule;

pub use knobs::Knobs;
pub use watchdog::STEPS_WITHOUT_PROGRESS_MAX;

pub use lifecycle::{Node, WorkerBox};

use engine::controller::Durability;
use engine::io::OpId;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::failure::Failure;
use crate::fake::clock::Clock;
use crate::fake::disk::{Disk, LostBytes};
use crate::fake::net::Net;
use crate::fake::ring::{FaultCounters, FaultLog};
use crate::model::{Model, ReadsShow};
use crate::options::{Faults, Options};
use crate::store::StoreFiles;
use crate::trace::Trace;
use crate::workload::Workload;

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
    /// The most scheduler steps between two progress marks (the watchdog's measure).
    pub steps_without_progress_max: u64,
}

/// The simulated world of one run.
///
/// How to drive it: [`World::new`] from the drawn options, then either [`World::run_all`] (a
/// seeded run: every phase, returns the [`Summary`] or the first [`Failure`]) or, scripted
/// (see `crate::harness`), [`World::start`] and then [`World::step`] (or
/// [`World::run_until`]) with [`Knobs`] set, sending client bytes through `net` and
/// [`World::wake_scripted`]. After each step that ran an action the world checks its own
/// invariants ([`World::check_invariants`]) and reports the first failure recorded.
pub struct World {
    pub opts: Options,
    pub rng: ChaCha8Rng,
    pub clock: Clock,
    /// The metadata store's files (what outlives each node): `Options::store`.
    pub store: StoreFiles,
    pub disk: Disk,
    pub net: Net,
    pub node: Option<Node>,
    pub trace: Trace,
    pub healed: bool,
    pub counters: FaultCounters,
    /// Injected file faults no answer has been explained by yet.
    fault_log: FaultLog,
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
    /// The crash plan: crashes still to arm, the armed one, a crash right after recovery.
    crash_plan: CrashSchedule,
    /// The scheduler's own state (scratch buffers, the livelock guard, the controller
    /// thread's busy time).
    sched: Schedule,
    /// What scripted tests and scenarios set to steer the run (off in a seeded run).
    pub knobs: Knobs,
    /// `Summary::buffer_waits` and `small_piece_uploads` so far.
    buffer_counters: (u64, u64),
    /// Disk ops parked by `Knobs::hold_reads` / `hold_writes`: (worker, op).
    held: Vec<(usize, OpId)>,
}

impl World {
    pub fn new(opts: Options, keep_trace: bool) -> World {
        let rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let workload = Workload::new(&opts);
        World {
            rng,
            clock: Clock::default(),
            store: StoreFiles::create(opts.store),
            disk: Disk::new(opts.capacity_bytes, opts.log_sectors).with_lost_bytes(
                if opts.durability == Durability::Full {
                    LostBytes::NeverIndexed
                } else {
                    LostBytes::MayBeIndexed
                },
            ),
            net: Net::new(opts.workers),
            node: None,
            trace: Trace::new(keep_trace),
            healed: false,
            counters: FaultCounters::default(),
            fault_log: FaultLog::default(),
            latched: false,
            durable_failed: false,
            model: Model::showing(if opts.durability == Durability::Full {
                ReadsShow::Durable
            } else {
                ReadsShow::Committed
            }),
            workload,
            failures: Vec::new(),
            crashes: 0,
            cycles: 0,
            steps: 0,
            crash_plan: CrashSchedule::new(&opts.crashes),
            sched: Schedule::default(),
            knobs: Knobs::default(),
            buffer_counters: (0, 0),
            held: Vec::new(),
            opts,
        }
    }

    pub(super) fn faults(&self) -> Faults {
        if self.healed {
            Faults::default()
        } else {
            self.opts.faults
        }
    }

    pub(super) fn first_failure(&mut self) -> Result<(), Failure> {
        if self.failures.is_empty() {
            return Ok(());
        }
        let f = self.failures.remove(0);
        self.trace.note(self.clock.now(), &f.to_string());
        Err(f)
    }

    /// The simulator's own invariants, checked after every step that ran an action (the
    /// engine's are checked by the drivers: `Worker::check_invariants` after every worker turn,
    /// `Controller::check_invariants` after every cycle that moved bytes).
    pub fn check_invariants(&self) {
        let around_recovery =
            self.crash_plan.after_recovery.is_some() || self.crash_plan.mid_recovery.is_some();
        assert!(
            !around_recovery || self.crash_plan.armed.is_some(),
            "a crash around recovery is planned only with an armed crash to cause the recovery"
        );
        assert!(
            !self.healed || self.crash_plan.pending.is_empty(),
            "healing clears the crash plan"
        );
        let Some(node) = &self.node else { return };
        assert_eq!(node.workers.len(), self.opts.workers, "one box per worker");
        for wb in &node.workers {
            wb.ring.check_invariants();
        }
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
            steps_without_progress_max: self.sched.watchdog.steps_without_progress_max,
        }
    }

    /// Adds a node's worker counters the summary reports to the run's totals.
    pub(super) fn harvest_worker_counters(&mut self, node: &Node) {
        for wb in &node.workers {
            let s = wb.worker.stats();
            self.buffer_counters.0 += s.buffer_waits;
            self.buffer_counters.1 += s.small_piece_uploads;
        }
    }
}
