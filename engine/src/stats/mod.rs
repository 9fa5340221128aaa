//! Figures for `/stats` (JSON) and `/metrics` (Prometheus text), rendered from a snapshot.
//!
//! The controller and each worker keep their own counters; the driver gathers them into a
//! [`StatsSnapshot`] and hands it to the workers, which render it on request. Rendering is pure.
//!
//! - `mod.rs` (here): the counters (`WorkerStats`, `Histogram`) and the snapshot.
//! - [`table`]: every figure named once (JSON key, Prometheus name, type, help, how to read it).
//! - `json.rs`, `prometheus.rs`: the two layouts of the table; [`render_json`],
//!   [`render_prometheus`].
//!
//! Both outputs are byte-for-byte stable for a given snapshot (golden tests in `tests.rs`).

mod json;
mod prometheus;
pub mod table;

pub use json::render_json;
pub use prometheus::render_prometheus;

use crate::controller::ControllerStats;
use crate::size_class::CLASS_COUNT;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// Methods tracked per request.
pub const METHODS: [&str; 6] = ["get", "head", "put", "delete", "post", "other"];
/// Status codes tracked per request (others land in the last entry).
pub const STATUSES: [u16; 21] = [
    200, 201, 204, 206, 304, 400, 401, 404, 405, 406, 408, 411, 413, 416, 422, 431, 500, 503, 505,
    507, 0,
];

#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; LATENCY_BUCKETS_S.len()],
    pub count: u64,
    pub sum_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; LATENCY_BUCKETS_S.len()],
            count: 0,
            sum_ns: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, ns: u64) {
        let secs = ns as f64 / 1e9;
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|&b| secs <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_ns += ns;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
    }
}

/// One worker's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerStats {
    pub requests: u64,
    pub by_method: [u64; METHODS.len()],
    pub by_status: [u64; STATUSES.len()],
    pub latency: [Histogram; METHODS.len()],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_rejected: u64,
    pub pool_free: [u64; CLASS_COUNT],
    pub pool_target: [u64; CLASS_COUNT],
    pub refill_requests: u64,
    pub ops_in_flight: u64,
    pub controller_requests_waiting: u64,
    pub controller_wait_ns: u64,
    pub corrupt_blocks_detected: u64,
    pub timeouts: u64,
    /// Bytes of the buffer budget held by requests now (gauge).
    pub buffer_granted_bytes: u64,
    /// Requests (GETs, buffered bodies, uploads wanting a lane) that waited for the budget.
    pub buffer_waits: u64,
    /// Uploads that went in small pieces because the buffer budget was spent.
    pub small_piece_uploads: u64,
    /// Requests answered `503` because the controller (storage) did not answer by their
    /// request timeout.
    pub storage_timeouts: u64,
}

/// What the driver gathers for rendering.
#[derive(Clone, Debug, Default)]
pub struct StatsSnapshot {
    pub controller: ControllerStats,
    pub workers: Vec<WorkerStats>,
    /// Queue depths, worker -> controller, per worker.
    pub queue_to_controller: Vec<u64>,
    pub queue_to_worker: Vec<u64>,
    pub uptime_s: u64,
    /// Background scrub: blocks re-hashed, corrupt ones found, full passes finished.
    pub scrub_blocks: u64,
    pub scrub_corrupt: u64,
    pub scrub_passes: u64,
    pub version: &'static str,
    pub durability: &'static str,
    pub verify_reads: &'static str,
    /// The watchdog's verdict (`None`: healthy); see `crate::health`.
    pub health: Option<crate::health::Unhealthy>,
}

pub fn method_index(method: crate::http::Method) -> usize {
    use crate::http::Method;
    match method {
        Method::Get => 0,
        Method::Head => 1,
        Method::Put => 2,
        Method::Delete => 3,
        Method::Post => 4,
        Method::Other => 5,
    }
}

pub fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len() - 1)
}

/// The label of a status code in both outputs: the code, or `other` for the catch-all entry.
fn status_label(status: u16) -> String {
    if status == 0 {
        "other".to_string()
    } else {
        status.to_string()
    }
}

/// Corruption found by GETs on every worker plus the scrub.
pub fn corrupt_total(s: &StatsSnapshot) -> u64 {
    s.workers
        .iter()
        .map(|w| w.corrupt_blocks_detected)
        .sum::<u64>()
        + s.scrub_corrupt
}

#[cfg(test)]
mod tests;
