//! One worker's state machine: connections, HTTP requests, block pools, pending replies.
//!
//! Sans-IO (DESIGN.md): the worker emits [`Op`]s through [`Worker::poll_io`] and controller
//! messages through [`Worker::drain_messages`]; it takes completions, controller replies and time
//! as input. It never blocks, reads no clock and performs no system call.
//!
//! # Driving a worker
//!
//! Input, each with the `now` it happened at:
//! - [`Worker::handle_completion`] for every completion of an op the worker emitted (in any
//!   order; each exactly once, with the buffer the op carried);
//! - [`Worker::handle_message`] for every reply the controller sent this worker;
//! - [`Worker::tick`] once per loop turn, and when [`Worker::poll_timeout`] has come;
//! - [`Worker::serve_reads`] once per loop turn with the worker's index view (GET and HEAD
//!   look their address up there; the server releases the view before it waits).
//!
//! Output, drained after input (before the driver waits again):
//! - [`Worker::poll_io`] until `None`: the ops to submit (accept, recv, send, read, write,
//!   cancel, close);
//! - [`Worker::drain_messages`]: the controller requests, as many as the queue takes (a full
//!   queue is back-pressure; the rest stay for the next turn);
//! - [`Worker::poll_timeout`]: when to call `tick` if nothing else happens.
//!
//! A loop turn of both drivers (`server/src/ring.rs`, `sim/src/world/workers.rs`): hand in
//! completions and controller replies; `set_health` / `set_snapshot` when the driver has
//! new figures; `tick(now)`; `serve_reads(now, view)`; drain `poll_io` and `drain_messages`; wait until
//! `poll_timeout` or the next input. Shutdown: `begin_shutdown`, then the same loop until
//! `is_drained`. The simulator calls [`Worker::check_invariants`] after every step.
//!
//! # Where things live
//!
//! `mod.rs` holds the [`Worker`] and its entry points; one file per responsibility:
//! `config` (limits), `ops` (the op table), `conn` (a connection and its `ConnState`),
//! `request` (a request's `Route` and `Stage`), `lifecycle` (accept, send, close), `recv`
//! (receives, heads), `router` (head to route), `body`, `stream` (streamed PUT), `put`,
//! `slots` (pool slots and their waiters), `get` (reads), `view` (lookups in the index view,
//! the reader horizon), `index`
//! (DELETE, missing, list), `ipfs` (the gateway's answers), `respond` (response writing),
//! `budget` (the buffer budget), `buffers` (buffer pools), `timers` (deadlines), `report`
//! (stats, health), `invariants`.
//!
//! Invariants:
//! - a connection handles one request at a time, so pipelined requests are answered in order;
//! - a buffer moved into an operation is not touched until its completion returns it;
//! - a connection slot is reused only after every operation on it has completed and the
//!   driver closed it;
//! - a slot taken from the pool is written, then either occupied (controller) or put back;
//! - a read of a slot looked up in a view of version `v` keeps `v` "in flight" until the read
//!   completes, and the worker reports the lowest version still in use (`ReaderHorizon`) so
//!   the controller never reuses a slot a GET may still find or read (SPEC guarantee 4).
//!
//! Must never: block, read a clock, or touch a buffer an op in flight owns.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

use crate::buddy::Slot;
use crate::clock::Instant;
use crate::gateway::{self, IpfsRequest, Negotiated};
use crate::hash::{BlockHash, Hex, HASH_HEX_LEN};
use crate::health::{self, Observations, Unhealthy};
use crate::http::{
    self, BodyFraming, ChunkedDecoder, HeadBuffers, HeadParse, HttpError, Method, RangeSpec,
    RequestHead, Status,
};
use crate::io::{Completion, ConnHandle, Errno, Op, OpId};
use crate::log_limit::LogLimit;
use crate::message::{
    ErrorCode, Location, OccupyOutcome, ReleaseOutcome, RequestId, ToController, ToWorker,
    WorkerId, LIST_LIMIT_MAX,
};
use crate::meta::MetaError;
use crate::pool::Pools;
use crate::size_class::{SizeClass, BLOCK_LEN_MAX_BYTES, CLASS_COUNT};
use crate::stats::{self, StatsSnapshot, WorkerStats};

