//! Figures for `/stats` (JSON) and `/metrics` (Prometheus text), rendered from a snapshot.
//!
//! The controller and each worker keep their own counters; the driver gathers them into a
//! [`StatsSnapshot`] and hands it to the workers, which render it on request. Rendering is pure.

use std::fmt::Write as _;

use crate::controller::ControllerStats;
use crate::size_class::{SizeClass, CLASS_COUNT};

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

/// Appends `value` as a JSON string (quotes, backslashes and control characters escaped).
fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_array(out: &mut String, values: impl Iterator<Item = u64>) {
    out.push('[');
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v}");
    }
    out.push(']');
}

fn json_class_map(out: &mut String, values: &[u64; CLASS_COUNT]) {
    out.push('{');
    for (i, c) in SizeClass::ALL.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\":{}", c.label(), values[i]);
    }
    out.push('}');
}

/// Corruption found by GETs on every worker plus the scrub.
pub fn corrupt_total(s: &StatsSnapshot) -> u64 {
    s.workers
        .iter()
        .map(|w| w.corrupt_blocks_detected)
        .sum::<u64>()
        + s.scrub_corrupt
}

/// Renders /stats as one JSON object.
pub fn render_json(s: &StatsSnapshot) -> String {
    let c = &s.controller;
    let corrupt = corrupt_total(s);
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "{{\"version\":\"{}\",\"uptime_seconds\":{},\"capacity_bytes\":{},\"free_bytes\":{},\
         \"reserved_bytes\":{},\"used_bytes\":{},\"blocks\":{},\"data_bytes\":{},\
         \"durability\":\"{}\",\"verify_reads\":\"{}\",\"corrupt_blocks_detected\":{},\
         \"quarantined_bytes\":{},\"failed\":{},\"scrub\":{{\"blocks\":{},\"corrupt\":{},\
         \"passes\":{}}},\"health\":",
        s.version,
        s.uptime_s,
        c.capacity_bytes,
        c.free_bytes,
        c.reserved_bytes,
        c.used_bytes,
        c.blocks,
        c.data_bytes,
        s.durability,
        s.verify_reads,
        corrupt,
        c.quarantined_bytes,
        c.failed,
        s.scrub_blocks,
        s.scrub_corrupt,
        s.scrub_passes,
    );
    match &s.health {
        None => out.push_str("\"ok\",\"health_reason\":null"),
        Some(why) => {
            json_string(&mut out, why.code());
            out.push_str(",\"health_reason\":");
            json_string(&mut out, &why.reason());
        }
    }
    out.push_str(",\"free_slots\":");
    json_class_map(&mut out, &c.free_slots);
    out.push_str(",\"reserved_slots\":");
    json_class_map(&mut out, &c.reserved_slots);
    let _ = write!(
        out,
        ",\"controller\":{{\"cycles\":{},\"commits\":{},\"commit_seq\":{},\
         \"last_batch_messages\":{},\"max_batch_messages\":{},\"messages_total\":{},\
         \"last_commit_ns\":{},\"max_commit_ns\":{},\"total_commit_ns\":{},\"last_sync_ns\":{},\
         \"total_sync_ns\":{},\"pauses\":{},\"outbox_waiting\":{}}}",
        c.cycles,
        c.commits,
        c.commit_seq,
        c.last_batch_messages,
        c.max_batch_messages,
        c.messages_total,
        c.last_commit_ns,
        c.max_commit_ns,
        c.total_commit_ns,
        c.last_sync_ns,
        c.total_sync_ns,
        c.pauses,
        c.outbox_waiting,
    );
    out.push_str(",\"queues\":{\"to_controller\":");
    json_array(&mut out, s.queue_to_controller.iter().copied());
    out.push_str(",\"to_worker\":");
    json_array(&mut out, s.queue_to_worker.iter().copied());
    out.push_str("},\"workers\":[");
    for (i, w) in s.workers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"requests\":{},\"bytes_in\":{},\"bytes_out\":{},\"connections_open\":{},\
             \"connections_accepted\":{},\"connections_rejected\":{},\"refill_requests\":{},\
             \"ops_in_flight\":{},\"controller_requests_waiting\":{},\"timeouts\":{},\
             \"corrupt_blocks_detected\":{},\"controller_wait_ns\":{},\
             \"buffer_granted_bytes\":{},\"buffer_waits\":{},\"small_piece_uploads\":{},\
             \"storage_timeouts\":{},\"pool_free\":",
            w.requests,
            w.bytes_in,
            w.bytes_out,
            w.connections_open,
            w.connections_accepted,
            w.connections_rejected,
            w.refill_requests,
            w.ops_in_flight,
            w.controller_requests_waiting,
            w.timeouts,
            w.corrupt_blocks_detected,
            w.controller_wait_ns,
            w.buffer_granted_bytes,
            w.buffer_waits,
            w.small_piece_uploads,
            w.storage_timeouts,
        );
        json_class_map(&mut out, &w.pool_free);
        out.push_str(",\"pool_target\":");
        json_class_map(&mut out, &w.pool_target);
        out.push_str(",\"requests_by_method\":{");
        for (j, m) in METHODS.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{m}\":{}", w.by_method[j]);
        }
        out.push_str("},\"responses_by_status\":{");
        let mut first = true;
        for (j, st) in STATUSES.iter().enumerate() {
            if w.by_status[j] == 0 {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            let label = if *st == 0 {
                "other".to_string()
            } else {
                st.to_string()
            };
            let _ = write!(out, "\"{label}\":{}", w.by_status[j]);
        }
        out.push_str("}}");
    }
    out.push_str("]}");
    out
}

