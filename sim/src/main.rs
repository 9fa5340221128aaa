//! `buddy-sim`: runs the deterministic simulator for one seed or a range of seeds.
//!
//! ```text
//! buddy-sim --seed N [--requests N] [--bug NAME] [--trace]
//! buddy-sim --seeds A..B [--jobs N] [--requests N] [--bug NAME] [--expect-failure]
//!           [--stop-at-first-failure] [--determinism] [--quiet]
//! buddy-sim --seeds A..B --density [--jobs N] [--requests N]
//! buddy-sim --seed N [--requests N] [--bug NAME] --shrink [--shrink-runs N]
//! ```
//! Every run but `--density` also takes the cuts `--shrink` makes to a seed's drawn options
//! (`sim::overrides`): `--clients N --workers N --crashes N --capacity-mib N --zero a,b,..`.
//! `--shrink` reduces a failing seed's run while it fails the same way (`sim::shrink`), prints
//! each smaller failing run, then the smallest like a single failing seed (its options, the
//! failure, `reproduce: ...` with the cuts), and exits with its code (4: the seed passes).
//! One seed prints the seed and every drawn option first, then `PASSED` with the trace hash, or
//! the failure and `reproduce: buddy-sim --seed N ...`. Exit codes: 0 passed, 1 crash (a panic),
//! 2 liveness, 3 correctness, 4 usage (or, with `--expect-failure`, no seed failed), 5 a seed
//! gave two different traces (`--determinism`). `--density` runs every known-bug switch over
//! the range and prints one line per switch, `density NAME: K/N seeds (P%)`: the share of
//! seeds that catch it (`ci/sim.sh` holds each to a floor).
//!
//! Owns: the command line (clap, derive) and the printing of results; `ci/sim.sh` greps the
//! `PASSED`, `FAILED`, `reproduce:`, summary and `caught by seeds` lines, so their wording is
//! fixed. Never does: simulate anything itself (that is [`sim::run_seed`]).

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use clap::builder::PossibleValuesParser;
use clap::error::ErrorKind;
use clap::{ArgGroup, Parser};
use sim::options::{StoreKind, REQUESTS_DEFAULT};
use sim::overrides::{parse_zeroed, Knob, Overrides};
use sim::shrink::{Candidate, SHRINK_RUNS_DEFAULT};
use sim::{run_overridden, run_seed, RunResult, BUG_NAMES};
use std::collections::BTreeSet;

/// Most threads `--jobs` takes; more are clamped to this.
const JOBS_MAX: usize = 64;

/// A passing seed's trace hash and crash count, or a failing seed's exit code.
type SeedOutcome = Result<(u64, u64), (i32, String)>;

/// The command line, as clap parses it.
#[derive(Parser, Debug)]
#[command(
    name = "buddy-sim",
    about = "Runs buddy-blocks' deterministic simulator for one seed or a range of seeds.",
    group(ArgGroup::new("which").required(true).args(["seed", "seeds"]))
)]
struct Cli {
    /// One seed: prints its options, then PASSED with the trace hash, or the failure.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// A range of seeds, A..B (B excluded) or A..=B.
    #[arg(long, value_name = "A..B|A..=B", value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Requests of the safety phase per seed.
    #[arg(long, value_name = "N", default_value_t = REQUESTS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Switch on one known bug of engine::bugs.
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(BUG_NAMES))]
    bug: Option<String>,
    /// Print the whole event log (one seed).
    #[arg(long)]
    trace: bool,
    /// Threads running seeds of a range (clamped to 1..=64).
    #[arg(long, value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// A failing seed is the expected outcome (a known bug switched on): exit 0 if some seed
    /// failed, 4 if none did.
    #[arg(long)]
    expect_failure: bool,
    /// Start no new seed after the first failure.
    #[arg(long)]
    stop_at_first_failure: bool,
    /// Run every seed twice and compare the trace hashes (exit 5 if they differ).
    #[arg(long)]
    determinism: bool,
    /// Print only failures and the summary line.
    #[arg(long)]
    quiet: bool,
    /// Run every known-bug switch over the range; one line per switch: the share of seeds
    /// that catch it.
    #[arg(long, conflicts_with_all = ["bug", "seed", "determinism", "expect_failure"])]
    density: bool,
    /// Reduce a failing seed's run while it fails the same way; print the smallest (one seed).
    #[arg(long, requires = "seed", conflicts_with_all = ["seeds", "determinism", "trace"])]
    shrink: bool,
    /// Most runs a shrink makes.
    #[arg(long, value_name = "N", default_value_t = SHRINK_RUNS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    shrink_runs: u64,
    /// At most N simulated clients.
    #[arg(long, value_name = "N", conflicts_with = "density")]
    clients: Option<usize>,
    /// At most N workers.
    #[arg(long, value_name = "N", conflicts_with = "density")]
    workers: Option<usize>,
    /// Only the first N planned crashes.
    #[arg(long, value_name = "N", conflicts_with = "density")]
    crashes: Option<usize>,
    /// At most an N MiB data file.
    #[arg(long, value_name = "N", conflicts_with = "density")]
    capacity_mib: Option<u64>,
    /// Knobs set to zero (faults, workload probabilities, request mix weights), by name.
    #[arg(long, value_name = "A,B,..", value_parser = parse_zeroed, conflicts_with = "density")]
    zero: Option<BTreeSet<Knob>>,
    /// The metadata store, whatever the seed drew: `mem` (the engine's MemStore) or `mdbx`
    /// (the server's libmdbx store in a temporary directory: TMPDIR, else /dev/shm). Either
    /// drops the seed's planned power losses, so both give the same trace hash.
    #[arg(long, value_name = "KIND", value_parser = parse_store, conflicts_with = "density")]
    store: Option<StoreKind>,
}

