//! `/stats`: the snapshot as one JSON object, laid out from the metric table (`table.rs`).
//!
//! This file owns the JSON layout only: which figures go in which object, in which order, plus
//! the texts that are not figures (version, durability, verify_reads, health). It must never
//! name a figure's key or read a counter itself (the table does), and its output must stay
//! byte-identical for the same snapshot (clients and `server/tests/observability.rs` read it).

use std::fmt::Write as _;

use super::table::{self, Figure, Read, Value};
use super::{StatsSnapshot, WorkerStats, METHODS, STATUSES};
use crate::size_class::{SizeClass, CLASS_COUNT};

/// Top-level figures after the texts.
const STATE: [&Figure; 3] = [&table::CORRUPT, &table::QUARANTINED, &table::FAILED];
/// The `scrub` object.
const SCRUB: [&Figure; 3] = [
    &table::SCRUB_BLOCKS,
    &table::SCRUB_CORRUPT,
    &table::SCRUB_PASSES,
];
/// Per-class maps after `health`.
const CLASS_MAPS: [&Figure; 2] = [&table::FREE_SLOTS, &table::RESERVED_SLOTS];
/// The `controller` object.
const CONTROLLER: [&Figure; 20] = [
    &table::CYCLES,
    &table::COMMITS,
    &table::COMMIT_SEQ,
    &table::LAST_BATCH,
    &table::MAX_BATCH,
    &table::MESSAGES,
    &table::LAST_COMMIT,
    &table::MAX_COMMIT,
    &table::COMMIT_TIME,
    &table::LAST_SYNC,
    &table::SYNC_TIME,
    &table::PAUSES,
    &table::OUTBOX_WAITING,
    &table::LOG_BYTES_USED,
    &table::LOG_RECORDS,
    &table::LOG_RECORDS_WRITTEN,
    &table::CHECKPOINTS,
    &table::LAST_CHECKPOINT,
    &table::CHECKPOINT_TIME,
    &table::LOG_FULL_WAITS,
];
/// Each worker's object, in order.
const WORKER: [&Figure; 20] = [
    &table::REQUESTS,
    &table::BYTES_IN,
    &table::BYTES_OUT,
    &table::CONNECTIONS_OPEN,
    &table::CONNECTIONS_ACCEPTED,
    &table::CONNECTIONS_REJECTED,
    &table::REFILLS,
    &table::OPS_IN_FLIGHT,
    &table::CONTROLLER_WAITING,
    &table::TIMEOUTS,
    &table::WORKER_CORRUPT,
    &table::CONTROLLER_WAIT,
    &table::BUFFER_GRANTED,
    &table::BUFFER_WAITS,
    &table::SMALL_PIECE_UPLOADS,
    &table::STORAGE_TIMEOUTS,
    &table::POOL_FREE,
    &table::POOL_TARGET,
    &table::REQUESTS_BY_METHOD,
    &table::RESPONSES_BY_STATUS,
];

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

fn json_value(out: &mut String, value: Value) {
    let _ = match value {
        Value::Count(n) | Value::Nanos(n) => write!(out, "{n}"),
        Value::Flag(b) => write!(out, "{b}"),
    };
}

/// `,"key":` (no comma at `position` 0), the key taken from the table.
fn key(out: &mut String, figure: &Figure, position: usize) {
    let key = figure
        .json
        .expect("stats: a figure laid out in JSON has a JSON key");
    if position > 0 {
        out.push(',');
    }
    let _ = write!(out, "\"{key}\":");
}

/// The figures of the node (not per worker), as `"key":value` pairs.
fn node_fields(out: &mut String, s: &StatsSnapshot, figures: &[&Figure], first: usize) {
    for (i, figure) in figures.iter().enumerate() {
        key(out, figure, first + i);
        match figure.read {
            Read::Node(read) => json_value(out, read(s)),
            Read::Classes(read) => json_class_map(out, read(s)),
            _ => panic!("stats: {:?} is not a node figure", figure.json),
        }
    }
}

/// One worker's object.
fn worker_object(out: &mut String, w: &WorkerStats) {
    out.push('{');
    for (i, figure) in WORKER.iter().enumerate() {
        key(out, figure, i);
        match figure.read {
            Read::Worker(read, _) => json_value(out, read(w)),
            Read::WorkerClasses(read) => json_class_map(out, read(w)),
            Read::WorkerMethods => {
                out.push('{');
                for (j, m) in METHODS.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "\"{m}\":{}", w.by_method[j]);
                }
                out.push('}');
            }
            Read::WorkerStatuses => {
                out.push('{');
                let mut first = true;
                for (j, st) in STATUSES.iter().enumerate() {
                    if w.by_status[j] == 0 {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    let _ = write!(out, "\"{}\":{}", super::status_label(*st), w.by_status[j]);
                }
                out.push('}');
            }
            _ => panic!("stats: {:?} is not a worker figure", figure.json),
        }
    }
    out.push('}');
}

/// Renders /stats as one JSON object.
pub fn render_json(s: &StatsSnapshot) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(out, "{{\"version\":\"{}\"", s.version);
    node_fields(&mut out, s, &[&table::UPTIME], 1);
    node_fields(&mut out, s, &table::SPACE, 1);
    let _ = write!(
        out,
        ",\"durability\":\"{}\",\"verify_reads\":\"{}\"",
        s.durability, s.verify_reads
    );
    node_fields(&mut out, s, &STATE, 1);
    out.push_str(",\"scrub\":{");
    node_fields(&mut out, s, &SCRUB, 0);
    out.push_str("},\"health\":");
    match &s.health {
        None => out.push_str("\"ok\",\"health_reason\":null"),
        Some(why) => {
            json_string(&mut out, why.code());
            out.push_str(",\"health_reason\":");
            json_string(&mut out, &why.reason());
        }
    }
    node_fields(&mut out, s, &CLASS_MAPS, 1);
    out.push_str(",\"controller\":{");
    node_fields(&mut out, s, &CONTROLLER, 0);
    out.push('}');
    key(&mut out, &table::QUEUE_DEPTH, 1);
    out.push_str("{\"to_controller\":");
    json_array(&mut out, s.queue_to_controller.iter().copied());
    out.push_str(",\"to_worker\":");
    json_array(&mut out, s.queue_to_worker.iter().copied());
    out.push_str("},\"workers\":[");
    for (i, w) in s.workers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        worker_object(&mut out, w);
    }
    out.push_str("]}");
    out
}
