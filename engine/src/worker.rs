//! One worker's state machine: connections, HTTP requests, block pools, pending replies.
//!
//! Sans-IO (DESIGN.md): the worker emits [`Op`]s through [`Worker::poll_io`] and controller
//! messages through [`Worker::drain_messages`]; it takes completions, controller replies and time
//! as input. It never blocks, reads no clock and performs no system call.
//!
//! Invariants:
//! - a connection handles one request at a time, so pipelined requests are answered in order;
//! - a buffer moved into an operation is not touched until its completion returns it;
//! - a connection slot is reused only after every operation on it has completed and the
//!   driver closed it;
//! - a slot taken from the pool is written, then either occupied (controller) or put back;
//! - address replies are numbered in the order they arrive (1, 2, ...); a reply whose address
//!   is being read stays "in flight" until the read completes, and the worker reports the
//!   lowest such number (`ReaderHorizon`: every reply below it is finished) so the controller
//!   never reuses a slot a GET may still be reading (SPEC guarantee 4).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    RequestHead,
};
use crate::io::{Completion, ConnHandle, Errno, Op, OpId};
use crate::log_limit::LogLimit;
use crate::message::{
    ErrorCode, Location, OccupyOutcome, ReleaseOutcome, RequestId, ToController, ToWorker,
    WorkerId, LIST_LIMIT_MAX,
};
use crate::pool::Pools;
use crate::size_class::{SizeClass, BLOCK_LEN_MAX_BYTES, CLASS_COUNT};
use crate::stats::{self, StatsSnapshot, WorkerStats};

mod ipfs;

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
/// Lookups one `POST /blocks/missing` keeps in flight.
const MISSING_IN_FLIGHT_MAX: usize = 256;
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VerifyReads {
    Crc32c,
    Sha256,
    Off,
}

impl VerifyReads {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyReads::Crc32c => "crc32c",
            VerifyReads::Sha256 => "sha256",
            VerifyReads::Off => "off",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub id: WorkerId,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a PUT waits for a pool slot before 503.
    pub slot_wait_limit: Duration,
    pub verify_reads: VerifyReads,
    pub auth_token: Option<Vec<u8>>,
    pub pool_targets: [u16; CLASS_COUNT],
    /// Bound on what adaptive pool targets may hold in reserve (bytes, all classes).
    pub pool_bytes_max: u64,
    /// Largest single receive.
    pub recv_chunk_bytes: usize,
    /// Bound on the bytes of large I/O buffers the worker's requests hold at once: GET read
    /// buffers of blocks over 8 KiB, buffered bodies, and upload pieces with their receive
    /// buffers (at most half of it). A GET or buffered body beyond it waits (FIFO, up to
    /// `slot_wait_limit`, then 503); an upload waits as long, then goes on in small pieces.
    /// It also bounds the idle buffers kept.
    pub buffer_budget_bytes: usize,
    /// How long a request may wait for the controller before `/health` says storage stalled
    /// (the request itself is answered `503` at its request timeout).
    pub stall_limit: Duration,
}

/// The smallest `buffer_budget_bytes`: a buffered body and an upload's lane side by side.
pub const BUFFER_BUDGET_MIN_BYTES: usize = 1 << 20;

impl WorkerConfig {
    pub fn new(id: WorkerId) -> WorkerConfig {
        WorkerConfig {
            id,
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            slot_wait_limit: Duration::from_secs(5),
            verify_reads: VerifyReads::Crc32c,
            auth_token: None,
            pool_targets: crate::pool::POOL_TARGET_DEFAULT,
            pool_bytes_max: 64 << 20,
            recv_chunk_bytes: 64 * 1024,
            buffer_budget_bytes: 4 << 20,
            stall_limit: crate::health::STALL_LIMIT_DEFAULT,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OpKind {
    Accept,
    Recv,
    Send,
    File,
    Close,
    Cancel,
}

#[derive(Debug)]
struct OpEntry {
    generation: u32,
    user: Option<(Option<ConnRef>, OpKind)>,
}

/// A connection slot index and its generation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct ConnRef {
    index: usize,
    generation: u32,
}

/// What a pending controller request belongs to.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    conn: ConnRef,
    /// For `POST /blocks/missing`: which line.
    tag: usize,
    /// When the request went out (for the time-waiting-for-the-controller figure).
    sent: Instant,
}

enum BodyReader {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    PutBlock {
        expected: Option<BlockHash>,
    },
    GetBlock {
        hash: BlockHash,
        head_only: bool,
        flavour: Flavour,
    },
    /// `GET`/`HEAD /ipfs/{identity CID}`: answered from the CID in the path.
    IpfsInline {
        head_only: bool,
        negotiated: Negotiated,
    },
    DeleteBlock {
        hash: BlockHash,
    },
    Missing,
    List,
    Health,
    Stats,
    Metrics,
}

/// How a stored block is answered: the `/block/` way, or as the IPFS gateway says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavour {
    Block,
    Ipfs(Negotiated),
}

enum Stage {
    /// Reading the request body.
    Body {
        reader: BodyReader,
        body: Vec<u8>,
        hasher: sha2::Sha256,
        crc: u32,
    },
    /// Body complete, waiting for a pool slot of `class`.
    WaitSlot {
        body: Vec<u8>,
        hash: BlockHash,
        crc: u32,
        deadline: Instant,
    },
    /// A PUT with Content-Length: the body goes into its slot piece by piece as it arrives.
    /// Not boxed: a box per PUT would be a heap allocation per request; an `Active` lives in
    /// its connection only while a request is in progress.
    Stream(StreamPut),
    /// Writing the (buffered, chunked) body into `slot`; the buffer is in the write op.
    Write {
        hash: BlockHash,
        crc: u32,
        slot: Slot,
        written: usize,
    },
    /// Waiting for the controller's occupy reply.
    Occupy { hash: BlockHash },
    /// Out of space: is the block stored already? (Then the PUT is a 200, not a 507.)
    DedupCheck { hash: BlockHash },
    /// Waiting for the buffer budget (`WorkerConfig::buffer_budget_bytes`).
    WaitBuffer { need: BufferNeed, deadline: Instant },
    /// Waiting for a get_address reply.
    Lookup,
    /// Waiting for a release reply.
    Release,
    /// Reading the block from the data file.
    Read {
        location: Location,
        seq: u64,
        read: usize,
    },
    /// `POST /blocks/missing` lookups.
    Missing {
        hashes: Vec<BlockHash>,
        state: Vec<u8>,
        next: usize,
        outstanding: usize,
    },
    /// `GET /blocks` items arriving.
    List { body: Vec<u8> },
    /// The response is queued; the request ends when it is sent.
    Responded,
}

/// What a request waiting for the buffer budget goes on with once it has its grant.
enum BufferNeed {
    /// Read a block for a GET. The address reply `seq` stays in flight while waiting (the
    /// slot must not be reused before the read).
    Read { location: Location, seq: u64 },
    /// Read a body into one buffer (chunked PUT, `POST /blocks/missing`, a PUT that needs its
    /// hash before a 507); `send_continue`: answer `Expect: 100-continue` when it starts.
    Body {
        reader: BodyReader,
        send_continue: bool,
    },
}

/// A PUT body streamed into its slot: at most one piece of [`STREAM_PIECE_BYTES`] is held in
/// memory, so a slow upload costs a piece, not a block.
struct StreamPut {
    /// Declared body length.
    len: u64,
    /// Body bytes not yet taken from the connection.
    remaining: u64,
    /// The pool slot, once there is one (the body is not read before).
    slot: Option<Slot>,
    /// Until when to wait for a slot.
    deadline: Instant,
    /// Taken bytes not yet written (empty while its buffer is in a write).
    piece: Vec<u8>,
    /// Bytes a piece holds before it is written: [`STREAM_PIECE_BYTES`] with a buffer
    /// grant (a "lane": the piece and a receive buffer), 0 while waiting for one,
    /// [`IDLE_RECV_BYTES`] after waiting in vain (slower, never stuck behind slow uploads).
    piece_max: usize,
    /// Waiting for a lane (in `lane_waiters`) until then; after it, small pieces.
    lane_deadline: Option<Instant>,
    /// A write of the current piece is in flight.
    writing: bool,
    /// Bytes of the piece in flight already written (short writes).
    piece_written: usize,
    /// Body bytes written before the current piece.
    written: u64,
    hasher: sha2::Sha256,
    crc: u32,
}

struct Active {
    head: RequestHead,
    route: Route,
    started: Instant,
    /// When the request last asked the controller something: its wait for storage is bounded
    /// by the request timeout from there (a slow client's upload does not eat storage's time).
    asked: Instant,
    stage: Stage,
    /// `request` span (debug level): worker, request number, method, path.
    span: tracing::Span,
}

struct Conn {
    generation: u32,
    handle: ConnHandle,
    /// Received bytes not yet consumed (None while a receive owns the buffer).
    rbuf: Option<Vec<u8>>,
    recv_op: Option<OpId>,
    send_op: Option<OpId>,
    send_started: Instant,
    file_op: Option<OpId>,
    other_ops: u32,
    /// Responses waiting to be sent, each `(buffer, start, end)`.
    outq: VecDeque<(Vec<u8>, usize, usize)>,
    eof: bool,
    active: Option<Active>,
    /// First byte of the current request (head not complete yet).
    head_started: Option<Instant>,
    last_activity: Instant,
    keep_alive: bool,
    closing: bool,
    close_submitted: bool,
    rejecting: bool,
    /// Bytes of a refused request's body still to skip.
    discard: u64,
    /// Answered with `Connection: close`; draining `discard` bytes before closing.
    lingering: bool,
    /// Bytes of the worker's buffer budget the current request holds (0 between requests).
    grant: usize,
    /// The grant is an upload's lane (counted in `Worker::lanes_granted` too).
    lane: bool,
}

