//! buddy-blocks' deterministic simulator: the engine's second driver.
//!
//! The engine's `Worker` and `Controller` — the same types the server runs — are stepped on one
//! thread by one seeded scheduler over fakes of everything outside them: the ring, the data file,
//! the network, the queues and the clock ([`fake`]), and the metadata store ([`store`]: the
//! engine's `MemStore` with its crash semantics, or the server's libmdbx `MdbxStore`). The
//! scheduler
//! is in [`world`]. One `u64` seed fixes every option ([`options`]), every scheduling decision, every
//! fault and every request ([`workload`]), so any failure replays exactly from its seed. The
//! oracle ([`oracle`], over the [`model`]) knows what a correct server must answer; the
//! engine's own invariant checks run after every step.
//!
//! This crate never reads a wall clock or OS randomness, and iterates only ordered collections:
//! the same seed gives the same event trace ([`trace`]) on every run.
//!
//! Layers, each depending only on those below it: [`world`] (scheduler, node lifecycle, the
//! actors' drivers, [`world::Knobs`]) -> [`workload`] (clients, drawing and issuing requests)
//! -> [`oracle`] (answers, faults that explain them, the store against the model) ->
//! [`model`] and [`request`] -> [`fake`] -> [`options`], [`trace`], [`failure`], [`store`] at the
//! bottom.
//! [`overrides`] are the command line's cuts to drawn options, which [`shrink`] searches.
//! [`harness`] is the scripted harness the scenario tests drive, [`scripted`] the faults-off run
//! the differential test plays against the real binary; this file runs one seed.

pub mod failure;
pub mod fake;
pub mod harness;
pub mod http_client;
pub mod model;
pub mod options;
pub mod oracle;
pub mod overrides;
pub mod probe;
pub mod request;
pub mod scripted;
pub mod shrink;
pub mod store;
pub mod trace;
pub mod workload;
pub mod world;

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use engine::bugs::Bugs;

pub use failure::Failure;
pub use options::Options;
pub use world::{Summary, World};

/// The known bugs of `engine::bugs`, by the name `--bug` takes.
pub const BUG_NAMES: [&str; 19] = [
    "ack_before_durable",
    "skip_reservation_recovery",
    "reuse_while_reading",
    "drop_reply_when_full",
    "skip_merge",
    "reuse_before_views_end",
    "ack_after_failed_sync",
    "truncate_listing",
    "miscount_data_bytes",
    "show_before_durable",
    "token_prefix_accepted",
    "head_limit_exclusive",
    "short_read_fails",
    "stall_stream_after_write",
    "ack_before_log_durable",
    "reuse_log_before_checkpoint",
    "replay_torn_record",
    "miscount_free_slots",
    "stale_read_error",
];

pub fn bug_by_name(name: &str) -> Option<Bugs> {
    let mut b = Bugs::NONE;
    match name {
        "ack_before_durable" => b.ack_before_durable = true,
        "skip_reservation_recovery" => b.skip_reservation_recovery = true,
        "reuse_while_reading" => b.reuse_while_reading = true,
        "drop_reply_when_full" => b.drop_reply_when_full = true,
        "skip_merge" => b.skip_merge = true,
        "reuse_before_views_end" => b.reuse_before_views_end = true,
        "ack_after_failed_sync" => b.ack_after_failed_sync = true,
        "truncate_listing" => b.truncate_listing = true,
        "miscount_data_bytes" => b.miscount_data_bytes = true,
        "show_before_durable" => b.show_before_durable = true,
        "token_prefix_accepted" => b.token_prefix_accepted = true,
        "head_limit_exclusive" => b.head_limit_exclusive = true,
        "short_read_fails" => b.short_read_fails = true,
        "stall_stream_after_write" => b.stall_stream_after_write = true,
        "ack_before_log_durable" => b.ack_before_log_durable = true,
        "reuse_log_before_checkpoint" => b.reuse_log_before_checkpoint = true,
        "replay_torn_record" => b.replay_torn_record = true,
        "miscount_free_slots" => b.miscount_free_slots = true,
        "stale_read_error" => b.stale_read_error = true,
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

/// Draws the options of `seed`, applies the command line's `overrides` and runs it.
pub fn run_overridden(
    seed: u64,
    requests: u64,
    bug: Option<&str>,
    overrides: &overrides::Overrides,
    keep_trace: bool,
) -> RunResult {
    let bugs = bug.map_or(Bugs::NONE, |b| bug_by_name(b).expect("a known bug name"));
    let mut opts = Options::draw(seed, requests, bugs, bug.map(str::to_string));
    overrides.apply(&mut opts);
    run(opts, keep_trace)
}

/// Draws the options of `seed` and runs it.
pub fn run_seed(seed: u64, requests: u64, bug: Option<&str>, keep_trace: bool) -> RunResult {
    let bugs = bug.map_or(Bugs::NONE, |b| bug_by_name(b).expect("a known bug name"));
    let opts = Options::draw(seed, requests, bugs, bug.map(str::to_string));
    run(opts, keep_trace)
}