mod body;
mod budget;
mod buffers;
mod config;
mod conn;
mod get;
mod index;
mod invariants;
mod ipfs;
mod lifecycle;
mod ops;
mod put;
mod recv;
mod report;
mod request;
mod respond;
mod router;
mod slots;
mod stream;
mod timers;
mod verify;
mod view;

use budget::{Budget, Grant, GrantKind, Turn};
use buffers::BufferPools;
pub use config::{
    pool_bytes_max, VerifyReads, WorkerConfig, BUFFER_BUDGET_MIN_BYTES, POOL_BYTES_MAX_CAP,
};
use conn::*;
use get::*;
use lifecycle::FileOutcome;
use ops::*;
use request::*;
use respond::After;
use slots::SlotSupply;
pub use view::AfterServing;
use view::ReadHorizon;

/// Room kept in front of a GET's read buffer for the response head (no copy of the body): a
/// `/block/` head, or the longest `/ipfs/` head with its CAR prefix.
const HEAD_ROOM_BYTES: usize = 1024;

const _: () = assert!(gateway::RESPONSE_PREFIX_BYTES_MAX <= HEAD_ROOM_BYTES);

/// Piece size of a streamed PUT body.
const STREAM_PIECE_BYTES: usize = 64 * 1024;

/// Capacity of a large buffer: a whole block plus room for the response head.
const LARGE_BUF_BYTES: usize = HEAD_ROOM_BYTES + BLOCK_LEN_MAX_BYTES as usize;

/// How long a lingering close waits for the rest of a refused body.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest oversize body (413) drained before closing; larger ones close at once.
const OVERSIZE_DISCARD_MAX_BYTES: u64 = 4 << 20;

/// Receive size (and buffer) of a connection between requests.
const IDLE_RECV_BYTES: usize = 8192;

/// Most hashes in one `POST /blocks/missing`.
pub const MISSING_HASHES_MAX: usize = 10_000;

/// Largest `POST /blocks/missing` body: 10,000 lines of 64 hex characters and CRLF.
const MISSING_BODY_MAX_BYTES: u64 = (MISSING_HASHES_MAX * (HASH_HEX_LEN + 2)) as u64;

/// Body of a refused request skipped to keep the connection usable; larger ones close it.
const DISCARD_MAX_BYTES: u64 = 1 << 20;

/// Connections over the limit that may be waiting for their 503 at once.
const REJECTING_MAX: usize = 64;

/// Recycled buffers kept per kind.
const BUFFERS_KEPT_MAX: usize = 256;

/// Pooled receive buffers of requests in progress kept per worker (~80 KiB each by default).
const RECV_BUFS_KEPT_MAX: usize = 16;

/// Delay before accepting again after EMFILE and similar.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(10);

/// Delay before a class that came back short after a `Reclaim` is asked again (the space it
/// waits for comes back over some cycles; asking every loop turn spins worker and controller).
const SLOT_RETRY_DELAY: Duration = Duration::from_millis(1);

/// Longest an upload waits for a lane before it goes on in small pieces (it takes a lane
/// later, between pieces, when one is free). Short: the lanes may be held by clients that
/// send a byte now and then, and a normal upload must not queue behind them.
const LANE_WAIT_MAX: Duration = Duration::from_millis(20);

/// What a pending controller request belongs to.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    conn: ConnRef,
    /// When the request went out (for the time-waiting-for-the-controller figure).
    sent: Instant,
}

