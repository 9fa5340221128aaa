//! Every knob of one simulated run, drawn from the seed (swarm testing).
//!
//! One `u64` seed fixes everything: the engine configuration (worker count, pool targets, queue
//! capacities, cycle interval, durability, verify mode, limits), the workload (clients, request
//! mix, block sizes, pipelining), the latencies of the fakes, each fault's probability and the
//! crash plan. Each seed draws its own mix so that rare combinations (tiny queues with many
//! workers, EIO with sha256 verification, ...) get explored across a seed range instead of one
//! average configuration everywhere. `Display` prints every option, so a failing seed's
//! configuration is in its log.

use std::fmt;
use std::time::Duration;

use engine::bugs::Bugs;
use engine::controller::Durability;
use engine::worker::VerifyReads;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Default number of requests per seed (`--requests`).
pub const REQUESTS_DEFAULT: u64 = 2000;
/// Most simulated clients.
pub const CLIENTS_MAX: usize = 32;
/// Most workers.
pub const WORKERS_MAX: usize = 8;
/// Most crashes planned per seed (besides the hot spots').
pub const CRASHES_MAX: usize = 4;
/// Power losses after a read reported an unacknowledged block, in a seed that draws them.
const HOT_SPOT_CRASHES: usize = 2;
/// Power losses at the log's narrow windows, in a seed that draws them (`LOG_HOT_SPOT_P` of
/// the full-durability seeds).
const LOG_HOT_SPOT_CRASHES: usize = 2;
const LOG_HOT_SPOT_P: f64 = 0.8;

const MIB: u64 = 1024 * 1024;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// Where a planned crash strikes once its request count is reached.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrashPoint {
    /// At the next step of the scheduler.
    Anywhere,
    /// When the controller is about to run a cycle with an occupy in its inbox: the block is
    /// written, not committed (with or without the data file synced).
    BeforeCommit,
    /// Right after a cycle committed writes, before any reply reached a worker.
    AfterCommit,
    /// Right after the next recovery (`Controller::open`) committed, before workers start.
    AfterRecovery,
    /// In the middle of the next replay of the log (`wal::recover`): after k of its commits
    /// (the store fails the next one), then start again.
    MidRecovery,
    /// Right after a read reported stored a block whose PUT is still unanswered (issue 16's
    /// observed durability hot spot: the block must survive the crash).
    AfterReadBeforeAck,
    /// Full durability (issue 18): a batch's log record is written (in the page cache), its
    /// flush never begins.
    AfterLogWrite,
    /// Full durability: a batch's flush returned, its index commit never happens.
    AfterFlush,
    /// Full durability: while a checkpoint is in flight (the index being made durable), at
    /// the instant it would have returned.
    DuringCheckpoint,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrashKind {
    Process,
    PowerLoss,
}

/// The metadata store a run uses (`crate::store`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StoreKind {
    /// The engine's `MemStore`: every crash kind.
    Mem,
    /// The server's `MdbxStore` over libmdbx in a temporary directory: no power loss.
    Mdbx,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Mem => "mem",
            StoreKind::Mdbx => "mdbx",
        }
    }

    pub fn by_name(name: &str) -> Option<StoreKind> {
        [StoreKind::Mem, StoreKind::Mdbx]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CrashPlan {
    /// The crash arms when this many requests have been issued.
    pub after_requests: u64,
    pub point: CrashPoint,
    pub kind: CrashKind,
}

/// Relative weights of the request kinds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mix {
    pub put: u32,
    pub put_hash: u32,
    pub get: u32,
    pub head: u32,
    pub delete: u32,
    pub range: u32,
    pub bad: u32,
    pub misc: u32,
    /// Boundary probes (issue 16): heads at the limit, almost-right tokens, chunked bodies one
    /// byte over, ranges at the last byte.
    pub probe: u32,
}

impl Mix {
    pub fn total(&self) -> u32 {
        self.put
            + self.put_hash
            + self.get
            + self.head
            + self.delete
            + self.range
            + self.bad
            + self.misc
            + self.probe
    }
}