fn prom_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn prom_gauge(out: &mut String, name: &str, help: &str, value: u64) {
    prom_header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn prom_counter(out: &mut String, name: &str, help: &str, value: u64) {
    prom_header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A metric with one sample per worker: name (after the prefix), type, help, value.
type PerWorkerMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerStats) -> u64,
);

/// Renders /metrics in the Prometheus text exposition format (version 0.0.4).
pub fn render_prometheus(s: &StatsSnapshot) -> String {
    let c = &s.controller;
    let mut out = String::with_capacity(8192);
    let p = "buddy_blocks";
    prom_gauge(
        &mut out,
        &format!("{p}_capacity_bytes"),
        "Data file capacity.",
        c.capacity_bytes,
    );
    prom_gauge(
        &mut out,
        &format!("{p}_free_bytes"),
        "Free bytes (incl. quarantine).",
        c.free_bytes,
    );
    prom_gauge(
        &mut out,
        &format!("{p}_reserved_bytes"),
        "Bytes reserved by worker pools.",
        c.reserved_bytes,
    );
    prom_gauge(
        &mut out,
        &format!("{p}_used_bytes"),
        "Slot bytes of stored blocks.",
        c.used_bytes,
    );
    prom_gauge(&mut out, &format!("{p}_blocks"), "Stored blocks.", c.blocks);
    prom_gauge(
        &mut out,
        &format!("{p}_data_bytes"),
        "Sum of stored block lengths.",
        c.data_bytes,
    );
    prom_gauge(
        &mut out,
        &format!("{p}_uptime_seconds"),
        "Seconds since start.",
        s.uptime_s,
    );
    prom_gauge(
        &mut out,
        &format!("{p}_healthy"),
        "1 when /health answers 200 ok; 0 when it answers 503 (see /stats health).",
        u64::from(s.health.is_none()),
    );
    prom_gauge(
        &mut out,
        &format!("{p}_failed"),
        "1 after a storage error latched the controller.",
        u64::from(c.failed),
    );
    prom_counter(
        &mut out,
        &format!("{p}_corrupt_blocks_detected_total"),
        "Blocks whose bytes failed verification (GETs and the scrub).",
        corrupt_total(s),
    );
    prom_counter(
        &mut out,
        &format!("{p}_scrub_blocks_total"),
        "Blocks re-hashed by the background scrub.",
        s.scrub_blocks,
    );
    prom_counter(
        &mut out,
        &format!("{p}_scrub_passes_total"),
        "Full passes of the background scrub over the index.",
        s.scrub_passes,
    );
    prom_counter(
        &mut out,
        &format!("{p}_controller_cycles_total"),
        "Controller cycles run.",
        c.cycles,
    );
    prom_counter(
        &mut out,
        &format!("{p}_controller_commits_total"),
        "Metadata commits.",
        c.commits,
    );
    prom_counter(
        &mut out,
        &format!("{p}_controller_messages_total"),
        "Messages handled.",
        c.messages_total,
    );
    prom_gauge(
        &mut out,
        &format!("{p}_controller_last_batch_messages"),
        "Messages in the last cycle.",
        c.last_batch_messages,
    );
    let name = format!("{p}_controller_commit_seconds_total");
    prom_header(
        &mut out,
        &name,
        "counter",
        "Time spent in metadata commits.",
    );
    let _ = writeln!(out, "{name} {}", c.total_commit_ns as f64 / 1e9);
    let name = format!("{p}_controller_sync_seconds_total");
    prom_header(
        &mut out,
        &name,
        "counter",
        "Time spent making batches durable outside the commit: the data file's fdatasync, and \
         in full durability (made durable in the background) the index's sync too.",
    );
    let _ = writeln!(out, "{name} {}", c.total_sync_ns as f64 / 1e9);
    let name = format!("{p}_free_slots");
    prom_header(
        &mut out,
        &name,
        "gauge",
        "Free slots on the allocator's free list per class.",
    );
    for cl in SizeClass::ALL {
        let _ = writeln!(
            out,
            "{name}{{class=\"{}\"}} {}",
            cl.label(),
            c.free_slots[cl.index()]
        );
    }
    let name = format!("{p}_pool_free_slots");
    prom_header(
        &mut out,
        &name,
        "gauge",
        "Slots waiting in a worker's pool per class.",
    );
    for (w, ws) in s.workers.iter().enumerate() {
        for cl in SizeClass::ALL {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{w}\",class=\"{}\"}} {}",
                cl.label(),
                ws.pool_free[cl.index()]
            );
        }
    }
    let name = format!("{p}_requests_total");
    prom_header(
        &mut out,
        &name,
        "counter",
        "Requests answered, by worker and method.",
    );
    for (w, ws) in s.workers.iter().enumerate() {
        for (j, m) in METHODS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{w}\",method=\"{m}\"}} {}",
                ws.by_method[j]
            );
        }
    }
    let name = format!("{p}_responses_total");
    prom_header(&mut out, &name, "counter", "Responses by status code.");
    for (j, st) in STATUSES.iter().enumerate() {
        let total: u64 = s.workers.iter().map(|w| w.by_status[j]).sum();
        let label = if *st == 0 {
            "other".to_string()
        } else {
            st.to_string()
        };
        let _ = writeln!(out, "{name}{{status=\"{label}\"}} {total}");
    }
    let name = format!("{p}_connections_open");
    prom_header(&mut out, &name, "gauge", "Open client connections.");
    let open: u64 = s.workers.iter().map(|w| w.connections_open).sum();
    let _ = writeln!(out, "{name} {open}");
    let per_worker: [PerWorkerMetric; 6] = [
        (
            "io_ops_in_flight",
            "gauge",
            "io_uring operations in flight per worker.",
            |w| w.ops_in_flight,
        ),
        (
            "buffer_granted_bytes",
            "gauge",
            "Bytes of the I/O buffer budget held by requests, per worker.",
            |w| w.buffer_granted_bytes,
        ),
        (
            "buffer_waits_total",
            "counter",
            "Requests that waited for the I/O buffer budget, per worker.",
            |w| w.buffer_waits,
        ),
        (
            "small_piece_uploads_total",
            "counter",
            "Uploads streamed in small pieces because the buffer budget was spent, per worker.",
            |w| w.small_piece_uploads,
        ),
        (
            "storage_timeouts_total",
            "counter",
            "Requests answered 503 because storage did not answer by their request timeout.",
            |w| w.storage_timeouts,
        ),
        (
            "pool_refill_requests_total",
            "counter",
            "Allocate requests sent by worker pools.",
            |w| w.refill_requests,
        ),
    ];
    for (metric, kind, help, value) in per_worker {
        let name = format!("{p}_{metric}");
        prom_header(&mut out, &name, kind, help);
        for (w, ws) in s.workers.iter().enumerate() {
            let _ = writeln!(out, "{name}{{worker=\"{w}\"}} {}", value(ws));
        }
    }
    let name = format!("{p}_controller_wait_seconds_total");
    prom_header(
        &mut out,
        &name,
        "counter",
        "Time requests waited for controller replies.",
    );
    let wait: u64 = s.workers.iter().map(|w| w.controller_wait_ns).sum();
    let _ = writeln!(out, "{name} {}", wait as f64 / 1e9);
    let name = format!("{p}_queue_depth");
    prom_header(
        &mut out,
        &name,
        "gauge",
        "Frames waiting in the SPSC queues.",
    );
    for (w, d) in s.queue_to_controller.iter().enumerate() {
        let _ = writeln!(
            out,
            "{name}{{worker=\"{w}\",direction=\"to_controller\"}} {d}"
        );
    }
    for (w, d) in s.queue_to_worker.iter().enumerate() {
        let _ = writeln!(out, "{name}{{worker=\"{w}\",direction=\"to_worker\"}} {d}");
    }
    let rx: u64 = s.workers.iter().map(|w| w.bytes_in).sum();
    let tx: u64 = s.workers.iter().map(|w| w.bytes_out).sum();
    prom_counter(
        &mut out,
        &format!("{p}_received_bytes_total"),
        "Bytes received.",
        rx,
    );
    prom_counter(
        &mut out,
        &format!("{p}_sent_bytes_total"),
        "Bytes sent.",
        tx,
    );
    for (j, m) in METHODS.iter().enumerate() {
        let mut h = Histogram::default();
        for w in &s.workers {
            h.merge(&w.latency[j]);
        }
        let name = format!("{p}_{m}_duration_seconds");
        prom_header(
            &mut out,
            &name,
            "histogram",
            "Request latency, head to last byte queued.",
        );
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS_S.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}", h.sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {}", h.count);
    }
    out
}

#[cfg(test)]
mod tests;
