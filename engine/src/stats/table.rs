//! The metric table: every figure of `/stats` and `/metrics` named once, with its JSON key, its
//! Prometheus name, its type, its help text and how to read it from a [`StatsSnapshot`].
//!
//! The two renderers (`json.rs`, `prometheus.rs`) only choose which figures go where and in which
//! order; they never name a figure, read a counter or write a help text themselves. Adding a
//! figure: add a `Figure` here, then list it in the renderer(s) that show it.
//!
//! Invariants: a figure has at least one of `json` and `prometheus`; Prometheus names are given
//! without the `buddy_blocks_` prefix, counters end in `_total` (except the latency histograms).
//! Reading is pure: no figure changes the snapshot.

use super::{corrupt_total, Histogram, StatsSnapshot, WorkerStats};
use crate::size_class::CLASS_COUNT;

/// The Prometheus type of a figure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// One reading of a scalar figure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Value {
    Count(u64),
    /// JSON `true`/`false`, Prometheus `1`/`0`.
    Flag(bool),
    /// JSON in nanoseconds, Prometheus in seconds.
    Nanos(u64),
}

impl Value {
    /// The sum of two readings of the same figure (flags do not add up).
    pub fn plus(self, other: Value) -> Value {
        match (self, other) {
            (Value::Count(a), Value::Count(b)) => Value::Count(a + b),
            (Value::Nanos(a), Value::Nanos(b)) => Value::Nanos(a + b),
            (a, b) => panic!("stats: cannot add {a:?} and {b:?}"),
        }
    }
}

/// How a worker figure appears in `/metrics`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Series {
    /// One sample per worker, labelled `worker="<index>"`.
    PerWorker,
    /// One sample: the sum over the workers.
    Sum,
}

/// How a figure is read from the snapshot.
#[derive(Clone, Copy)]
pub enum Read {
    /// One value for the node.
    Node(fn(&StatsSnapshot) -> Value),
    /// One value per worker.
    Worker(fn(&WorkerStats) -> Value, Series),
    /// One value per size class for the node.
    Classes(fn(&StatsSnapshot) -> &[u64; CLASS_COUNT]),
    /// One value per size class per worker.
    WorkerClasses(fn(&WorkerStats) -> &[u64; CLASS_COUNT]),
    /// Requests per method per worker (`stats::METHODS`).
    WorkerMethods,
    /// Responses per status code per worker (`stats::STATUSES`); summed over workers in
    /// Prometheus, zeros left out in JSON.
    WorkerStatuses,
    /// Queue depths per worker, both directions.
    Queues,
    /// Latency histograms per method, merged over workers.
    Latency(fn(&WorkerStats) -> &[Histogram]),
}

/// One figure of the table.
#[derive(Clone, Copy)]
pub struct Figure {
    /// Key in its JSON object; `None`: not in `/stats`.
    pub json: Option<&'static str>,
    /// Name after `buddy_blocks_` in `/metrics`; `None`: not in `/metrics`.
    pub prometheus: Option<&'static str>,
    pub kind: Kind,
    pub help: &'static str,
    pub read: Read,
}

/// A figure in both outputs.
const fn both(
    json: &'static str,
    prometheus: &'static str,
    kind: Kind,
    help: &'static str,
    read: Read,
) -> Figure {
    Figure {
        json: Some(json),
        prometheus: Some(prometheus),
        kind,
        help,
        read,
    }
}

/// A figure in `/stats` only.
const fn json_only(json: &'static str, kind: Kind, help: &'static str, read: Read) -> Figure {
    Figure {
        json: Some(json),
        prometheus: None,
        kind,
        help,
        read,
    }
}

use Kind::{Counter, Gauge};
use Read::{Node, Worker};
use Series::{PerWorker, Sum};
use Value::{Count, Flag, Nanos};

