//! A scripted harness for scenario tests: the same world (N workers, one controller, in-memory
//! queues, `MemStore`, the fake ring, disk and clock) without the random workload and without
//! faults. A test opens connections, sends exact bytes, steps the world until it is quiet, and
//! reads the answers.

use engine::bugs::Bugs;
use engine::controller::Durability;
use engine::worker::VerifyReads;

use engine::hash::BlockHash;

use crate::failure::Failure;
use crate::http_client::{self, parse_response, Response, Style};
use crate::model::{Known, WriteEnd};
use crate::options::Options;
use crate::world::World;

/// The engine configuration of a scripted run.
#[derive(Clone, Debug)]
pub struct HarnessConfig {
    pub workers: usize,
    pub capacity_bytes: u64,
    pub pool_targets: [u16; 8],
    pub queue_frames: usize,
    pub verify_reads: VerifyReads,
    pub bugs: Bugs,
    pub recv_chunk_bytes: usize,
    pub durability: Durability,
    pub buffer_budget_bytes: usize,
    /// The log region's size in sectors (`Options::log_sectors`).
    pub log_sectors: u64,
    /// The bearer token writes need (`--auth-token`); none by default.
    pub auth_token: Option<Vec<u8>>,
    /// From a request's first byte to its last (`--request-timeout`); 10 s by default.
    pub request_timeout: std::time::Duration,
}

