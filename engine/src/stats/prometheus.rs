//! `/metrics`: the snapshot in the Prometheus text exposition format (version 0.0.4), laid out
//! from the metric table (`table.rs`).
//!
//! This file owns the order of the metrics and how each kind of reading becomes samples and
//! labels. It must never name a metric, write a help text or read a counter itself (the table
//! does), and its output must stay byte-identical for the same snapshot (scrapers and
//! `server/tests/observability.rs` read it).

use std::fmt::Write as _;

use super::table::{self, Figure, Read, Series, Value};
use super::{Histogram, StatsSnapshot, LATENCY_BUCKETS_S, METHODS, STATUSES};
use crate::size_class::SizeClass;

/// Every metric prefix.
const PREFIX: &str = "buddy_blocks";

/// The metrics after [`table::SPACE`], in order.
const METRICS: [&Figure; 33] = [
    &table::UPTIME,
    &table::HEALTHY,
    &table::FAILED,
    &table::CORRUPT,
    &table::SCRUB_BLOCKS,
    &table::SCRUB_PASSES,
    &table::CYCLES,
    &table::COMMITS,
    &table::MESSAGES,
    &table::LAST_BATCH,
    &table::COMMIT_TIME,
    &table::SYNC_TIME,
    &table::LOG_BYTES_USED,
    &table::LOG_RECORDS_WRITTEN,
    &table::CHECKPOINTS,
    &table::CHECKPOINT_TIME,
    &table::LOG_FULL_WAITS,
    &table::FREE_SLOTS,
    &table::POOL_FREE,
    &table::REQUESTS_BY_METHOD,
    &table::RESPONSES_BY_STATUS,
    &table::CONNECTIONS_OPEN,
    &table::OPS_IN_FLIGHT,
    &table::BUFFER_GRANTED,
    &table::BUFFER_WAITS,
    &table::SMALL_PIECE_UPLOADS,
    &table::STORAGE_TIMEOUTS,
    &table::REFILLS,
    &table::CONTROLLER_WAIT,
    &table::QUEUE_DEPTH,
    &table::BYTES_IN,
    &table::BYTES_OUT,
    &table::LATENCY,
];

fn header(out: &mut String, name: &str, figure: &Figure) {
    let _ = writeln!(out, "# HELP {name} {}", figure.help);
    let _ = writeln!(out, "# TYPE {name} {}", figure.kind.name());
}

/// A sample's value: counts as integers, flags as 1/0, nanoseconds as seconds.
fn sample(value: Value) -> String {
    match value {
        Value::Count(n) => n.to_string(),
        Value::Flag(b) => u64::from(b).to_string(),
        Value::Nanos(ns) => (ns as f64 / 1e9).to_string(),
    }
}

/// Header and samples of one figure.
fn metric(out: &mut String, s: &StatsSnapshot, figure: &Figure) {
    let suffix = figure
        .prometheus
        .expect("stats: a figure laid out in Prometheus has a Prometheus name");
    let name = format!("{PREFIX}_{suffix}");
    if let Read::Latency(read) = figure.read {
        return latency(out, s, figure, suffix, read);
    }
    header(out, &name, figure);
    match figure.read {
        Read::Node(read) => {
            let _ = writeln!(out, "{name} {}", sample(read(s)));
        }
        Read::Worker(read, Series::PerWorker) => {
            for (w, ws) in s.workers.iter().enumerate() {
                let _ = writeln!(out, "{name}{{worker=\"{w}\"}} {}", sample(read(ws)));
            }
        }
        Read::Worker(read, Series::Sum) => {
            let zero = match read(&Default::default()) {
                Value::Nanos(_) => Value::Nanos(0),
                _ => Value::Count(0),
            };
            let total = s.workers.iter().fold(zero, |sum, w| sum.plus(read(w)));
            let _ = writeln!(out, "{name} {}", sample(total));
        }
        Read::Classes(read) => {
            for cl in SizeClass::ALL {
                let value = read(s)[cl.index()];
                let _ = writeln!(out, "{name}{{class=\"{}\"}} {value}", cl.label());
            }
        }
        Read::WorkerClasses(read) => {
            for (w, ws) in s.workers.iter().enumerate() {
                for cl in SizeClass::ALL {
                    let value = read(ws)[cl.index()];
                    let _ = writeln!(
                        out,
                        "{name}{{worker=\"{w}\",class=\"{}\"}} {value}",
                        cl.label()
                    );
                }
            }
        }
        Read::WorkerMethods => {
            for (w, ws) in s.workers.iter().enumerate() {
                for (j, m) in METHODS.iter().enumerate() {
                    let value = ws.by_method[j];
                    let _ = writeln!(out, "{name}{{worker=\"{w}\",method=\"{m}\"}} {value}");
                }
            }
        }
        Read::WorkerStatuses => {
            for (j, st) in STATUSES.iter().enumerate() {
                let total: u64 = s.workers.iter().map(|w| w.by_status[j]).sum();
                let label = super::status_label(*st);
                let _ = writeln!(out, "{name}{{status=\"{label}\"}} {total}");
            }
        }
        Read::Queues => {
            let directions = [
                ("to_controller", &s.queue_to_controller),
                ("to_worker", &s.queue_to_worker),
            ];
            for (direction, depths) in directions {
                for (w, d) in depths.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}{{worker=\"{w}\",direction=\"{direction}\"}} {d}"
                    );
                }
            }
        }
        Read::Latency(_) => unreachable!("latency is rendered above"),
    }
}

/// One histogram per method, merged over the workers: `<prefix>_<method>_<suffix>`.
fn latency(
    out: &mut String,
    s: &StatsSnapshot,
    figure: &Figure,
    suffix: &str,
    read: fn(&super::WorkerStats) -> &[Histogram],
) {
    for (j, m) in METHODS.iter().enumerate() {
        let mut h = Histogram::default();
        for w in &s.workers {
            h.merge(&read(w)[j]);
        }
        let name = format!("{PREFIX}_{m}_{suffix}");
        header(out, &name, figure);
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS_S.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}", h.sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {}", h.count);
    }
}

/// Renders /metrics in the Prometheus text exposition format (version 0.0.4).
pub fn render_prometheus(s: &StatsSnapshot) -> String {
    let mut out = String::with_capacity(8192);
    for figure in table::SPACE.into_iter().chain(METRICS) {
        metric(&mut out, s, figure);
    }
    out
}