// The node.
pub const UPTIME: Figure = both(
    "uptime_seconds",
    "uptime_seconds",
    Gauge,
    "Seconds since start.",
    Node(|s| Count(s.uptime_s)),
);
pub const CAPACITY: Figure = both(
    "capacity_bytes",
    "capacity_bytes",
    Gauge,
    "Data file capacity.",
    Node(|s| Count(s.controller.capacity_bytes)),
);
pub const FREE: Figure = both(
    "free_bytes",
    "free_bytes",
    Gauge,
    "Free bytes (incl. quarantine).",
    Node(|s| Count(s.controller.free_bytes)),
);
pub const RESERVED: Figure = both(
    "reserved_bytes",
    "reserved_bytes",
    Gauge,
    "Bytes reserved by worker pools.",
    Node(|s| Count(s.controller.reserved_bytes)),
);
pub const USED: Figure = both(
    "used_bytes",
    "used_bytes",
    Gauge,
    "Slot bytes of stored blocks.",
    Node(|s| Count(s.controller.used_bytes)),
);
pub const BLOCKS: Figure = both(
    "blocks",
    "blocks",
    Gauge,
    "Stored blocks.",
    Node(|s| Count(s.controller.blocks)),
);
pub const DATA_BYTES: Figure = both(
    "data_bytes",
    "data_bytes",
    Gauge,
    "Sum of stored block lengths.",
    Node(|s| Count(s.controller.data_bytes)),
);
pub const CORRUPT: Figure = both(
    "corrupt_blocks_detected",
    "corrupt_blocks_detected_total",
    Counter,
    "Blocks whose bytes failed verification (GETs and the scrub).",
    Node(|s| Count(corrupt_total(s))),
);
pub const QUARANTINED: Figure = json_only(
    "quarantined_bytes",
    Gauge,
    "Freed bytes held in quarantine until no read that could see them is in flight.",
    Node(|s| Count(s.controller.quarantined_bytes)),
);
pub const FAILED: Figure = both(
    "failed",
    "failed",
    Gauge,
    "1 after a storage error latched the controller.",
    Node(|s| Flag(s.controller.failed)),
);
pub const HEALTHY: Figure = Figure {
    json: None,
    prometheus: Some("healthy"),
    kind: Gauge,
    help: "1 when /health answers 200 ok; 0 when it answers 503 (see /stats health).",
    read: Node(|s| Flag(s.health.is_none())),
};
pub const FREE_SLOTS: Figure = both(
    "free_slots",
    "free_slots",
    Gauge,
    "Free slots on the allocator's free list per class.",
    Read::Classes(|s| &s.controller.free_slots),
);
pub const RESERVED_SLOTS: Figure = json_only(
    "reserved_slots",
    Gauge,
    "Slots reserved by worker pools per class.",
    Read::Classes(|s| &s.controller.reserved_slots),
);
pub const QUEUE_DEPTH: Figure = both(
    "queues",
    "queue_depth",
    Gauge,
    "Frames waiting in the SPSC queues.",
    Read::Queues,
);

// The background scrub (JSON: the `scrub` object).
pub const SCRUB_BLOCKS: Figure = both(
    "blocks",
    "scrub_blocks_total",
    Counter,
    "Blocks re-hashed by the background scrub.",
    Node(|s| Count(s.scrub_blocks)),
);
pub const SCRUB_CORRUPT: Figure = json_only(
    "corrupt",
    Counter,
    "Corrupt blocks found by the background scrub.",
    Node(|s| Count(s.scrub_corrupt)),
);
pub const SCRUB_PASSES: Figure = both(
    "passes",
    "scrub_passes_total",
    Counter,
    "Full passes of the background scrub over the index.",
    Node(|s| Count(s.scrub_passes)),
);

