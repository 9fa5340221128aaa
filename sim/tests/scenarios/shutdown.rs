//! Graceful shutdown: a worker with a retry pending (accept, slot) drains without spinning.

use sim::harness::{Harness, HarnessConfig};

use crate::common::{content, put_req};
use crate::space::full_with_a_held_write;

/// Regression (simulator seed 176): after an accept error (EMFILE) the worker asks to be woken
/// for the accept retry; once shutting down it never retries, but `poll_timeout` kept returning
/// that instant, so the driver's loop spun (in the simulator: time could not pass) until drained.
#[test]
fn regression_shutdown_after_an_accept_error_does_not_spin() {
    let mut h = Harness::new(HarnessConfig::default());
    // A request in progress keeps the drain going for a while.
    let busy = h.connect(0);
    h.send(
        busy,
        b"PUT /block HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
    );
    h.run_until_quiet();
    h.world.opts.faults.accept_error = 1.0;
    for _ in 0..4 {
        h.connect(0);
        h.run_for(std::time::Duration::from_millis(3));
    }
    if let Err(f) = h.world.shutdown() {
        panic!("shutdown: {f}");
    }
}

/// Regression (simulator seed 176, after the fix above): a worker shutting down with a slot
/// retry pending kept returning that instant from `poll_timeout` (it refills nothing in
/// shutdown, so nothing cleared it).
#[test]
fn regression_shutdown_with_a_slot_retry_pending_does_not_spin() {
    let mut h = full_with_a_held_write();
    let waiter = h.connect(0);
    h.send(waiter, &put_req(&content(300_000, 3)));
    h.run_for(std::time::Duration::from_micros(1500));
    h.world.release_held();
    if let Err(f) = h.world.shutdown() {
        panic!("shutdown: {f}");
    }
}
