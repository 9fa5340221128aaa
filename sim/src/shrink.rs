//! `buddy-sim --shrink`: reduces a failing run — fewer requests, crashes, clients and workers,
//! a smaller data file, faults and workload knobs zeroed — while it still fails the same way
//! (the same failure kind: crash, liveness or correctness), and returns the smallest failing
//! run it found, whose [`Overrides::reproduce_line`] replays it.
//!
//! The search is greedy (delta debugging's "first improvement"): from the smallest failing
//! run so far it tries the candidates of [`candidates`] in order, the biggest cuts first, and
//! moves to the first one that fails with the same kind and is no bigger ([`RunSize`]); it
//! stops when no candidate does, or after `runs_max` runs. Runs are deterministic, so the same
//! command shrinks the same way every time.
//!
//! Owns: the search. Never does: print (`main.rs` does) or change what a run does (every
//! candidate is an ordinary run of the seed with [`Overrides`]). Invariants: every accepted
//! run failed with the first run's kind, and each is no bigger than the one before and
//! smaller in at least one figure, so the search ends.

use crate::failure::Failure;
use crate::options::Options;
use crate::overrides::{Knob, Overrides, RunSize, CAPACITY_MIB_MIN};
use crate::{run_overridden, RunResult};

/// Runs a shrink makes unless told otherwise (`--shrink-runs`).
pub const SHRINK_RUNS_DEFAULT: u64 = 200;

/// A point of the search: the seed's request count and the overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub requests: u64,
    pub overrides: Overrides,
}

/// What a shrink found.
pub struct Shrunk {
    /// The size of the run shrinking started from.
    pub first: RunSize,
    pub smallest: Candidate,
    pub size: RunSize,
    /// The smallest failing run's result (its options, its failure).
    pub result: RunResult,
    /// Runs made, the first included.
    pub runs: u64,
}

/// Shrinks the failing run of `seed` (with `bug` switched on, if any) that `start` describes.
/// `on_step` hears of each smaller failing run found. `Err`: the starting run does not fail,
/// with its result.
pub fn shrink(
    seed: u64,
    bug: Option<&str>,
    start: Candidate,
    runs_max: u64,
    mut on_step: impl FnMut(&Candidate, &RunSize),
) -> Result<Shrunk, Box<RunResult>> {
    assert!(runs_max >= 1 && start.requests >= 1);
    let run = |c: &Candidate| run_overridden(seed, c.requests, bug, &c.overrides, false);
    let result = run(&start);
    let kind = match &result.outcome {
        Ok(_) => return Err(Box::new(result)),
        Err(f) => f.exit_code(),
    };
    let first = RunSize::of(&result.opts);
    let mut best = (start, first, result);
    let mut runs = 1;
    'search: loop {
        for cand in candidates(&best.0, &best.2.opts) {
            if runs >= runs_max {
                break 'search;
            }
            runs += 1;
            let r = run(&cand);
            let size = RunSize::of(&r.opts);
            let same_kind = r.outcome.as_ref().err().map(Failure::exit_code) == Some(kind);
            if same_kind && size.no_bigger_than(&best.1) && size != best.1 {
                on_step(&cand, &size);
                best = (cand, size, r);
                continue 'search;
            }
        }
        break;
    }
    let (smallest, size, result) = best;
    assert!(size.no_bigger_than(&first), "a shrunk run is no bigger");
    Ok(Shrunk {
        first,
        smallest,
        size,
        result,
        runs,
    })
}

/// The candidates one step smaller than `c` (whose run had options `o`), biggest cuts first:
/// every fault off, half the requests, no crash, one client, one worker, every workload knob
/// off; then finer cuts of each; then each knob alone; then half the data file.
pub fn candidates(c: &Candidate, o: &Options) -> Vec<Candidate> {
    let with = |f: &dyn Fn(&mut Candidate)| {
        let mut next = c.clone();
        f(&mut next);
        next
    };
    let set: Vec<Knob> = Knob::ALL.into_iter().filter(|k| k.is_set(o)).collect();
    let (faults, workload): (Vec<Knob>, Vec<Knob>) = set.iter().partition(|k| k.is_fault());
    let zero_all = |knobs: &[Knob]| with(&|n| n.overrides.zeroed.extend(knobs.iter().copied()));
    let r = c.requests;
    let fewer = |n: usize| [1, n / 2, n.saturating_sub(1)];
    let mut out = Vec::new();
    if faults.len() > 1 {
        out.push(zero_all(&faults));
    }
    out.push(with(&|n| n.requests = r / 2));
    out.push(with(&|n| n.overrides.crashes = Some(0)));
    out.push(with(&|n| n.overrides.clients = Some(1)));
    out.push(with(&|n| n.overrides.workers = Some(1)));
    if workload.len() > 1 {
        out.push(zero_all(&workload));
    }
    for n in [r - r / 4, r - r / 8, r - 1] {
        out.push(with(&|x| x.requests = n));
    }
    let crashes = o.crashes.len();
    out.push(with(&|n| {
        n.overrides.crashes = Some(crashes.saturating_sub(1))
    }));
    for k in fewer(o.clients) {
        out.push(with(&|n| n.overrides.clients = Some(k)));
    }
    for k in fewer(o.workers) {
        out.push(with(&|n| n.overrides.workers = Some(k)));
    }
    for k in &set {
        out.push(zero_all(&[*k]));
    }
    let mib = o.capacity_bytes >> 20;
    if mib / 2 >= CAPACITY_MIB_MIN {
        out.push(with(&|n| n.overrides.capacity_mib = Some(mib / 2)));
    }
    // Only real cuts, each once.
    let mut seen: Vec<Candidate> = Vec::new();
    out.retain(|n| {
        let cut = n.requests >= 1 && n != c && cuts(n, c, o) && !seen.contains(n);
        if cut {
            seen.push(n.clone());
        }
        cut
    });
    out
}

/// `next` changes something `c`'s run `o` has: fewer requests, or an override below `o`.
fn cuts(next: &Candidate, c: &Candidate, o: &Options) -> bool {
    let below = |n: Option<usize>, drawn: usize| n.is_some_and(|n| n.max(1) < drawn);
    let mut after = o.clone();
    next.overrides.apply(&mut after);
    next.requests < c.requests
        || next.overrides.crashes.is_some_and(|n| n < o.crashes.len())
        || below(next.overrides.clients, o.clients)
        || below(next.overrides.workers, o.workers)
        || after.capacity_bytes < o.capacity_bytes
        || next.overrides.zeroed.iter().any(|k| k.is_set(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_real_cuts_and_none_of_a_minimal_run() {
        let mut c = Candidate {
            requests: 40,
            overrides: Overrides::default(),
        };
        let o = crate::options::Options::draw(3, 40, engine::bugs::Bugs::NONE, None);
        let all = candidates(&c, &o);
        assert!(all.len() > 5 && all.iter().all(|n| cuts(n, &c, &o)));
        c.requests = 1;
        c.overrides = Overrides {
            clients: Some(1),
            workers: Some(1),
            crashes: Some(0),
            capacity_mib: Some(CAPACITY_MIB_MIN),
            zeroed: Knob::ALL.into_iter().collect(),
            store: None,
        };
        let mut small = o.clone();
        c.overrides.apply(&mut small);
        assert!(candidates(&c, &small).is_empty(), "nothing left to cut");
    }
}