// The controller (JSON: the `controller` object).
pub const CYCLES: Figure = both(
    "cycles",
    "controller_cycles_total",
    Counter,
    "Controller cycles run.",
    Node(|s| Count(s.controller.cycles)),
);
pub const COMMITS: Figure = both(
    "commits",
    "controller_commits_total",
    Counter,
    "Metadata commits.",
    Node(|s| Count(s.controller.commits)),
);
pub const COMMIT_SEQ: Figure = json_only(
    "commit_seq",
    Counter,
    "Sequence number of the last committed batch.",
    Node(|s| Count(s.controller.commit_seq)),
);
pub const LAST_BATCH: Figure = both(
    "last_batch_messages",
    "controller_last_batch_messages",
    Gauge,
    "Messages in the last cycle.",
    Node(|s| Count(s.controller.last_batch_messages)),
);
pub const MAX_BATCH: Figure = json_only(
    "max_batch_messages",
    Gauge,
    "Most messages in one cycle.",
    Node(|s| Count(s.controller.max_batch_messages)),
);
pub const MESSAGES: Figure = both(
    "messages_total",
    "controller_messages_total",
    Counter,
    "Messages handled.",
    Node(|s| Count(s.controller.messages_total)),
);
pub const LAST_COMMIT: Figure = json_only(
    "last_commit_ns",
    Gauge,
    "Duration of the last metadata commit.",
    Node(|s| Nanos(s.controller.last_commit_ns)),
);
pub const MAX_COMMIT: Figure = json_only(
    "max_commit_ns",
    Gauge,
    "Longest metadata commit.",
    Node(|s| Nanos(s.controller.max_commit_ns)),
);
pub const COMMIT_TIME: Figure = both(
    "total_commit_ns",
    "controller_commit_seconds_total",
    Counter,
    "Time spent in metadata commits.",
    Node(|s| Nanos(s.controller.total_commit_ns)),
);
pub const LAST_SYNC: Figure = json_only(
    "last_sync_ns",
    Gauge,
    "Duration of the last sync outside the commit.",
    Node(|s| Nanos(s.controller.last_sync_ns)),
);
pub const SYNC_TIME: Figure = both(
    "total_sync_ns",
    "controller_sync_seconds_total",
    Counter,
    "Time spent making batches durable outside the commit: the data file's one fdatasync \
     per batch (blocks and log record) in full durability.",
    Node(|s| Nanos(s.controller.total_sync_ns)),
);
pub const PAUSES: Figure = json_only(
    "pauses",
    Counter,
    "Cycle calls that paused because the cycle interval had not passed.",
    Node(|s| Count(s.controller.pauses)),
);
pub const OUTBOX_WAITING: Figure = json_only(
    "outbox_waiting",
    Gauge,
    "Replies waiting in the outboxes for room in a worker's queue.",
    Node(|s| Count(s.controller.outbox_waiting)),
);
pub const LOG_BYTES_USED: Figure = both(
    "log_bytes_used",
    "log_bytes_used",
    Gauge,
    "Bytes of the write-ahead log region holding records a checkpoint has not yet covered.",
    Node(|s| Count(s.controller.log_bytes_used)),
);
pub const LOG_RECORDS: Figure = json_only(
    "log_records",
    Gauge,
    "Log records a checkpoint has not yet covered.",
    Node(|s| Count(s.controller.log_records)),
);
pub const LOG_RECORDS_WRITTEN: Figure = both(
    "log_records_written",
    "log_records_written_total",
    Counter,
    "Log records written (one per durable batch that stored or deleted a block).",
    Node(|s| Count(s.controller.log_records_written)),
);
pub const CHECKPOINTS: Figure = both(
    "checkpoints",
    "checkpoints_total",
    Counter,
    "Checkpoints that made the index durable and freed log space.",
    Node(|s| Count(s.controller.checkpoints)),
);
pub const LAST_CHECKPOINT: Figure = json_only(
    "last_checkpoint_ns",
    Gauge,
    "Duration of the last checkpoint.",
    Node(|s| Nanos(s.controller.last_checkpoint_ns)),
);
pub const CHECKPOINT_TIME: Figure = both(
    "total_checkpoint_ns",
    "checkpoint_seconds_total",
    Counter,
    "Time spent in checkpoints (in the background: writes go on meanwhile).",
    Node(|s| Nanos(s.controller.total_checkpoint_ns)),
);
pub const LOG_FULL_WAITS: Figure = both(
    "log_full_waits",
    "log_full_waits_total",
    Counter,
    "Times writes waited for a checkpoint to free log space.",
    Node(|s| Count(s.controller.log_full_waits)),
);

