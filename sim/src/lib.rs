//! buddy-blocks' deterministic simulator: the engine's second driver.
//!
//! The engine's `Worker` and `Controller` — the same types the server runs — are stepped on one
//! thread by one seeded scheduler over fakes of everything outside them: the ring ([`ring`]),
//! the data file ([`disk`]), the network ([`net`]), the queues ([`queue`]), the metadata store
//! (the engine's `MemStore` with its crash semantics) and the clock ([`clock`]). The scheduler
//! is in [`world`]. One `u64` seed fixes every option ([`options`]), every scheduling decision, every
//! fault and every request ([`workload`]), so any failure replays exactly from its seed. The
//! oracle ([`model`] and [`workload::check`]) knows what a correct server must answer; the
//! engine's own invariant checks run after every step.
//!
//! This crate never reads a wall clock or OS randomness, and iterates only ordered collections:
//! the same seed gives the same event trace ([`trace`]) on every run.

pub mod clock;
mod controller_io;
pub mod disk;
pub mod harness;
pub mod http_client;
pub mod model;
pub mod net;
pub mod options;
pub mod probe;
pub mod queue;
pub mod ring;
pub mod trace;
pub mod workload;
pub mod world;

use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use engine::bugs::Bugs;

pub use options::Options;
pub use world::{Summary, World};

/// Why a run failed; each kind has its own exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A panic: an engine assertion or invariant check, or an engine crash.
    Crash(String),
    /// A request never answered, a drain that never finished, a livelock.
    Liveness(String),
    /// A wrong answer, lost or resurrected data, foreign bytes, a leak.
    Correctness(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Crash(_) => 1,
            Failure::Liveness(_) => 2,
            Failure::Correctness(_) => 3,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Crash(_) => "crash",
            Failure::Liveness(_) => "liveness",
            Failure::Correctness(_) => "correctness",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Failure::Crash(m) | Failure::Liveness(m) | Failure::Correctness(m)) = self;
        write!(f, "{} failure: {m}", self.kind())
    }
}

/// The known bugs of `engine::bugs`, by the name `--bug` takes.
pub const BUG_NAMES: [&str; 5] = [
    "ack_before_durable",
    "skip_reservation_recovery",
    "reuse_while_reading",
    "drop_reply_when_full",
    "skip_merge",
];

pub fn bug_by_name(name: &str) -> Option<Bugs> {
    let mut b = Bugs::NONE;
    match name {
        "ack_before_durable" => b.ack_before_durable = true,
        "skip_reservation_recovery" => b.skip_reservation_recovery = true,
        "reuse_while_reading" => b.reuse_while_reading = true,
        "drop_reply_when_full" => b.drop_reply_when_full = true,
        "skip_merge" => b.skip_merge = true,
        _ => return None,
    }
    Some(b)
}

/// The outcome of one seed.
pub struct RunResult {
    pub opts: Options,
    pub outcome: Result<Summary, Failure>,
    /// The event log, when asked for.
    pub trace_lines: Option<Vec<String>>,
    pub trace_hash: u64,
}

thread_local! {
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Panics inside a run are reported as a crash failure, with their message and location,
/// instead of the default hook's output (outside a run the default hook still speaks).
fn install_panic_hook() {
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_RUN.with(|r| !*r.borrow()) {
                default(info);
                return;
            }
            PANIC_MESSAGE.with(|m| {
                let mut m = m.borrow_mut();
                if m.is_some() {
                    return;
                }
                let text = match info.payload().downcast_ref::<&str>() {
                    Some(s) => (*s).to_string(),
                    None => match info.payload().downcast_ref::<String>() {
                        Some(s) => s.clone(),
                        None => "panic".to_string(),
                    },
                };
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()));
                *m = Some(format!("{text}{}", at.unwrap_or_default()));
            });
        }));
    });
}

thread_local! {
    static IN_RUN: RefCell<bool> = const { RefCell::new(false) };
}

/// Runs one seed: the whole world, with panics caught and reported as crash failures.
pub fn run(opts: Options, keep_trace: bool) -> RunResult {
    install_panic_hook();
    PANIC_MESSAGE.with(|m| *m.borrow_mut() = None);
    IN_RUN.with(|r| *r.borrow_mut() = true);
    let mut world = World::new(opts.clone(), keep_trace);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| world.run_all()));
    IN_RUN.with(|r| *r.borrow_mut() = false);
    let outcome = match outcome {
        Ok(o) => o,
        Err(_) => {
            let m = PANIC_MESSAGE
                .with(|m| m.borrow_mut().take())
                .unwrap_or_default();
            Err(Failure::Crash(format!(
                "panic at virtual time {} ns: {m}",
                world.clock.now()
            )))
        }
    };
    let trace_hash = world.trace.hash();
    let trace_lines = world.trace.lines().map(<[String]>::to_vec);
    RunResult {
        opts,
        outcome,
        trace_lines,
        trace_hash,
    }
}

/// Draws the options of `seed` and runs it.
pub fn run_seed(seed: u64, requests: u64, bug: Option<&str>, keep_trace: bool) -> RunResult {
    let bugs = bug.map_or(Bugs::NONE, |b| bug_by_name(b).expect("a known bug name"));
    let opts = Options::draw(seed, requests, bugs, bug.map(str::to_string));
    run(opts, keep_trace)
}
