//! Marks the stretches of the simulation in which the engine's worker code runs (its
//! `handle_completion`, `handle_message`, `tick` and `poll_io`), so that a test's counting
//! allocator can charge heap allocations to the worker and nothing else: issue 6 asks for no heap
//! allocation per request on a worker's hot path (`sim/tests/hot_path_allocations.rs`).
//!
//! The flag is a thread-local `Cell` with a constant initialiser: reading it from inside a
//! global allocator never allocates.

use std::cell::Cell;

thread_local! {
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread runs a worker entry point.
pub fn in_worker() -> bool {
    IN_WORKER.try_with(Cell::get).unwrap_or(false)
}

/// Runs `f` as worker code.
pub(crate) fn worker<R>(f: impl FnOnce() -> R) -> R {
    IN_WORKER.with(|c| c.set(true));
    let r = f();
    IN_WORKER.with(|c| c.set(false));
    r
}

/// Runs `f` as not-worker code, even inside a worker stretch (for an allocator's own
/// bookkeeping, such as recording where an allocation came from).
pub fn outside_worker<R>(f: impl FnOnce() -> R) -> R {
    let was = in_worker();
    IN_WORKER.with(|c| c.set(false));
    let r = f();
    IN_WORKER.with(|c| c.set(was));
    r
}
