//! The server's libmdbx store under the simulator (`sim/src/store.rs`): one seed runs the same
//! over either store, the oracles catch a bug over libmdbx as over memory, and only seeds
//! without a planned power loss draw libmdbx.

use engine::bugs::Bugs;
use sim::options::{Options, StoreKind};
use sim::overrides::Overrides;
use sim::run_overridden;

const REQUESTS: u64 = 600;

fn forced(store: StoreKind) -> Overrides {
    Overrides {
        store: Some(store),
        ..Overrides::default()
    }
}

/// Proves the two stores answer alike: any difference in what the controller or a worker read
/// would change the trace.
#[test]
fn a_seed_gives_the_same_trace_hash_over_libmdbx_and_over_memory() {
    for seed in [2, 3, 9] {
        let over_mdbx = run_overridden(seed, REQUESTS, None, &forced(StoreKind::Mdbx), false);
        let over_mem = run_overridden(seed, REQUESTS, None, &forced(StoreKind::Mem), false);
        assert_eq!(over_mdbx.opts.store, StoreKind::Mdbx);
        assert!(over_mdbx.opts.power_loss_free());
        assert!(
            over_mdbx.outcome.is_ok(),
            "seed {seed}: {:?}",
            over_mdbx.outcome
        );
        assert!(
            over_mem.outcome.is_ok(),
            "seed {seed}: {:?}",
            over_mem.outcome
        );
        assert_eq!(over_mdbx.trace_hash, over_mem.trace_hash, "seed {seed}");
    }
}

/// Proves the recovery checks run over libmdbx: last run's reservations left allocated are a
/// leak the start finds.
#[test]
fn a_known_bug_is_caught_over_libmdbx() {
    let bug = "skip_reservation_recovery";
    let run = run_overridden(1, REQUESTS, Some(bug), &forced(StoreKind::Mdbx), false);
    assert_eq!(run.opts.store, StoreKind::Mdbx);
    assert!(run.outcome.is_err(), "{bug} went unnoticed over libmdbx");
}

/// Proves the draw: libmdbx only where no planned crash is a power loss, and in some seeds.
#[test]
fn only_seeds_without_a_power_loss_draw_libmdbx() {
    let drawn: Vec<Options> = (1..=400)
        .map(|seed| Options::draw(seed, 2000, Bugs::NONE, None))
        .collect();
    let over_mdbx = drawn.iter().filter(|o| o.store == StoreKind::Mdbx);
    assert!(over_mdbx.clone().all(Options::power_loss_free));
    let count = over_mdbx.count();
    assert!(
        (10..=80).contains(&count),
        "{count} of 400 seeds draw libmdbx"
    );
}