impl Default for HarnessConfig {
    fn default() -> HarnessConfig {
        HarnessConfig {
            workers: 1,
            capacity_bytes: 16 << 20,
            pool_targets: [2, 2, 2, 1, 1, 1, 1, 1],
            queue_frames: 64,
            verify_reads: VerifyReads::Crc32c,
            bugs: Bugs::NONE,
            recv_chunk_bytes: 64 * 1024,
            durability: Durability::Full,
            buffer_budget_bytes: 4 << 20,
            log_sectors: 64,
            auth_token: None,
            request_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Virtual time a step may jump ahead while "running until quiet": far below every timeout.
const QUIET_HORIZON_NS: u64 = 50_000_000;

pub struct Harness {
    pub world: World,
}

impl Harness {
    pub fn new(cfg: HarnessConfig) -> Harness {
        let mut opts = Options::draw(1, 1, cfg.bugs, None).quiet();
        opts.workers = cfg.workers;
        opts.capacity_bytes = cfg.capacity_bytes;
        opts.pool_targets = cfg.pool_targets;
        opts.to_controller_capacity = cfg.queue_frames;
        opts.to_worker_capacity = cfg.queue_frames;
        opts.verify_reads = cfg.verify_reads;
        opts.recv_chunk_bytes = cfg.recv_chunk_bytes;
        opts.durability = cfg.durability;
        opts.buffer_budget_bytes = cfg.buffer_budget_bytes;
        opts.log_sectors = cfg.log_sectors;
        opts.clients = 0;
        opts.auth_token = cfg.auth_token.clone();
        opts.max_connections = 4096;
        opts.max_header_bytes = 16 * 1024;
        opts.request_timeout = cfg.request_timeout;
        opts.idle_timeout = std::time::Duration::from_secs(60);
        // As the server: a PUT waits for a slot at most its request timeout, and 5 s.
        opts.slot_wait_limit = cfg.request_timeout.min(std::time::Duration::from_secs(5));
        opts.cycle_interval = std::time::Duration::from_micros(100);
        opts.net_latency_ns = (1_000, 20_000);
        opts.disk_latency_ns = (1_000, 100_000);
        let mut world = World::new(opts, false);
        world.knobs.restart_on_latch = false;
        world.start().expect("a fresh store opens");
        let mut h = Harness { world };
        h.run_until_quiet();
        h
    }

    /// Steps until nothing is left to do within a short horizon (timers far off may remain).
    pub fn run_until_quiet(&mut self) {
        loop {
            self.world.knobs.time_limit = Some(self.world.clock.now() + QUIET_HORIZON_NS);
            let progressed = match self.world.step() {
                Ok(p) => p,
                Err(f) => panic!("the world failed: {f}"),
            };
            if !progressed {
                break;
            }
        }
        self.world.knobs.time_limit = None;
        if let Some(f) = self.world.failures.first() {
            panic!("the world failed: {f}");
        }
    }

    /// Opens a connection to `worker`.
    pub fn connect(&mut self, worker: usize) -> u64 {
        let handle = self.world.net.connect(worker, 0, 8 << 20);
        self.world.wake_scripted(Vec::new(), Some(worker));
        handle
    }

    /// Sends bytes on a connection (does not step).
    pub fn send(&mut self, conn: u64, bytes: &[u8]) {
        let wake = self.world.net.client_send(conn, bytes);
        self.world.wake_scripted(wake.into_iter().collect(), None);
    }

    /// Every complete answer received on `conn` so far, parsed (`head` for HEAD requests).
    pub fn responses(&mut self, conn: u64, head: bool) -> Vec<Response> {
        self.responses_to(conn, &[head; 64])
    }

    /// Like `responses`, for a pipeline whose i-th request was a HEAD when `heads[i]`.
    pub fn responses_to(&mut self, conn: u64, heads: &[bool]) -> Vec<Response> {
        let (bytes, wake) = self.world.net.client_read(conn, usize::MAX);
        self.world.wake_scripted(wake.into_iter().collect(), None);
        let mut out = Vec::new();
        let mut rest = bytes.as_slice();
        loop {
            let head = heads.get(out.len()).copied().unwrap_or(false);
            let parsed = parse_response(rest, head).expect("a well-formed response");
            let Some((r, used)) = parsed else { break };
            out.push(r);
            rest = &rest[used..];
        }
        assert!(
            rest.is_empty(),
            "a partial response is left: {} bytes",
            rest.len()
        );
        out
    }

    /// One request on a fresh connection to `worker`, run to its answer.
    pub fn request(&mut self, worker: usize, bytes: &[u8]) -> Response {
        let head = bytes.starts_with(b"HEAD ");
        let conn = self.connect(worker);
        self.send(conn, bytes);
        self.run_until_quiet();
        let mut r = self.responses(conn, head);
        assert_eq!(r.len(), 1, "exactly one answer");
        r.pop().expect("one")
    }

    /// The failure the world recorded, if any (scripted tests mostly expect none).
    pub fn failure(&self) -> Option<&Failure> {
        self.world.failures.first()
    }

    /// `PUT /block` of `body`, with the model told, so that recovery checks know the block.
    pub fn put_known(&mut self, worker: usize, body: &[u8]) -> Response {
        let i = self.world.model.add_content(body.to_vec());
        let hash = self.world.model.contents[i].0;
        let t = self.world.model.begin_write(hash);
        let r = self.request(
            worker,
            &http_client::put(body, None, &Style::default(), None),
        );
        let end = match r.status {
            200 | 201 => WriteEnd::Effect(Known::Present),
            _ => WriteEnd::NoEffect,
        };
        self.world.model.end_write(t, end, None);
        r
    }

    /// `DELETE /block/<hash>`, with the model told.
    pub fn delete_known(&mut self, worker: usize, hash: &BlockHash) -> Response {
        let t = self.world.model.begin_delete(*hash);
        let path = http_client::hash_path(hash, &Style::default());
        let r = self.request(
            worker,
            &http_client::bodyless("DELETE", &path, &Style::default(), None, &[]),
        );
        let end = match r.status {
            204 | 404 => WriteEnd::Effect(Known::Absent),
            _ => WriteEnd::NoEffect,
        };
        self.world.model.end_write(t, end, None);
        r
    }

    /// Steps for `span` of virtual time, busy or not.
    pub fn run_for(&mut self, span: std::time::Duration) {
        let end = self.world.clock.now() + span.as_nanos() as u64;
        self.world.knobs.time_limit = Some(end);
        while self.world.clock.now() < end {
            match self.world.step() {
                Ok(true) => {}
                Ok(false) => {
                    // Nothing due before `end`: time passes anyway.
                    self.world.clock.advance_to(end);
                }
                Err(f) => panic!("the world failed: {f}"),
            }
        }
        self.world.knobs.time_limit = None;
    }

    /// Lets virtual time pass with nothing happening (timers due meanwhile fire at once after).
    pub fn advance(&mut self, by: std::time::Duration) {
        let t = self.world.clock.now() + by.as_nanos() as u64;
        self.world.clock.advance_to(t);
        self.run_until_quiet();
    }
}
