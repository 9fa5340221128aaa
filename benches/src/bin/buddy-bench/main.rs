//! buddy-bench: an HTTP/1.1 load generator for buddy-blocks and its WebDAV peer (issue 6).
//!
//! One OS thread per keep-alive connection with a blocking `TcpStream` (simple, and cheap enough
//! at up to 64 connections on this 2-core machine); every response is checked; latencies go into
//! an HDR histogram per connection and operation, merged at the end. See `--help` for the flags.
//!
//! Files: `main.rs` (here) runs the phases and writes the report; `args.rs` the flags;
//! `worker.rs` one connection's plan, requests, checks and timings; `report.rs` the JSON
//! percentiles and the human summary.

mod args;
mod report;
mod worker;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use benches::body::BodyFactory;
use benches::spec::{parse_duration, Mix, Op, SizeDist, Url};
use benches::sys::{loadavg, machine_busy_ticks, rusage_self, ServerSample};
use benches::Rng;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use args::*;
use report::*;
use worker::*;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("buddy-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let url = Url::parse(&args.url)?;
    let mix = Mix::parse(&args.mix)?;
    let sizes = SizeDist::parse(&args.size)?;
    let duration = parse_duration(&args.duration)?;
    let warmup = parse_duration(&args.warmup)?;
    let timeout = parse_duration(&args.timeout)?;
    if args.connections == 0 || args.connections > 1024 {
        return Err("--connections must be 1..=1024".into());
    }
    if duration.is_zero() && args.requests.is_none() {
        return Err("--duration must be positive".into());
    }
    let mut tags = serde_json::Map::new();
    for t in &args.tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| format!("--tag {t:?}: expected KEY=VALUE"))?;
        let value = v
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(v));
        tags.insert(k.to_string(), value);
    }
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ ((std::process::id() as u64) << 32)
    });
    let reads = mix.has(Op::Get) || mix.has(Op::Head);
    let deletes = mix.has(Op::Delete);
    let preload = args
        .preload
        .unwrap_or(if reads || deletes { 1000 } else { 0 });
    if reads && preload == 0 {
        return Err("a mix with get or head needs --preload > 0".into());
    }

    let mut seed_rng = Rng::new(seed);
    let bodies = BodyFactory::new(args.body, &sizes.lens(), &mut seed_rng);
    let nonce = seed_rng.next_u64();
    let mut plan = Plan {
        target: args.target,
        url,
        mix,
        sizes,
        bodies,
        read_pool: Vec::new(),
        seed: seed_rng.next_u64(),
        nonce,
    };
    let mut workers: Vec<Worker> = (0..args.connections as u64)
        .map(|id| Worker::new(id, &plan, timeout))
        .collect();

    // Preload: PUT `preload` blocks over separate connections (closed afterwards).
    let preload_started = Instant::now();
    let mut preloaded: Vec<Key> = Vec::new();
    if preload > 0 {
        let n = args
            .preload_connections
            .unwrap_or(args.connections.max(16))
            .clamp(1, 1024);
        let mut loaders: Vec<Worker> = (0..n as u64)
            .map(|i| Worker::new((1 << 20) + i, &plan, timeout))
            .collect();
        let next = AtomicU64::new(0);
        let failed: Mutex<Option<String>> = Mutex::new(None);
        std::thread::scope(|s| {
            let handles: Vec<_> = loaders
                .iter_mut()
                .map(|w| {
                    let plan = &plan;
                    let next = &next;
                    let failed = &failed;
                    s.spawn(move || {
                        let mut keys = Vec::new();
                        while next.fetch_add(1, Ordering::Relaxed) < preload as u64 {
                            match w.put(plan) {
                                Ok((k, _)) => keys.push(k),
                                Err(f) => {
                                    *failed.lock().unwrap() = Some(f.text());
                                    next.store(u64::MAX / 2, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                        keys
                    })
                })
                .collect();
            for h in handles {
                preloaded.extend(h.join().expect("preload thread panicked"));
            }
        });
        if let Some(e) = failed.into_inner().unwrap() {
            return Err(format!("preload failed: {e}"));
        }
    }
    let preload_secs = preload_started.elapsed().as_secs_f64();
    // Split the preloaded keys between reads (shared) and deletes (dealt to the connections).
    let conns = workers.len();
    for (i, k) in preloaded.into_iter().enumerate() {
        if deletes && (!reads || i % 2 == 1) {
            workers[(i / 2) % conns].deletable.push(k);
        } else {
            plan.read_pool.push(k);
        }
    }
    if reads && plan.read_pool.is_empty() {
        return Err("preload left no block to read (use a larger --preload)".into());
    }

    // The measured run.
    let start = Instant::now() + Duration::from_millis(20);
    let timing = Timing {
        warmup_end: start + warmup,
        end: match args.requests {
            Some(_) => None,
            None => Some(start + warmup + duration),
        },
        requests: args.requests,
    };
    let claimed = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(args.connections + 1);
    let pids = args.server_pid.clone();
    let mut samples = None;
    let mut stats: Vec<ConnStats> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|w| {
                let (plan, timing, claimed, stop, barrier) =
                    (&plan, &timing, &claimed, &stop, &barrier);
                s.spawn(move || run_connection(w, plan, timing, claimed, stop, barrier))
            })
            .collect();
        barrier.wait();
        sleep_until(timing.warmup_end);
        let before = (
            Instant::now(),
            rusage_self(),
            ServerSample::take(&pids),
            machine_busy_ticks(),
        );
        if let Some(end) = timing.end {
            sleep_until(end);
        }
        let mid_after = (
            Instant::now(),
            rusage_self(),
            ServerSample::take(&pids),
            machine_busy_ticks(),
        );
        for h in handles {
            stats.push(h.join().expect("connection thread panicked"));
        }
        let after = if timing.end.is_some() {
            mid_after
        } else {
            (
                Instant::now(),
                rusage_self(),
                ServerSample::take(&pids),
                machine_busy_ticks(),
            )
        };
        stop.store(true, Ordering::Relaxed);
        samples = Some((before, after));
    });
    let (before, after) = samples.expect("samples taken");

    // Merge.
    let mut per_op: Vec<Histogram<u32>> = (0..OPS).map(|_| new_hist()).collect();
    let mut all = new_hist();
    let mut bytes = 0u64;
    let mut errors = ErrorCounts::default();
    let mut first_errors = Vec::new();
    let mut last_done = timing.warmup_end;
    let mut reconnects = 0;
    let mut turned = 0;
    for st in &stats {
        for (i, h) in st.hist.iter().enumerate() {
            per_op[i].add(h).expect("same bounds");
            all.add(h).expect("same bounds");
        }
        bytes += st.bytes;
        errors.add(&st.errors);
        for e in &st.first_errors {
            if first_errors.len() < 5 {
                first_errors.push(e.clone());
            }
        }
        if let Some(t) = st.last_done {
            last_done = last_done.max(t);
        }
        reconnects += st.reconnects;
        turned += st.puts_turned_from_delete;
    }
    let elapsed = match timing.end {
        Some(_) => duration.as_secs_f64(),
        None => (last_done - timing.warmup_end).as_secs_f64().max(1e-9),
    };
    let wall = (after.0 - before.0).as_secs_f64().max(1e-9);
    let count = all.len();
    let rps = count as f64 / elapsed;
    let mbps = bytes as f64 / elapsed / 1e6;
    let client_user = after.1 .0 - before.1 .0;
    let client_sys = after.1 .1 - before.1 .1;
    let server_cpu = match (&before.2, &after.2) {
        (Some(b), Some(a)) => Some(a.cpu_secs - b.cpu_secs),
        _ => None,
    };
    let server_rss_mb = after.2.as_ref().map(|a| a.rss_kib as f64 / 1024.0);
    let machine_busy = match (before.3, after.3) {
        (Some(b), Some(a)) => Some((a - b) / wall),
        _ => None,
    };
    let client_cores = (client_user + client_sys) / wall;
    let server_cores = server_cpu.map(|c| c / wall);
    let other_cores =
        machine_busy.map(|m| (m - client_cores - server_cores.unwrap_or(0.0)).max(0.0));

    let mut ops_json = serde_json::Map::new();
    for op in Op::ALL {
        let h = &per_op[op as usize];
        if h.is_empty() {
            continue;
        }
        let mut o = percentile_json(h);
        o["count"] = json!(h.len());
        o["rps"] = json!(round2(h.len() as f64 / elapsed));
        ops_json.insert(op.name().to_string(), o);
    }
    let mut out = json!({
        "tool": "buddy-bench",
        "target": args.target.name(),
        "url": args.url,
        "mix": plan.mix.describe(),
        "size": plan.sizes.describe(),
        "connections": args.connections,
        "duration_s": round2(elapsed),
        "warmup_s": warmup.as_secs_f64(),
        "preload": preload,
        "preload_s": round2(preload_secs),
        "body": args.body.name(),
        "seed": seed,
        "requests": count,
        "errors": errors.total(),
        "errors_by_kind": {"io": errors.io, "status": errors.status, "verify": errors.verify, "protocol": errors.protocol},
        "reconnects": reconnects,
        "rps": round2(rps),
        "mbps": round2(mbps),
        "bytes": bytes,
        "latency_us": percentile_json(&all),
        "ops": ops_json,
        "client_cpu_s": {"user": round3(client_user), "sys": round3(client_sys)},
        "client_cores": round3(client_cores),
        "server_pids": args.server_pid,
        "server_cpu_s": server_cpu.map(round3),
        "server_cores": server_cores.map(round3),
        "server_rss_mb": server_rss_mb.map(round2),
        "machine_busy_cores": machine_busy.map(round3),
        "other_cores": other_cores.map(round3),
        "loadavg_1m": loadavg(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    if turned > 0 {
        out["deletes_turned_into_puts"] = json!(turned);
    }
    for (k, v) in tags {
        out[k] = v;
    }

    let summary = human_summary(&out, &first_errors);
    if args.json {
        eprint!("{summary}");
        println!("{out}");
    } else {
        print!("{summary}");
    }
    Ok(if errors.total() > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }
}
