//! `--shrink` (issue 16): shrinking a seed that a known bug makes fail ends with a run that
//! still fails the same way, is no bigger, and replays exactly from its reproduce line's
//! options. Two switches run in CI; every switch is the ignored test (and a step of
//! `ci/sim.sh`, in the sim profile).

use sim::options::REQUESTS_DEFAULT;
use sim::overrides::Overrides;
use sim::shrink::{shrink, Candidate};
use sim::{run_overridden, BUG_NAMES};

/// Seeds searched for one that the switch makes fail.
const SEEDS_SEARCHED: u64 = 30;

/// The first seed in 1..=SEEDS_SEARCHED that fails with `bug` switched on, and its exit code.
fn failing_seed(bug: &str) -> (u64, i32) {
    (1..=SEEDS_SEARCHED)
        .find_map(|seed| {
            let r = run_overridden(
                seed,
                REQUESTS_DEFAULT,
                Some(bug),
                &Overrides::default(),
                false,
            );
            r.outcome.err().map(|f| (seed, f.exit_code()))
        })
        .unwrap_or_else(|| panic!("no seed of 1..={SEEDS_SEARCHED} catches {bug}"))
}

/// Shrinks `bug`'s first failing seed within `runs_max` runs and checks the result; returns
/// whether the run got smaller.
fn shrinks_and_still_fails(bug: &str, runs_max: u64) -> bool {
    let (seed, code) = failing_seed(bug);
    let start = Candidate {
        requests: REQUESTS_DEFAULT,
        overrides: Overrides::default(),
    };
    let s = match shrink(seed, Some(bug), start, runs_max, |_, _| {}) {
        Ok(s) => s,
        Err(_) => panic!("{bug}: seed {seed} failed, then passed"),
    };
    let kind = s.result.outcome.as_ref().err().map(|f| f.exit_code());
    assert_eq!(kind, Some(code), "{bug}: the shrunk run fails the same way");
    assert!(
        s.size.no_bigger_than(&s.first),
        "{bug}: {} is bigger than {}",
        s.size,
        s.first
    );
    assert!(s.runs <= runs_max);
    let c = &s.smallest;
    let again = run_overridden(seed, c.requests, Some(bug), &c.overrides, false);
    assert_eq!(
        again.trace_hash,
        s.result.trace_hash,
        "{bug}: `{}` replays the shrunk run",
        c.overrides.reproduce_line(&again.opts)
    );
    assert_eq!(again.outcome.err().map(|f| f.exit_code()), Some(code));
    s.size != s.first
}

/// A leak every seed shows shrinks to a tiny run (one request, nothing else).
#[test]
fn skip_reservation_recovery_shrinks_to_a_tiny_run() {
    assert!(shrinks_and_still_fails("skip_reservation_recovery", 40));
}

/// A durability bug shrinks, and the smaller run still loses the acknowledged block.
#[test]
fn ack_before_durable_shrinks_and_still_fails() {
    assert!(shrinks_and_still_fails("ack_before_durable", 40));
}

/// Every known-bug switch: its shrunk run still fails the same way and is no bigger.
#[test]
#[ignore = "minutes in the dev profile; ci/sim.sh shrinks every switch in the sim profile"]
fn every_switch_shrinks_to_a_run_that_still_fails() {
    for bug in BUG_NAMES {
        shrinks_and_still_fails(bug, 40);
    }
}