fn parse_store(text: &str) -> Result<StoreKind, String> {
    StoreKind::by_name(text).ok_or_else(|| format!("unknown store `{text}` (mem or mdbx)"))
}

struct Args {
    seeds: (u64, u64),
    single: bool,
    requests: u64,
    bug: Option<String>,
    trace: bool,
    jobs: usize,
    expect_failure: bool,
    determinism: bool,
    quiet: bool,
    /// Start no new seed after the first failure.
    first_failure: bool,
    density: bool,
    shrink: bool,
    shrink_runs: u64,
    /// The cuts to every seed's drawn options.
    overrides: Overrides,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || "--seeds takes A..B or A..=B".to_string();
    if let Some((a, b)) = text.split_once("..=") {
        return Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?));
    }
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    (b > a).then(|| (a, b - 1)).ok_or_else(bad)
}

/// The parsed command line, or the exit code of a usage error (4; 0 for `--help`).
fn parse_args() -> Result<Args, u8> {
    let cli = Cli::try_parse().map_err(|e| {
        let _ = e.print();
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
            _ => 4,
        }
    })?;
    let (seeds, single) = match (cli.seed, cli.seeds) {
        (Some(s), None) => ((s, s), true),
        (None, Some(range)) => (range, false),
        _ => unreachable!("clap requires exactly one of --seed and --seeds"),
    };
    Ok(Args {
        seeds,
        single,
        requests: cli.requests,
        bug: cli.bug,
        trace: cli.trace,
        jobs: cli.jobs.clamp(1, JOBS_MAX),
        expect_failure: cli.expect_failure,
        determinism: cli.determinism,
        quiet: cli.quiet,
        first_failure: cli.stop_at_first_failure,
        density: cli.density,
        shrink: cli.shrink,
        shrink_runs: cli.shrink_runs,
        overrides: Overrides {
            clients: cli.clients,
            workers: cli.workers,
            crashes: cli.crashes,
            capacity_mib: cli.capacity_mib,
            zeroed: cli.zero.unwrap_or_default(),
            store: cli.store,
        },
    })
}

/// CPU seconds this process has used (user + system), from /proc; 0 where unavailable.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

