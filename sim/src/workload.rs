//! The workload: simulated HTTP clients, the requests they make, and the check of every answer
//! against the model (the oracle).
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
//! What an answer must satisfy is in [`check`]; statuses that only faults explain (500) draw on
//! the count of injected faults or on stored bytes that are damaged through no fault of the
//! engine; everything else must agree with the model whenever the model is certain.

use std::collections::{BTreeMap, VecDeque};

use engine::hash::BlockHash;
use engine::io::OpId;
use engine::meta::SharedImage;
use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;

use crate::disk::Disk;
use crate::http_client::{self, parse_response, Response, Style};
use crate::model::{Known, Model, ReadTicket, WriteEnd, WriteTicket};
use crate::net::Net;
use crate::options::Options;
use crate::ring::FaultCounters;
use crate::trace::Trace;
use crate::Failure;

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

#[derive(Clone, Debug)]
pub enum Kind {
    Put {
        content: usize,
        path_hash: bool,
    },
    /// `PUT /block/<claimed>` with a body that hashes to something else: 422.
    PutWrongHash {
        body_seed: u64,
        claimed: BlockHash,
    },
    Get {
        hash: BlockHash,
        if_none_match: bool,
    },
    Head {
        hash: BlockHash,
    },
    Range {
        hash: BlockHash,
        spec: RangeReq,
    },
    Delete {
        hash: BlockHash,
    },
    /// A write without the right token (auth on): 401.
    Unauthorized {
        hash: BlockHash,
        delete: bool,
    },
    Garbage {
        seed: u64,
    },
    BadHex,
    Oversize,
    UnknownPath,
    NotAllowed {
        hash: BlockHash,
    },
    Health,
    Stats,
    Metrics,
    /// `POST /blocks/missing`: the listed addresses that are not stored, in input order.
    Missing {
        hashes: Vec<BlockHash>,
    },
    /// `GET /blocks?after=&limit=`: stored addresses in ascending order.
    List {
        after: Option<BlockHash>,
        limit: u16,
    },
}

impl Kind {
    fn is_head(&self) -> bool {
        matches!(self, Kind::Head { .. })
    }

    /// Short name for the trace and the status table.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Put { .. } => "put",
            Kind::PutWrongHash { .. } => "put-wrong-hash",
            Kind::Get { .. } => "get",
            Kind::Head { .. } => "head",
            Kind::Range { .. } => "range",
            Kind::Delete { .. } => "delete",
            Kind::Unauthorized { .. } => "unauthorized",
            Kind::Garbage { .. } => "garbage",
            Kind::BadHex => "bad-hex",
            Kind::Oversize => "oversize",
            Kind::UnknownPath => "unknown-path",
            Kind::NotAllowed { .. } => "not-allowed",
            Kind::Health => "health",
            Kind::Missing { .. } => "missing",
            Kind::List { .. } => "list",
            Kind::Stats => "stats",
            Kind::Metrics => "metrics",
        }
    }

    /// The prefix of the address the request is about (for the trace), 0 if none.
    fn target(&self, model: &Model) -> u64 {
        match self {
            Kind::Put { content, .. } => crate::world::hash_prefix(&model.contents[*content].0),
            Kind::Get { hash, .. }
            | Kind::Head { hash }
            | Kind::Range { hash, .. }
            | Kind::Delete { hash }
            | Kind::Unauthorized { hash, .. }
            | Kind::NotAllowed { hash } => crate::world::hash_prefix(hash),
            Kind::PutWrongHash { claimed, .. } => crate::world::hash_prefix(claimed),
            _ => 0,
        }
    }

    fn code(&self) -> u64 {
        match self {
            Kind::Put { .. } => 1,
            Kind::PutWrongHash { .. } => 2,
            Kind::Get { .. } => 3,
            Kind::Head { .. } => 4,
            Kind::Range { .. } => 5,
            Kind::Delete { .. } => 6,
            Kind::Unauthorized { .. } => 7,
            Kind::Garbage { .. } => 8,
            Kind::BadHex => 9,
            Kind::Oversize => 10,
            Kind::UnknownPath => 11,
            Kind::NotAllowed { .. } => 12,
            Kind::Health => 13,
            Kind::Missing { .. } => 16,
            Kind::List { .. } => 17,
            Kind::Stats => 14,
            Kind::Metrics => 15,
        }
    }
}

/// A `Range` request: `bytes=a-b`, `bytes=a-` or `bytes=-n`.
#[derive(Clone, Copy, Debug)]
pub enum RangeReq {
    FromTo(u64, u64),
    From(u64),
    Suffix(u64),
}

impl RangeReq {
    fn header(&self) -> String {
        match *self {
            RangeReq::FromTo(a, b) => format!("Range: bytes={a}-{b}"),
            RangeReq::From(a) => format!("Range: bytes={a}-"),
            RangeReq::Suffix(n) => format!("Range: bytes=-{n}"),
        }
    }

