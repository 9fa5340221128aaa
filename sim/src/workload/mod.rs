//! The workload: simulated HTTP clients and the requests they make; every answer goes to the
//! oracle ([`crate::oracle`]).
//!
//! Each client owns at most one connection at a time and sends a batch of one request, or
//! several pipelined ones, as bytes in seeded fragments; it then reads the answers in order.
//! Clients may be slow senders or slow readers, may close with `Connection: close` or HTTP/1.0,
//! may vanish mid-request or mid-response, and reconnect (to any worker) for the next batch.
//! A crash resets their connections; a write that was in flight then counts as unknown.
//!
//! Request mix (weights per seed): PUT `/block` and `PUT /block/<hash>` (sizes over every class,
//! with the edges 1, 4095, 4096, 4097 and 524288; duplicate content; a hot set of addresses so
//! DELETE races GET and re-PUT of the same address), GET (sometimes with `If-None-Match`), HEAD,
//! ranged GET, DELETE, bad requests (garbage, bad hex, wrong hash, oversize, missing token,
//! unknown path, wrong method) and the service endpoints.
//!
//! Layout: this file holds the clients' roster and what the world asks of the workload;
//! [`client`] a client's connection (send, read, settle what a closed connection left);
//! [`draw`] the seeded choice of requests; [`race`] the reuse race hot spot; [`issue`] their
//! serialisation into bytes.
//! The workload never schedules anything itself (the world steps a client when it is due) and
//! never judges an answer (it hands each one to [`crate::oracle`]).

mod client;
mod draw;
mod issue;
mod race;

use std::collections::{BTreeMap, VecDeque};

use engine::io::OpId;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

pub use client::Client;

use crate::failure::Failure;
use crate::fake::net::Net;
use crate::model::{Model, WriteEnd};
use crate::options::Options;
use crate::oracle::explain::Explain;
use crate::request::Kind;
use crate::trace::Trace;

/// Largest block.
pub const BLOCK_MAX_BYTES: usize = 524_288;
/// The size edges every seed should hit.
pub const SIZE_EDGES: [usize; 5] = [1, 4095, 4096, 4097, BLOCK_MAX_BYTES];
/// Addresses in the hot set.
const HOT_SET_MAX: usize = 8;
/// Most requests pipelined in one batch.
const PIPELINE_MAX: usize = 4;

const US: u64 = 1_000;
const MS: u64 = 1_000_000;

/// What a client step may touch besides its own state.
pub struct Ctx<'a> {
    pub now: u64,
    pub opts: &'a Options,
    pub rng: &'a mut ChaCha8Rng,
    pub net: &'a mut Net,
    pub model: &'a mut Model,
    pub trace: &'a mut Trace,
    /// Ring ops to wake: (worker, op).
    pub wakes: &'a mut Vec<(usize, OpId)>,
    /// Workers with a new connection in their backlog.
    pub accept_wakes: &'a mut Vec<usize>,
    pub explain: Explain<'a>,
    pub healed: bool,
    pub failures: &'a mut Vec<Failure>,
}

impl Ctx<'_> {
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p)
    }
}

pub struct Workload {
    pub clients: Vec<Client>,
    /// Requests started so far (the safety phase ends at `Options::requests`).
    pub issued: u64,
    pub answered: u64,
    /// New requests are drawn while this is on.
    pub issuing: bool,
    /// Requests the verification sweep still has to send.
    pub sweep: VecDeque<Kind>,
    hot: Vec<usize>,
    /// The reuse race in progress (`race.rs`).
    race: race::Race,
    serial: u64,
    pub statuses: BTreeMap<(&'static str, u16), u64>,
    pub unanswered: u64,
    pub edges_put: [bool; 5],
    /// The one content of exactly the largest block that the chunked at-limit probe sends, drawn
    /// at its first use: stored once (201), then deduplicated (200), so the probes test the
    /// boundary without filling a small store with 512 KiB blocks.
    at_limit_content: Option<usize>,
}

impl Workload {
    pub fn new(opts: &Options) -> Workload {
        Workload {
            clients: (0..opts.clients).map(Client::new).collect(),
            issued: 0,
            answered: 0,
            issuing: true,
            sweep: VecDeque::new(),
            hot: Vec::new(),
            race: race::Race::default(),
            serial: 0,
            statuses: BTreeMap::new(),
            unanswered: 0,
            edges_put: [false; 5],
            at_limit_content: None,
        }
    }

    pub fn next_wake(&self) -> Option<u64> {
        self.clients.iter().filter_map(|c| c.next_at).min()
    }

    /// Clients due at `now`.
    pub fn due(&self, now: u64, out: &mut Vec<usize>) {
        for c in &self.clients {
            if c.next_at.is_some_and(|t| t <= now) {
                out.push(c.id);
            }
        }
    }

    /// Every client idle: nothing sent and unanswered, nothing left to send.
    pub fn all_idle(&self) -> bool {
        self.clients.iter().all(Client::is_idle)
    }

    /// Requests still waiting for an answer, oldest first (for a liveness report).
    pub fn outstanding(&self) -> Vec<(usize, u64, &'static str, u64)> {
        let mut out: Vec<_> = self
            .clients
            .iter()
            .flat_map(|c| {
                c.waiting
                    .iter()
                    .map(move |r| (c.id, r.serial, r.kind.name(), r.started_at))
            })
            .collect();
        out.sort_by_key(|x| x.3);
        out
    }

    /// Wakes the client of a connection that got bytes or was closed.
    pub fn wake_conn(&mut self, net: &Net, handle: u64, now: u64) {
        let Some(conn) = net.get(handle) else { return };
        let Some(c) = self.clients.get_mut(conn.client) else {
            return;
        };
        if c.conn == Some(handle) {
            c.next_at = Some(c.next_at.map_or(now, |t| t.min(now)));
        }
    }

    /// A crash reset every connection: writes in flight are lost in the crash.
    pub fn on_crash(&mut self, model: &mut Model, rng: &mut ChaCha8Rng, now: u64) {
        for c in &mut self.clients {
            for req in c.waiting.drain(..) {
                if let Some(t) = req.write {
                    model.end_write(t, WriteEnd::LostInCrash, None);
                }
                if rng.random_bool(0.5) {
                    c.retry.push(req.kind);
                }
                self.unanswered += 1;
            }
            c.conn = None;
            c.out.clear();
            c.out_pos = 0;
            c.inbuf.clear();
            c.conn_done = false;
            c.next_at = Some(now + rng.random_range(10 * US..=2 * MS));
        }
    }

    /// Wakes every client (the phase changed).
    pub fn wake_all(&mut self, now: u64) {
        for c in &mut self.clients {
            c.next_at = Some(c.next_at.map_or(now, |t| t.min(now)));
        }
    }

    /// One step of client `id`.
    pub fn step(&mut self, id: usize, ctx: &mut Ctx<'_>) {
        assert!(
            self.clients[id].next_at.is_some_and(|t| t <= ctx.now),
            "client {id} stepped before it was due"
        );
        self.clients[id].next_at = None;
        if self.maybe_vanish(id, ctx) {
            return;
        }
        self.read(id, ctx);
        self.check_closed(id, ctx);
        self.send(id, ctx);
        if self.clients[id].is_idle() {
            self.start_batch(id, ctx);
        }
    }
}

/// The verification sweep: a GET for every address the model is certain about (up to `max`).
pub fn sweep_requests(model: &Model, max: usize) -> VecDeque<Kind> {
    model
        .certain()
        .take(max)
        .map(|(h, _)| Kind::Get {
            hash: *h,
            if_none_match: false,
        })
        .collect()
}
