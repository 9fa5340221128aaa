//! `buddy-sim`: runs the deterministic simulator for one seed or a range of seeds.
//!
//! ```text
//! buddy-sim --seed N [--requests N] [--bug NAME] [--trace]
//! buddy-sim --seeds A..B [--jobs N] [--requests N] [--bug NAME] [--expect-failure]
//!           [--stop-at-first-failure] [--determinism] [--quiet]
//! ```
//! One seed prints the seed and every drawn option first, then `PASSED` with the trace hash, or
//! the failure and `reproduce: buddy-sim --seed N ...`. Exit codes: 0 passed, 1 crash (a panic),
//! 2 liveness, 3 correctness, 4 usage (or, with `--expect-failure`, no seed failed), 5 a seed
//! gave two different traces (`--determinism`).

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use sim::options::REQUESTS_DEFAULT;
use sim::{run_seed, RunResult, BUG_NAMES};

const USAGE: &str = "usage: buddy-sim (--seed N | --seeds A..B | --seeds A..=B) [--requests N] \
[--bug NAME] [--trace] [--jobs N] [--expect-failure] [--stop-at-first-failure] [--determinism] \
[--quiet]
bugs: ack_before_durable skip_reservation_recovery reuse_while_reading drop_reply_when_full \
skip_merge";

/// A passing seed's trace hash and crash count, or a failing seed's exit code.
type SeedOutcome = Result<(u64, u64), (i32, String)>;

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
}

fn parse_range(text: &str) -> Option<(u64, u64)> {
    if let Some((a, b)) = text.split_once("..=") {
        return Some((a.parse().ok()?, b.parse().ok()?));
    }
    let (a, b) = text.split_once("..")?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (b > a).then(|| (a, b - 1))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: (1, 1),
        single: true,
        requests: REQUESTS_DEFAULT,
        bug: None,
        trace: false,
        jobs: 1,
        expect_failure: false,
        determinism: false,
        quiet: false,
        first_failure: false,
    };
    let mut seen_seed = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seed" => {
                let s = value("--seed")?
                    .parse()
                    .map_err(|_| "--seed takes a number")?;
                args.seeds = (s, s);
                seen_seed = true;
            }
            "--seeds" => {
                let v = value("--seeds")?;
                args.seeds = parse_range(&v).ok_or("--seeds takes A..B or A..=B")?;
                args.single = false;
                seen_seed = true;
            }
            "--requests" => {
                args.requests = value("--requests")?.parse().map_err(|_| "bad --requests")?;
                if args.requests == 0 {
                    return Err("--requests must be at least 1".into());
                }
            }
            "--bug" => {
                let b = value("--bug")?;
                if !BUG_NAMES.contains(&b.as_str()) {
                    return Err(format!("unknown bug {b}"));
                }
                args.bug = Some(b);
            }
            "--jobs" => {
                args.jobs = value("--jobs")?.parse().map_err(|_| "bad --jobs")?;
                args.jobs = args.jobs.clamp(1, 64);
            }
            "--trace" => args.trace = true,
            "--expect-failure" => args.expect_failure = true,
            "--determinism" => args.determinism = true,
            "--quiet" => args.quiet = true,
            "--stop-at-first-failure" => args.first_failure = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !seen_seed {
        return Err("give --seed or --seeds".into());
    }
    Ok(args)
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

fn print_single(args: &Args, r: &RunResult) -> u8 {
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
                 steps={} events={} virtual_ms={} trace={:016x}",
                r.opts.seed,
                s.requests,
                s.answered,
                s.unanswered,
                s.crashes,
                s.cycles,
                s.steps,
                s.events,
                s.virtual_ns / 1_000_000,
                s.trace_hash
            );
            0
        }
        Err(f) => {
            let _ = writeln!(out, "FAILED seed={}: {f}", r.opts.seed);
            let _ = writeln!(out, "trace={:016x}", r.trace_hash);
            let _ = writeln!(out, "reproduce: {}", r.opts.reproduce_line());
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
        Err(e) => {
            if !e.is_empty() {
                eprintln!("buddy-sim: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(4);
        }
    };
    if args.single && !args.determinism {
        let r = run_seed(args.seeds.0, args.requests, args.bug.as_deref(), args.trace);
        let code = print_single(&args, &r);
        if args.expect_failure && r.outcome.is_ok() {
            return ExitCode::from(4);
        }
        return ExitCode::from(code);
    }
    soak(&args)
}

/// A range of seeds on `--jobs` threads; one line per seed, a summary at the end.
fn soak(args: &Args) -> ExitCode {
    let (first, last) = args.seeds;
    let next = AtomicU64::new(first);
    let results: Mutex<Vec<(u64, SeedOutcome)>> = Mutex::new(Vec::new());
    let requests_total = AtomicU64::new(0);
    let nondeterministic = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let wall = std::time::Instant::now();
    let cpu0 = cpu_seconds();
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed > last || (args.first_failure && stop.load(Ordering::SeqCst)) {
                    break;
                }
                let t0 = std::time::Instant::now();
                let r = run_seed(seed, args.requests, args.bug.as_deref(), false);
                let secs = t0.elapsed().as_secs_f64();
                let mut line = String::new();
                let entry = match &r.outcome {
                    Ok(s) => {
                        requests_total.fetch_add(s.requests, Ordering::SeqCst);
                        line = format!(
                            "seed {seed}: PASSED crashes={} cycles={} trace={:016x} ({secs:.2} s)",
                            s.crashes, s.cycles, s.trace_hash
                        );
                        Ok((s.trace_hash, s.crashes))
                    }
                    Err(f) => {
                        line.push_str(&format!(
                            "seed {seed}: FAILED {f}\n  reproduce: {}",
                            r.opts.reproduce_line()
                        ));
                        Err((f.exit_code(), f.to_string()))
                    }
                };
                if args.determinism {
                    let again = run_seed(seed, args.requests, args.bug.as_deref(), false);
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
                if entry.is_err() {
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
        }
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
