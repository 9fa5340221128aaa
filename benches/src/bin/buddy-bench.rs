//! buddy-bench: an HTTP/1.1 load generator for buddy-blocks and its WebDAV peer (issue 6).
//!
//! One OS thread per keep-alive connection with a blocking `TcpStream` (simple, and cheap enough
//! at up to 64 connections on this 2-core machine); every response is checked; latencies go into
//! an HDR histogram per connection and operation, merged at the end. See `--help` for the flags.

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use benches::body::{BodyFactory, BodyMode};
use benches::conn::Conn;
use benches::spec::{parse_duration, Mix, Op, SizeDist, Target, Url};
use benches::sys::{loadavg, machine_busy_ticks, rusage_self, ServerSample};
use benches::Rng;
use clap::Parser;
use engine::hash::{BlockHash, HASH_HEX_LEN};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const ABOUT: &str = "HTTP load generator for buddy-blocks (and any WebDAV file server)";

const LONG_ABOUT: &str = "\
HTTP load generator for buddy-blocks (and any WebDAV file server, so the same client measures \
buddy-blocks and its peer).

Each connection is one OS thread with a blocking keep-alive TCP connection: it sends a request, \
reads the whole response, checks it and sends the next (one request in flight per connection). \
Every PUT carries a body no earlier PUT of the run carried (dedup cannot help); every returned \
hash and every GET/HEAD answer is verified (status, length, SHA-256 of the bytes). Latency is \
measured from the first byte written to the last byte read.

Phases: connect, preload (PUT --preload blocks that GET/HEAD/DELETE then use; not measured), \
warm-up (--warmup; not measured), then the measured part (--duration, or --requests). The \
report gives req/s, MB/s (body bytes moved), p50/p90/p99/p99.9/max latency per operation and \
overall, errors, the client's own CPU time (getrusage) and, with --server-pid, the server's CPU \
time (/proc/PID/stat) and RSS, plus the whole machine's busy cores (/proc/stat) so that load \
from other processes shows.

Targets:
  buddy   PUT /block (expects 201 and the 64-hex SHA-256 as body), GET|HEAD|DELETE /block/<hash>
  webdav  PUT|GET|HEAD|DELETE <url-prefix>/<hash> (PUT expects 201 or 204; DELETE 204 or 200)

Examples:
  buddy-bench --url http://127.0.0.1:10001 --mix put --size 4k -c 64 --duration 5s
  buddy-bench --mix get=90,put=10 --size mixed -c 16 --json --server-pid $(pidof buddy-blocks)
  buddy-bench --target webdav --url http://127.0.0.1:8080 --mix get --size 512k -c 1

Exit status: 0 when every request succeeded, 2 when any failed or failed verification, 1 on a \
usage or setup error.";

#[derive(Parser, Debug)]
#[command(name = "buddy-bench", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// Server base URL: http://HOST:PORT[/PREFIX] (the prefix is used by --target webdav).
    #[arg(long, default_value = "http://127.0.0.1:10001")]
    url: String,

    /// Request shapes: `buddy` (/block, /block/<hash>) or `webdav` (/<hash> under the URL).
    #[arg(long, value_enum, default_value_t = Target::Buddy)]
    target: Target,

    /// Operations: `put`, `get`, `head`, `delete`, or weights such as `get=90,put=10`.
    #[arg(long, default_value = "put")]
    mix: String,

    /// Block sizes: `4k`, `64k`, `512k`, any byte count up to 512k (`1000`, `12k`), `mixed`
    /// (4k=70,64k=20,512k=10) or weights such as `4k=50,512k=50`.
    #[arg(long, default_value = "4k")]
    size: String,

    /// Keep-alive connections, one thread each.
    #[arg(short = 'c', long, default_value_t = 1)]
    connections: usize,

    /// Length of the measured part (`5s`, `500ms`, `1m`); ignored when --requests is given.
    #[arg(short = 'd', long, default_value = "5s")]
    duration: String,

    /// Measure exactly this many requests (shared by all connections) instead of a duration.
    #[arg(short = 'n', long)]
    requests: Option<u64>,

    /// Unmeasured load before the measured part (`1s`, `0s`).
    #[arg(short = 'w', long, default_value = "1s")]
    warmup: String,

    /// Blocks to PUT before the run for GET/HEAD/DELETE to use (not measured). Default: 1000
    /// when the mix has get, head or delete, else 0. With both reads and deletes in the mix, half
    /// are read and half are deleted; a connection with nothing left to delete PUTs instead.
    #[arg(long)]
    preload: Option<usize>,

    /// Connections used by the preload (its own, closed before the run). Default: the larger of
    /// --connections and 16, so a 1-connection GET run does not wait for 1000 sequential
    /// durable PUTs.
    #[arg(long)]
    preload_connections: Option<usize>,

    /// PUT bodies: `unique-tail` (a random run-wide prefix plus a unique random tail of 16..79
    /// bytes, so the client hashes only the tail from a cached SHA-256 midstate and checks GET
    /// bodies with a memcmp: cheap on the shared cores) or `random` (every byte fresh from the
    /// PRNG and hashed in full: heavier on the client).
    #[arg(long, value_enum, default_value_t = BodyMode::UniqueTail)]
    body: BodyMode,

    /// PRNG seed (bodies, op and size choice). Default: from the clock, so reruns against the same
    /// store do not repeat bodies.
    #[arg(long)]
    seed: Option<u64>,

    /// PIDs of the server's processes (comma separated, e.g. nginx's workers) whose CPU time and
    /// RSS to report.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,

    /// Print one JSON object (one line) on stdout; the human summary goes to stderr.
    #[arg(long)]
    json: bool,

    /// Extra KEY=VALUE fields copied into the JSON object (repeatable), e.g. `--tag server=nginx`.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,

    /// Per-request socket timeout: a response slower than this counts as an error.
    #[arg(long, default_value = "30s")]
    timeout: String,
}