pub struct Worker {
    config: WorkerConfig,
    /// The connections, by slot.
    conns: ConnTable,
    /// Every I/O operation in flight, and those not yet handed to the driver.
    ops: OpTable,
    /// Requests to the controller and the replies awaited.
    link: ControllerLink,
    /// The block pools and the PUTs waiting for a slot.
    slots: SlotSupply,
    /// The accept op, or when to try again.
    accept: Acceptor,
    /// Lookups waiting for the index view, and the reads that keep a view in use.
    reads: ReadHorizon,
    /// Recycled buffers.
    bufs: BufferPools,
    /// The buffer budget: the connections' grants and the requests waiting for one.
    budget: Budget,
    /// The latest `now` any input carried (stamps controller requests).
    now_seen: Instant,
    /// No connection deadline comes before this (see `poll_timeout`).
    deadline_cache: Instant,
    shutting_down: bool,
    stats: WorkerStats,
    snapshot: Arc<StatsSnapshot>,
    /// The driver's watchdog verdict over the whole node (see [`Worker::set_health`]).
    node_health: Option<Unhealthy>,
    /// Failed verifications are logged at most once a second (each is counted).
    corrupt_log: LogLimit,
    /// The known bug `stale_read_error` only (always `Clear` without the switch).
    stale_read_error: get::StaleReadError,
}

/// The connection slots: a slot's generation grows each time it is reused, so a stale
/// `ConnRef` finds nothing.
#[derive(Default)]
struct ConnTable {
    entries: Vec<Option<Conn>>,
    /// Per slot, the generation of its current (or last) connection.
    generations: Vec<u32>,
    /// Slots without a connection.
    free: Vec<usize>,
    /// Connections admitted (within `max_connections`).
    open: usize,
    /// Connections over the limit, waiting for their 503 (at most `REJECTING_MAX`).
    over_limit: usize,
}

/// The worker's side of the controller queue.
struct ControllerLink {
    /// Messages not yet taken by the driver (`drain_messages`).
    out: VecDeque<ToController>,
    /// Requests awaiting a reply, by request id (ids grow: the first is the oldest).
    pending: BTreeMap<RequestId, Waiter>,
    /// The id of the next request.
    next_request: RequestId,
}

/// The accept op: at most one in flight; after an error that is not transient, the next
/// waits until `retry_at`.
#[derive(Default)]
struct Acceptor {
    op: Option<OpId>,
    retry_at: Option<Instant>,
}

impl Worker {
    pub fn new(config: WorkerConfig) -> Worker {
        assert!(config.max_connections >= 1);
        assert!(config.max_header_bytes >= 256 && config.recv_chunk_bytes >= 1024);
        assert!(
            config.buffer_budget_bytes >= BUFFER_BUDGET_MIN_BYTES,
            "buffer budget of {} bytes is below the minimum",
            config.buffer_budget_bytes
        );
        let recv = config.recv_chunk_bytes + 2 * IDLE_RECV_BYTES;
        assert!(
            config.buffer_budget_bytes >= LARGE_BUF_BYTES + STREAM_PIECE_BYTES + 2 * recv,
            "the buffer budget holds a buffered body and an upload's lane"
        );
        let pools = Pools::new(config.pool_targets, config.pool_bytes_max);
        Worker {
            conns: ConnTable::default(),
            ops: OpTable::default(),
            link: ControllerLink {
                out: VecDeque::new(),
                pending: BTreeMap::new(),
                next_request: 1,
            },
            slots: SlotSupply {
                pools,
                waiters: (0..CLASS_COUNT).map(|_| VecDeque::new()).collect(),
                reclaim_seen: [false; CLASS_COUNT],
                retry_at: [None; CLASS_COUNT],
                next_decay: Instant::ZERO,
            },
            accept: Acceptor::default(),
            now_seen: Instant::ZERO,
            deadline_cache: Instant::ZERO,
            shutting_down: false,
            reads: ReadHorizon::new(),
            bufs: BufferPools {
                head_scratch: Vec::with_capacity(HEAD_ROOM_BYTES),
                ..BufferPools::default()
            },
            budget: Budget::new(config.buffer_budget_bytes, recv),
            stats: WorkerStats::default(),
            snapshot: Arc::new(StatsSnapshot::default()),
            node_health: None,
            corrupt_log: LogLimit::new(Duration::from_secs(1)),
            stale_read_error: get::StaleReadError::Clear,
            config,
        }
    }