pub struct Worker {
    config: WorkerConfig,
    conns: Vec<Option<Conn>>,
    conn_generations: Vec<u32>,
    conn_free: Vec<usize>,
    conns_open: usize,
    rejecting: usize,
    ops: Vec<OpEntry>,
    op_free: Vec<u32>,
    ops_in_flight: usize,
    io_out: VecDeque<(OpId, Op)>,
    msg_out: VecDeque<ToController>,
    pending: BTreeMap<RequestId, Waiter>,
    next_request: RequestId,
    pools: Pools,
    slot_waiters: Vec<VecDeque<ConnRef>>,
    accept_op: Option<OpId>,
    accept_retry_at: Option<Instant>,
    next_pool_decay: Instant,
    /// The latest `now` any input carried (stamps controller requests).
    now_seen: Instant,
    /// No connection deadline comes before this (see `poll_timeout`).
    deadline_cache: Instant,
    /// Per class: a `Reclaim` arrived since the last `AllocateDone`: space may come back, keep
    /// PUTs waiting.
    reclaim_seen: [bool; CLASS_COUNT],
    /// Per class: no allocate request before this (see `SLOT_RETRY_DELAY`).
    slot_retry_at: [Option<Instant>; CLASS_COUNT],
    shutting_down: bool,
    /// Address replies received so far (their sequence numbers are 1..=this).
    addresses_received: u64,
    /// Sequence numbers of address replies whose reads are still in flight.
    reads_in_flight: BTreeSet<u64>,
    horizon_reported: u64,
    small_bufs: Vec<Vec<u8>>,
    large_bufs: Vec<Vec<u8>>,
    piece_bufs: Vec<Vec<u8>>,
    /// Receive buffers of a request in progress (`recv_chunk_bytes` and a little more).
    recv_bufs: Vec<Vec<u8>>,
    /// Buffers of finished requests' heads, for the next heads (no allocation per request).
    head_buffers: HeadBuffers,
    /// Where a GET's response head is written before it goes in front of the body.
    head_scratch: Vec<u8>,
    /// Sum of the connections' `grant`s.
    granted: usize,
    /// Requests in `Stage::WaitBuffer`, first come first served.
    buffer_waiters: VecDeque<ConnRef>,
    /// Sum of the grants that are upload lanes: at most [`Worker::lane_cap`], so uploads
    /// (slow ones included) never hold the whole budget and GETs always get their share.
    lanes_granted: usize,
    /// Uploads waiting for a lane, first come first served.
    lane_waiters: VecDeque<ConnRef>,
    /// `serve_buffer_waiters` is running (a nested call returns; the running one goes on).
    serving: bool,
    stats: WorkerStats,
    snapshot: Arc<StatsSnapshot>,
    /// The driver's watchdog verdict over the whole node (see [`Worker::set_health`]).
    node_health: Option<Unhealthy>,
    /// Failed verifications are logged at most once a second (each is counted).
    corrupt_log: LogLimit,
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
            conns: Vec::new(),
            conn_generations: Vec::new(),
            conn_free: Vec::new(),
            conns_open: 0,
            rejecting: 0,
            ops: Vec::new(),
            op_free: Vec::new(),
            ops_in_flight: 0,
            io_out: VecDeque::new(),
            msg_out: VecDeque::new(),
            pending: BTreeMap::new(),
            next_request: 1,
            pools,
            slot_waiters: (0..CLASS_COUNT).map(|_| VecDeque::new()).collect(),
            accept_op: None,
            accept_retry_at: None,
            next_pool_decay: Instant::ZERO,
            now_seen: Instant::ZERO,
            deadline_cache: Instant::ZERO,
            reclaim_seen: [false; CLASS_COUNT],
            slot_retry_at: [None; CLASS_COUNT],
            shutting_down: false,
            addresses_received: 0,
            reads_in_flight: BTreeSet::new(),
            horizon_reported: 0,
            small_bufs: Vec::new(),
            large_bufs: Vec::new(),
            piece_bufs: Vec::new(),
            recv_bufs: Vec::new(),
            head_buffers: HeadBuffers::default(),
            head_scratch: Vec::with_capacity(HEAD_ROOM_BYTES),
            granted: 0,
            buffer_waiters: VecDeque::new(),
            lanes_granted: 0,
            lane_waiters: VecDeque::new(),
            serving: false,
            stats: WorkerStats::default(),
            snapshot: Arc::new(StatsSnapshot::default()),
            node_health: None,
            corrupt_log: LogLimit::new(Duration::from_secs(1)),
            config,
        }
    }

    pub fn id(&self) -> WorkerId {
        self.config.id
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    // -----------------------------------------------------------------------------------------
    // Output.

    /// The next operation for the driver.
    #[must_use]
    pub fn poll_io(&mut self) -> Option<(OpId, Op)> {
        self.io_out.pop_front()
    }

    /// Gives queued controller messages to `push` until it refuses one (queue full).
    pub fn drain_messages(&mut self, mut push: impl FnMut(&ToController) -> bool) {
        while let Some(m) = self.msg_out.front() {
            if !push(m) {
                break;
            }
            self.msg_out.pop_front();
        }
    }

    pub fn messages_waiting(&self) -> usize {
        self.msg_out.len()
    }

    /// When the worker next needs `tick` without other input.
    ///
    /// Deadlines are checked lazily: `tick` scans the connections only when the cached earliest
    /// deadline has come, and every event lowers the cache to `now + min_timeout / 2` (any
    /// deadline an event creates is at least `min_timeout` away, except an upload's wait for a
    /// lane, which lowers the cache itself). So a busy worker scans its
    /// connections a few times per `min_timeout`, not once per loop turn.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let connections = self.conns_open + self.rejecting > 0;
        let deadlines = connections.then_some(self.deadline_cache);
        // A worker shutting down neither accepts nor refills: a pending retry of either would
        // be a deadline no tick clears, and the driver's loop would spin on it.
        let retries = if self.shutting_down {
            [None, None]
        } else {
            let slot = self.slot_retry_at.iter().flatten().min().copied();
            [self.accept_retry_at, slot]
        };
        retries.into_iter().chain([deadlines]).flatten().min()
    }

    /// The shortest timeout any deadline is set with.
    fn min_timeout(&self) -> Duration {
        let c = &self.config;
        c.request_timeout.min(c.idle_timeout).min(c.slot_wait_limit)
    }

    /// The earliest deadline of any connection (exact scan).
    fn earliest_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .flatten()
            .filter_map(|c| self.conn_deadline(c))
            .min()
    }

    fn conn_deadline(&self, conn: &Conn) -> Option<Instant> {
        if conn.closing {
            return None;
        }
        let c = &self.config;
        if conn.send_op.is_some() {
            return Some(conn.send_started + c.request_timeout);
        }
        if conn.lingering {
            return Some(conn.last_activity + LINGER_TIMEOUT);
        }
        match &conn.active {
            None => Some(match conn.head_started {
                Some(t) => t + c.request_timeout,
                None => conn.last_activity + c.idle_timeout,
            }),
            Some(a) => match &a.stage {
                Stage::Body { .. } => Some(a.started + c.request_timeout),
                Stage::WaitSlot { deadline, .. } => Some(*deadline),
                Stage::WaitBuffer { deadline, .. } => {
                    Some((*deadline).min(a.started + c.request_timeout))
                }
                // Waiting for the controller (or the flush behind it): answered by the request
                // timeout whatever storage does (SPEC's liveness line).
                Stage::Occupy { .. }
                | Stage::DedupCheck { .. }
                | Stage::Lookup
                | Stage::Release
                | Stage::Missing { .. }
                | Stage::List { .. } => Some(a.asked + c.request_timeout),
                Stage::Stream(s) => {
                    let request = if s.slot.is_none() {
                        Some(s.deadline.min(a.started + c.request_timeout))
                    } else {
                        (s.remaining > 0).then_some(a.started + c.request_timeout)
                    };
                    [request, s.lane_deadline].into_iter().flatten().min()
                }
                _ => None,
            },
        }
    }

    // -----------------------------------------------------------------------------------------
    // Operation table.

    fn submit(&mut self, conn: Option<ConnRef>, kind: OpKind, op: Op) -> OpId {
        let index = match self.op_free.pop() {
            Some(i) => i,
            None => {
                self.ops.push(OpEntry {
                    generation: 0,
                    user: None,
                });
                (self.ops.len() - 1) as u32
            }
        };
        let entry = &mut self.ops[index as usize];
        assert!(entry.user.is_none(), "op slot {index} in use");
        entry.generation = entry.generation.wrapping_add(1);
        entry.user = Some((conn, kind));
        let id = OpId::new(index, entry.generation);
        self.ops_in_flight += 1;
        self.io_out.push_back((id, op));
        id
    }

    /// Submits a data-file operation for the connection's current request.
    fn submit_file(&mut self, r: ConnRef, op: Op) {
        debug_assert!(matches!(op, Op::ReadAt { .. } | Op::WriteAt { .. }));
        let id = self.submit(Some(r), OpKind::File, op);
        let conn = conn_at(&mut self.conns, r).expect("a file op belongs to an open connection");
        assert!(
            conn.file_op.is_none(),
            "one file op per connection at a time"
        );
        conn.file_op = Some(id);
    }

    fn retire(&mut self, id: OpId) -> Option<(Option<ConnRef>, OpKind)> {
        let entry = self.ops.get_mut(id.index() as usize)?;
        if entry.generation != id.generation() {
            return None;
        }
        let user = entry.user.take()?;
        self.op_free.push(id.index());
        self.ops_in_flight -= 1;
        Some(user)
    }

    fn conn_mut(&mut self, r: ConnRef) -> Option<&mut Conn> {
        conn_at(&mut self.conns, r)
    }

    fn conn_ref(&self, index: usize) -> ConnRef {
        ConnRef {
            index,
            generation: self.conn_generations[index],
        }
    }

    // -----------------------------------------------------------------------------------------
    // Buffers.

    fn small_buf(&mut self) -> Vec<u8> {
        let cap = IDLE_RECV_BYTES;
        match self.small_bufs.pop() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(cap),
        }
    }

    fn large_buf(&mut self) -> Vec<u8> {
        match self.large_bufs.pop() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(LARGE_BUF_BYTES),
        }
    }

    /// A receive buffer with room for `need` bytes, for a request in progress.
    fn recv_buf(&mut self, need: usize) -> Vec<u8> {
        match self.recv_bufs.pop() {
            Some(mut b) if b.capacity() >= need => {
                b.clear();
                b
            }
            _ => Vec::with_capacity(need.max(self.recv_buf_bytes())),
        }
    }

    /// The capacity of a pooled receive buffer: a chunk plus what may already be buffered.
    fn recv_buf_bytes(&self) -> usize {
        self.config.recv_chunk_bytes + 2 * IDLE_RECV_BYTES
    }

    /// A large buffer of exactly `len` bytes whose contents are unspecified (the read that
    /// fills it overwrites them): zero-filling 512 KiB per GET was 13% of the server's CPU.
    fn large_buf_of_len(&mut self, len: usize) -> Vec<u8> {
        assert!(len <= LARGE_BUF_BYTES);
        let mut buf = match self.large_bufs.pop() {
            Some(b) => b,
            None => Vec::with_capacity(LARGE_BUF_BYTES),
        };
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0);
        }
        buf
    }

    /// The buffer a GET of a block of `len` bytes reads into (the head room in front), from
    /// the smallest pool it fits: a 4 KiB block does not pin a 512 KiB buffer.
    fn read_buf(&mut self, len: u32) -> Vec<u8> {
        let end = HEAD_ROOM_BYTES + len as usize;
        let mut buf = match self.read_grant(len) {
            0 => self.small_buf(),
            LARGE_BUF_BYTES => return self.large_buf_of_len(end),
            _ => self.recv_buf(end),
        };
        buf.resize(end, 0);
        buf
    }

    /// The budget a GET of a block of `len` bytes takes: the capacity of its [`read_buf`]
    /// (small buffers are a connection's own and come free).
    ///
    /// [`read_buf`]: Worker::read_buf
    fn read_grant(&self, len: u32) -> usize {
        let end = HEAD_ROOM_BYTES + len as usize;
        if end <= IDLE_RECV_BYTES {
            0
        } else if end <= self.recv_buf_bytes() {
            self.recv_buf_bytes()
        } else {
            LARGE_BUF_BYTES
        }
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        let large = LARGE_BUF_BYTES;
        if buf.capacity() >= large && buf.capacity() <= 2 * large {
            // Kept at its length: `large_buf_of_len` then needs no zero fill. The idle ones
            // kept are bounded by the budget too (memory that is not given back is RSS).
            if self.large_bufs.len() < self.config.buffer_budget_bytes / large {
                self.large_bufs.push(buf);
            }
            return;
        }
        buf.clear();
        let recv = self.recv_buf_bytes();
        if buf.capacity() >= recv && buf.capacity() <= 2 * recv {
            if self.recv_bufs.len() < RECV_BUFS_KEPT_MAX {
                self.recv_bufs.push(buf);
            }
        } else if (IDLE_RECV_BYTES..=2 * IDLE_RECV_BYTES).contains(&buf.capacity())
            && self.small_bufs.len() < BUFFERS_KEPT_MAX
        {
            self.small_bufs.push(buf);
        }
    }

    // -----------------------------------------------------------------------------------------
    // The buffer budget.

    /// The most the upload lanes may hold together: half the budget, and always room for one
    /// buffered body beside them.
    fn lane_cap(&self) -> usize {
        let budget = self.config.buffer_budget_bytes;
        (budget / 2).min(budget - LARGE_BUF_BYTES - self.recv_buf_bytes())
    }

    /// The grant of an upload's lane: a piece and a receive buffer.
    fn lane_bytes(&self) -> usize {
        STREAM_PIECE_BYTES + self.recv_buf_bytes()
    }

    /// The grant of a body read into one buffer: the most it may hold, and a receive buffer.
    fn body_grant(&self, reader: &BodyReader) -> usize {
        let limit = match reader {
            BodyReader::Length { remaining } => *remaining,
            BodyReader::Chunked(decoder) => decoder.max_body_bytes(),
        };
        (limit as usize).max(LARGE_BUF_BYTES) + self.recv_buf_bytes()
    }

    /// Raises the grant of `r`'s current request to `need` bytes of the buffer budget (an
    /// upload's lane when `lane`). Refused when that would overrun the budget (or the lanes'
    /// cap), or when others wait in the same queue and this one is not the first of them
    /// (`first_waiter`): waiters are served in order.
    fn take_grant(&mut self, r: ConnRef, need: usize, lane: bool, first_waiter: bool) -> bool {
        let budget = self.config.buffer_budget_bytes;
        let cap = self.lane_cap();
        assert!(need <= budget, "a grant of {need} bytes never fits");
        let queue_empty = if lane {
            self.lane_waiters.is_empty()
        } else {
            self.buffer_waiters.is_empty()
        };
        let conn = conn_at(&mut self.conns, r).expect("open");
        if conn.grant >= need {
            return true;
        }
        assert!(
            conn.grant == 0 || conn.lane == lane,
            "a grant keeps its kind"
        );
        let others = self.granted - conn.grant;
        let lanes = self.lanes_granted - if conn.lane { conn.grant } else { 0 };
        let fits = others + need <= budget && (!lane || lanes + need <= cap);
        if !fits || !(queue_empty || first_waiter) {
            return false;
        }
        self.granted = others + need;
        if lane {
            self.lanes_granted = lanes + need;
        }
        conn.grant = need;
        conn.lane = lane;
        true
    }

    /// Takes back a request's grant (the caller then serves the waiters).
    fn drop_grant(&mut self, grant: usize, lane: bool) {
        self.granted -= grant;
        if lane {
            self.lanes_granted -= grant;
        }
    }

    /// Parks `r`'s request until the budget has room for it (or its deadline: 503).
    fn wait_for_buffer(&mut self, now: Instant, r: ConnRef, need: BufferNeed) {
        self.stats.buffer_waits += 1;
        let deadline = now + self.config.slot_wait_limit;
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        active.stage = Stage::WaitBuffer { need, deadline };
        self.buffer_waiters.push_back(r);
    }

    /// Grants of the requests waiting, in order in each queue, while the budget has room. Call
    /// whenever a grant is given back or a waiter leaves (its entry may have blocked others).
    fn serve_buffer_waiters(&mut self, now: Instant) {
        if self.serving {
            return;
        }
        self.serving = true;
        while self.serve_queue(now, false) | self.serve_queue(now, true) {}
        self.serving = false;
    }

    /// Serves one queue (`lanes`: the uploads') from its front; whether anything happened.
    fn serve_queue(&mut self, now: Instant, lanes: bool) -> bool {
        let mut progressed = false;
        loop {
            let queue = if lanes {
                &self.lane_waiters
            } else {
                &self.buffer_waiters
            };
            let Some(&r) = queue.front() else {
                return progressed;
            };
            let need = match stage_of(&self.conns, r) {
                Some(Stage::WaitBuffer {
                    need: BufferNeed::Read { location, .. },
                    ..
                }) if !lanes => self.read_grant(location.len),
                Some(Stage::WaitBuffer {
                    need: BufferNeed::Body { reader, .. },
                    ..
                }) if !lanes => self.body_grant(reader),
                Some(Stage::Stream(s)) if lanes && s.lane_deadline.is_some() => self.lane_bytes(),
                // Answered (timed out), gone on in small pieces, or closed meanwhile.
                _ => {
                    self.pop_waiter(lanes);
                    progressed = true;
                    continue;
                }
            };
            if !self.take_grant(r, need, lanes, true) {
                return progressed;
            }
            self.pop_waiter(lanes);
            progressed = true;
            if lanes {
                self.give_lane(r);
                self.process(now, r);
                continue;
            }
            let active = conn_at(&mut self.conns, r)
                .and_then(|c| c.active.as_mut())
                .expect("checked above");
            let Stage::WaitBuffer { need, .. } =
                std::mem::replace(&mut active.stage, Stage::Responded)
            else {
                unreachable!("checked above")
            };
            match need {
                BufferNeed::Read { location, seq } => self.start_read(r, location, seq),
                BufferNeed::Body {
                    reader,
                    send_continue,
                } => {
                    self.begin_body(now, r, reader, send_continue);
                    self.process(now, r);
                }
            }
        }
    }

    fn pop_waiter(&mut self, lanes: bool) {
        if lanes {
            self.lane_waiters.pop_front();
        } else {
            self.buffer_waiters.pop_front();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Periodic work.

    /// Timeouts, pool refills, the accept op, and the reader horizon. Call every loop turn.
    pub fn tick(&mut self, now: Instant) {
        self.now_seen = self.now_seen.max(now);
        if !self.shutting_down && self.accept_op.is_none() {
            let due = self.accept_retry_at.is_none_or(|t| now >= t);
            if due {
                self.accept_retry_at = None;
                self.accept_op = Some(self.submit(None, OpKind::Accept, Op::Accept));
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
        if now >= self.next_pool_decay {
            self.next_pool_decay = now + crate::pool::POOL_DECAY_INTERVAL;
            self.pools.decay();
        }
        self.refill_pools();
        self.report_horizon();
    }

    fn refill_pools(&mut self) {
        if self.shutting_down {
            return;
        }
        for class in SizeClass::ALL {
            // A waiter answered meanwhile (503 at its deadline, closed) no longer counts.
            let conns = &self.conns;
            self.slot_waiters[class.index()].retain(|&r| waits_for_slot(conns, r));
            let retry = &mut self.slot_retry_at[class.index()];
            if retry.is_some_and(|t| self.now_seen < t) {
                continue;
            }
            *retry = None;
            let waiting = self.slot_waiters[class.index()].len();
            if let Some(count) = self.pools.refill_due(class, waiting) {
                let request = self.next_request();
                self.pools.requested(class, request);
                let worker = self.config.id;
                self.msg_out.push_back(ToController::Allocate {
                    worker,
                    request,
                    class,
                    count,
                });
            }
        }
    }

    fn horizon(&self) -> u64 {
        match self.reads_in_flight.first() {
            Some(&oldest) => oldest,
            None => self.addresses_received + 1,
        }
    }

    fn report_horizon(&mut self) {
        let h = self.horizon();
        if h > self.horizon_reported {
            self.horizon_reported = h;
            let worker = self.config.id;
            self.msg_out
                .push_back(ToController::ReaderHorizon { worker, epoch: h });
        }
    }

    fn check_timeouts(&mut self, now: Instant) {
        for index in 0..self.conns.len() {
            let Some(conn) = self.conns[index].as_ref() else {
                continue;
            };
            let Some(deadline) = self.conn_deadline(conn) else {
                continue;
            };
            if now < deadline {
                continue;
            }
            let r = self.conn_ref(index);
            self.on_deadline(now, r);
        }
    }

    fn on_deadline(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        if conn.send_op.is_some() {
            // A client that does not read its response.
            self.stats.timeouts += 1;
            self.close_conn(r);
            return;
        }
        match conn.active.as_ref().map(|a| &a.stage) {
            None if conn.head_started.is_none() => self.close_conn(r),
            None | Some(Stage::Body { .. }) => {
                self.stats.timeouts += 1;
                let method = conn
                    .active
                    .as_ref()
                    .map_or(Method::Other, |a| a.head.method);
                self.respond_error(now, r, method, 408, "request not completed in time", true);
            }
            Some(Stage::WaitSlot { .. }) => {
                self.respond_busy(now, r, "no free slot in time; try again");
            }
            Some(Stage::WaitBuffer { .. }) => {
                // A GET's address goes out of flight before the answer replaces the stage
                // (and the waiters behind this one are served).
                self.abandon_request(r);
                self.respond_busy(now, r, "no buffer memory free in time; try again");
            }
            Some(Stage::Stream(s)) if s.lane_deadline.is_some_and(|d| now >= d) => {
                self.degrade_stream(r);
                self.process(now, r);
                // Its queue entry is dead now; the ones behind it may fit.
                self.serve_buffer_waiters(now);
            }
            Some(Stage::Stream(s)) if s.slot.is_none() => {
                self.respond_busy(now, r, "no free slot in time; try again");
            }
            // A piece is being written: answer once it is done (the deadline fires again);
            // answering now would drop the stage the write's completion needs.
            Some(Stage::Stream(s)) if s.writing => {}
            Some(
                Stage::Occupy { .. }
                | Stage::DedupCheck { .. }
                | Stage::Lookup
                | Stage::Release
                | Stage::Missing { .. }
                | Stage::List { .. },
            ) => self.answer_unconfirmed(now, r),
            Some(Stage::Stream(_)) => {
                self.stats.timeouts += 1;
                // The slot goes back to the pool before the answer replaces the stage.
                self.abandon_request(r);
                self.respond_error(
                    now,
                    r,
                    Method::Put,
                    408,
                    "request not completed in time",
                    true,
                );
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // Shutdown.

    /// Stop accepting; close idle connections; let requests in progress finish, then close.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        if let Some(id) = self.accept_op {
            self.submit(None, OpKind::Cancel, Op::Cancel { target: id });
        }
        for index in 0..self.conns.len() {
            let Some(conn) = self.conns[index].as_mut() else {
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
        self.shutting_down
            && self.conns_open + self.rejecting == 0
            && self.ops_in_flight == 0
            && self.io_out.is_empty()
    }

    // -----------------------------------------------------------------------------------------
    // Completions.

    pub fn handle_completion(&mut self, now: Instant, c: Completion) {
        self.now_seen = self.now_seen.max(now);
        let Some((conn, kind)) = self.retire(c.op) else {
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

    fn on_accept(&mut self, now: Instant, c: Completion) {
        self.accept_op = None;
        let handle = match c.result {
            Ok(h) => ConnHandle(h),
            Err(e) => {
                if e != Errno::ECANCELED && !e.is_transient() && e != Errno::ECONNABORTED {
                    self.accept_retry_at = Some(now + ACCEPT_RETRY_DELAY);
                }
                return;
            }
        };
        self.stats.connections_accepted += 1;
        if self.shutting_down {
            self.io_out_close_raw(handle);
            return;
        }
        let rejecting = self.conns_open >= self.config.max_connections;
        if rejecting && self.rejecting >= REJECTING_MAX {
            self.stats.connections_rejected += 1;
            self.io_out_close_raw(handle);
            return;
        }
        let index = match self.conn_free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conn_generations.push(0);
                self.conns.len() - 1
            }
        };
        self.conn_generations[index] = self.conn_generations[index].wrapping_add(1);
        let generation = self.conn_generations[index];
        let rbuf = self.small_buf();
        self.conns[index] = Some(Conn {
            generation,
            handle,
            rbuf: Some(rbuf),
            recv_op: None,
            send_op: None,
            send_started: now,
            file_op: None,
            other_ops: 0,
            outq: VecDeque::new(),
            eof: false,
            active: None,
            head_started: None,
            last_activity: now,
            keep_alive: !rejecting,
            closing: false,
            close_submitted: false,
            rejecting,
            discard: 0,
            lingering: false,
            grant: 0,
            lane: false,
        });
        let r = ConnRef { index, generation };
        if rejecting {
            self.rejecting += 1;
            self.stats.connections_rejected += 1;
            self.respond_busy(now, r, "too many connections");
        } else {
            self.conns_open += 1;
            self.process(now, r);
        }
    }

    /// Closes a handle that never became a connection.
    fn io_out_close_raw(&mut self, handle: ConnHandle) {
        self.submit(None, OpKind::Cancel, Op::Close { conn: handle });
    }

    fn on_recv(&mut self, now: Instant, r: ConnRef, c: Completion) {
        let buf = c.buf.expect("recv returns its buffer");
        let Some(conn) = conn_at(&mut self.conns, r) else {
            panic!("recv completion for a vanished connection");
        };
        conn.recv_op = None;
        conn.rbuf = Some(buf);
        if conn.closing {
            self.maybe_finish_close(r);
            return;
        }
        match c.result {
            Ok(0) => conn.eof = true,
            Ok(n) => {
                conn.last_activity = now;
                self.stats.bytes_in += n;
            }
            Err(e) if e.is_transient() || e == Errno::ECANCELED => {}
            Err(_) => {
                self.close_conn(r);
                return;
            }
        }
        self.process(now, r);
    }

    fn on_send(&mut self, now: Instant, r: ConnRef, c: Completion) {
        let buf = c.buf.expect("send returns its buffer");
        let Some(conn) = conn_at(&mut self.conns, r) else {
            panic!("send completion for a vanished connection");
        };
        conn.send_op = None;
        let (_, start, end) = conn.outq.front_mut().expect("a send has a queued response");
        match c.result {
            Ok(n) if n > 0 && !conn.closing => {
                *start += n as usize;
                debug_assert!(*start <= *end);
                self.stats.bytes_out += n;
                conn.last_activity = now;
                if *start >= *end {
                    conn.outq.pop_front();
                    self.recycle(buf);
                } else {
                    let front = conn.outq.front_mut().expect("front exists");
                    front.0 = buf;
                }
            }
            Err(e) if e.is_transient() && !conn.closing => {
                let front = conn.outq.front_mut().expect("front exists");
                front.0 = buf;
            }
            _ => {
                conn.outq.pop_front();
                self.recycle(buf);
                self.close_conn(r);
                self.maybe_finish_close(r);
                return;
            }
        }
        self.pump_send(now, r);
        self.after_send(now, r);
    }

    /// After a send: if the response is complete, end the request.
    fn after_send(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        if conn.send_op.is_some() || !conn.outq.is_empty() {
            return;
        }
        let done = matches!(
            conn.active.as_ref().map(|a| &a.stage),
            Some(Stage::Responded)
        );
        if done {
            if let Some(a) = conn.active.take() {
                self.head_buffers.recycle(a.head);
            }
            self.release_grant(now, r);
            self.end_request(now, r);
        }
    }

    /// Gives the grant of `r`'s request back to the budget, serving waiters.
    fn release_grant(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        let grant = std::mem::take(&mut conn.grant);
        let lane = std::mem::take(&mut conn.lane);
        if grant > 0 {
            self.drop_grant(grant, lane);
            self.serve_buffer_waiters(now);
        }
    }

    /// The connection's request is answered and sent: close, linger, or go on to the next.
    fn end_request(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        conn.last_activity = now;
        if conn.rejecting || !conn.keep_alive {
            if conn.discard > 0 && !conn.eof {
                // Lingering close: drain the refused body the client may still send, so
                // the close does not reset the connection before it reads the answer.
                conn.lingering = true;
                self.process(now, r);
            } else {
                self.close_conn(r);
            }
            return;
        }
        if self.shutting_down {
            let buffered = conn.rbuf.as_ref().is_some_and(|b| !b.is_empty());
            if !buffered {
                self.close_conn(r);
                return;
            }
        }
        self.process(now, r);
    }

    fn pump_send(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        if conn.send_op.is_some() || conn.closing {
            return;
        }
        let Some((buf, start, end)) = conn.outq.front_mut() else {
            return;
        };
        let buf = std::mem::take(buf);
        let (start, end) = (*start, *end);
        let handle = conn.handle;
        conn.send_started = now;
        let id = self.submit(
            Some(r),
            OpKind::Send,
            Op::Send {
                conn: handle,
                buf,
                start,
                end,
            },
        );
        conn_at(&mut self.conns, r).expect("still open").send_op = Some(id);
    }

    fn on_file(&mut self, now: Instant, r: ConnRef, c: Completion) {
        let buf = c.buf.expect("file ops return their buffer");
        let Some(conn) = conn_at(&mut self.conns, r) else {
            panic!("file completion for a vanished connection");
        };
        conn.file_op = None;
        let closing = conn.closing;
        let active = conn.active.as_mut().expect("file op belongs to a request");
        match &mut active.stage {
            Stage::Write { .. } => self.on_write_done(now, r, buf, c.result, closing),
            Stage::Stream(_) => self.on_stream_write_done(now, r, buf, c.result, closing),
            Stage::Read { .. } => self.on_read_done(now, r, buf, c.result, closing),
            _ => panic!("file completion in a stage without file I/O"),
        }
        if closing {
            self.maybe_finish_close(r);
        }
    }

    fn on_closed(&mut self, r: ConnRef) {
        let conn = self.conns[r.index]
            .take()
            .expect("closed connection exists");
        assert_eq!(conn.generation, r.generation);
        assert!(conn.recv_op.is_none() && conn.send_op.is_none() && conn.file_op.is_none());
        if conn.rejecting {
            self.rejecting -= 1;
        } else {
            self.conns_open -= 1;
        }
        if let Some(b) = conn.rbuf {
            self.recycle(b);
        }
        self.conn_free.push(r.index);
        if conn.grant > 0 {
            self.drop_grant(conn.grant, conn.lane);
            self.serve_buffer_waiters(self.now_seen);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Closing.

    fn close_conn(&mut self, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        let cancel: Vec<OpId> = [conn.recv_op, conn.send_op].into_iter().flatten().collect();
        for target in cancel {
            self.submit(Some(r), OpKind::Cancel, Op::Cancel { target });
            conn_at(&mut self.conns, r).expect("open").other_ops += 1;
        }
        self.abandon_request(r);
        self.maybe_finish_close(r);
    }

    /// Undo what the current request holds (a waiting PUT's place, buffers).
    fn abandon_request(&mut self, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        let Some(active) = conn.active.as_mut() else {
            return;
        };
        let stage = std::mem::replace(&mut active.stage, Stage::Responded);
        match stage {
            // In-flight file ops keep their stage until they complete.
            Stage::Write { .. } | Stage::Read { .. } => active.stage = stage,
            Stage::Stream(s) if s.writing => active.stage = Stage::Stream(s),
            Stage::Stream(s) => {
                if let Some(slot) = s.slot {
                    self.pools.put_back(slot);
                }
                self.recycle_piece(s.piece);
                if s.lane_deadline.is_some() {
                    // Its queue entry is dead now; the ones behind it may fit.
                    self.serve_buffer_waiters(self.now_seen);
                }
            }
            Stage::Body { body, .. } | Stage::WaitSlot { body, .. } => self.recycle(body),
            Stage::List { body } => self.recycle(body),
            Stage::WaitBuffer { need, .. } => {
                if let BufferNeed::Read { seq, .. } = need {
                    self.end_read(seq);
                }
                // Its queue entry is dead now; the ones behind it may fit.
                self.serve_buffer_waiters(self.now_seen);
            }
            _ => {}
        }
    }

    fn maybe_finish_close(&mut self, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        if !conn.closing || conn.close_submitted {
            return;
        }
        if conn.recv_op.is_some() || conn.send_op.is_some() || conn.file_op.is_some() {
            return;
        }
        conn.close_submitted = true;
        let handle = conn.handle;
        for (buf, _, _) in std::mem::take(&mut conn.outq) {
            self.recycle(buf);
        }
        self.submit(Some(r), OpKind::Close, Op::Close { conn: handle });
    }

    // -----------------------------------------------------------------------------------------
    // Request processing.

    /// Drives a connection with the bytes it has: parse heads, feed bodies, ask for more bytes.
    fn process(&mut self, now: Instant, r: ConnRef) {
        loop {
            let Some(conn) = conn_at(&mut self.conns, r) else {
                return;
            };
            if conn.closing || conn.rejecting || conn.recv_op.is_some() {
                return;
            }
            let Some(rbuf) = conn.rbuf.as_mut() else {
                return;
            };
            if conn.discard > 0 {
                let n = (conn.discard as usize).min(rbuf.len());
                rbuf.drain(..n);
                conn.discard -= n as u64;
                if conn.discard > 0 {
                    self.want_bytes(now, r);
                    return;
                }
            }
            if conn.lingering {
                self.close_conn(r);
                return;
            }
            let progressed = match conn.active.as_ref().map(|a| &a.stage) {
                None => self.try_head(now, r),
                Some(Stage::Body { .. }) => self.feed_body(now, r),
                Some(Stage::Stream(_)) => self.feed_stream(now, r),
                Some(_) => return,
            };
            if !progressed {
                self.want_bytes(now, r);
                return;
            }
        }
    }

    /// Posts a receive if the connection wants bytes; closes on EOF.
    fn want_bytes(&mut self, now: Instant, r: ConnRef) {
        let chunk = self.config.recv_chunk_bytes;
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        if conn.closing || conn.recv_op.is_some() {
            return;
        }
        let buffered = conn.rbuf.as_ref().map_or(0, Vec::len);
        // A request with a grant receives in full chunks; without one (a head, an upload
        // beyond the budget) in small ones, into the buffer it has.
        let granted = conn.grant > 0;
        let chunk = if granted { chunk } else { IDLE_RECV_BYTES };
        let stream = matches!(
            conn.active.as_ref().map(|a| &a.stage),
            Some(Stage::Stream(_))
        );
        let reading = match conn.active.as_ref().map(|a| &a.stage) {
            None | Some(Stage::Body { .. }) => true,
            // Receive only body bytes not already buffered (a receive holds the buffer, so
            // posting one with the rest of the body inside would strand it), and stop at a
            // chunk while the stream cannot take bytes: memory per upload stays bounded.
            Some(Stage::Stream(s)) => s.remaining > buffered as u64 && buffered < chunk,
            _ => false,
        };
        if !reading && conn.discard == 0 {
            return;
        }
        if conn.eof {
            let mid_request = conn.active.is_some() || conn.head_started.is_some();
            if mid_request && conn.active.is_none() {
                // A truncated head: answer it, then close.
                self.respond_error(now, r, Method::Other, 400, "incomplete request", true);
            } else {
                self.close_conn(r);
            }
            return;
        }
        let mut buf = conn.rbuf.take().expect("not receiving");
        let handle = conn.handle;
        // Between requests a connection holds only a small buffer (memory with many idle
        // connections); a request in progress receives in full chunks. Buffers are swapped
        // through the pools, not reallocated.
        let idle = conn.active.is_none() && conn.head_started.is_none() && buf.is_empty();
        if idle && buf.capacity() > 2 * IDLE_RECV_BYTES {
            let small = self.small_buf();
            self.recycle(std::mem::replace(&mut buf, small));
        }
        let mut max = if idle { IDLE_RECV_BYTES } else { chunk };
        let room = buf.capacity() - buf.len();
        if room < max {
            if !granted && (stream || room >= IDLE_RECV_BYTES / 8) {
                // No budget for a bigger buffer: fill the one there is. An upload whose
                // buffer is full waits for its piece to be written (which calls `process`).
                if room == 0 {
                    conn_at(&mut self.conns, r).expect("open").rbuf = Some(buf);
                    return;
                }
                max = room;
            } else {
                let mut bigger = self.recv_buf(buf.len() + max);
                bigger.extend_from_slice(&buf);
                self.recycle(std::mem::replace(&mut buf, bigger));
            }
        }
        let id = self.submit(
            Some(r),
            OpKind::Recv,
            Op::Recv {
                conn: handle,
                buf,
                max,
            },
        );
        conn_at(&mut self.conns, r).expect("open").recv_op = Some(id);
    }

    /// Parses a head from the buffer; returns whether it made progress.
    fn try_head(&mut self, now: Instant, r: ConnRef) -> bool {
        let max = self.config.max_header_bytes;
        let conn = conn_at(&mut self.conns, r).expect("open");
        let rbuf = conn.rbuf.as_mut().expect("buffer present");
        if rbuf.is_empty() {
            return false;
        }
        if conn.head_started.is_none() {
            conn.head_started = Some(now);
        }
        let started = conn.head_started.expect("set above");
        match http::parse_head_with(rbuf, max, &mut self.head_buffers) {
            Ok(HeadParse::Partial) => false,
            Err(e) => {
                rbuf.clear();
                self.respond_error(now, r, Method::Other, e.status, e.reason, true);
                false
            }
            Ok(HeadParse::Complete { head, head_len }) => {
                rbuf.drain(..head_len);
                conn.head_started = None;
                conn.keep_alive = head.keep_alive && !self.shutting_down;
                self.stats.requests += 1;
                self.stats.by_method[stats::method_index(head.method)] += 1;
                self.start_request(now, r, head, started);
                true
            }
        }
    }

    fn start_request(&mut self, now: Instant, r: ConnRef, head: RequestHead, started: Instant) {
        let route = match self.route(&head) {
            Ok(route) => route,
            Err((status, reason, allow)) => {
                self.refuse(now, r, head, started, status, reason, allow);
                return;
            }
        };
        let writes = matches!(route, Route::PutBlock { .. } | Route::DeleteBlock { .. });
        if writes && !self.authorized(&head) {
            self.refuse(
                now,
                r,
                head,
                started,
                401,
                "missing or wrong bearer token",
                None,
            );
            return;
        }
        let span = self.request_span(&head);
        let conn = conn_at(&mut self.conns, r).expect("open");
        conn.active = Some(Active {
            head,
            route,
            started,
            asked: started,
            stage: Stage::Responded,
            span,
        });
        match route {
            Route::PutBlock { .. } => self.start_body(now, r, BLOCK_LEN_MAX_BYTES),
            Route::Missing => self.start_body(now, r, MISSING_BODY_MAX_BYTES),
            Route::GetBlock { hash, .. } => {
                self.ask(r, 0, Stage::Lookup, |worker, request| {
                    ToController::GetAddress {
                        worker,
                        request,
                        hash,
                    }
                });
            }
            Route::DeleteBlock { hash } => {
                self.ask(r, 0, Stage::Release, |worker, request| {
                    ToController::Release {
                        worker,
                        request,
                        hash,
                    }
                });
            }
            Route::IpfsInline {
                head_only,
                negotiated,
            } => self.respond_ipfs_inline(now, r, head_only, negotiated),
            Route::List => self.start_list(now, r),
            Route::Health => match self.health(now) {
                None => self.respond_text(now, r, 200, b"ok", "text/plain"),
                Some(why) => {
                    let line = format!("{}\n", why.reason());
                    let headers: [(&str, &[u8]); 3] = [
                        ("Content-Type", b"text/plain"),
                        ("Cache-Control", b"no-store"),
                        ("Retry-After", b"1"),
                    ];
                    let body: [&[u8]; 1] = [line.as_bytes()];
                    let method = stage_method(&self.conns, r);
                    self.respond_full(now, r, method, 503, &headers, &body, false);
                }
            },
            Route::Stats => {
                let body = stats::render_json(&self.snapshot_now()).into_bytes();
                self.respond_text(now, r, 200, &body, "application/json")
            }
            Route::Metrics => {
                let body = stats::render_prometheus(&self.snapshot_now()).into_bytes();
                self.respond_text(now, r, 200, &body, "text/plain; version=0.0.4")
            }
        }
    }

    /// Sends one controller request for the connection's current request.
    fn ask(
        &mut self,
        r: ConnRef,
        tag: usize,
        stage: Stage,
        make: impl FnOnce(WorkerId, RequestId) -> ToController,
    ) {
        let request = self.next_request();
        self.pending.insert(
            request,
            Waiter {
                conn: r,
                tag,
                sent: self.now_seen,
            },
        );
        self.msg_out.push_back(make(self.config.id, request));
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active request");
        active.stage = stage;
        active.asked = self.now_seen;
    }

    fn next_request(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// The span of one request (cheap when debug logging is off).
    fn request_span(&self, head: &RequestHead) -> tracing::Span {
        let span = tracing::debug_span!(
            "request",
            worker = self.config.id,
            id = self.stats.requests,
            method = ?head.method,
            path = %String::from_utf8_lossy(&head.path),
        );
        span.in_scope(|| tracing::debug!("request"));
        span
    }

    fn authorized(&self, head: &RequestHead) -> bool {
        let Some(token) = &self.config.auth_token else {
            return true;
        };
        let Some(value) = &head.authorization else {
            return false;
        };
        let Some(given) = value.strip_prefix(b"Bearer ") else {
            return false;
        };
        constant_time_eq(given.trim_ascii(), token)
    }

    #[allow(clippy::type_complexity)]
    fn route(
        &self,
        head: &RequestHead,
    ) -> Result<Route, (u16, &'static str, Option<&'static str>)> {
        let path = head.path.as_slice();
        let m = head.method;
        let not_allowed = |allow: &'static str| Err((405, "method not allowed", Some(allow)));
        let block_methods = "GET, HEAD, PUT, DELETE";
        let hash_route = |hash: BlockHash| match m {
            Method::Get => Ok(Route::GetBlock {
                hash,
                head_only: false,
                flavour: Flavour::Block,
            }),
            Method::Head => Ok(Route::GetBlock {
                hash,
                head_only: true,
                flavour: Flavour::Block,
            }),
            Method::Put => Ok(Route::PutBlock {
                expected: Some(hash),
            }),
            Method::Delete => Ok(Route::DeleteBlock { hash }),
            _ => not_allowed(block_methods),
        };
        let read_only = |route: Route| match m {
            Method::Get | Method::Head => Ok(route),
            _ => not_allowed("GET, HEAD"),
        };
        match path {
            b"/" | b"/block" => match m {
                Method::Put => Ok(Route::PutBlock { expected: None }),
                _ => not_allowed("PUT"),
            },
            b"/blocks/missing" => match m {
                Method::Post => Ok(Route::Missing),
                _ => not_allowed("POST"),
            },
            b"/blocks" => read_only(Route::List),
            b"/health" => read_only(Route::Health),
            b"/stats" => read_only(Route::Stats),
            b"/metrics" => read_only(Route::Metrics),
            _ => {
                if let Some(rest) = path.strip_prefix(b"/ipfs/") {
                    ipfs::ipfs_route(m, rest, head)
                } else if let Some(rest) = path.strip_prefix(b"/block/") {
                    match BlockHash::from_hex(rest) {
                        Some(hash) => hash_route(hash),
                        None => Err((400, "block address must be 64 hex characters", None)),
                    }
                } else if let Some(hash) = path.strip_prefix(b"/").and_then(BlockHash::from_hex) {
                    hash_route(hash)
                } else {
                    Err((404, "no such path", None))
                }
            }
        }
    }

    /// Answers a request refused at its head, skipping a small declared body so the connection
    /// stays usable.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        now: Instant,
        r: ConnRef,
        head: RequestHead,
        started: Instant,
        status: u16,
        reason: &str,
        allow: Option<&'static str>,
    ) {
        let method = head.method;
        let close = match head.body {
            BodyFraming::None => false,
            BodyFraming::Length(n) if n <= DISCARD_MAX_BYTES && !head.expect_continue => {
                conn_at(&mut self.conns, r).expect("open").discard = n;
                false
            }
            _ => true,
        };
        let span = self.request_span(&head);
        let conn = conn_at(&mut self.conns, r).expect("open");
        conn.active = Some(Active {
            head,
            route: Route::Health,
            started,
            asked: started,
            stage: Stage::Responded,
            span,
        });
        let mut headers: [(&str, &[u8]); 2] = [("", b""); 2];
        let mut n = 0;
        if let Some(allow) = allow {
            headers[n] = ("Allow", allow.as_bytes());
            n += 1;
        }
        if status == 401 {
            headers[n] = ("WWW-Authenticate", b"Bearer");
            n += 1;
        }
        let body: [&[u8]; 2] = [reason.as_bytes(), b"\n"];
        self.respond_full(now, r, method, status, &headers[..n], &body, close);
    }

    // -----------------------------------------------------------------------------------------
    // Bodies.

    fn start_body(&mut self, now: Instant, r: ConnRef, max_bytes: u64) {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let active = conn.active.as_ref().expect("active");
        let method = active.head.method;
        let reader = match active.head.body {
            BodyFraming::None => {
                self.respond_error(
                    now,
                    r,
                    method,
                    411,
                    "a body with Content-Length or chunked \
                    transfer coding is required",
                    false,
                );
                return;
            }
            BodyFraming::Length(0) => {
                self.respond_error(now, r, method, 400, "empty body", false);
                return;
            }
            BodyFraming::Length(n) if n > max_bytes => {
                // Answered at once with `Connection: close`. A body of moderate size that the
                // client sends anyway is drained first (lingering close): closing a socket
                // with unread bytes resets it, and the client might lose the 413.
                if n <= OVERSIZE_DISCARD_MAX_BYTES && !active.head.expect_continue {
                    conn.discard = n;
                }
                self.respond_error(now, r, method, 413, "body too large", true);
                return;
            }
            BodyFraming::Length(n) if matches!(active.route, Route::PutBlock { .. }) => {
                self.start_stream(now, r, n);
                return;
            }
            BodyFraming::Length(n) => BodyReader::Length { remaining: n },
            BodyFraming::Chunked => BodyReader::Chunked(ChunkedDecoder::new(max_bytes)),
        };
        self.begin_body(now, r, reader, true);
    }

    /// Reads a body into one buffer, once the request has the budget for it (else it waits).
    fn begin_body(&mut self, now: Instant, r: ConnRef, reader: BodyReader, send_continue: bool) {
        let need = self.body_grant(&reader);
        if !self.take_grant(r, need, false, false) {
            let need = BufferNeed::Body {
                reader,
                send_continue,
            };
            self.wait_for_buffer(now, r, need);
            return;
        }
        // Room for the whole body at once (a `POST /blocks/missing` may exceed a large
        // buffer): it never grows past its grant.
        let capacity = need - self.recv_buf_bytes();
        let mut body = self.large_buf();
        body.reserve_exact(capacity);
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        active.stage = Stage::Body {
            reader,
            body,
            hasher: sha2::Sha256::new(),
            crc: 0,
        };
        if send_continue {
            self.send_continue_if_expected(now, r);
        }
    }

    fn send_continue_if_expected(&mut self, now: Instant, r: ConnRef) {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let expect = conn.active.as_ref().is_some_and(|a| a.head.expect_continue);
        let buffered = conn.rbuf.as_ref().is_some_and(|b| !b.is_empty());
        if expect && !buffered {
            conn.outq
                .push_back((b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), 0, 25));
            self.pump_send(now, r);
        }
    }

    fn start_stream(&mut self, now: Instant, r: ConnRef, len: u64) {
        assert!(
            (1..=BLOCK_LEN_MAX_BYTES).contains(&len),
            "length checked by the caller"
        );
        let stream = StreamPut {
            len,
            remaining: len,
            slot: None,
            deadline: now + self.config.slot_wait_limit,
            piece: Vec::new(),
            piece_max: 0,
            lane_deadline: None,
            writing: false,
            piece_written: 0,
            written: 0,
            hasher: sha2::Sha256::new(),
            crc: 0,
        };
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        active.stage = Stage::Stream(stream);
        let class = SizeClass::for_len(len).expect("length checked");
        match self.pools.take(class) {
            Some(slot) => self.stream_slot(now, r, slot),
            None => {
                self.pools.note_miss(class);
                self.slot_waiters[class.index()].push_back(r);
                self.refill_pools();
            }
        }
        self.send_continue_if_expected(now, r);
    }

    /// The upload has its slot; now it needs a lane (a piece and a receive buffer) from the
    /// buffer budget, or waits for one. Not before: an upload waiting for space must not
    /// hold buffers others could use meanwhile.
    fn stream_slot(&mut self, now: Instant, r: ConnRef, slot: Slot) {
        let wait_limit = self.config.slot_wait_limit.min(LANE_WAIT_MAX);
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        let Stage::Stream(s) = &mut active.stage else {
            unreachable!("stream stage")
        };
        assert!(s.slot.is_none() && s.len <= slot.bytes());
        s.slot = Some(slot);
        let lane = self.lane_bytes();
        if self.take_grant(r, lane, true, false) {
            self.give_lane(r);
            return;
        }
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        let Stage::Stream(s) = &mut active.stage else {
            unreachable!("stream stage")
        };
        let deadline = now + wait_limit;
        s.lane_deadline = Some(deadline);
        // Shorter than `min_timeout`: the lazy deadline scan must know (see `poll_timeout`).
        self.deadline_cache = self.deadline_cache.min(deadline);
        self.stats.buffer_waits += 1;
        self.lane_waiters.push_back(r);
    }

    /// Moves buffered body bytes into the piece; writes a full (or the last) piece.
    fn feed_stream(&mut self, _now: Instant, r: ConnRef) -> bool {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let rbuf = conn.rbuf.as_mut().expect("buffer present");
        let active = conn.active.as_mut().expect("active");
        let Stage::Stream(s) = &mut active.stage else {
            unreachable!("stream stage")
        };
        let Some(slot) = s.slot else { return false };
        if s.writing || s.piece_max == 0 {
            return false;
        }
        let take = (s.remaining as usize)
            .min(rbuf.len())
            .min(s.piece_max - s.piece.len());
        s.piece.extend_from_slice(&rbuf[..take]);
        rbuf.drain(..take);
        s.remaining -= take as u64;
        let new = &s.piece[s.piece.len() - take..];
        s.hasher.update(new);
        s.crc = crc32c::crc32c_append(s.crc, new);
        let full = s.piece.len() == s.piece_max || s.remaining == 0;
        if !full || s.piece.is_empty() {
            return take > 0;
        }
        s.writing = true;
        s.piece_written = 0;
        let buf = std::mem::take(&mut s.piece);
        let end = buf.len();
        let offset = slot.offset + s.written;
        debug_assert!(s.written + end as u64 <= s.len);
        self.submit_file(
            r,
            Op::WriteAt {
                offset,
                buf,
                start: 0,
                end,
            },
        );
        true
    }

    fn on_stream_write_done(
        &mut self,
        now: Instant,
        r: ConnRef,
        mut buf: Vec<u8>,
        result: Result<u64, Errno>,
        closing: bool,
    ) {
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        let Stage::Stream(s) = &mut active.stage else {
            unreachable!("stream stage")
        };
        let slot = s.slot.expect("a write has a slot");
        match result {
            Ok(n) if n > 0 && !closing => s.piece_written += n as usize,
            Err(e) if e.is_transient() && !closing => {}
            _ => {
                // Failed or abandoned: nothing in the slot was acknowledged; back to the pool.
                active.stage = Stage::Responded;
                self.pools.put_back(slot);
                self.recycle_piece(buf);
                if !closing {
                    let m = "write to the data file failed";
                    self.respond_error(now, r, Method::Put, 500, m, true);
                }
                return;
            }
        }
        if s.piece_written < buf.len() {
            let start = s.piece_written;
            let end = buf.len();
            let offset = slot.offset + s.written + start as u64;
            self.submit_file(
                r,
                Op::WriteAt {
                    offset,
                    buf,
                    start,
                    end,
                },
            );
            return;
        }
        s.written += buf.len() as u64;
        s.writing = false;
        buf.clear();
        s.piece = buf;
        if s.remaining > 0 {
            if s.piece_max < STREAM_PIECE_BYTES {
                self.upgrade_stream(r);
            }
            self.process(now, r);
            return;
        }
        assert_eq!(s.written, s.len, "every body byte was written");
        let stage = std::mem::replace(&mut active.stage, Stage::Responded);
        let Stage::Stream(s) = stage else {
            unreachable!()
        };
        let Route::PutBlock { expected } = active.route else {
            unreachable!()
        };
        self.recycle_piece(s.piece);
        // The body is in its slot: the upload's buffers go back to the budget now, not after
        // the commit the answer waits for.
        self.shrink_rbuf(r);
        self.release_grant(now, r);
        let hash = BlockHash(s.hasher.finalize().into());
        if expected.is_some_and(|e| e != hash) {
            self.pools.put_back(slot);
            let m = "body does not hash to the address in the path";
            self.respond_error(now, r, Method::Put, 422, m, false);
            return;
        }
        let (len, crc32c) = (s.len as u32, s.crc);
        self.ask(r, 0, Stage::Occupy { hash }, |worker, request| {
            ToController::Occupy {
                worker,
                request,
                hash,
                slot,
                len,
                crc32c,
            }
        });
    }

    /// An upload going in small pieces takes full ones once the budget has room again.
    fn upgrade_stream(&mut self, r: ConnRef) {
        let lane = self.lane_bytes();
        if self.take_grant(r, lane, true, false) {
            self.give_lane(r);
        }
    }

    /// The upload of `r`, granted its lane, takes full pieces.
    fn give_lane(&mut self, r: ConnRef) {
        let piece = match self.piece_bufs.pop() {
            Some(b) => b,
            None => Vec::with_capacity(STREAM_PIECE_BYTES),
        };
        let old = self.set_piece(r, piece, STREAM_PIECE_BYTES);
        self.recycle(old);
    }

    /// The upload of `r` waited for a lane in vain: it goes on in small pieces.
    fn degrade_stream(&mut self, r: ConnRef) {
        self.stats.small_piece_uploads += 1;
        let small = self.small_buf();
        let old = self.set_piece(r, small, IDLE_RECV_BYTES);
        debug_assert_eq!(old.capacity(), 0, "no piece while waiting for a lane");
    }

    /// Swaps the (empty) piece buffer of `r`'s upload; returns the old one.
    fn set_piece(&mut self, r: ConnRef, piece: Vec<u8>, piece_max: usize) -> Vec<u8> {
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        let Stage::Stream(s) = &mut active.stage else {
            unreachable!("stream stage")
        };
        assert!(s.piece.is_empty() && !s.writing);
        s.piece_max = piece_max;
        s.lane_deadline = None;
        std::mem::replace(&mut s.piece, piece)
    }

    /// Swaps a connection's receive buffer for a small one if what it holds fits.
    fn shrink_rbuf(&mut self, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        let Some(rbuf) = conn.rbuf.as_ref() else {
            return;
        };
        if rbuf.capacity() <= 2 * IDLE_RECV_BYTES || rbuf.len() > IDLE_RECV_BYTES {
            return;
        }
        let mut small = self.small_buf();
        let conn = conn_at(&mut self.conns, r).expect("open");
        let rbuf = conn.rbuf.as_mut().expect("checked above");
        small.extend_from_slice(rbuf);
        let big = std::mem::replace(rbuf, small);
        self.recycle(big);
    }

    fn recycle_piece(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() != STREAM_PIECE_BYTES {
            // A small piece (an upload beyond the budget).
            self.recycle(buf);
        } else if self.piece_bufs.len() < self.config.buffer_budget_bytes / STREAM_PIECE_BYTES {
            self.piece_bufs.push(buf);
        }
    }

    /// Moves buffered bytes into the body; returns whether anything happened.
    fn feed_body(&mut self, now: Instant, r: ConnRef) -> bool {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let rbuf = conn.rbuf.as_mut().expect("buffer present");
        let active = conn.active.as_mut().expect("active");
        let method = active.head.method;
        let Stage::Body {
            reader,
            body,
            hasher,
            crc,
        } = &mut active.stage
        else {
            unreachable!("feed_body outside the body stage")
        };
        let before = body.len();
        let result: Result<(usize, bool), HttpError> = match reader {
            BodyReader::Length { remaining } => {
                let n = (*remaining as usize).min(rbuf.len());
                body.extend_from_slice(&rbuf[..n]);
                *remaining -= n as u64;
                Ok((n, *remaining == 0))
            }
            BodyReader::Chunked(decoder) => {
                decoder.decode(rbuf, body).map(|n| (n, decoder.is_done()))
            }
        };
        match result {
            Err(e) => {
                rbuf.clear();
                self.respond_error(now, r, method, e.status, e.reason, true);
                true
            }
            Ok((consumed, done)) => {
                rbuf.drain(..consumed);
                hasher.update(&body[before..]);
                *crc = crc32c::crc32c_append(*crc, &body[before..]);
                if done {
                    self.body_complete(now, r);
                    return true;
                }
                consumed > 0
            }
        }
    }

    fn body_complete(&mut self, now: Instant, r: ConnRef) {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let active = conn.active.as_mut().expect("active");
        let stage = std::mem::replace(&mut active.stage, Stage::Responded);
        let Stage::Body {
            body, hasher, crc, ..
        } = stage
        else {
            unreachable!()
        };
        let method = active.head.method;
        if body.is_empty() {
            self.recycle(body);
            self.respond_error(now, r, method, 400, "empty body", false);
            return;
        }
        match active.route {
            Route::Missing => self.start_missing(now, r, body),
            Route::PutBlock { expected } => {
                let hash = BlockHash(hasher.finalize().into());
                if expected.is_some_and(|e| e != hash) {
                    self.recycle(body);
                    self.respond_error(
                        now,
                        r,
                        method,
                        422,
                        "body does not hash to the address \
                        in the path",
                        false,
                    );
                    return;
                }
                let deadline = now + self.config.slot_wait_limit;
                active.stage = Stage::WaitSlot {
                    body,
                    hash,
                    crc,
                    deadline,
                };
                self.try_take_slot(now, r);
            }
            _ => unreachable!("only PUT and missing have bodies"),
        }
    }

    // -----------------------------------------------------------------------------------------
    // PUT.

    fn body_class(stage: &Stage) -> SizeClass {
        let Stage::WaitSlot { body, .. } = stage else {
            unreachable!()
        };
        SizeClass::for_len(body.len() as u64).expect("body length was checked")
    }

    fn try_take_slot(&mut self, now: Instant, r: ConnRef) {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let active = conn.active.as_mut().expect("active");
        let class = Self::body_class(&active.stage);
        let Some(slot) = self.pools.take(class) else {
            // The pool asks the controller for target + waiting slots (even after a short
            // refill); a refill that comes back short while PUTs wait answers them 507,
            // unless the controller is reclaiming parked slots (then they wait and ask again).
            self.pools.note_miss(class);
            self.slot_waiters[class.index()].push_back(r);
            self.refill_pools();
            return;
        };
        self.start_write(now, r, slot);
    }

    fn start_write(&mut self, _now: Instant, r: ConnRef, slot: Slot) {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let active = conn.active.as_mut().expect("active");
        let stage = std::mem::replace(&mut active.stage, Stage::Responded);
        let Stage::WaitSlot {
            body, hash, crc, ..
        } = stage
        else {
            unreachable!()
        };
        assert!(body.len() as u64 <= slot.bytes());
        let end = body.len();
        active.stage = Stage::Write {
            hash,
            crc,
            slot,
            written: 0,
        };
        let op = Op::WriteAt {
            offset: slot.offset,
            buf: body,
            start: 0,
            end,
        };
        self.submit_file(r, op);
    }

    fn on_write_done(
        &mut self,
        now: Instant,
        r: ConnRef,
        buf: Vec<u8>,
        result: Result<u64, Errno>,
        closing: bool,
    ) {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let active = conn.active.as_mut().expect("active");
        let Stage::Write {
            hash,
            crc,
            slot,
            written,
        } = &mut active.stage
        else {
            unreachable!()
        };
        let (hash, crc, slot) = (*hash, *crc, *slot);
        let end = buf.len();
        match result {
            Ok(n) if n > 0 && !closing => *written += n as usize,
            Err(e) if e.is_transient() && !closing => {}
            _ => {
                // Failed or abandoned: the slot holds nothing acknowledged; back to the pool.
                active.stage = Stage::Responded;
                self.pools.put_back(slot);
                self.recycle(buf);
                if !closing {
                    self.respond_error(
                        now,
                        r,
                        Method::Put,
                        500,
                        "write to the data file \
                        failed",
                        false,
                    );
                }
                return;
            }
        }
        if *written < end {
            let start = *written;
            let op = Op::WriteAt {
                offset: slot.offset + start as u64,
                buf,
                start,
                end,
            };
            self.submit_file(r, op);
            return;
        }
        let len = end as u32;
        self.recycle(buf);
        self.ask(r, 0, Stage::Occupy { hash }, |worker, request| {
            ToController::Occupy {
                worker,
                request,
                hash,
                slot,
                len,
                crc32c: crc,
            }
        });
    }

    fn on_occupied(&mut self, now: Instant, r: ConnRef, outcome: OccupyOutcome) {
        let Some(Stage::Occupy { hash }) = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_ref())
            .map(|a| &a.stage)
        else {
            return;
        };
        let hash = *hash;
        let status = match outcome {
            OccupyOutcome::Stored => 201,
            OccupyOutcome::Duplicate => 200,
        };
        self.respond_stored(now, r, hash, status);
    }

    /// Out of space for a PUT: a stored duplicate is still a 200 (it needs no slot).
    fn on_dedup_checked(&mut self, now: Instant, r: ConnRef, found: bool) {
        let Some(Stage::DedupCheck { hash }) = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_ref())
            .map(|a| &a.stage)
        else {
            return;
        };
        let hash = *hash;
        if found {
            self.respond_stored(now, r, hash, 200);
        } else {
            self.respond_error(
                now,
                r,
                Method::Put,
                507,
                "no free slot of the needed size",
                false,
            );
        }
    }

    fn respond_stored(&mut self, now: Instant, r: ConnRef, hash: BlockHash, status: u16) {
        let hex = hash.hex();
        let location = location_of(&hex);
        let etag = etag_of(&hex);
        let headers: [(&str, &[u8]); 3] = [
            ("Content-Type", b"text/plain"),
            ("Location", &location),
            ("ETag", &etag),
        ];
        let body: [&[u8]; 1] = [hex.as_bytes()];
        self.respond_full(now, r, Method::Put, status, &headers, &body, false);
    }

    // -----------------------------------------------------------------------------------------
    // GET and HEAD.

    fn on_address(&mut self, now: Instant, r: ConnRef, location: Option<Location>, seq: u64) {
        let Some(active) = conn_at(&mut self.conns, r).and_then(|c| c.active.as_ref()) else {
            return;
        };
        let Route::GetBlock {
            hash,
            head_only,
            flavour,
        } = active.route
        else {
            return;
        };
        if !matches!(active.stage, Stage::Lookup) {
            return;
        }
        let method = active.head.method;
        let Some(location) = location else {
            self.respond_error(now, r, method, 404, "no such block", false);
            return;
        };
        let answered = match flavour {
            Flavour::Block => self.answer_block_without_body(now, r, hash, head_only, location),
            Flavour::Ipfs(negotiated) => {
                self.answer_ipfs_without_body(now, r, negotiated, head_only, location)
            }
        };
        if answered {
            return;
        }
        // The reply stays in flight until the read completes (guarantee 4), waiting for the
        // buffer budget included.
        let fresh = self.reads_in_flight.insert(seq);
        assert!(fresh, "address reply {seq} read twice");
        let need = self.read_grant(location.len);
        if need > 0 && !self.take_grant(r, need, false, false) {
            self.wait_for_buffer(now, r, BufferNeed::Read { location, seq });
            return;
        }
        self.start_read(r, location, seq);
    }

    /// `/block/`: a 304, or a HEAD's 200, needs no read. True when answered.
    fn answer_block_without_body(
        &mut self,
        now: Instant,
        r: ConnRef,
        hash: BlockHash,
        head_only: bool,
        location: Location,
    ) -> bool {
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_ref())
            .expect("active");
        let method = active.head.method;
        let hex = hash.hex();
        let not_modified = active
            .head
            .if_none_match
            .as_ref()
            .is_some_and(|v| http::if_none_match_matches(v, hex.as_str()));
        let etag = etag_of(&hex);
        if not_modified {
            let headers: [(&str, &[u8]); 2] = [("ETag", &etag), CACHE_CONTROL];
            self.respond_head_only(now, r, method, 304, &headers, None);
            return true;
        }
        if head_only {
            let headers: [(&str, &[u8]); 4] = [
                ("Content-Type", b"application/octet-stream"),
                ("ETag", &etag),
                CACHE_CONTROL,
                ("Accept-Ranges", b"bytes"),
            ];
            self.respond_head_only(now, r, method, 200, &headers, Some(u64::from(location.len)));
            return true;
        }
        false
    }

    fn start_read(&mut self, r: ConnRef, location: Location, seq: u64) {
        debug_assert!(self.reads_in_flight.contains(&seq));
        let end = HEAD_ROOM_BYTES + location.len as usize;
        let buf = self.read_buf(location.len);
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        active.stage = Stage::Read {
            location,
            seq,
            read: 0,
        };
        let op = Op::ReadAt {
            offset: location.slot.offset,
            buf,
            start: HEAD_ROOM_BYTES,
            end,
        };
        self.submit_file(r, op);
    }

    fn end_read(&mut self, seq: u64) {
        let removed = self.reads_in_flight.remove(&seq);
        assert!(removed, "read {seq} was in flight");
    }

    fn on_read_done(
        &mut self,
        now: Instant,
        r: ConnRef,
        buf: Vec<u8>,
        result: Result<u64, Errno>,
        closing: bool,
    ) {
        let conn = conn_at(&mut self.conns, r).expect("open");
        let active = conn.active.as_mut().expect("active");
        let Stage::Read {
            location,
            seq,
            read,
        } = &mut active.stage
        else {
            unreachable!()
        };
        let (location, seq) = (*location, *seq);
        let len = location.len as usize;
        let failed = match result {
            Ok(n) if n > 0 && !closing => {
                *read += n as usize;
                false
            }
            Err(e) if e.is_transient() && !closing => false,
            _ => true,
        };
        if failed {
            active.stage = Stage::Responded;
            self.end_read(seq);
            self.recycle(buf);
            if !closing {
                self.respond_error(
                    now,
                    r,
                    Method::Get,
                    500,
                    "read from the data file failed",
                    false,
                );
            }
            return;
        }
        if *read < len {
            let start = HEAD_ROOM_BYTES + *read;
            let offset = location.slot.offset + *read as u64;
            let end = HEAD_ROOM_BYTES + len;
            self.submit_file(
                r,
                Op::ReadAt {
                    offset,
                    buf,
                    start,
                    end,
                },
            );
            return;
        }
        active.stage = Stage::Responded;
        self.end_read(seq);
        self.send_block(now, r, buf, location);
    }

    /// Verifies the bytes read, then answers 200 or 206 (or 416, or 500 on corruption).
    fn send_block(&mut self, now: Instant, r: ConnRef, buf: Vec<u8>, location: Location) {
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_ref())
            .expect("active");
        let Route::GetBlock { hash, flavour, .. } = active.route else {
            unreachable!()
        };
        let len = u64::from(location.len);
        let data = &buf[HEAD_ROOM_BYTES..];
        debug_assert_eq!(data.len() as u64, len);
        let ok = match self.config.verify_reads {
            VerifyReads::Crc32c => crc32c::crc32c(data) == location.crc32c,
            VerifyReads::Sha256 => BlockHash::of(data) == hash,
            VerifyReads::Off => true,
        };
        if !ok {
            self.stats.corrupt_blocks_detected += 1;
            if let Some(held_back) = self.corrupt_log.allow(now) {
                let check = self.config.verify_reads.as_str();
                tracing::error!(
                    %hash,
                    offset = location.slot.offset,
                    len = location.len,
                    check,
                    held_back,
                    "a GET read bytes that fail verification (corrupt block, answered 500); \
                     run `buddy-blocks check --repair` offline and re-fetch it"
                );
            }
            self.recycle(buf);
            self.respond_error(
                now,
                r,
                Method::Get,
                500,
                "stored bytes failed verification",
                false,
            );
            return;
        }
        if let Flavour::Ipfs(negotiated) = flavour {
            self.send_ipfs_block(now, r, buf, location, negotiated);
            return;
        }
        let mut content_range = ContentRange::new();
        let Some((status, start, end)) = self.plan_range(r, len, &mut content_range) else {
            self.recycle(buf);
            self.respond_unsatisfiable(now, r, &content_range);
            return;
        };
        let etag = etag_of(&hash.hex());
        let headers: [(&str, &[u8]); 5] = [
            ("Content-Type", b"application/octet-stream"),
            ("ETag", &etag),
            CACHE_CONTROL,
            ("Accept-Ranges", b"bytes"),
            ("Content-Range", content_range.as_bytes()),
        ];
        let headers = if status == 206 {
            &headers[..]
        } else {
            &headers[..4]
        };
        let persistence = persistence_of(conn_at(&mut self.conns, r).expect("open"));
        let mut head = std::mem::take(&mut self.head_scratch);
        head.clear();
        http::write_response_head(&mut head, status, headers, Some(end - start), persistence);
        let body = HEAD_ROOM_BYTES + start as usize..HEAD_ROOM_BYTES + end as usize;
        self.send_with_head(now, r, status, buf, &head, body);
        self.head_scratch = head;
    }

    /// Status (200 or 206) and byte span of a GET of `len` bytes under the request's `Range`,
    /// writing `Content-Range` for a 206; `None` (with `bytes */<len>` written) when the range
    /// is unsatisfiable.
    fn plan_range(
        &self,
        r: ConnRef,
        len: u64,
        content_range: &mut ContentRange,
    ) -> Option<(u16, u64, u64)> {
        let range = stage_head(&self.conns, r).and_then(|h| h.range.as_deref());
        let spec = range.map_or(RangeSpec::Full, |v| http::parse_range(v, len));
        match spec {
            RangeSpec::Full => Some((200, 0, len)),
            RangeSpec::Partial {
                start,
                end_inclusive,
            } => {
                content_range.write(format_args!("bytes {start}-{end_inclusive}/{len}"));
                Some((206, start, end_inclusive + 1))
            }
            RangeSpec::Unsatisfiable => {
                content_range.write(format_args!("bytes */{len}"));
                None
            }
        }
    }

    fn respond_unsatisfiable(&mut self, now: Instant, r: ConnRef, content_range: &ContentRange) {
        let headers: [(&str, &[u8]); 1] = [("Content-Range", content_range.as_bytes())];
        let body: [&[u8]; 1] = [b"range not satisfiable\n"];
        self.respond_full(now, r, Method::Get, 416, &headers, &body, false);
    }

    /// Sends `head` followed by `buf[body]`, the head written into the room before the body
    /// (no copy of the body, no second buffer).
    fn send_with_head(
        &mut self,
        now: Instant,
        r: ConnRef,
        status: u16,
        mut buf: Vec<u8>,
        head: &[u8],
        body: std::ops::Range<usize>,
    ) {
        assert!(body.start <= body.end && body.end <= buf.len());
        assert!(
            !head.is_empty() && head.len() <= body.start,
            "a {}-byte response head fits the room before the body",
            head.len()
        );
        let head_start = body.start - head.len();
        buf[head_start..body.start].copy_from_slice(head);
        self.queue_response(now, r, Method::Get, status, buf, head_start, body.end);
    }

    // -----------------------------------------------------------------------------------------
    // DELETE, missing, list.

    fn on_released(&mut self, now: Instant, r: ConnRef, outcome: ReleaseOutcome) {
        let Some(Stage::Release) = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_ref())
            .map(|a| &a.stage)
        else {
            return;
        };
        match outcome {
            ReleaseOutcome::Deleted => {
                self.respond_head_only(now, r, Method::Delete, 204, &[], None);
            }
            ReleaseOutcome::NotFound => {
                self.respond_error(now, r, Method::Delete, 404, "no such block", false)
            }
        }
    }

    fn start_missing(&mut self, now: Instant, r: ConnRef, body: Vec<u8>) {
        let mut hashes = Vec::new();
        let mut problem = None;
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line).trim_ascii();
            if line.is_empty() {
                continue;
            }
            match BlockHash::from_hex(line) {
                Some(h) if hashes.len() < MISSING_HASHES_MAX => hashes.push(h),
                Some(_) => {
                    problem = Some(format!("more than {MISSING_HASHES_MAX} hashes"));
                    break;
                }
                None => {
                    problem = Some(format!("line {}: not a 64-hex block address", i + 1));
                    break;
                }
            }
        }
        self.recycle(body);
        if let Some(p) = problem {
            let body = format!("{p}\n").into_bytes();
            self.respond_full(now, r, Method::Post, 400, &[], &[&body], false);
            return;
        }
        let n = hashes.len();
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        active.stage = Stage::Missing {
            hashes,
            state: vec![0; n],
            next: 0,
            outstanding: 0,
        };
        self.pump_missing(now, r);
    }

    /// Keeps up to MISSING_IN_FLIGHT_MAX lookups going; answers when all are back.
    fn pump_missing(&mut self, now: Instant, r: ConnRef) {
        loop {
            let active = conn_at(&mut self.conns, r)
                .and_then(|c| c.active.as_mut())
                .expect("active");
            let Stage::Missing {
                hashes,
                state,
                next,
                outstanding,
            } = &mut active.stage
            else {
                return;
            };
            if *next < hashes.len() && *outstanding < MISSING_IN_FLIGHT_MAX {
                let (tag, hash) = (*next, hashes[*next]);
                *next += 1;
                *outstanding += 1;
                active.asked = self.now_seen;
                let request = self.next_request();
                self.pending.insert(
                    request,
                    Waiter {
                        conn: r,
                        tag,
                        sent: self.now_seen,
                    },
                );
                let worker = self.config.id;
                self.msg_out.push_back(ToController::GetAddress {
                    worker,
                    request,
                    hash,
                });
                continue;
            }
            if *outstanding > 0 {
                return;
            }
            let mut body = Vec::with_capacity(state.iter().filter(|&&s| s == 2).count() * 65);
            for (h, s) in hashes.iter().zip(state.iter()) {
                if *s == 2 {
                    body.extend_from_slice(h.to_hex().as_bytes());
                    body.push(b'\n');
                }
            }
            self.respond_text(now, r, 200, &body, "text/plain");
            return;
        }
    }

    fn on_missing_reply(&mut self, now: Instant, r: ConnRef, tag: usize, found: Option<bool>) {
        let Some(active) = conn_at(&mut self.conns, r).and_then(|c| c.active.as_mut()) else {
            return;
        };
        let Stage::Missing {
            state, outstanding, ..
        } = &mut active.stage
        else {
            return;
        };
        *outstanding -= 1;
        match found {
            Some(present) => state[tag] = if present { 1 } else { 2 },
            None => {
                // A lookup failed: fail the whole request once the rest are back.
                state[tag] = 3;
            }
        }
        if *outstanding == 0 && state.contains(&3) {
            let stage = std::mem::replace(&mut active.stage, Stage::Responded);
            let Stage::Missing {
                hashes,
                state,
                next,
                ..
            } = stage
            else {
                unreachable!()
            };
            if next >= hashes.len() {
                let _ = state;
                self.respond_error(now, r, Method::Post, 500, "index lookup failed", false);
                return;
            }
            active.stage = Stage::Missing {
                hashes,
                state,
                next,
                outstanding: 0,
            };
        }
        self.pump_missing(now, r);
    }

    fn start_list(&mut self, now: Instant, r: ConnRef) {
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_ref())
            .expect("active");
        let query = active.head.query.clone();
        let mut after = None;
        let mut limit: u16 = 1000;
        for (k, v) in http::query_pairs(&query) {
            match k {
                b"after" if v.is_empty() => {}
                b"after" => match BlockHash::from_hex(v) {
                    Some(h) => after = Some(h),
                    None => {
                        let m = "after must be a 64-hex block address";
                        self.respond_error(now, r, Method::Get, 400, m, false);
                        return;
                    }
                },
                b"limit" => match std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    Some(n) if n >= 1 => limit = n.min(u64::from(LIST_LIMIT_MAX)) as u16,
                    _ => {
                        let m = "limit must be a positive integer";
                        self.respond_error(now, r, Method::Get, 400, m, false);
                        return;
                    }
                },
                _ => {}
            }
        }
        let body = Vec::new();
        self.ask(r, 0, Stage::List { body }, |worker, request| {
            ToController::List {
                worker,
                request,
                after,
                limit,
            }
        });
    }

    fn on_list_item(&mut self, r: ConnRef, hash: BlockHash, len: u32) {
        let Some(active) = conn_at(&mut self.conns, r).and_then(|c| c.active.as_mut()) else {
            return;
        };
        if let Stage::List { body } = &mut active.stage {
            let mut hex = [0u8; HASH_HEX_LEN];
            hash.write_hex(&mut hex);
            body.extend_from_slice(&hex);
            body.extend_from_slice(format!(" {len}\n").as_bytes());
        }
    }

    fn on_list_done(&mut self, now: Instant, r: ConnRef) {
        let Some(active) = conn_at(&mut self.conns, r).and_then(|c| c.active.as_mut()) else {
            return;
        };
        let stage = std::mem::replace(&mut active.stage, Stage::Responded);
        let Stage::List { body } = stage else {
            active.stage = stage;
            return;
        };
        let head_only = active.head.method == Method::Head;
        if head_only {
            let n = body.len() as u64;
            let headers: [(&str, &[u8]); 1] = [("Content-Type", b"text/plain")];
            self.respond_head_only(now, r, Method::Head, 200, &headers, Some(n));
            return;
        }
        self.respond_text(now, r, 200, &body, "text/plain");
    }

    // -----------------------------------------------------------------------------------------
    // Controller replies.

    /// Removes a pending controller request, counting how long it waited.
    fn take_pending(&mut self, now: Instant, request: RequestId) -> Option<Waiter> {
        let w = self.pending.remove(&request)?;
        self.stats.controller_wait_ns += now.saturating_since(w.sent).as_nanos() as u64;
        Some(w)
    }

    pub fn handle_message(&mut self, now: Instant, message: ToWorker) {
        self.now_seen = self.now_seen.max(now);
        match message {
            ToWorker::Allocated { request, slot } => {
                let class = self
                    .pools
                    .class_of_request(request)
                    .expect("allocate in flight");
                assert_eq!(class, slot.class, "controller sent a slot of another class");
                self.pools.put_back(slot);
                self.serve_slot_waiters(now, class);
            }
            ToWorker::AllocateDone {
                request,
                class,
                requested,
                granted,
            } => {
                self.pools.done(class, request, requested, granted);
                self.serve_slot_waiters(now, class);
                let short = granted < requested && self.pools.free_count(class) == 0;
                let reclaimed = std::mem::take(&mut self.reclaim_seen[class.index()]);
                if short && !reclaimed {
                    self.fail_slot_waiters(now, class);
                } else if short {
                    self.slot_retry_at[class.index()] = Some(now + SLOT_RETRY_DELAY);
                }
            }
            ToWorker::Reclaim { class } => {
                self.reclaim_seen[class.index()] = true;
                self.pools.shrink_for_reclaim();
                let worker = self.config.id;
                for slot in self.pools.drain_all() {
                    let request = self.next_request();
                    self.msg_out.push_back(ToController::ReturnSlot {
                        worker,
                        request,
                        slot,
                    });
                }
            }
            ToWorker::Address {
                request,
                location,
                epoch: _,
            } => {
                self.addresses_received += 1;
                let seq = self.addresses_received;
                let Some(w) = self.take_pending(now, request) else {
                    return;
                };
                let is_missing = self
                    .conn_mut(w.conn)
                    .and_then(|c| c.active.as_ref())
                    .is_some_and(|a| matches!(a.stage, Stage::Missing { .. }));
                let is_dedup = self
                    .conn_mut(w.conn)
                    .and_then(|c| c.active.as_ref())
                    .is_some_and(|a| matches!(a.stage, Stage::DedupCheck { .. }));
                if is_missing {
                    self.on_missing_reply(now, w.conn, w.tag, Some(location.is_some()));
                } else if is_dedup {
                    self.on_dedup_checked(now, w.conn, location.is_some());
                } else {
                    self.on_address(now, w.conn, location, seq);
                }
            }
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
            ToWorker::ListItem { request, hash, len } => {
                if let Some(w) = self.pending.get(&request).copied() {
                    self.on_list_item(w.conn, hash, len);
                }
            }
            ToWorker::ListDone { request, .. } => {
                if let Some(w) = self.take_pending(now, request) {
                    self.on_list_done(now, w.conn);
                }
            }
            ToWorker::Error { request, code } => self.on_error_reply(now, request, code),
        }
    }

    fn on_error_reply(&mut self, now: Instant, request: RequestId, code: ErrorCode) {
        if let Some(class) = self.pools.class_of_request(request) {
            self.on_allocate_failed(now, request, class, code);
            return;
        }
        let Some(w) = self.take_pending(now, request) else {
            return;
        };
        let Some(active) = conn_at(&mut self.conns, w.conn).and_then(|c| c.active.as_ref()) else {
            return;
        };
        if matches!(active.stage, Stage::Missing { .. }) {
            self.on_missing_reply(now, w.conn, w.tag, None);
            return;
        }
        let method = active.head.method;
        let (status, reason) = match code {
            ErrorCode::NoSpace => (507, "no free slot of the needed size"),
            ErrorCode::Unavailable => (503, "server busy; try again"),
            ErrorCode::Io | ErrorCode::InvalidSlot => (500, "storage error"),
        };
        if status == 503 {
            self.respond_busy(now, w.conn, reason);
        } else {
            self.respond_error(now, w.conn, method, status, reason, false);
        }
    }

    /// The controller could not allocate at all (its storage failed): the PUTs waiting for
    /// a slot of `class` get the storage error, not a `507` (space is not what is missing).
    fn on_allocate_failed(
        &mut self,
        now: Instant,
        request: RequestId,
        class: SizeClass,
        code: ErrorCode,
    ) {
        assert_eq!(
            code,
            ErrorCode::Io,
            "allocations fail only with a storage error"
        );
        self.pools.done(class, request, 1, 0);
        while let Some(r) = self.slot_waiters[class.index()].pop_front() {
            if !waits_for_slot(&self.conns, r) {
                continue;
            }
            self.abandon_request(r);
            let method = stage_method(&self.conns, r);
            self.respond_error(
                now,
                r,
                method,
                500,
                "storage error: the server cannot store blocks until it is restarted",
                true,
            );
        }
    }

    fn serve_slot_waiters(&mut self, now: Instant, class: SizeClass) {
        while self.pools.free_count(class) > 0 {
            let Some(r) = self.slot_waiters[class.index()].pop_front() else {
                break;
            };
            let stage = self
                .conn_mut(r)
                .and_then(|c| c.active.as_ref())
                .map(|a| &a.stage);
            match stage {
                Some(Stage::WaitSlot { .. }) => {
                    let slot = self.pools.take(class).expect("checked above");
                    self.start_write(now, r, slot);
                }
                Some(Stage::Stream(s)) if s.slot.is_none() => {
                    let slot = self.pools.take(class).expect("checked above");
                    self.stream_slot(now, r, slot);
                    self.process(now, r);
                }
                _ => {}
            }
        }
    }

    /// The controller has no space for this class: every waiting PUT gets 507.
    fn fail_slot_waiters(&mut self, now: Instant, class: SizeClass) {
        while let Some(r) = self.slot_waiters[class.index()].pop_front() {
            let Some(active) = conn_at(&mut self.conns, r).and_then(|c| c.active.as_mut()) else {
                continue;
            };
            // A duplicate needs no slot: before a 507, read the body (a streamed PUT has not
            // yet) and ask whether its hash is stored.
            match std::mem::replace(&mut active.stage, Stage::Responded) {
                Stage::WaitSlot { body, hash, .. } => {
                    self.recycle(body);
                    self.ask(r, 0, Stage::DedupCheck { hash }, |worker, request| {
                        ToController::GetAddress {
                            worker,
                            request,
                            hash,
                        }
                    });
                }
                Stage::Stream(st) if st.slot.is_none() => {
                    // Nothing of the body was taken yet (a stream takes bytes once it has
                    // its slot), so it is read from the start into one buffer.
                    assert_eq!(
                        st.remaining, st.len,
                        "a stream without a slot took no bytes"
                    );
                    self.recycle_piece(st.piece);
                    let reader = BodyReader::Length {
                        remaining: st.remaining,
                    };
                    self.begin_body(now, r, reader, false);
                    self.process(now, r);
                }
                other => active.stage = other,
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Responses.

    /// `503` with `Retry-After`, then close (the request's body may still be unread).
    fn respond_busy(&mut self, now: Instant, r: ConnRef, reason: &str) {
        self.respond_unavailable(now, r, reason, true);
    }

    fn respond_unavailable(&mut self, now: Instant, r: ConnRef, reason: &str, close: bool) {
        let headers: [(&str, &[u8]); 1] = [("Retry-After", b"1")];
        let body: [&[u8]; 2] = [reason.as_bytes(), b"\n"];
        let method = self
            .conn_mut(r)
            .and_then(|c| c.active.as_ref())
            .map_or(Method::Other, |a| a.head.method);
        self.respond_full(now, r, method, 503, &headers, &body, close);
    }

    /// A request that waited for the controller until its request timeout: it is answered
    /// `503` saying what may have happened, its pending replies are forgotten (a late one
    /// finds no waiter, so it cannot answer this connection's next request), and the
    /// connection stays open: the request was read whole.
    fn answer_unconfirmed(&mut self, now: Instant, r: ConnRef) {
        let Some(stage) = stage_of(&self.conns, r) else {
            return;
        };
        let reason = match stage {
            Stage::Occupy { .. } => {
                "storage did not confirm the write in time; it may or may not be stored: \
                 retry (storing the same bytes again is harmless)"
            }
            Stage::Release => {
                "storage did not confirm the delete in time; it may or may not have \
                 happened: retry"
            }
            _ => "storage did not answer in time; try again",
        };
        let waiting = self.pending.len();
        self.pending.retain(|_, w| w.conn != r);
        assert!(
            self.pending.len() < waiting,
            "a request waiting for the controller has a reply pending"
        );
        self.stats.storage_timeouts += 1;
        self.abandon_request(r);
        self.respond_unavailable(now, r, reason, false);
    }

    fn respond_error(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: u16,
        reason: &str,
        close: bool,
    ) {
        let body: [&[u8]; 2] = [reason.as_bytes(), b"\n"];
        self.respond_full(now, r, method, status, &[], &body, close);
    }

    fn respond_text(&mut self, now: Instant, r: ConnRef, status: u16, body: &[u8], ty: &str) {
        let head_only = self
            .conn_mut(r)
            .and_then(|c| c.active.as_ref())
            .is_some_and(|a| a.head.method == Method::Head);
        let headers: [(&str, &[u8]); 2] = [
            ("Content-Type", ty.as_bytes()),
            ("Cache-Control", b"no-store"),
        ];
        if head_only {
            self.respond_head_only(
                now,
                r,
                Method::Head,
                status,
                &headers,
                Some(body.len() as u64),
            );
            return;
        }
        let method = Method::Get;
        self.respond_full(now, r, method, status, &headers, &[body], false);
    }

    /// A response with a body; `close` forces `Connection: close` and closing after it.
    #[allow(clippy::too_many_arguments)]
    fn respond_full(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: u16,
        headers: &[(&str, &[u8])],
        body: &[&[u8]],
        close: bool,
    ) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        if close {
            conn.keep_alive = false;
        }
        let persistence = persistence_of(conn);
        let head_request = conn
            .active
            .as_ref()
            .is_some_and(|a| a.head.method == Method::Head);
        let body_len: usize = body.iter().map(|part| part.len()).sum();
        let mut buf = if HEAD_ROOM_BYTES + body_len <= IDLE_RECV_BYTES {
            self.small_buf()
        } else {
            Vec::with_capacity(HEAD_ROOM_BYTES + body_len)
        };
        // Every header plus a default Content-Type, without a heap allocation.
        const HEADERS_MAX: usize = 8;
        assert!(headers.len() < HEADERS_MAX, "{} headers", headers.len());
        let mut all: [(&str, &[u8]); HEADERS_MAX] = [("", b""); HEADERS_MAX];
        all[..headers.len()].copy_from_slice(headers);
        let mut n = headers.len();
        if !headers.iter().any(|(k, _)| *k == "Content-Type") {
            all[n] = ("Content-Type", b"text/plain");
            n += 1;
        }
        http::write_response_head(
            &mut buf,
            status,
            &all[..n],
            Some(body_len as u64),
            persistence,
        );
        if !head_request && status != 304 && status != 204 {
            for part in body {
                buf.extend_from_slice(part);
            }
        }
        let end = buf.len();
        self.queue_response(now, r, method, status, buf, 0, end);
    }

    /// A response without a body (HEAD, 204, 304): `content_length` is announced, not sent.
    fn respond_head_only(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: u16,
        headers: &[(&str, &[u8])],
        content_length: Option<u64>,
    ) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        let persistence = persistence_of(conn);
        let mut buf = self.small_buf();
        http::write_response_head(&mut buf, status, headers, content_length, persistence);
        let end = buf.len();
        self.queue_response(now, r, method, status, buf, 0, end);
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_response(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: u16,
        buf: Vec<u8>,
        start: usize,
        end: usize,
    ) {
        assert!(start < end && end <= buf.len(), "a response has bytes");
        self.stats.by_status[stats::status_index(status)] += 1;
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        let started = conn.active.as_ref().map(|a| a.started);
        match conn.active.as_mut() {
            Some(a) => a.stage = Stage::Responded,
            None => {
                // Answered before a head was complete (400, 408, 431, 503 on accept).
                conn.head_started = None;
                conn.active = Some(Active {
                    head: RequestHead {
                        method,
                        path: Vec::new(),
                        query: Vec::new(),
                        http10: false,
                        keep_alive: false,
                        body: BodyFraming::None,
                        authorization: None,
                        if_none_match: None,
                        range: None,
                        accept: None,
                        expect_continue: false,
                    },
                    route: Route::Health,
                    started: now,
                    asked: now,
                    stage: Stage::Responded,
                    span: tracing::Span::none(),
                });
            }
        }
        conn.outq.push_back((buf, start, end));
        if let Some(t) = started {
            let ns = now.saturating_since(t).as_nanos() as u64;
            self.stats.latency[stats::method_index(method)].record(ns);
            if let Some(a) = conn.active.as_ref() {
                a.span
                    .in_scope(|| tracing::debug!(status, latency_us = ns / 1000, "response"));
            }
        } else if status >= 400 {
            tracing::debug!(
                worker = self.config.id,
                status,
                "refused before a request head"
            );
        }
        self.pump_send(now, r);
    }

    // -----------------------------------------------------------------------------------------
    // Stats and checks.

    /// The driver hands in the latest shared figures (controller, all workers).
    pub fn set_snapshot(&mut self, snapshot: Arc<StatsSnapshot>) {
        self.snapshot = snapshot;
    }

    /// The driver hands in its watchdog's verdict over the whole node (a stalled controller
    /// or flush, a latched storage error), so that every worker's `/health` tells the same
    /// truth, including workers with no request waiting. `None`: the driver sees nothing wrong.
    pub fn set_health(&mut self, verdict: Option<Unhealthy>) {
        self.node_health = verdict;
    }

    /// Since when this worker's oldest request has waited for the controller (request ids
    /// grow, so the first pending one is the oldest).
    pub fn oldest_wait_since(&self) -> Option<Instant> {
        self.pending.values().next().map(|w| w.sent)
    }

    /// What `/health` answers now: the driver's verdict, or this worker's own view (its
    /// oldest request waiting for the controller, shutting down).
    fn health(&self, now: Instant) -> Option<Unhealthy> {
        if self.node_health.is_some() {
            return self.node_health.clone();
        }
        let own = Observations {
            now,
            oldest_wait_since: self.oldest_wait_since(),
            shutting_down: self.shutting_down,
            storage_failure: self
                .snapshot
                .controller
                .failed
                .then(|| "the controller latched a storage error (see the log)".to_string()),
            ..Observations::default()
        };
        health::verdict(&own, self.config.stall_limit)
    }

    fn snapshot_now(&mut self) -> StatsSnapshot {
        let mut s = StatsSnapshot::clone(&self.snapshot);
        let own = self.stats();
        let id = self.config.id as usize;
        if s.workers.len() <= id {
            s.workers.resize(id + 1, WorkerStats::default());
        }
        s.workers[id] = own;
        s.verify_reads = self.config.verify_reads.as_str();
        s.health = self.health(self.now_seen);
        s
    }

    pub fn stats(&self) -> WorkerStats {
        let mut s = self.stats.clone();
        s.connections_open = self.conns_open as u64;
        s.pool_free = self.pools.levels();
        let targets = self.pools.targets();
        for (i, t) in targets.iter().enumerate() {
            s.pool_target[i] = u64::from(*t);
        }
        s.refill_requests = self.pools.refill_requests;
        s.ops_in_flight = self.ops_in_flight as u64;
        s.controller_requests_waiting = self.pending.len() as u64;
        s.buffer_granted_bytes = self.granted as u64;
        s
    }

    /// Bytes held in this worker's pool (reserved, idle).
    pub fn pooled_bytes(&self) -> u64 {
        self.pools.pooled_bytes()
    }

    pub fn connections_open(&self) -> usize {
        self.conns_open
    }

    pub fn check_invariants(&self) {
        let open = self.conns.iter().flatten().filter(|c| !c.rejecting).count();
        assert_eq!(open, self.conns_open, "open connection count");
        let in_flight = self.ops.iter().filter(|o| o.user.is_some()).count();
        assert_eq!(in_flight, self.ops_in_flight, "in-flight op count");
        assert!(
            self.horizon() >= self.horizon_reported,
            "the reader horizon never goes back"
        );
        assert!(self
            .reads_in_flight
            .last()
            .is_none_or(|&s| s <= self.addresses_received));
        for conn in self.conns.iter().flatten() {
            assert!(
                conn.rbuf.is_some() != conn.recv_op.is_some(),
                "buffer owned exactly once"
            );
        }
        let grants: usize = self.conns.iter().flatten().map(|c| c.grant).sum();
        assert_eq!(grants, self.granted, "granted buffer bytes add up");
        let lanes: usize = self
            .conns
            .iter()
            .flatten()
            .filter(|c| c.lane)
            .map(|c| c.grant)
            .sum();
        assert_eq!(lanes, self.lanes_granted, "lane bytes add up");
        assert!(
            self.lanes_granted <= self.lane_cap(),
            "lanes within their cap"
        );
        assert!(!self.serving, "serving waiters is not left half done");
        assert!(
            self.granted <= self.config.buffer_budget_bytes,
            "{} bytes granted over a budget of {}",
            self.granted,
            self.config.buffer_budget_bytes
        );
        for (index, conn) in self.conns.iter().enumerate() {
            let Some(conn) = conn else { continue };
            assert!(
                conn.grant == 0 || conn.active.is_some(),
                "a grant belongs to a request"
            );
            assert!(!conn.lane || conn.grant > 0, "a lane is a grant");
            let r = ConnRef {
                index,
                generation: conn.generation,
            };
            if let Some(Stage::Stream(s)) = conn.active.as_ref().map(|a| &a.stage) {
                if s.lane_deadline.is_some() {
                    assert!(s.piece_max == 0 && conn.grant == 0 && s.piece.capacity() == 0);
                    assert!(
                        s.slot.is_some(),
                        "an upload asks for a lane once it has a slot"
                    );
                    assert!(
                        self.lane_waiters.contains(&r),
                        "an upload waiting is queued"
                    );
                } else if s.slot.is_some() {
                    assert!(
                        s.piece_max > 0,
                        "an upload with a slot has a piece or waits"
                    );
                } else {
                    assert!(
                        s.piece_max == 0 && conn.grant == 0,
                        "an upload waiting for space holds no buffer"
                    );
                }
            }
            let Some(Stage::WaitBuffer { need, .. }) = conn.active.as_ref().map(|a| &a.stage)
            else {
                continue;
            };
            assert!(
                self.buffer_waiters.contains(&r),
                "a request waiting for the buffer budget is queued"
            );
            if let BufferNeed::Read { seq, .. } = need {
                assert!(
                    self.reads_in_flight.contains(seq),
                    "a GET waiting for a buffer keeps its address in flight"
                );
            }
        }
    }
}

/// Whether connection `r` still has a PUT waiting for a pool slot.
fn waits_for_slot(conns: &[Option<Conn>], r: ConnRef) -> bool {
    match stage_of(conns, r) {
        Some(Stage::WaitSlot { .. }) => true,
        Some(Stage::Stream(s)) => s.slot.is_none(),
        _ => false,
    }
}

/// `"<hex>"`: a block's ETag, on the stack.
fn etag_of(hex: &Hex) -> [u8; HASH_HEX_LEN + 2] {
    let mut out = [b'"'; HASH_HEX_LEN + 2];
    out[1..=HASH_HEX_LEN].copy_from_slice(hex.as_bytes());
    out
}

/// `/block/<hex>`: a block's Location, on the stack.
fn location_of(hex: &Hex) -> [u8; 7 + HASH_HEX_LEN] {
    let mut out = [0u8; 7 + HASH_HEX_LEN];
    out[..7].copy_from_slice(b"/block/");
    out[7..].copy_from_slice(hex.as_bytes());
    out
}

/// A `Content-Range` value on the stack: "bytes <start>-<end>/<len>" or "bytes */<len>" is at
/// most 6 + 3 * 20 + 2 bytes.
struct ContentRange {
    bytes: [u8; 72],
    len: usize,
}

impl ContentRange {
    fn new() -> ContentRange {
        ContentRange {
            bytes: [0; 72],
            len: 0,
        }
    }

    fn write(&mut self, args: std::fmt::Arguments<'_>) {
        assert_eq!(self.len, 0, "written once");
        self.len = write_into(&mut self.bytes, args);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The head of the request in progress on connection `r`.
fn stage_head(conns: &[Option<Conn>], r: ConnRef) -> Option<&RequestHead> {
    match conns.get(r.index) {
        Some(Some(c)) if c.generation == r.generation => c.active.as_ref().map(|a| &a.head),
        _ => None,
    }
}

/// Formats into `out` without a heap allocation; returns the length written.
fn write_into(out: &mut [u8], args: std::fmt::Arguments<'_>) -> usize {
    struct Slice<'a> {
        out: &'a mut [u8],
        len: usize,
    }
    impl std::fmt::Write for Slice<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            let dst = self.out.get_mut(self.len..end).ok_or(std::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut w = Slice { out, len: 0 };
    std::fmt::Write::write_fmt(&mut w, args).expect("formatted text fits its buffer");
    w.len
}

/// The stage of the request in progress on connection `r`, if it is still that connection.
/// What a response on `conn` says about the connection: closed unless it is kept alive, and
/// an HTTP/1.0 client that asked to keep it is told so.
fn persistence_of(conn: &Conn) -> http::Persistence {
    let http10 = conn.active.as_ref().is_some_and(|a| a.head.http10);
    match (conn.keep_alive, http10) {
        (false, _) => http::Persistence::Close,
        (true, true) => http::Persistence::KeepAlive10,
        (true, false) => http::Persistence::KeepOpen,
    }
}

/// The method of the request in progress on `r` (`Other` if none).
fn stage_method(conns: &[Option<Conn>], r: ConnRef) -> Method {
    let conn = conns.get(r.index).and_then(Option::as_ref);
    conn.filter(|c| c.generation == r.generation)
        .and_then(|c| c.active.as_ref())
        .map_or(Method::Other, |a| a.head.method)
}

fn stage_of(conns: &[Option<Conn>], r: ConnRef) -> Option<&Stage> {
    match conns.get(r.index) {
        Some(Some(c)) if c.generation == r.generation => c.active.as_ref().map(|a| &a.stage),
        _ => None,
    }
}

/// The connection `r` names, if it is still that connection (field-disjoint borrow).
fn conn_at(conns: &mut [Option<Conn>], r: ConnRef) -> Option<&mut Conn> {
    match conns.get_mut(r.index) {
        Some(Some(c)) if c.generation == r.generation => Some(c),
        _ => None,
    }
}

const CACHE_CONTROL: (&str, &[u8]) = ("Cache-Control", b"public, max-age=31536000, immutable");

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
