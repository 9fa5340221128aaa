//! Waiting for space: a PUT waiting for a slot of a full class does not spin the worker and the
//! controller.

use sim::harness::{Harness, HarnessConfig};

use crate::common::{content, put_req};

/// 1 MiB with a 300,000-byte block stored and a small PUT whose data write is held in flight (its
/// slot stays reserved), no pools: the next large PUT has to wait for space.
pub(crate) fn full_with_a_held_write() -> Harness {
    let mut h = Harness::new(HarnessConfig {
        capacity_bytes: 1 << 20,
        pool_targets: [0; 8],
        ..HarnessConfig::default()
    });
    assert_eq!(h.put_known(0, &content(300_000, 1)).status, 201);
    h.world.knobs.hold_writes = true;
    let holder = h.connect(0);
    h.send(holder, &put_req(&content(100, 2)));
    h.run_until_quiet();
    h
}

/// A PUT waits for a slot of a full class while another PUT's slot stays reserved (its write is
/// held). Returns the controller cycles per second while the PUT waits, then per second after
/// it has been answered (503 at its slot wait limit), and its status.
fn cycles_per_second_around_a_put_waiting_for_space() -> (u64, u64, u16) {
    let mut h = full_with_a_held_write();
    assert_eq!(
        h.world.held(),
        1,
        "the small PUT's write is in flight, its slot reserved"
    );
    let waiter = h.connect(0);
    h.send(waiter, &put_req(&content(300_000, 3)));
    let second = std::time::Duration::from_secs(1);
    let c0 = h.world.cycles;
    h.run_for(second);
    let waiting = h.world.cycles - c0;
    h.run_for(6 * second);
    let answered = h.responses(waiter, false);
    assert_eq!(
        answered.len(),
        1,
        "the waiting PUT is answered at its slot wait limit"
    );
    let c1 = h.world.cycles;
    h.run_for(second);
    let after = h.world.cycles - c1;
    h.world.release_held();
    h.run_until_quiet();
    (waiting, after, answered[0].status)
}

/// Regression (simulator seeds 35 and 97): a PUT waiting for space that a `Reclaim` may bring
/// back made its worker ask the controller again on every loop turn, so both spun at the full
/// cycle rate (100,000 cycles a second at a 10 us interval) while it waited; and once it was
/// answered it still counted as waiting, so the spin went on for as long as any slot stayed
/// reserved. The worker now asks again after a pause, and only for PUTs still waiting.
#[test]
fn regression_a_put_waiting_for_space_does_not_spin_the_controller() {
    let (waiting, after, status) = cycles_per_second_around_a_put_waiting_for_space();
    assert!(status == 503 || status == 507, "{status}");
    assert!(
        waiting < 2_000,
        "{waiting} controller cycles a second while one PUT waits"
    );
    assert!(
        after < 10,
        "{after} controller cycles a second after the PUT was answered"
    );
}