    /// RFC 9110, independently of the engine: `Some(Some((a, b)))` a 206 of `a..=b`,
    /// `Some(None)` a 416, `None` the whole block with 200.
    pub fn expect(&self, len: u64) -> Option<Option<(u64, u64)>> {
        match *self {
            RangeReq::FromTo(a, b) if b < a => None,
            RangeReq::FromTo(a, _) | RangeReq::From(a) if a >= len => Some(None),
            RangeReq::FromTo(a, b) => Some(Some((a, b.min(len - 1)))),
            RangeReq::From(a) => Some(Some((a, len - 1))),
            RangeReq::Suffix(0) => Some(None),
            RangeReq::Suffix(n) => Some(Some((len.saturating_sub(n), len - 1))),
        }
    }
}

/// One request a client sent (or is sending).
#[derive(Debug)]
pub struct Req {
    pub serial: u64,
    pub kind: Kind,
    pub write: Option<WriteTicket>,
    pub read: Option<ReadTicket>,
    /// `POST /blocks/missing`: one read ticket per listed address.
    pub reads: Vec<ReadTicket>,
    pub started_at: u64,
    /// The server closes the connection after answering this one.
    pub ends_conn: bool,
}

#[derive(Debug)]
pub struct Client {
    pub id: usize,
    pub conn: Option<u64>,
    conn_last_used: u64,
    out: Vec<u8>,
    out_pos: usize,
    pub waiting: VecDeque<Req>,
    inbuf: Vec<u8>,
    pub next_at: Option<u64>,
    slow_sender: bool,
    slow_reader: bool,
    /// An answer said `Connection: close`: nothing more is answered on this connection.
    conn_done: bool,
    retry: Vec<Kind>,
}

impl Client {
    fn new(id: usize) -> Client {
        Client {
            id,
            conn: None,
            conn_last_used: 0,
            out: Vec::new(),
            out_pos: 0,
            waiting: VecDeque::new(),
            inbuf: Vec::new(),
            next_at: Some(0),
            slow_sender: false,
            slow_reader: false,
            conn_done: false,
            retry: Vec::new(),
        }
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.out_pos == self.out.len()
    }
}

/// Injected faults that may explain an error answer, and how many were used up.
pub struct Explain<'a> {
    pub counters: &'a FaultCounters,
    pub read_used: &'a mut u64,
    pub write_used: &'a mut u64,
    /// The controller may have latched failed (sync or commit failure) since the last start.
    pub latched: bool,
    /// A batch failed to become durable in the background since the last start.
    pub durable_failed: bool,
    pub image: &'a SharedImage,
    pub disk: &'a Disk,
}