// The workers (JSON: one object per worker).
pub const REQUESTS: Figure = json_only(
    "requests",
    Counter,
    "Requests answered.",
    Worker(|w| Count(w.requests), PerWorker),
);
pub const BYTES_IN: Figure = both(
    "bytes_in",
    "received_bytes_total",
    Counter,
    "Bytes received.",
    Worker(|w| Count(w.bytes_in), Sum),
);
pub const BYTES_OUT: Figure = both(
    "bytes_out",
    "sent_bytes_total",
    Counter,
    "Bytes sent.",
    Worker(|w| Count(w.bytes_out), Sum),
);
pub const CONNECTIONS_OPEN: Figure = both(
    "connections_open",
    "connections_open",
    Gauge,
    "Open client connections.",
    Worker(|w| Count(w.connections_open), Sum),
);
pub const CONNECTIONS_ACCEPTED: Figure = json_only(
    "connections_accepted",
    Counter,
    "Client connections accepted.",
    Worker(|w| Count(w.connections_accepted), PerWorker),
);
pub const CONNECTIONS_REJECTED: Figure = json_only(
    "connections_rejected",
    Counter,
    "Client connections refused (closed or answered 503) at the connection limit.",
    Worker(|w| Count(w.connections_rejected), PerWorker),
);
pub const REFILLS: Figure = both(
    "refill_requests",
    "pool_refill_requests_total",
    Counter,
    "Allocate requests sent by worker pools.",
    Worker(|w| Count(w.refill_requests), PerWorker),
);
pub const OPS_IN_FLIGHT: Figure = both(
    "ops_in_flight",
    "io_ops_in_flight",
    Gauge,
    "io_uring operations in flight per worker.",
    Worker(|w| Count(w.ops_in_flight), PerWorker),
);
pub const CONTROLLER_WAITING: Figure = json_only(
    "controller_requests_waiting",
    Gauge,
    "Requests waiting for a controller reply.",
    Worker(|w| Count(w.controller_requests_waiting), PerWorker),
);
pub const TIMEOUTS: Figure = json_only(
    "timeouts",
    Counter,
    "Connections that hit a deadline (client too slow to send or to read).",
    Worker(|w| Count(w.timeouts), PerWorker),
);
pub const WORKER_CORRUPT: Figure = json_only(
    "corrupt_blocks_detected",
    Counter,
    "Blocks whose bytes failed verification on a GET.",
    Worker(|w| Count(w.corrupt_blocks_detected), PerWorker),
);
pub const CONTROLLER_WAIT: Figure = both(
    "controller_wait_ns",
    "controller_wait_seconds_total",
    Counter,
    "Time requests waited for controller replies.",
    Worker(|w| Nanos(w.controller_wait_ns), Sum),
);
pub const BUFFER_GRANTED: Figure = both(
    "buffer_granted_bytes",
    "buffer_granted_bytes",
    Gauge,
    "Bytes of the I/O buffer budget held by requests, per worker.",
    Worker(|w| Count(w.buffer_granted_bytes), PerWorker),
);
pub const BUFFER_WAITS: Figure = both(
    "buffer_waits",
    "buffer_waits_total",
    Counter,
    "Requests that waited for the I/O buffer budget, per worker.",
    Worker(|w| Count(w.buffer_waits), PerWorker),
);
pub const SMALL_PIECE_UPLOADS: Figure = both(
    "small_piece_uploads",
    "small_piece_uploads_total",
    Counter,
    "Uploads streamed in small pieces because the buffer budget was spent, per worker.",
    Worker(|w| Count(w.small_piece_uploads), PerWorker),
);
pub const STORAGE_TIMEOUTS: Figure = both(
    "storage_timeouts",
    "storage_timeouts_total",
    Counter,
    "Requests answered 503 because storage did not answer by their request timeout.",
    Worker(|w| Count(w.storage_timeouts), PerWorker),
);
pub const POOL_FREE: Figure = both(
    "pool_free",
    "pool_free_slots",
    Gauge,
    "Slots waiting in a worker's pool per class.",
    Read::WorkerClasses(|w| &w.pool_free),
);
pub const POOL_TARGET: Figure = json_only(
    "pool_target",
    Gauge,
    "Slots a worker's pool keeps per class.",
    Read::WorkerClasses(|w| &w.pool_target),
);
pub const REQUESTS_BY_METHOD: Figure = both(
    "requests_by_method",
    "requests_total",
    Counter,
    "Requests answered, by worker and method.",
    Read::WorkerMethods,
);
pub const RESPONSES_BY_STATUS: Figure = both(
    "responses_by_status",
    "responses_total",
    Counter,
    "Responses by status code.",
    Read::WorkerStatuses,
);
pub const LATENCY: Figure = Figure {
    json: None,
    prometheus: Some("duration_seconds"),
    kind: Kind::Histogram,
    help: "Request latency, head to last byte queued.",
    read: Read::Latency(|w| &w.latency),
};