/// A stored block the run knows about: its address and length.
#[derive(Clone, Copy)]
struct Key {
    hash: BlockHash,
    len: u32,
}

const OPS: usize = 4;

/// What one connection measured.
struct ConnStats {
    hist: Vec<Histogram<u32>>,
    bytes: u64,
    errors: ErrorCounts,
    first_errors: Vec<String>,
    last_done: Option<Instant>,
    reconnects: u64,
    puts_turned_from_delete: u64,
}

#[derive(Default, Clone, Copy)]
struct ErrorCounts {
    io: u64,
    status: u64,
    verify: u64,
    protocol: u64,
}

impl ErrorCounts {
    fn total(&self) -> u64 {
        self.io + self.status + self.verify + self.protocol
    }
    fn add(&mut self, o: &ErrorCounts) {
        self.io += o.io;
        self.status += o.status;
        self.verify += o.verify;
        self.protocol += o.protocol;
    }
}

enum Failure {
    Io(io::Error),
    Status(String),
    Verify(String),
    Protocol(String),
}

impl Failure {
    fn text(&self) -> String {
        match self {
            Failure::Io(e) => format!("io: {e}"),
            Failure::Status(s) => format!("status: {s}"),
            Failure::Verify(s) => format!("verify: {s}"),
            Failure::Protocol(s) => format!("protocol: {s}"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::InvalidData {
            Failure::Protocol(e.to_string())
        } else {
            Failure::Io(e)
        }
    }
}

fn new_hist() -> Histogram<u32> {
    // Microseconds, 1 us .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Everything a connection thread needs, shared read-only.
struct Plan {
    target: Target,
    url: Url,
    mix: Mix,
    sizes: SizeDist,
    bodies: BodyFactory,
    read_pool: Vec<Key>,
    seed: u64,
    nonce: u64,
}

/// One connection's state across phases.
struct Worker {
    id: u64,
    conn: Conn,
    rng: Rng,
    seq: u64,
    body_buf: Vec<u8>,
    head_buf: Vec<u8>,
    deletable: Vec<Key>,
}

impl Worker {
    fn new(id: u64, plan: &Plan, timeout: Duration) -> Worker {
        Worker {
            id,
            conn: Conn::new(plan.url.addr, timeout),
            rng: Rng::new(plan.seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            seq: 0,
            body_buf: Vec::new(),
            head_buf: Vec::with_capacity(256),
            deletable: Vec::new(),
        }
    }

    fn path_for(&self, plan: &Plan, hash: &BlockHash, out: &mut Vec<u8>) {
        let mut hex = [0u8; HASH_HEX_LEN];
        hash.write_hex(&mut hex);
        match plan.target {
            Target::Buddy => out.extend_from_slice(b"/block/"),
            Target::Webdav => {
                out.extend_from_slice(plan.url.prefix.as_bytes());
                out.push(b'/');
            }
        }
        out.extend_from_slice(&hex);
    }

    fn build_head(
        &mut self,
        plan: &Plan,
        method: &str,
        hash: Option<&BlockHash>,
        len: Option<u32>,
    ) {
        let mut h = std::mem::take(&mut self.head_buf);
        h.clear();
        h.extend_from_slice(method.as_bytes());
        h.push(b' ');
        match hash {
            Some(hash) => self.path_for(plan, hash, &mut h),
            None => h.extend_from_slice(b"/block"),
        }
        h.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        h.extend_from_slice(plan.url.host_header.as_bytes());
        h.extend_from_slice(b"\r\n");
        if let Some(len) = len {
            h.extend_from_slice(b"Content-Length: ");
            h.extend_from_slice(len.to_string().as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"\r\n");
        self.head_buf = h;
    }

    /// PUTs one fresh block; returns its key and the body bytes sent.
    fn put(&mut self, plan: &Plan) -> Result<(Key, u64), Failure> {
        let len = plan.sizes.pick(&mut self.rng);
        self.seq += 1;
        let unique = [plan.nonce, (self.id << 40) | self.seq];
        let body = plan
            .bodies
            .make(len, unique, &mut self.rng, &mut self.body_buf);
        let hash = body.hash;
        let send_hash = match plan.target {
            Target::Buddy => None,
            Target::Webdav => Some(hash),
        };
        self.build_head(plan, "PUT", send_hash.as_ref(), Some(len as u32));
        let parts = body.parts(&plan.bodies, &self.body_buf);
        let resp = self
            .conn
            .exchange(&self.head_buf, &parts, false)
            .map_err(Failure::from)?;
        match plan.target {
            Target::Buddy => {
                if resp.status != 201 {
                    return Err(Failure::Status(format!(
                        "PUT answered {} (expected 201): {}",
                        resp.status,
                        self.conn.preview(&resp)
                    )));
                }
                let mut hex = [0u8; HASH_HEX_LEN];
                hash.write_hex(&mut hex);
                let got = self.conn.body(&resp).trim_ascii();
                if got != hex {
                    return Err(Failure::Verify(format!(
                        "PUT returned hash {:?}, expected {}",
                        String::from_utf8_lossy(&got[..got.len().min(80)]),
                        hash.to_hex()
                    )));
                }
            }
            Target::Webdav => {
                if resp.status != 201 && resp.status != 204 {
                    return Err(Failure::Status(format!(
                        "PUT answered {} (expected 201/204)",
                        resp.status
                    )));
                }
            }
        }
        Ok((
            Key {
                hash,
                len: len as u32,
            },
            len as u64,
        ))
    }

    fn get(&mut self, plan: &Plan, key: Key, head_only: bool) -> Result<u64, Failure> {
        let method = if head_only { "HEAD" } else { "GET" };
        self.build_head(plan, method, Some(&key.hash), None);
        let resp = self.conn.exchange(&self.head_buf, &[], head_only)?;
        if resp.status != 200 {
            return Err(Failure::Status(format!(
                "{method} {} answered {} (expected 200)",
                key.hash.to_hex(),
                resp.status
            )));
        }
        if resp.content_length != Some(key.len as u64) {
            return Err(Failure::Verify(format!(
                "{method} {}: Content-Length {:?}, expected {}",
                key.hash.to_hex(),
                resp.content_length,
                key.len
            )));
        }
        if head_only {
            return Ok(0);
        }
        let body = self.conn.body(&resp);
        if !plan.bodies.verify(body, &key.hash) {
            return Err(Failure::Verify(format!(
                "GET {}: body of {} bytes does not hash to its address",
                key.hash.to_hex(),
                body.len()
            )));
        }
        Ok(key.len as u64)
    }

    fn delete(&mut self, plan: &Plan, key: Key) -> Result<(), Failure> {
        self.build_head(plan, "DELETE", Some(&key.hash), None);
        let resp = self.conn.exchange(&self.head_buf, &[], false)?;
        let ok = match plan.target {
            Target::Buddy => resp.status == 204,
            Target::Webdav => resp.status == 204 || resp.status == 200,
        };
        if !ok {
            return Err(Failure::Status(format!(
                "DELETE {} answered {} (expected 204)",
                key.hash.to_hex(),
                resp.status
            )));
        }
        Ok(())
    }

    /// One operation of the mix; returns the op actually done and the body bytes moved.
    fn one(&mut self, plan: &Plan, op: Op) -> (Op, Result<u64, Failure>) {
        match op {
            Op::Put => (Op::Put, self.put_tracked(plan)),
            Op::Get | Op::Head => {
                let key = plan.read_pool[self.rng.below(plan.read_pool.len() as u64) as usize];
                (op, self.get(plan, key, op == Op::Head))
            }
            Op::Delete => match self.deletable.pop() {
                Some(key) => (Op::Delete, self.delete(plan, key).map(|()| 0)),
                None => (Op::Put, self.put_tracked(plan)),
            },
        }
    }

    fn put_tracked(&mut self, plan: &Plan) -> Result<u64, Failure> {
        let (key, bytes) = self.put(plan)?;
        if plan.mix.has(Op::Delete) {
            self.deletable.push(key);
        }
        Ok(bytes)
    }
}

struct Timing {
    warmup_end: Instant,
    end: Option<Instant>,
    requests: Option<u64>,
}

fn run_connection(
    w: &mut Worker,
    plan: &Plan,
    timing: &Timing,
    claimed: &AtomicU64,
    stop: &AtomicBool,
    barrier: &Barrier,
) -> ConnStats {
    let mut st = ConnStats {
        hist: (0..OPS).map(|_| new_hist()).collect(),
        bytes: 0,
        errors: ErrorCounts::default(),
        first_errors: Vec::new(),
        last_done: None,
        reconnects: 0,
        puts_turned_from_delete: 0,
    };
    // Connect before the start so `reconnects` counts only connections lost during the run (a
    // failure here shows up as an error on the first request).
    let _ = w.conn.ensure_connected();
    let connects_before = w.conn.connects;
    barrier.wait();
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        if let Some(end) = timing.end {
            if t0 >= end {
                break;
            }
        }
        let measured = t0 >= timing.warmup_end;
        if measured {
            if let Some(n) = timing.requests {
                if claimed.fetch_add(1, Ordering::Relaxed) >= n {
                    break;
                }
            }
        }
        let wanted = plan.mix.pick(&mut w.rng);
        let (op, result) = w.one(plan, wanted);
        let t1 = Instant::now();
        let in_window = measured && timing.end.is_none_or(|end| t1 <= end);
        match result {
            Ok(bytes) => {
                if in_window {
                    let us = (t1 - t0).as_micros().max(1) as u64;
                    st.hist[op as usize].saturating_record(us);
                    st.bytes += bytes;
                    st.last_done = Some(t1);
                    if wanted == Op::Delete && op == Op::Put {
                        st.puts_turned_from_delete += 1;
                    }
                }
            }
            Err(f) => {
                // Errors count whether or not they fall in the measured window.
                match &f {
                    Failure::Io(_) => st.errors.io += 1,
                    Failure::Status(_) => st.errors.status += 1,
                    Failure::Verify(_) => st.errors.verify += 1,
                    Failure::Protocol(_) => st.errors.protocol += 1,
                }
                if st.first_errors.len() < 5 {
                    st.first_errors.push(f.text());
                }
                if matches!(f, Failure::Io(_) | Failure::Protocol(_)) {
                    w.conn.drop_stream();
                    // Do not spin on a dead server.
                    std::thread::sleep(Duration::from_millis(10));
                }
                if in_window {
                    st.last_done = Some(t1);
                }
            }
        }
    }
    st.reconnects = w.conn.connects - connects_before;
    st
}

fn percentile_json(h: &Histogram<u32>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
    })
}

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

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn human_summary(o: &Value, first_errors: &[String]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(
        s,
        "{} {}  mix {}  size {}  {} conn  {:.1}s measured (+{}s warm-up, {} preloaded)",
        o["target"].as_str().unwrap_or(""),
        o["url"].as_str().unwrap_or(""),
        o["mix"].as_str().unwrap_or(""),
        o["size"].as_str().unwrap_or(""),
        o["connections"],
        f(&o["duration_s"]),
        o["warmup_s"],
        o["preload"],
    );
    let _ = writeln!(
        s,
        "  {:>10.0} req/s  {:>9.1} MB/s  {} requests  {} errors",
        f(&o["rps"]),
        f(&o["mbps"]),
        o["requests"],
        o["errors"]
    );
    let lat = |l: &Value| {
        format!(
            "p50 {} us  p90 {}  p99 {}  p99.9 {}  max {}",
            l["p50"], l["p90"], l["p99"], l["p999"], l["max"]
        )
    };
    let _ = writeln!(s, "  latency  {}", lat(&o["latency_us"]));
    if let Some(ops) = o["ops"].as_object() {
        if ops.len() > 1 {
            for (name, v) in ops {
                let _ = writeln!(s, "  {:<7} {:>9.0} req/s  {}", name, f(&v["rps"]), lat(v));
            }
        }
    }
    let _ = write!(
        s,
        "  cpu: client {:.2} cores (user {} s, sys {} s)",
        f(&o["client_cores"]),
        o["client_cpu_s"]["user"],
        o["client_cpu_s"]["sys"]
    );
    if !o["server_cores"].is_null() {
        let _ = write!(
            s,
            ", server {:.2} cores ({} s), server RSS {} MB",
            f(&o["server_cores"]),
            o["server_cpu_s"],
            o["server_rss_mb"]
        );
    }
    if !o["machine_busy_cores"].is_null() {
        let _ = write!(
            s,
            ", machine busy {:.2} cores (others {:.2})",
            f(&o["machine_busy_cores"]),
            f(&o["other_cores"])
        );
    }
    let _ = writeln!(s);
    for e in first_errors {
        let _ = writeln!(s, "  error: {e}");
    }
    s
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