    pub fn id(&self) -> WorkerId {
        self.config.id
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Output: the next operation for the driver to submit; call until `None` after every
    /// input. The op owns its buffer until its completion comes back.
    #[must_use]
    pub fn poll_io(&mut self) -> Option<(OpId, Op)> {
        self.ops.pop_out()
    }

    /// Output: gives queued controller messages to `push`, in order, until it refuses one
    /// (queue full: the rest wait for the next call; never dropped).
    pub fn drain_messages(&mut self, mut push: impl FnMut(&ToController) -> bool) {
        while let Some(m) = self.link.out.front() {
            if !push(m) {
                break;
            }
            self.link.out.pop_front();
        }
    }

    pub fn messages_waiting(&self) -> usize {
        self.link.out.len()
    }

    /// When the worker next needs `tick` without other input.
    ///
    /// Deadlines are checked lazily: `tick` scans the connections only when the cached earliest
    /// deadline has come, and every event lowers the cache to `now + min_timeout / 2` (any
    /// deadline an event creates is at least `min_timeout` away, except an upload's wait for a
    /// lane, which lowers the cache itself). So a busy worker scans its
    /// connections a few times per `min_timeout`, not once per loop turn.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let connections = self.conns.open + self.conns.over_limit > 0;
        let deadlines = connections.then_some(self.deadline_cache);
        // A worker shutting down neither accepts nor refills: a pending retry of either would
        // be a deadline no tick clears, and the driver's loop would spin on it.
        let retries = if self.shutting_down {
            [None, None]
        } else {
            let slot = self.slots.retry_at.iter().flatten().min().copied();
            [self.accept.retry_at, slot]
        };
        retries.into_iter().chain([deadlines]).flatten().min()
    }

    /// Input: time. Timeouts, pool refills, the accept op, and the reader horizon. Call every
    /// loop turn, and when [`Worker::poll_timeout`] has come; then drain the outputs.
    pub fn tick(&mut self, now: Instant) {
        self.now_seen = self.now_seen.max(now);
        if !self.shutting_down && self.accept.op.is_none() {
            let due = self.accept.retry_at.is_none_or(|t| now >= t);
            if due {
                self.accept.retry_at = None;
                self.accept.op = Some(self.submit(None, OpKind::Accept, Op::Accept));
            }
        }
        if now >= self.deadline_cache {
            self.check_timeouts(now);
            let far = now + self.min_timeout();
            // Never in the past: a deadline that stayed would otherwise spin the loop.
            let floor = now + Duration::from_millis(1);
            self.deadline_cache = self.earliest_deadline().unwrap_or(far).max(floor);
        }
        let soon = now + self.min_timeout() / 2;
        self.deadline_cache = self.deadline_cache.min(soon);
        if now >= self.slots.next_decay {
            self.slots.next_decay = now + crate::pool::POOL_DECAY_INTERVAL;
            self.slots.pools.decay();
        }
        self.refill_pools();
        self.report_horizon();
    }