/// `r`'s options as a single run prints them, then `PASSED` or the failure and its reproduce
/// line (with `overrides`, the cuts `r` ran with).
fn print_single(args: &Args, r: &RunResult, overrides: &Overrides) -> u8 {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", r.opts);
    if let Some(lines) = &r.trace_lines {
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    match &r.outcome {
        Ok(s) => {
            let edges: Vec<String> = sim::workload::SIZE_EDGES
                .iter()
                .zip(s.edges_put.iter())
                .filter(|(_, hit)| **hit)
                .map(|(e, _)| e.to_string())
                .collect();
            let _ = writeln!(out, "statuses: {:?}", s.statuses);
            let _ = writeln!(out, "faults injected: {:?}", s.counters);
            let _ = writeln!(
                out,
                "buffer budget: {} waits, {} uploads in small pieces",
                s.buffer_waits, s.small_piece_uploads
            );
            let _ = writeln!(out, "size edges put: [{}]", edges.join(", "));
            let _ = writeln!(
                out,
                "answers checked against a certain model state: {} reads, {} writes",
                s.checked_reads, s.checked_writes
            );
            let _ = writeln!(
                out,
                "PASSED seed={} requests={} answered={} unanswered={} crashes={} cycles={} \
                 steps={} events={} virtual_ms={} trace={:016x} stalled_steps_max={}",
                r.opts.seed,
                s.requests,
                s.answered,
                s.unanswered,
                s.crashes,
                s.cycles,
                s.steps,
                s.events,
                s.virtual_ns / 1_000_000,
                s.trace_hash,
                s.steps_without_progress_max
            );
            0
        }
        Err(f) => {
            let _ = writeln!(out, "FAILED seed={}: {f}", r.opts.seed);
            let _ = writeln!(out, "trace={:016x}", r.trace_hash);
            let _ = writeln!(out, "reproduce: {}", overrides.reproduce_line(&r.opts));
            if args.expect_failure {
                0
            } else {
                f.exit_code() as u8
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(code) => return ExitCode::from(code),
    };
    if args.shrink {
        return shrink(&args);
    }
    if args.single && !args.determinism {
        let (seed, bug) = (args.seeds.0, args.bug.as_deref());
        let r = run_overridden(seed, args.requests, bug, &args.overrides, args.trace);
        let code = print_single(&args, &r, &args.overrides);
        if args.expect_failure && r.outcome.is_ok() {
            return ExitCode::from(4);
        }
        return ExitCode::from(code);
    }
    if args.density {
        return density(&args);
    }
    soak(&args)
}

/// `--shrink`: the smallest run of the seed that still fails the same way, printed like a
/// single failing seed; each smaller failing run found on the way is printed as it is found.
fn shrink(args: &Args) -> ExitCode {
    let seed = args.seeds.0;
    let start = Candidate {
        requests: args.requests,
        overrides: args.overrides.clone(),
    };
    println!(
        "shrink: seed {seed}: looking for a smaller run that fails the same way (at most {} runs)",
        args.shrink_runs
    );
    let bug = args.bug.as_deref();
    let found = sim::shrink::shrink(seed, bug, start, args.shrink_runs, |c, size| {
        println!(
            "shrink: still fails with {size}: --requests {}{}",
            c.requests,
            c.overrides.flags()
        );
    });
    match found {
        Err(r) => {
            println!(
                "shrink: seed {seed} does not fail ({}): nothing to shrink",
                r.opts.reproduce_line()
            );
            ExitCode::from(4)
        }
        Ok(s) => {
            println!("shrink: {} runs; from {} to {}", s.runs, s.first, s.size);
            ExitCode::from(print_single(args, &s.result, &s.smallest.overrides))
        }
    }
}

/// Runs `body` for every seed of `first..=last` on `jobs` threads, each seed once, until the
/// range is done or `stop` is set.
fn for_each_seed(first: u64, last: u64, jobs: usize, stop: &AtomicBool, body: impl Fn(u64) + Sync) {
    assert!(
        first <= last && jobs >= 1,
        "a range of seeds and at least one job"
    );
    let next = AtomicU64::new(first);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed > last || stop.load(Ordering::SeqCst) {
                    break;
                }
                body(seed);
            });
        }
    });
}

