//! A simulated client's connection: vanishing mid-request, reading and parsing answers (each
//! handed to the oracle), settling what a closed connection left unanswered, sending the bytes
//! of a batch in seeded fragments, and (re)connecting to a worker.
//!
//! Owns: one client's connection state ([`Client`]). Never does: decide what to ask (that is
//! [`super::draw`]), or judge an answer (that is [`crate::oracle`]). Invariant: a client has at
//! most one connection, and its `waiting` requests are answered in order on it.

use std::collections::VecDeque;

use rand::RngExt;

use super::{Ctx, Workload, MS, PIPELINE_MAX, US};
use crate::failure::Failure;
use crate::http_client::parse_response;
use crate::model::WriteEnd;
use crate::oracle::answer::{check, Checker, Sender};
use crate::oracle::explain::OwnIo;

/// Share of a slow sender's pauses that outlast the request timeout.
const STALL_PAST_TIMEOUT_P: f64 = 0.3;
use crate::request::{Edge, Kind, Req};

#[derive(Debug)]
pub struct Client {
    pub id: usize,
    pub conn: Option<u64>,
    pub(super) conn_last_used: u64,
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    pub waiting: VecDeque<Req>,
    pub(super) inbuf: Vec<u8>,
    pub next_at: Option<u64>,
    pub(super) slow_sender: bool,
    pub(super) slow_reader: bool,
    /// An answer said `Connection: close`: nothing more is answered on this connection.
    pub(super) conn_done: bool,
    pub(super) retry: Vec<Kind>,
}

impl Client {
    pub(super) fn new(id: usize) -> Client {
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

impl Workload {
    pub(super) fn maybe_vanish(&mut self, id: usize, ctx: &mut Ctx<'_>) -> bool {
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

    pub(super) fn read(&mut self, id: usize, ctx: &mut Ctx<'_>) {
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
            let c = &self.clients[id];
            let slow = c.slow_sender || c.slow_reader;
            let worker = ctx
                .net
                .get(handle)
                .expect("the connection just answered")
                .worker;
            let mut checker = Checker {
                model: &mut *ctx.model,
                explain: &mut ctx.explain,
                sender: if slow { Sender::Slow } else { Sender::Prompt },
                own: OwnIo {
                    worker,
                    since_ns: req.started_at,
                },
            };
            if let Err(e) = check(&req, &resp, &mut checker) {
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
    pub(super) fn check_closed(&mut self, id: usize, ctx: &mut Ctx<'_>) {
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

    pub(super) fn send(&mut self, id: usize, ctx: &mut Ctx<'_>) {
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
            let timeout_ns = ctx.opts.request_timeout.as_nanos() as u64;
            let gap = if c.slow_sender && !ctx.healed && ctx.chance(STALL_PAST_TIMEOUT_P) {
                // Hot spot: a slow sender stalls past the request timeout (a 408 is due).
                timeout_ns + timeout_ns / 5
            } else if c.slow_sender && !ctx.healed {
                let hi = (timeout_ns / 3).max(MS);
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

    pub(super) fn start_batch(&mut self, id: usize, ctx: &mut Ctx<'_>) {
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
            let ends = matches!(
                kind,
                Kind::Garbage { .. }
                    | Kind::Oversize
                    | Kind::ChunkedOverLimit
                    | Kind::HeadLimit {
                        edge: Edge::OverByOne
                    }
            );
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

    pub(super) fn ensure_conn(&mut self, id: usize, ctx: &mut Ctx<'_>) {
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
}