    /// Stop accepting; close idle connections; let requests in progress finish, then close.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        if let Some(id) = self.accept.op {
            self.submit(None, OpKind::Cancel, Op::Cancel { target: id });
        }
        for index in 0..self.conns.entries.len() {
            let Some(conn) = self.conns.entries[index].as_mut() else {
                continue;
            };
            conn.keep_alive = false;
            let idle = conn.active.is_none()
                && conn.head_started.is_none()
                && conn.send_op.is_none()
                && conn.outq.is_empty();
            if idle {
                let r = self.conn_ref(index);
                self.close_conn(r);
            }
        }
    }

    /// True when shutdown has finished: no connection, no operation, no pending reply.
    pub fn is_drained(&self) -> bool {
        self.shutting_down && self.conns.open + self.conns.over_limit == 0 && self.ops.is_idle()
    }

    /// Input: the completion of an op from [`Worker::poll_io`]. Every op completes exactly
    /// once, cancelled ones included (`ECANCELED`), and hands its buffer back; then drain
    /// `poll_io` and `drain_messages`. Panics on an op id that is not in flight.
    pub fn handle_completion(&mut self, now: Instant, c: Completion) {
        self.now_seen = self.now_seen.max(now);
        let Some((conn, kind)) = self.ops.retire(c.op) else {
            panic!("completion for an unknown op {:?}", c.op);
        };
        match kind {
            OpKind::Accept => self.on_accept(now, c),
            OpKind::Cancel => {}
            OpKind::Close => self.on_closed(conn.expect("close has a connection")),
            OpKind::Recv => self.on_recv(now, conn.expect("recv has a connection"), c),
            OpKind::Send => self.on_send(now, conn.expect("send has a connection"), c),
            OpKind::File => self.on_file(now, conn.expect("file op has a connection"), c),
        }
    }

    /// Removes a pending controller request, counting how long it waited.
    fn take_pending(&mut self, now: Instant, request: RequestId) -> Option<Waiter> {
        let w = self.link.pending.remove(&request)?;
        self.stats.controller_wait_ns += now.saturating_since(w.sent).as_nanos() as u64;
        Some(w)
    }

    /// Input: a controller reply to this worker (slots, addresses, occupy and release
    /// outcomes, list items, errors, `Reclaim`). A reply whose request was answered
    /// meanwhile (timed out, closed) is dropped. Then drain `poll_io` and `drain_messages`.
    pub fn handle_message(&mut self, now: Instant, message: ToWorker) {
        self.now_seen = self.now_seen.max(now);
        match message {
            ToWorker::Allocated { request, slot } => {
                let class = self
                    .slots
                    .pools
                    .class_of_request(request)
                    .expect("allocate in flight");
                assert_eq!(class, slot.class, "controller sent a slot of another class");
                self.slots.pools.put_back(slot);
                self.serve_slot_waiters(now, class);
            }
            ToWorker::AllocateDone {
                request,
                class,
                requested,
                granted,
            } => {
                self.slots.pools.done(class, request, requested, granted);
                self.serve_slot_waiters(now, class);
                let short = granted < requested && self.slots.pools.free_count(class) == 0;
                let reclaimed = std::mem::take(&mut self.slots.reclaim_seen[class.index()]);
                if short && !reclaimed {
                    self.fail_slot_waiters(now, class);
                } else if short {
                    self.slots.retry_at[class.index()] = Some(now + SLOT_RETRY_DELAY);
                }
            }
            ToWorker::Reclaim { class } => {
                self.slots.reclaim_seen[class.index()] = true;
                self.slots.pools.shrink_for_reclaim();
                let worker = self.config.id;
                for slot in self.slots.pools.drain_all() {
                    let request = self.next_request();
                    self.link.out.push_back(ToController::ReturnSlot {
                        worker,
                        request,
                        slot,
                    });
                }
            }
            ToWorker::HorizonWanted { version } => self.horizon_wanted(version),
            ToWorker::Occupied { request, outcome } => {
                if let Some(w) = self.take_pending(now, request) {
                    self.on_occupied(now, w.conn, outcome);
                }
            }
            ToWorker::Released { request, outcome } => {
                if let Some(w) = self.take_pending(now, request) {
                    self.on_released(now, w.conn, outcome);
                }
            }
            ToWorker::Error { request, code } => self.on_error_reply(now, request, code),
        }
    }

    fn on_error_reply(&mut self, now: Instant, request: RequestId, code: ErrorCode) {
        if let Some(class) = self.slots.pools.class_of_request(request) {
            self.on_allocate_failed(now, request, class, code);
            return;
        }
        let Some(w) = self.take_pending(now, request) else {
            return;
        };
        let Some(active) = conn_at(&mut self.conns.entries, w.conn).and_then(|c| c.active.as_ref())
        else {
            return;
        };
        let method = active.head.method;
        let (status, reason) = match code {
            ErrorCode::NoSpace => (
                Status::INSUFFICIENT_STORAGE,
                "no free slot of the needed size",
            ),
            ErrorCode::Unavailable => (Status::SERVICE_UNAVAILABLE, "server busy; try again"),
            ErrorCode::Io | ErrorCode::InvalidSlot => {
                (Status::INTERNAL_SERVER_ERROR, "storage error")
            }
        };
        if status == Status::SERVICE_UNAVAILABLE {
            self.respond_busy(now, w.conn, reason);
        } else {
            self.respond_error(now, w.conn, method, status, reason);
        }
    }
}