/// Probabilities of each injected fault (per operation), all zero when faults are off.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// A socket or file op completes with EAGAIN (did nothing).
    pub eagain: f64,
    /// A transfer (recv, send, read, write) moves fewer bytes than asked.
    pub short: f64,
    /// A file read or write fails with EIO.
    pub file_eio: f64,
    /// A file read returns one flipped bit (only with verification on).
    pub bit_flip: f64,
    /// A file read hits a sector that turns bad: it and every later read of it fail with EIO
    /// until a write covers it whole.
    pub sticky_read: f64,
    /// A file write lands at another offset (only with verification on).
    pub misdirect: f64,
    /// A socket op fails with ECONNRESET.
    pub conn_reset: f64,
    /// Accept fails with ECONNABORTED or EMFILE.
    pub accept_error: f64,
    /// A push into a queue stalls its consumer for a while.
    pub queue_stall: f64,
    /// `sync_data` fails (the controller latches failed until restart).
    pub sync_fail: f64,
    /// A metadata commit fails (the controller latches failed until restart).
    pub commit_fail: f64,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub requests: u64,
    pub bugs: Bugs,
    /// Name of the bug switched on (for the reproduce line).
    pub bug_name: Option<String>,

    // Engine configuration.
    pub workers: usize,
    pub capacity_bytes: u64,
    pub pool_targets: [u16; 8],
    pub to_controller_capacity: usize,
    pub to_worker_capacity: usize,
    pub cycle_interval: Duration,
    pub durability: Durability,
    pub verify_reads: VerifyReads,
    pub auth_token: Option<Vec<u8>>,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub recv_chunk_bytes: usize,
    /// Each worker's I/O buffer budget (`WorkerConfig::buffer_budget_bytes`).
    pub buffer_budget_bytes: usize,
    /// After a worker turn that served lookups, the chance that its index view stays open for
    /// the next turn (old views held across steps: the isolation protocol's hard case).
    pub view_hold_p: f64,
    /// Hot spot: the chance that a drawn request is the next step of a reuse race (reads of a
    /// block around its DELETE, re-PUTs of new content into its freed size class, `missing`
    /// and listings around them: `workload/race.rs`); 0 in most seeds.
    pub reuse_race_p: f64,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub slot_wait_limit: Duration,

    // Workload.
    pub clients: usize,
    pub mix: Mix,
    pub pipeline_p: f64,
    pub duplicate_p: f64,
    pub hot_p: f64,
    pub large_p: f64,
    pub fragment_p: f64,
    pub slow_client_p: f64,
    pub vanish_p: f64,
    pub close_p: f64,
    /// Share of GETs and HEADs aimed at a block whose PUT is in flight (a hot spot).
    pub read_in_flight_p: f64,

    // Latencies (nanoseconds), faults and crashes.
    pub net_latency_ns: (u64, u64),
    pub disk_latency_ns: (u64, u64),
    pub disk_tail_p: f64,
    /// Virtual time one controller cycle takes besides its fdatasync.
    pub cycle_cost_ns: (u64, u64),
    pub faults: Faults,
    /// Of the unsynced sectors at power loss, the share that reached the disk anyway.
    pub power_loss_keep_p: f64,
    /// Of the unsynced log-region sectors a power loss does not keep whole, the share that
    /// comes back torn inside (a prefix of the new bytes over the old ones).
    pub torn_sector_p: f64,
    /// The write-ahead log's region, in 4 KiB sectors (`ControllerConfig::log_sectors`; the
    /// disk spans the slots and then this region): small, so that wrap-around, waits for log
    /// space and checkpoint pressure happen within a few hundred requests.
    pub log_sectors: u64,
    /// `ControllerConfig::checkpoint_interval`: the server's 20 ms, or (half the seeds)
    /// 250 ms or 1 s, so checkpoints cover more records and the writer wraps onto space the
    /// durable index still needs (what `reuse_log_before_checkpoint` breaks).
    pub checkpoint_interval: Duration,
    pub crashes: Vec<CrashPlan>,
    /// The metadata store: libmdbx only where no planned crash is a power loss.
    pub store: StoreKind,
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Share of the seeds with faults on that draw a high data-sync failure rate (0.2 caught
/// `ack_after_failed_sync` on 7-9% of seeds 1..=100, under the issue's 10%).
const SYNC_FAIL_HOT_P: f64 = 0.35;
/// Share of the seeds that run the reuse race (`Options::reuse_race_p`).
const REUSE_RACE_HOT_P: f64 = 0.6;
/// The log region's size range in sectors (`Options::log_sectors`): from the engine's
/// smallest (`wal::LOG_SECTORS_MIN`) to 256 KiB: small enough that checkpoints come every few
/// dozen batches, so crashes find one in flight.
const LOG_SECTORS_RANGE: (u64, u64) = (engine::wal::LOG_SECTORS_MIN, 64);
/// Share of the seeds without a planned power loss (about a fifth) that run over the server's
/// libmdbx store (`Options::store`).
const MDBX_P: f64 = 0.5;

/// `p` with probability one half, else zero (each fault is on in about half the seeds).
fn maybe(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if rng.random_bool(0.5) {
        rng.random_range(lo..hi)
    } else {
        0.0
    }
}

impl Options {
    /// Draws every option from `seed`. `requests` is the safety phase's request count.
    pub fn draw(seed: u64, requests: u64, bugs: Bugs, bug_name: Option<String>) -> Options {
        assert!(requests >= 1);
        // A generator of its own: the options do not shift when the world's draws change.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6f70_7469_6f6e_7321);
        let workers = rng.random_range(1..=WORKERS_MAX);
        let pool_targets = draw_pool_targets(&mut rng);
        let capacity_bytes = pick(&mut rng, &[8, 16, 32, 32, 64, 64]) * MIB;
        let small_queue = rng.random_bool(0.4);
        let queue = |rng: &mut ChaCha8Rng| {
            if small_queue {
                rng.random_range(1..=8)
            } else {
                pick(rng, &[16, 64, 256])
            }
        };
        let to_controller_capacity = queue(&mut rng);
        let to_worker_capacity = queue(&mut rng);
        let cycle_interval =
            Duration::from_nanos(pick(&mut rng, &[0, 10 * US, 100 * US, 100 * US, MS]));
        let durability = if rng.random_bool(0.5) {
            Durability::Full
        } else {
            Durability::Relaxed
        };
        let verify_reads = pick(
            &mut rng,
            &[
                VerifyReads::Crc32c,
                VerifyReads::Crc32c,
                VerifyReads::Sha256,
                VerifyReads::Off,
            ],
        );
        let auth_token = rng.random_bool(0.3).then(|| b"sim-token".to_vec());
        let max_connections = if rng.random_bool(0.15) {
            rng.random_range(1..=6)
        } else {
            4096
        };
        let max_header_bytes = pick(&mut rng, &[1024, 4096, 16 * 1024]);
        let recv_chunk_bytes = pick(&mut rng, &[1024, 4096, 16 * 1024, 64 * 1024]);
        let request_timeout = Duration::from_nanos(rng.random_range(S..=10 * S));
        let idle_timeout = Duration::from_nanos(rng.random_range(2 * S..=60 * S));
        let slot_wait_limit = Duration::from_nanos(rng.random_range(100 * MS..=5 * S));

        let clients = rng.random_range(1..=CLIENTS_MAX);
        let mix = Mix {
            put: rng.random_range(10..=40),
            put_hash: rng.random_range(0..=10),
            get: rng.random_range(10..=40),
            head: rng.random_range(0..=8),
            delete: rng.random_range(2..=20),
            range: rng.random_range(0..=5),
            bad: rng.random_range(0..=4),
            misc: rng.random_range(0..=3),
            probe: 0,
        };
        let faults_on = rng.random_bool(0.75);
        let verify = verify_reads != VerifyReads::Off;
        let mut faults = Faults::default();
        if faults_on {
            faults = Faults {
                eagain: maybe(&mut rng, 0.001, 0.05),
                short: maybe(&mut rng, 0.01, 0.3),
                file_eio: maybe(&mut rng, 0.0005, 0.01),
                bit_flip: if verify {
                    maybe(&mut rng, 0.0005, 0.01)
                } else {
                    0.0
                },
                misdirect: if verify {
                    maybe(&mut rng, 0.0001, 0.002)
                } else {
                    0.0
                },
                sticky_read: maybe(&mut rng, 0.0001, 0.002),
                conn_reset: maybe(&mut rng, 0.0005, 0.01),
                accept_error: maybe(&mut rng, 0.01, 0.1),
                queue_stall: maybe(&mut rng, 0.001, 0.02),
                sync_fail: maybe(&mut rng, 0.0, 0.002),
                commit_fail: maybe(&mut rng, 0.0, 0.002),
            };
        }
        let slow = faults_on && rng.random_bool(0.5);
        let net_latency_ns = (US, rng.random_range(2 * US..=200 * US));
        let disk_hi = pick(&mut rng, &[20 * US, 200 * US, 2 * MS, 10 * MS]);
        let crashes = draw_crashes(&mut rng, requests);
        let mut options = Options {
            seed,
            requests,
            bugs,
            bug_name,
            workers,
            capacity_bytes,
            pool_targets,
            to_controller_capacity,
            to_worker_capacity,
            cycle_interval,
            durability,
            verify_reads,
            auth_token,
            max_connections,
            max_header_bytes,
            recv_chunk_bytes,
            buffer_budget_bytes: 0,
            view_hold_p: 0.0,
            reuse_race_p: 0.0,
            request_timeout,
            idle_timeout,
            slot_wait_limit,
            clients,
            mix,
            pipeline_p: rng.random_range(0.0..0.4),
            duplicate_p: rng.random_range(0.0..0.3),
            hot_p: rng.random_range(0.0..0.6),
            large_p: rng.random_range(0.0..0.04),
            fragment_p: rng.random_range(0.0..0.5),
            slow_client_p: if slow {
                rng.random_range(0.0..0.1)
            } else {
                0.0
            },
            vanish_p: if faults_on {
                rng.random_range(0.0..0.03)
            } else {
                0.0
            },
            close_p: rng.random_range(0.0..0.2),
            read_in_flight_p: 0.0,
            net_latency_ns,
            disk_latency_ns: (US, disk_hi),
            disk_tail_p: rng.random_range(0.0..0.02),
            cycle_cost_ns: (US, rng.random_range(2 * US..=50 * US)),
            faults,
            power_loss_keep_p: rng.random_range(0.0..1.0),
            torn_sector_p: 0.0,
            log_sectors: LOG_SECTORS_RANGE.0,
            checkpoint_interval: engine::controller::CHECKPOINT_INTERVAL,
            crashes,
            store: StoreKind::Mem,
        };
        // Drawn last, so the other options of a seed stay what they were before it existed.
        // 1 MiB holds one large buffer: large GETs and buffered bodies queue for it.
        options.buffer_budget_bytes = pick(&mut rng, &[1 << 20, 2 << 20, 8 << 20]);
        options.view_hold_p = pick(&mut rng, &[0.0, 0.3, 0.8]);
        // Hot spot (swarm): a third of the faulty seeds fail data syncs often, so the latch
        // after a failed sync (and `ack_after_failed_sync`) is exercised densely.
        if faults_on && rng.random_bool(SYNC_FAIL_HOT_P) {
            options.faults.sync_fail = rng.random_range(0.01..0.03);
        }
        // Hot spot (swarm): some seeds race reads of a block against its DELETE and the reuse
        // of its slot, with views held long (the isolation protocol's hard case).
        if rng.random_bool(REUSE_RACE_HOT_P) {
            options.reuse_race_p = rng.random_range(0.4..0.8);
            options.view_hold_p = 0.9;
            // Slow reads: a read of the old slot stays in flight while the slot is reused.
            options.disk_tail_p = rng.random_range(0.1..0.3);
        }
        options.draw_issue16_hot_spots(&mut rng);
        options.draw_log_hot_spots(&mut rng);
        // Last of all, so every other option of a seed is what it was before this existed
        // (and a seed's trace is the same over either store).
        if options.power_loss_free() && rng.random_bool(MDBX_P) {
            options.store = StoreKind::Mdbx;
        }
        // The write-ahead log (issue 18), drawn after the store so each seed keeps its store.
        options.log_sectors = rng.random_range(LOG_SECTORS_RANGE.0..=LOG_SECTORS_RANGE.1);
        options.torn_sector_p = pick(&mut rng, &[0.3, 0.6, 0.9, 0.9]);
        if rng.random_bool(0.5) {
            options.checkpoint_interval = Duration::from_millis(pick(&mut rng, &[250, 1000]));
        }
        options
    }

    /// No planned crash is a power loss (the libmdbx store models none).
    pub fn power_loss_free(&self) -> bool {
        self.crashes.iter().all(|p| p.kind == CrashKind::Process)
    }

    /// Issue 16's hot spots (BUGGIFY-style), drawn after everything else so that the other
    /// options of a seed stay as they were: reads aimed at blocks being uploaded, and in
    /// durability `full` a power loss right after such a read reported one stored.
    fn draw_issue16_hot_spots(&mut self, rng: &mut ChaCha8Rng) {
        self.read_in_flight_p = pick(rng, &[0.0, 0.1, 0.3, 0.3]);
        self.mix.probe = pick(rng, &[0, 1, 2, 4]);
        if self.durability == Durability::Full && self.read_in_flight_p > 0.0 {
            // A disk slow enough that batches take a while to become durable: most blocks a
            // read reports before their PUT's answer are then in the batch being made durable.
            self.disk_latency_ns.1 = self.disk_latency_ns.1.max(2 * MS);
            for _ in 0..HOT_SPOT_CRASHES {
                self.crashes.push(CrashPlan {
                    after_requests: rng.random_range(1..self.requests.max(2)),
                    point: CrashPoint::AfterReadBeforeAck,
                    kind: CrashKind::PowerLoss,
                });
            }
            self.crashes.sort_by_key(|p| p.after_requests);
        }
        assert!(self.crashes.len() <= CRASHES_MAX + HOT_SPOT_CRASHES);
    }

    /// Issue 18's hot spots, drawn after issue 16's: in durability `full`, power losses at the
    /// log's two narrow windows, a batch's record written but not flushed and a checkpoint in
    /// flight (where a torn record or log space reused too early loses acknowledged batches).
    fn draw_log_hot_spots(&mut self, rng: &mut ChaCha8Rng) {
        if self.durability != Durability::Full || !rng.random_bool(LOG_HOT_SPOT_P) {
            return;
        }
        for point in [CrashPoint::AfterLogWrite, CrashPoint::DuringCheckpoint] {
            self.crashes.push(CrashPlan {
                after_requests: rng.random_range(1..self.requests.max(2)),
                point,
                kind: CrashKind::PowerLoss,
            });
        }
        self.crashes.sort_by_key(|p| p.after_requests);
        assert!(self.crashes.len() <= CRASHES_MAX + HOT_SPOT_CRASHES + LOG_HOT_SPOT_CRASHES);
    }

    /// The options of a fault-free run (scenario tests): one seed's engine configuration with
    /// every fault, slow client and crash switched off.
    pub fn quiet(mut self) -> Options {
        self.faults = Faults::default();
        self.slow_client_p = 0.0;
        self.vanish_p = 0.0;
        self.disk_tail_p = 0.0;
        self.crashes.clear();
        self
    }

    pub fn worker_config(&self, id: u8) -> engine::worker::WorkerConfig {
        let mut c = engine::worker::WorkerConfig::new(id);
        c.max_connections = self.max_connections;
        c.max_header_bytes = self.max_header_bytes;
        c.request_timeout = self.request_timeout;
        c.idle_timeout = self.idle_timeout;
        c.slot_wait_limit = self.slot_wait_limit;
        c.verify_reads = self.verify_reads;
        c.auth_token = self.auth_token.clone();
        c.pool_targets = self.pool_targets;
        // The server's rule: the adaptive pools park at most an eighth of the capacity.
        c.pool_bytes_max = engine::worker::pool_bytes_max(self.capacity_bytes, self.workers);
        c.recv_chunk_bytes = self.recv_chunk_bytes;
        c.buffer_budget_bytes = self.buffer_budget_bytes;
        c.bugs = self.bugs;
        c
    }

    /// The controller's configuration for a start whose run id is `run_id` (drawn by the
    /// world at each start).
    pub fn controller_config(&self, run_id: u64) -> engine::controller::ControllerConfig {
        engine::controller::ControllerConfig {
            log_sectors: self.log_sectors,
            run_id,
            checkpoint_interval: self.checkpoint_interval,
            capacity_bytes: self.capacity_bytes,
            workers: self.workers,
            cycle_interval: self.cycle_interval,
            durability: self.durability,
            node_id: self.seed,
            bugs: self.bugs,
        }
    }

    /// The command line that replays this run.
    pub fn reproduce_line(&self) -> String {
        let mut line = format!("buddy-sim --seed {}", self.seed);
        if self.requests != REQUESTS_DEFAULT {
            line.push_str(&format!(" --requests {}", self.requests));
        }
        if let Some(bug) = &self.bug_name {
            line.push_str(&format!(" --bug {bug}"));
        }
        line
    }
}

fn draw_pool_targets(rng: &mut ChaCha8Rng) -> [u16; 8] {
    match rng.random_range(0..4) {
        0 => engine::pool::POOL_TARGET_DEFAULT,
        1 => [0; 8],
        _ => {
            let mut t = [0u16; 8];
            for (i, v) in t.iter_mut().enumerate() {
                // Fewer slots of the large classes: 8 workers x 8 x 512 KiB would be 32 MiB already.
                let hi = if i >= 5 { 2 } else { 8 };
                *v = rng.random_range(0..=hi);
            }
            t
        }
    }
}

fn draw_crashes(rng: &mut ChaCha8Rng, requests: u64) -> Vec<CrashPlan> {
    let count = rng.random_range(1..=CRASHES_MAX);
    let mut plans: Vec<CrashPlan> = (0..count)
        .map(|_| {
            let point = pick(
                rng,
                &[
                    CrashPoint::Anywhere,
                    CrashPoint::Anywhere,
                    CrashPoint::BeforeCommit,
                    CrashPoint::AfterCommit,
                    CrashPoint::AfterRecovery,
                    CrashPoint::AfterLogWrite,
                    CrashPoint::AfterFlush,
                    CrashPoint::DuringCheckpoint,
                    CrashPoint::MidRecovery,
                ],
            );
            let kind = if rng.random_bool(0.5) {
                CrashKind::PowerLoss
            } else {
                CrashKind::Process
            };
            CrashPlan {
                after_requests: rng.random_range(1..requests.max(2)),
                point,
                kind,
            }
        })
        .collect();
    plans.sort_by_key(|p| p.after_requests);
    plans
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed: {}", self.seed)?;
        writeln!(f, "requests: {}", self.requests)?;
        writeln!(f, "bug: {}", self.bug_name.as_deref().unwrap_or("none"))?;
        writeln!(f, "workers: {}", self.workers)?;
        writeln!(f, "capacity_bytes: {}", self.capacity_bytes)?;
        writeln!(f, "pool_targets: {:?}", self.pool_targets)?;
        writeln!(
            f,
            "queue_frames: to_controller={} to_worker={}",
            self.to_controller_capacity, self.to_worker_capacity
        )?;
        writeln!(f, "cycle_interval_us: {}", self.cycle_interval.as_micros())?;
        writeln!(f, "durability: {}", self.durability.as_str())?;
        writeln!(f, "verify_reads: {}", self.verify_reads.as_str())?;
        writeln!(f, "auth: {}", self.auth_token.is_some())?;
        writeln!(f, "max_connections: {}", self.max_connections)?;
        writeln!(f, "max_header_bytes: {}", self.max_header_bytes)?;
        writeln!(f, "recv_chunk_bytes: {}", self.recv_chunk_bytes)?;
        writeln!(f, "buffer_budget_bytes: {}", self.buffer_budget_bytes)?;
        writeln!(f, "view_hold_p: {}", self.view_hold_p)?;
        writeln!(f, "reuse_race_p: {:.3}", self.reuse_race_p)?;
        writeln!(
            f,
            "timeouts_ms: request={} idle={} slot_wait={}",
            self.request_timeout.as_millis(),
            self.idle_timeout.as_millis(),
            self.slot_wait_limit.as_millis()
        )?;
        writeln!(f, "clients: {}", self.clients)?;
        writeln!(f, "mix: {:?}", self.mix)?;
        writeln!(
            f,
            "workload: pipeline_p={:.3} duplicate_p={:.3} hot_p={:.3} large_p={:.3} \
            fragment_p={:.3} slow_client_p={:.3} vanish_p={:.3} close_p={:.3}",
            self.pipeline_p,
            self.duplicate_p,
            self.hot_p,
            self.large_p,
            self.fragment_p,
            self.slow_client_p,
            self.vanish_p,
            self.close_p
        )?;
        writeln!(
            f,
            "hot spots: read_in_flight_p={:.2}",
            self.read_in_flight_p
        )?;
        writeln!(
            f,
            "latency_ns: net={:?} disk={:?} disk_tail_p={:.4}",
            self.net_latency_ns, self.disk_latency_ns, self.disk_tail_p
        )?;
        writeln!(f, "cycle_cost_ns: {:?}", self.cycle_cost_ns)?;
        writeln!(f, "faults: {:?}", self.faults)?;
        writeln!(f, "power_loss_keep_p: {:.3}", self.power_loss_keep_p)?;
        writeln!(f, "torn_sector_p: {:.1}", self.torn_sector_p)?;
        writeln!(f, "log_sectors: {}", self.log_sectors)?;
        writeln!(
            f,
            "checkpoint_interval_ms: {}",
            self.checkpoint_interval.as_millis()
        )?;
        writeln!(f, "crashes: {:?}", self.crashes)?;
        write!(f, "store: {}", self.store.as_str())
    }
}