impl Explain<'_> {
    /// The stored bytes of `hash` (at its committed slot) do not hash to it.
    fn stored_corrupt(&self, hash: &BlockHash) -> bool {
        let entry = {
            let img = self.image.lock().expect("image lock");
            img.committed.index.get(hash).copied()
        };
        let Some(e) = entry else { return false };
        let mut bytes = vec![0u8; e.len as usize];
        self.disk.read(e.slot.offset, &mut bytes);
        BlockHash::of(&bytes) != *hash
    }

    fn read_fault(&mut self) -> bool {
        if self.counters.read_faults > *self.read_used {
            *self.read_used += 1;
            return true;
        }
        false
    }

    fn write_fault(&mut self) -> bool {
        if self.counters.write_faults > *self.write_used {
            *self.write_used += 1;
            return true;
        }
        false
    }
}

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
    serial: u64,
    pub statuses: BTreeMap<(&'static str, u16), u64>,
    pub unanswered: u64,
    pub edges_put: [bool; 5],
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
            serial: 0,
            statuses: BTreeMap::new(),
            unanswered: 0,
            edges_put: [false; 5],
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

    fn maybe_vanish(&mut self, id: usize, ctx: &mut Ctx<'_>) -> bool {
        let c = &self.clients[id];
        let Some(handle) = c.conn else { return false };
        if ctx.healed || c.waiting.is_empty() || !ctx.chance(ctx.opts.vanish_p) {
            return false;
        }
        ctx.trace.ev(
            ctx.now,
            "client-vanish",
            [id as u64, handle, c.waiting.len() as u64, 0],
        );
        let wakes = ctx.net.client_close(handle, true);
        ctx.wakes.extend(wakes);
        let c = &mut self.clients[id];
        for req in c.waiting.drain(..) {
            if let Some(t) = req.write {
                ctx.model.end_write(t, WriteEnd::Unknown, None);
            }
            self.unanswered += 1;
        }
        c.conn = None;
        c.out.clear();
        c.out_pos = 0;
        c.inbuf.clear();
        c.next_at = Some(ctx.now + ctx.rng.random_range(US..=MS));
        true
    }

    fn read(&mut self, id: usize, ctx: &mut Ctx<'_>) {
        let c = &mut self.clients[id];
        let Some(handle) = c.conn else { return };
        let slow = c.slow_reader && !ctx.healed;
        let max = if slow {
            ctx.rng.random_range(1..=4096)
        } else {
            usize::MAX
        };
        let (bytes, wake) = ctx.net.client_read(handle, max);
        ctx.wakes.extend(wake);
        if bytes.is_empty() {
            return;
        }
        c.inbuf.extend_from_slice(&bytes);
        if slow {
            c.next_at = Some(ctx.now + ctx.rng.random_range(100 * US..=20 * MS));
        }
        loop {
            let c = &mut self.clients[id];
            let head_request = c.waiting.front().is_some_and(|r| r.kind.is_head());
            let parsed = match parse_response(&c.inbuf, head_request) {
                Ok(p) => p,
                Err(e) => {
                    ctx.failures.push(Failure::Correctness(format!(
                        "client {id}: unparseable response: {e}"
                    )));
                    c.inbuf.clear();
                    return;
                }
            };
            let Some((resp, used)) = parsed else { return };
            c.inbuf.drain(..used);
            c.conn_last_used = ctx.now;
            let Some(req) = c.waiting.pop_front() else {
                ctx.failures.push(Failure::Correctness(format!(
                    "client {id}: a response ({}) to no request",
                    resp.status
                )));
                return;
            };
            if resp.says_close() {
                c.conn_done = true;
            }
            self.answered += 1;
            *self
                .statuses
                .entry((req.kind.name(), resp.status))
                .or_insert(0) += 1;
            ctx.trace.ev(
                ctx.now,
                "response",
                [
                    id as u64,
                    req.serial,
                    u64::from(resp.status),
                    resp.body.len() as u64,
                ],
            );
            if let Err(e) = check(&req, &resp, ctx) {
                ctx.failures.push(Failure::Correctness(format!(
                    "client {id} request {} ({}) answered {}: {e}",
                    req.serial,
                    req.kind.name(),
                    resp.status
                )));
            }
        }
    }

    /// The server closed (or reset) the connection: settle what it left unanswered.
    fn check_closed(&mut self, id: usize, ctx: &mut Ctx<'_>) {
        let c = &mut self.clients[id];
        let Some(handle) = c.conn else { return };
        let (closed, faulted) = match ctx.net.get(handle) {
            Some(conn) => (
                conn.server_closed && conn.to_client.is_empty(),
                conn.faulted,
            ),
            None => (true, false),
        };
        if !closed {
            return;
        }
        let slow = c.slow_sender || c.slow_reader;
        for req in c.waiting.drain(..) {
            self.unanswered += 1;
            // After an answer with `Connection: close`, later pipelined requests were never read.
            let end = if c.conn_done {
                WriteEnd::NoEffect
            } else {
                WriteEnd::Unknown
            };
            if let Some(t) = req.write {
                ctx.model.end_write(t, end, None);
            }
            if !c.conn_done && !faulted && !slow {
                ctx.failures.push(Failure::Liveness(format!(
                    "client {id}: connection {handle} closed by the server without answering \
                     request {} ({})",
                    req.serial,
                    req.kind.name()
                )));
            }
        }
        ctx.trace
            .ev(ctx.now, "client-eof", [id as u64, handle, 0, 0]);
        ctx.net.client_forget(handle);
        c.conn = None;
        c.out.clear();
        c.out_pos = 0;
        c.inbuf.clear();
        c.conn_done = false;
    }

    fn send(&mut self, id: usize, ctx: &mut Ctx<'_>) {
        let c = &mut self.clients[id];
        let Some(handle) = c.conn else { return };
        if c.out_pos >= c.out.len() {
            return;
        }
        let conn_ok = ctx.net.get(handle).is_some_and(|n| !n.server_closed);
        if !conn_ok {
            return;
        }
        let remaining = c.out.len() - c.out_pos;
        let n = if ctx.rng.random_bool(ctx.opts.fragment_p) {
            if ctx.rng.random_bool(0.2) {
                1
            } else {
                ctx.rng.random_range(1..=remaining)
            }
        } else {
            remaining
        };
        let wake = ctx
            .net
            .client_send(handle, &c.out[c.out_pos..c.out_pos + n]);
        ctx.wakes.extend(wake);
        c.out_pos += n;
        ctx.trace
            .ev(ctx.now, "client-send", [id as u64, handle, n as u64, 0]);
        if c.out_pos < c.out.len() {
            let gap = if c.slow_sender && !ctx.healed {
                let hi = (ctx.opts.request_timeout.as_nanos() as u64 / 3).max(MS);
                ctx.rng.random_range(MS..=hi)
            } else {
                ctx.rng.random_range(0..=20 * US)
            };
            c.next_at = Some(ctx.now + gap);
        } else {
            c.out.clear();
            c.out_pos = 0;
        }
    }

    fn start_batch(&mut self, id: usize, ctx: &mut Ctx<'_>) {
        let from_sweep = !self.sweep.is_empty();
        let retry = !self.clients[id].retry.is_empty();
        if !self.issuing && !from_sweep {
            return;
        }
        let count = if from_sweep || retry {
            1
        } else if ctx.chance(ctx.opts.pipeline_p) {
            ctx.rng.random_range(2..=PIPELINE_MAX)
        } else {
            1
        };
        self.ensure_conn(id, ctx);
        let handle = self.clients[id].conn.expect("connected above");
        let mut kinds = Vec::with_capacity(count);
        for _ in 0..count {
            let (kind, counted) = if let Some(k) = self.sweep.pop_front() {
                (k, false)
            } else if !self.issuing {
                break;
            } else if let Some(k) = self.clients[id].retry.pop() {
                (k, true)
            } else {
                (self.draw_kind(ctx), true)
            };
            let ends = matches!(kind, Kind::Garbage { .. } | Kind::Oversize);
            kinds.push((kind, counted));
            if ends {
                break;
            }
        }
        if kinds.is_empty() {
            return;
        }
        let last = kinds.len() - 1;
        for (i, (kind, counted)) in kinds.into_iter().enumerate() {
            let close = i == last && ctx.chance(ctx.opts.close_p);
            if counted {
                self.issued += 1;
            }
            self.issue(id, kind, close, ctx);
        }
        let c = &mut self.clients[id];
        ctx.trace.ev(
            ctx.now,
            "batch",
            [
                id as u64,
                handle,
                c.waiting.len() as u64,
                c.out.len() as u64,
            ],
        );
        self.send(id, ctx);
    }

    fn ensure_conn(&mut self, id: usize, ctx: &mut Ctx<'_>) {
        let idle_limit = ctx.opts.idle_timeout.as_nanos() as u64 / 2;
        let c = &mut self.clients[id];
        if let Some(handle) = c.conn {
            let usable = !c.conn_done
                && ctx.now.saturating_sub(c.conn_last_used) < idle_limit
                && ctx.net.get(handle).is_some_and(|n| !n.server_closed);
            if usable {
                return;
            }
            let wakes = ctx.net.client_close(handle, false);
            ctx.wakes.extend(wakes);
            c.conn = None;
        }
        let worker = ctx.rng.random_range(0..ctx.opts.workers);
        c.slow_sender = !ctx.healed && ctx.chance(ctx.opts.slow_client_p);
        c.slow_reader = !ctx.healed && ctx.chance(ctx.opts.slow_client_p);
        let window = if c.slow_reader {
            ctx.rng.random_range(1024..=65536)
        } else {
            8 << 20
        };
        let handle = ctx.net.connect(worker, id, window);
        ctx.accept_wakes.push(worker);
        ctx.trace
            .ev(ctx.now, "connect", [id as u64, handle, worker as u64, 0]);
        c.conn = Some(handle);
        c.conn_last_used = ctx.now;
        c.conn_done = false;
        c.inbuf.clear();
    }

    // ---------------------------------------------------------------------------------------
    // Drawing requests.

    fn draw_size(ctx: &mut Ctx<'_>) -> usize {
        if ctx.chance(ctx.opts.large_p) {
            return if ctx.rng.random_bool(0.3) {
                BLOCK_MAX_BYTES
            } else {
                ctx.rng.random_range(131_073..=BLOCK_MAX_BYTES)
            };
        }
        match ctx.rng.random_range(0..100) {
            0..=9 => SIZE_EDGES[ctx.rng.random_range(0..4)],
            10..=69 => ctx.rng.random_range(1..=4096),
            70..=94 => ctx.rng.random_range(4097..=32_768),
            _ => ctx.rng.random_range(32_769..=131_072),
        }
    }

    fn new_content(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let len = Self::draw_size(ctx);
        let mut bytes = vec![0u8; len];
        ctx.rng.fill_bytes(&mut bytes);
        let index = ctx.model.add_content(bytes);
        if self.hot.len() < HOT_SET_MAX {
            self.hot.push(index);
        }
        index
    }

    fn pick_content(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let n = ctx.model.contents.len();
        if n > 0 && !self.hot.is_empty() && ctx.chance(ctx.opts.hot_p) {
            return self.hot[ctx.rng.random_range(0..self.hot.len())];
        }
        if n > 0 {
            // Favour recent content: the tail of the list.
            let window = n.min(64);
            if ctx.rng.random_bool(0.7) {
                return n - 1 - ctx.rng.random_range(0..window);
            }
            return ctx.rng.random_range(0..n);
        }
        self.new_content(ctx)
    }

    fn pick_hash(&mut self, ctx: &mut Ctx<'_>) -> BlockHash {
        if ctx.model.contents.is_empty() || ctx.rng.random_bool(0.08) {
            let mut h = [0u8; 32];
            ctx.rng.fill_bytes(&mut h);
            return BlockHash(h);
        }
        let i = self.pick_content(ctx);
        ctx.model.contents[i].0
    }

    fn draw_kind(&mut self, ctx: &mut Ctx<'_>) -> Kind {
        let m = ctx.opts.mix;
        let mut r = ctx.rng.random_range(0..m.total().max(1));
        let mut take = |w: u32| {
            if r < w {
                true
            } else {
                r -= w;
                false
            }
        };
        if take(m.put) || take(m.put_hash) {
            let path_hash = ctx
                .rng
                .random_bool(f64::from(m.put_hash) / f64::from((m.put + m.put_hash).max(1)));
            let content = if ctx.chance(ctx.opts.duplicate_p) {
                self.pick_content(ctx)
            } else {
                self.new_content(ctx)
            };
            return Kind::Put { content, path_hash };
        }
        if take(m.get) {
            let hash = self.pick_hash(ctx);
            return Kind::Get {
                hash,
                if_none_match: ctx.rng.random_bool(0.05),
            };
        }
        if take(m.head) {
            return Kind::Head {
                hash: self.pick_hash(ctx),
            };
        }
        if take(m.delete) {
            return Kind::Delete {
                hash: self.pick_hash(ctx),
            };
        }
        if take(m.range) {
            let hash = self.pick_hash(ctx);
            let len = ctx.model.content_of(&hash).map_or(4096, |b| b.len() as u64);
            let a = ctx.rng.random_range(0..len + 2);
            let spec = match ctx.rng.random_range(0..3) {
                0 => RangeReq::FromTo(a, a + ctx.rng.random_range(0..len + 2)),
                1 => RangeReq::From(a),
                _ => RangeReq::Suffix(ctx.rng.random_range(0..len + 2)),
            };
            return Kind::Range { hash, spec };
        }
        if take(m.bad) {
            return self.draw_bad(ctx);
        }
        match ctx.rng.random_range(0..5) {
            0 => Kind::Health,
            1 => Kind::Stats,
            2 => Kind::Metrics,
            3 => {
                let n = ctx.rng.random_range(1..=8);
                Kind::Missing {
                    hashes: (0..n).map(|_| self.pick_hash(ctx)).collect(),
                }
            }
            _ => {
                let after = ctx.rng.random_bool(0.5).then(|| self.pick_hash(ctx));
                Kind::List {
                    after,
                    limit: ctx.rng.random_range(1..=50),
                }
            }
        }
    }

    fn draw_bad(&mut self, ctx: &mut Ctx<'_>) -> Kind {
        let auth = ctx.opts.auth_token.is_some();
        match ctx.rng.random_range(0..7) {
            0 => Kind::Garbage {
                seed: ctx.rng.random(),
            },
            1 => Kind::BadHex,
            2 => Kind::Oversize,
            3 => Kind::UnknownPath,
            4 => Kind::NotAllowed {
                hash: self.pick_hash(ctx),
            },
            5 if auth => Kind::Unauthorized {
                hash: self.pick_hash(ctx),
                delete: ctx.rng.random_bool(0.5),
            },
            _ => Kind::PutWrongHash {
                body_seed: ctx.rng.random(),
                claimed: self.pick_hash(ctx),
            },
        }
    }

    /// Serialises `kind`, registers it with the model, queues its bytes.
    fn issue(&mut self, id: usize, kind: Kind, close: bool, ctx: &mut Ctx<'_>) {
        let style = Style {
            legacy_path: ctx.rng.random_bool(0.1),
            upper_hex: ctx.rng.random_bool(0.1),
            chunked: ctx.rng.random_bool(0.1),
            close,
            http10: close && ctx.rng.random_bool(0.3),
            chunk_bytes: ctx.rng.random_range(1..=65_536),
        };
        let token = ctx.opts.auth_token.as_deref();
        let mut ends_conn = close;
        let mut write = None;
        let mut read = None;
        let mut reads = Vec::new();
        let bytes = match &kind {
            Kind::Put { content, path_hash } => {
                let (hash, body) = &ctx.model.contents[*content];
                let hash = *hash;
                if let Some(i) = SIZE_EDGES.iter().position(|&e| e == body.len()) {
                    self.edges_put[i] = true;
                }
                let b = http_client::put(body, path_hash.then_some(&hash), &style, token);
                write = Some(ctx.model.begin_write(hash));
                b
            }
            Kind::PutWrongHash { body_seed, claimed } => {
                let body = body_seed.to_le_bytes().repeat(3);
                http_client::put(&body, Some(claimed), &style, token)
            }
            Kind::Get {
                hash,
                if_none_match,
            } => {
                read = Some(ctx.model.begin_read(*hash));
                let extra = if *if_none_match {
                    vec![format!("If-None-Match: \"{}\"", hash.to_hex())]
                } else {
                    Vec::new()
                };
                http_client::bodyless(
                    "GET",
                    &http_client::read_path(hash, &style),
                    &style,
                    None,
                    &extra,
                )
            }
            Kind::Head { hash } => {
                read = Some(ctx.model.begin_read(*hash));
                http_client::bodyless(
                    "HEAD",
                    &http_client::read_path(hash, &style),
                    &style,
                    None,
                    &[],
                )
            }
            Kind::Range { hash, spec } => {
                read = Some(ctx.model.begin_read(*hash));
                http_client::bodyless(
                    "GET",
                    &http_client::read_path(hash, &style),
                    &style,
                    None,
                    &[spec.header()],
                )
            }
            Kind::Delete { hash } => {
                write = Some(ctx.model.begin_write(*hash));
                http_client::bodyless(
                    "DELETE",
                    &http_client::hash_path(hash, &style),
                    &style,
                    token,
                    &[],
                )
            }
            Kind::Unauthorized { hash, delete } => {
                let wrong: &[u8] = b"not-the-token";
                let auth = ctx.rng.random_bool(0.5).then_some(wrong);
                if *delete {
                    http_client::bodyless(
                        "DELETE",
                        &http_client::hash_path(hash, &style),
                        &style,
                        auth,
                        &[],
                    )
                } else {
                    let style = Style {
                        chunked: false,
                        ..style
                    };
                    http_client::put(b"unauthorized", None, &style, auth)
                }
            }
            Kind::Garbage { seed } => {
                ends_conn = true;
                let mut g = seed.to_le_bytes().repeat(4);
                g.push(b' ');
                g.extend_from_slice(b"\r\n\r\n");
                g
            }
            Kind::BadHex => http_client::bodyless("GET", "/block/zz", &style, None, &[]),
            Kind::Oversize => {
                ends_conn = true;
                // Only the head: the server must answer 413 without reading a body.
                http_client::bodyless(
                    "PUT",
                    "/block",
                    &style,
                    token,
                    &[format!("Content-Length: {}", BLOCK_MAX_BYTES + 1)],
                )
            }
            Kind::UnknownPath => http_client::bodyless("GET", "/nowhere", &style, None, &[]),
            Kind::NotAllowed { hash } => http_client::bodyless(
                "POST",
                &http_client::hash_path(hash, &style),
                &style,
                None,
                &["Content-Length: 0".to_string()],
            ),
            Kind::Health => http_client::bodyless("GET", "/health", &style, None, &[]),
            Kind::Missing { hashes } => {
                let mut body = Vec::new();
                for h in hashes {
                    reads.push(ctx.model.begin_read(*h));
                    body.extend_from_slice(h.to_hex().as_bytes());
                    let eol: &[u8] = if ctx.rng.random_bool(0.5) {
                        b"\n"
                    } else {
                        b"\r\n"
                    };
                    body.extend_from_slice(eol);
                }
                let mut b = http_client::bodyless(
                    "POST",
                    "/blocks/missing",
                    &style,
                    None,
                    &[format!("Content-Length: {}", body.len())],
                );
                b.extend_from_slice(&body);
                b
            }
            Kind::List { after, limit } => {
                let mut path = format!("/blocks?limit={limit}");
                if let Some(a) = after {
                    path.push_str(&format!("&after={}", a.to_hex()));
                }
                http_client::bodyless("GET", &path, &style, None, &[])
            }
            Kind::Stats => http_client::bodyless("GET", "/stats", &style, None, &[]),
            Kind::Metrics => http_client::bodyless("GET", "/metrics", &style, None, &[]),
        };
        self.serial += 1;
        ctx.trace.ev(
            ctx.now,
            "request",
            [id as u64, self.serial, kind.code(), kind.target(ctx.model)],
        );
        let c = &mut self.clients[id];
        c.out.extend_from_slice(&bytes);
        c.waiting.push_back(Req {
            serial: self.serial,
            kind,
            write,
            read,
            reads,
            started_at: ctx.now,
            ends_conn,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle for one answer.

fn retry_after_ok(resp: &Response) -> Result<(), String> {
    if resp.status == 503 && resp.header("Retry-After").is_none() {
        return Err("503 without Retry-After".into());
    }
    Ok(())
}

/// A `503` because storage did not answer by the request timeout (`Worker::answer_unconfirmed`)
/// needs storage that stalls that long. Nothing in a simulated world does (its slowest disk
/// op is about a second, and a node that crashes drops its connections instead): such an
/// answer is a reply the controller lost or never sent.
fn storage_timeout_explained(resp: &Response) -> Result<(), String> {
    if resp.status == 503 && resp.body.starts_with(b"storage did not") {
        return Err(
            "answered 503 for storage that did not answer within the request timeout, \
                    though nothing stalls storage that long: a lost reply"
                .into(),
        );
    }
    Ok(())
}

/// Checks one answer against the request and the model, and updates the model.
pub fn check(req: &Req, resp: &Response, ctx: &mut Ctx<'_>) -> Result<(), String> {
    retry_after_ok(resp)?;
    storage_timeout_explained(resp)?;
    let s = resp.status;
    match &req.kind {
        Kind::Put { content, .. } => {
            let hash = ctx.model.contents[*content].0;
            let t = req.write.expect("a PUT holds a write ticket");
            let end = match s {
                200 | 201 => {
                    let hex = hash.to_hex();
                    if resp.body != hex.as_bytes() {
                        return Err(format!("PUT body is not the address {hex}"));
                    }
                    let loc = format!("/block/{hex}");
                    if resp.header("Location") != Some(loc.as_str()) {
                        return Err("PUT without the right Location".into());
                    }
                    let prior = if s == 201 {
                        ctx.model.fresh_copy(&hash);
                        Known::Absent
                    } else {
                        Known::Present
                    };
                    ctx.model
                        .end_write(t, WriteEnd::Effect(Known::Present), Some(prior));
                    return take_violation(ctx);
                }
                500 => match explain_write_500(resp, ctx) {
                    Some(end) => end,
                    None => return Err(format!("unexplained 500: {}", body_text(resp))),
                },
                503 | 507 | 408 => WriteEnd::NoEffect,
                _ => {
                    ctx.model.end_write(t, WriteEnd::NoEffect, None);
                    return Err("unexpected status for a PUT".into());
                }
            };
            ctx.model.end_write(t, end, None);
            Ok(())
        }
        Kind::Delete { .. } => {
            let t = req.write.expect("a DELETE holds a write ticket");
            match s {
                204 | 404 => {
                    if !resp.body.is_empty() && s == 204 {
                        return Err("204 with a body".into());
                    }
                    let prior = if s == 204 {
                        Known::Present
                    } else {
                        Known::Absent
                    };
                    ctx.model
                        .end_write(t, WriteEnd::Effect(Known::Absent), Some(prior));
                    take_violation(ctx)
                }
                500 => match explain_write_500(resp, ctx) {
                    Some(end) => {
                        ctx.model.end_write(t, end, None);
                        Ok(())
                    }
                    None => {
                        ctx.model.end_write(t, WriteEnd::Unknown, None);
                        Err(format!("unexplained 500 for a DELETE: {}", body_text(resp)))
                    }
                },
                503 | 408 => {
                    ctx.model.end_write(t, WriteEnd::NoEffect, None);
                    Ok(())
                }
                _ => {
                    ctx.model.end_write(t, WriteEnd::Unknown, None);
                    Err(format!(
                        "unexpected status for a DELETE: {}",
                        body_text(resp)
                    ))
                }
            }
        }
        Kind::Get {
            hash,
            if_none_match,
        } => {
            let t = req.read.expect("a GET holds a read ticket");
            match s {
                200 => {
                    check_block_body(hash, &resp.body, ctx)?;
                    saw(&t, Known::Present, ctx)
                }
                304 if *if_none_match => saw(&t, Known::Present, ctx),
                404 => saw(&t, Known::Absent, ctx),
                500 => explain_read_500(&t, resp, ctx),
                503 | 408 => Ok(()),
                _ => Err("unexpected status for a GET".into()),
            }
        }
        Kind::Head { hash } => {
            let t = req.read.expect("a HEAD holds a read ticket");
            match s {
                200 => {
                    if let Some(bytes) = ctx.model.content_of(hash) {
                        if resp.content_length() != Some(bytes.len() as u64) {
                            return Err("HEAD Content-Length is not the block length".into());
                        }
                    }
                    saw(&t, Known::Present, ctx)
                }
                404 => saw(&t, Known::Absent, ctx),
                503 | 408 => Ok(()),
                _ => Err("unexpected status for a HEAD".into()),
            }
        }
        Kind::Range { hash, spec } => {
            let t = req.read.expect("a range GET holds a read ticket");
            let content = ctx.model.content_of(hash).map(<[u8]>::to_vec);
            match (s, content) {
                (200, _) => {
                    check_block_body(hash, &resp.body, ctx)?;
                    saw(&t, Known::Present, ctx)
                }
                (206, Some(bytes)) => {
                    let Some(Some((a, b))) = spec.expect(bytes.len() as u64) else {
                        return Err(format!("206 for {spec:?} of {} bytes", bytes.len()));
                    };
                    if resp.body != bytes[a as usize..=b as usize] {
                        return Err(format!("206 body is not bytes {a}-{b} of the block"));
                    }
                    let cr = format!("bytes {a}-{b}/{}", bytes.len());
                    if resp.header("Content-Range") != Some(cr.as_str()) {
                        return Err(format!("Content-Range is not {cr}"));
                    }
                    saw(&t, Known::Present, ctx)
                }
                (416, Some(bytes)) => {
                    if spec.expect(bytes.len() as u64) != Some(None) {
                        return Err(format!("416 for {spec:?} of {} bytes", bytes.len()));
                    }
                    saw(&t, Known::Present, ctx)
                }
                (404, _) => saw(&t, Known::Absent, ctx),
                (500, _) => explain_read_500(&t, resp, ctx),
                (503 | 408, _) => Ok(()),
                _ => Err(format!("unexpected status for a range GET {spec:?}")),
            }
        }
        // A body with Content-Length streams into a slot before its hash is known: a full
        // store (507) or a failed write (500) may come first.
        Kind::PutWrongHash { .. } => match s {
            507 => Ok(()),
            500 if explain_write_500(resp, ctx).is_some() => Ok(()),
            _ => expect_one(s, 422),
        },
        Kind::Unauthorized { .. } => expect_one(s, 401),
        Kind::BadHex => expect_one(s, 400),
        Kind::Oversize => expect_one(s, 413),
        Kind::UnknownPath => expect_one(s, 404),
        Kind::NotAllowed { .. } => {
            expect_one(s, 405)?;
            if s == 405 && resp.header("Allow").is_none() {
                return Err("405 without Allow".into());
            }
            Ok(())
        }
        Kind::Garbage { .. } => {
            if (400..500).contains(&s) || s == 501 || s == 505 || s == 503 {
                Ok(())
            } else {
                Err("garbage was not refused".into())
            }
        }
        Kind::Health => {
            if s == 200 && resp.body != b"ok" {
                return Err("/health body is not ok".into());
            }
            expect_one(s, 200)
        }
        Kind::Stats => {
            if s == 200 && !resp.body.starts_with(b"{") {
                return Err("/stats is not JSON".into());
            }
            expect_one(s, 200)
        }
        Kind::Metrics => expect_one(s, 200),
        Kind::Missing { hashes } => {
            expect_one(s, 200)?;
            if s == 200 {
                check_missing(hashes, &req.reads, &resp.body, ctx)?;
            }
            Ok(())
        }
        Kind::List { after, limit } => {
            expect_one(s, 200)?;
            if s == 200 {
                check_list(after.as_ref(), *limit, &resp.body, ctx)?;
            }
            Ok(())
        }
    }
}

/// `POST /blocks/missing`: a subsequence of the input, in order; certain states must agree.
fn check_missing(
    hashes: &[BlockHash],
    reads: &[ReadTicket],
    body: &[u8],
    ctx: &mut Ctx<'_>,
) -> Result<(), String> {
    let mut listed = Vec::new();
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        listed.push(BlockHash::from_hex(line).ok_or("a missing line is not a hash")?);
    }
    let mut next = 0;
    let mut missing = vec![false; hashes.len()];
    for h in &listed {
        let at = hashes[next..]
            .iter()
            .position(|x| x == h)
            .ok_or("not a subsequence")?;
        missing[next + at] = true;
        next += at + 1;
    }
    for (i, t) in reads.iter().enumerate() {
        // The engine answers every line; a hash listed twice is judged by its first line.
        if hashes.iter().position(|x| *x == t.hash) != Some(i) {
            continue;
        }
        let seen = if missing[i] {
            Known::Absent
        } else {
            Known::Present
        };
        saw(t, seen, ctx)?;
    }
    Ok(())
}

/// `GET /blocks`: ascending, after `after`, at most `limit` lines, every line a known block.
fn check_list(
    after: Option<&BlockHash>,
    limit: u16,
    body: &[u8],
    ctx: &mut Ctx<'_>,
) -> Result<(), String> {
    let mut previous = after.copied();
    let mut count = 0usize;
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let text = std::str::from_utf8(line).map_err(|_| "a listing line is not text")?;
        let (hex, len) = text
            .split_once(' ')
            .ok_or("a listing line without a length")?;
        let hash = BlockHash::from_hex(hex.as_bytes()).ok_or("a listing line without a hash")?;
        let len: usize = len
            .parse()
            .map_err(|_| "a listing length is not a number")?;
        if previous.is_some_and(|p| hash <= p) {
            return Err(format!(
                "listing not ascending after {previous:?} at {hash}"
            ));
        }
        match ctx.model.content_of(&hash) {
            Some(bytes) if bytes.len() == len => {}
            Some(bytes) => {
                return Err(format!(
                    "{hash} listed with {len} bytes, it has {}",
                    bytes.len()
                ))
            }
            None => return Err(format!("{hash} listed, but no client ever stored it")),
        }
        previous = Some(hash);
        count += 1;
    }
    if count > usize::from(limit) {
        return Err(format!("{count} lines for limit {limit}"));
    }
    Ok(())
}

fn take_violation(ctx: &mut Ctx<'_>) -> Result<(), String> {
    match ctx.model.violations.pop() {
        Some(v) => Err(v),
        None => Ok(()),
    }
}

fn expect_one(status: u16, want: u16) -> Result<(), String> {
    if status == want || status == 503 || status == 408 {
        Ok(())
    } else {
        Err(format!("expected {want}"))
    }
}

fn body_text(resp: &Response) -> String {
    String::from_utf8_lossy(&resp.body[..resp.body.len().min(80)])
        .trim()
        .to_string()
}

/// A 200 body must be the block: it hashes to the address (never another block's bytes).
fn check_block_body(hash: &BlockHash, body: &[u8], ctx: &mut Ctx<'_>) -> Result<(), String> {
    if BlockHash::of(body) != *hash {
        return Err(format!(
            "GET {} returned {} bytes that hash to {} (foreign or corrupt bytes)",
            hash,
            body.len(),
            BlockHash::of(body)
        ));
    }
    if let Some(expected) = ctx.model.content_of(hash) {
        assert_eq!(expected, body, "content addressing: same hash, same bytes");
    }
    Ok(())
}

/// A read saw the address `Present` or `Absent`: compare with the model where it is certain.
fn saw(t: &ReadTicket, seen: Known, ctx: &mut Ctx<'_>) -> Result<(), String> {
    let expected = ctx.model.read_expectation(t);
    if expected != Known::Uncertain {
        ctx.model.checked_reads += 1;
    }
    if expected != Known::Uncertain && expected != seen {
        let what = if seen == Known::Absent {
            "an acknowledged block is missing"
        } else {
            "a deleted (or never stored) block was served"
        };
        return Err(format!("{}: {what} (model: {expected:?})", t.hash));
    }
    ctx.model.observe(t, seen);
    Ok(())
}

fn explain_read_500(t: &ReadTicket, resp: &Response, ctx: &mut Ctx<'_>) -> Result<(), String> {
    let text = body_text(resp);
    let hash = &t.hash;
    let damaged = t.maybe_corrupt || ctx.model.maybe_corrupt(hash);
    if damaged || ctx.explain.stored_corrupt(hash) || ctx.explain.read_fault() {
        return Ok(());
    }
    let entry = ctx
        .explain
        .image
        .lock()
        .expect("image lock")
        .committed
        .index
        .get(hash)
        .copied();
    Err(format!(
        "unexplained 500 ({text}) for {hash}: no read fault injected and the stored bytes are \
        intact (index entry now: {entry:?})"
    ))
}

/// Why a PUT or DELETE may get a 500, and what it then did: a failed data write stored
/// nothing, nor did a write a latched controller refused; but a batch committed before its
/// index failed to become durable (in the background) stays committed, so its writes may have
/// happened.
fn explain_write_500(resp: &Response, ctx: &mut Ctx<'_>) -> Option<WriteEnd> {
    let text = body_text(resp);
    if text.starts_with("write to the data file failed") {
        return ctx.explain.write_fault().then_some(WriteEnd::NoEffect);
    }
    if !ctx.explain.latched {
        return None;
    }
    Some(if ctx.explain.durable_failed {
        WriteEnd::Unknown
    } else {
        WriteEnd::NoEffect
    })
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