/// The space accounting, in the order both outputs list it.
pub const SPACE: [&Figure; 6] = [&CAPACITY, &FREE, &RESERVED, &USED, &BLOCKS, &DATA_BYTES];

/// Every figure once (for the table's own checks).
pub const ALL: [&Figure; 58] = [
    &UPTIME,
    &CAPACITY,
    &FREE,
    &RESERVED,
    &USED,
    &BLOCKS,
    &DATA_BYTES,
    &CORRUPT,
    &QUARANTINED,
    &FAILED,
    &HEALTHY,
    &FREE_SLOTS,
    &RESERVED_SLOTS,
    &QUEUE_DEPTH,
    &SCRUB_BLOCKS,
    &SCRUB_CORRUPT,
    &SCRUB_PASSES,
    &CYCLES,
    &COMMITS,
    &COMMIT_SEQ,
    &LAST_BATCH,
    &MAX_BATCH,
    &MESSAGES,
    &LAST_COMMIT,
    &MAX_COMMIT,
    &COMMIT_TIME,
    &LAST_SYNC,
    &SYNC_TIME,
    &PAUSES,
    &OUTBOX_WAITING,
    &LOG_BYTES_USED,
    &LOG_RECORDS,
    &LOG_RECORDS_WRITTEN,
    &CHECKPOINTS,
    &LAST_CHECKPOINT,
    &CHECKPOINT_TIME,
    &LOG_FULL_WAITS,
    &REQUESTS,
    &BYTES_IN,
    &BYTES_OUT,
    &CONNECTIONS_OPEN,
    &CONNECTIONS_ACCEPTED,
    &CONNECTIONS_REJECTED,
    &REFILLS,
    &OPS_IN_FLIGHT,
    &CONTROLLER_WAITING,
    &TIMEOUTS,
    &WORKER_CORRUPT,
    &CONTROLLER_WAIT,
    &BUFFER_GRANTED,
    &BUFFER_WAITS,
    &SMALL_PIECE_UPLOADS,
    &STORAGE_TIMEOUTS,
    &POOL_FREE,
    &POOL_TARGET,
    &REQUESTS_BY_METHOD,
    &RESPONSES_BY_STATUS,
    &LATENCY,
];