/// Every known-bug switch over the range: the share of seeds that catch it, one line each.
fn density(args: &Args) -> ExitCode {
    let (first, last) = args.seeds;
    let total = last - first + 1;
    let wall = std::time::Instant::now();
    for bug in BUG_NAMES {
        let caught: Mutex<Vec<u64>> = Mutex::new(Vec::new());
        for_each_seed(first, last, args.jobs, &AtomicBool::new(false), |seed| {
            if run_seed(seed, args.requests, Some(bug), false)
                .outcome
                .is_err()
            {
                caught.lock().expect("caught lock").push(seed);
            }
        });
        let mut caught = caught.into_inner().expect("caught");
        caught.sort_unstable();
        let first_seeds: Vec<String> = caught.iter().take(8).map(u64::to_string).collect();
        println!(
            "density {bug}: {}/{total} seeds ({:.1}%); first: [{}]",
            caught.len(),
            100.0 * caught.len() as f64 / total as f64,
            first_seeds.join(", ")
        );
    }
    println!(
        "density over seeds {first}..={last}, {} requests each: wall {:.1} s",
        args.requests,
        wall.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// A range of seeds on `--jobs` threads; one line per seed, a summary at the end.
fn soak(args: &Args) -> ExitCode {
    let (first, last) = args.seeds;
    let results: Mutex<Vec<(u64, SeedOutcome)>> = Mutex::new(Vec::new());
    let requests_total = AtomicU64::new(0);
    let nondeterministic = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let wall = std::time::Instant::now();
    let cpu0 = cpu_seconds();
    let run = |seed| {
        run_overridden(
            seed,
            args.requests,
            args.bug.as_deref(),
            &args.overrides,
            false,
        )
    };
    for_each_seed(first, last, args.jobs, &stop, |seed| {
        let t0 = std::time::Instant::now();
        let r = run(seed);
        let secs = t0.elapsed().as_secs_f64();
        let mut line = String::new();
        let entry = match &r.outcome {
            Ok(s) => {
                requests_total.fetch_add(s.requests, Ordering::SeqCst);
                line = format!(
                    "seed {seed}: PASSED crashes={} cycles={} trace={:016x} \
                             stalled_steps_max={} ({secs:.2} s)",
                    s.crashes, s.cycles, s.trace_hash, s.steps_without_progress_max
                );
                Ok((s.trace_hash, s.crashes))
            }
            Err(f) => {
                line.push_str(&format!(
                    "seed {seed}: FAILED {f}\n  reproduce: {}",
                    args.overrides.reproduce_line(&r.opts)
                ));
                Err((f.exit_code(), f.to_string()))
            }
        };
        if args.determinism {
            let again = run(seed);
            if again.trace_hash != r.trace_hash {
                nondeterministic.fetch_add(1, Ordering::SeqCst);
                line.push_str(&format!(
                    "\n  NONDETERMINISTIC: second run gave trace {:016x}",
                    again.trace_hash
                ));
            } else {
                line.push_str(" (twice)");
            }
        }
        if entry.is_err() && args.first_failure {
            stop.store(true, Ordering::SeqCst);
        }
        // Expected failures (a known bug switched on) are summed up, not listed.
        let expected = args.expect_failure && entry.is_err();
        let show = !args.quiet || (entry.is_err() && !expected) || line.contains("NONDET");
        if show {
            println!("{line}");
        }
        results.lock().expect("results lock").push((seed, entry));
    });
    let cpu = (cpu_seconds() - cpu0).max(1e-9);
    let results = results.into_inner().expect("results");
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    let passed = results.len() - failed.len();
    let requests = requests_total.load(Ordering::SeqCst);
    let min_crashes = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|(_, c)| *c)
        .min();
    println!(
        "seeds {first}..={last}: {passed} passed, {} failed; {requests} requests of passing \
         seeds; fewest crashes in a passing seed: {}; wall {:.1} s, cpu {:.1} s, {:.0} \
         simulated requests per CPU-second",
        failed.len(),
        min_crashes.map_or("-".to_string(), |c| c.to_string()),
        wall.elapsed().as_secs_f64(),
        cpu,
        requests as f64 / cpu
    );
    if nondeterministic.load(Ordering::SeqCst) > 0 {
        println!("NONDETERMINISTIC seeds found");
        return ExitCode::from(5);
    }
    if args.expect_failure {
        return if failed.is_empty() {
            println!("no seed failed: the bug was NOT caught");
            ExitCode::from(4)
        } else {
            let mut seeds: Vec<u64> = failed.iter().map(|(s, _)| *s).collect();
            seeds.sort_unstable();
            println!("caught by seeds {seeds:?}");
            if let Some((seed, Err((_, what)))) = failed.iter().min_by_key(|(s, _)| *s) {
                let what: String = what
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(160)
                    .collect();
                println!("seed {seed}: {what}");
            }
            ExitCode::SUCCESS
        };
    }
    match failed.iter().min_by_key(|(s, _)| *s) {
        Some((_, Err((code, _)))) => ExitCode::from(*code as u8),
        _ => ExitCode::SUCCESS,
    }
}
