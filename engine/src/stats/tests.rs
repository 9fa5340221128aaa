//! Golden tests of the renderers: `/stats` JSON and `/metrics` Prometheus text must stay
//! byte-identical to the outputs recorded in `golden/` (taken before the metric table existed),
//! for a snapshot in which every figure has its own value.

use super::*;
use crate::controller::ControllerStats;
use crate::health::Unhealthy;
use crate::stats::table;

/// A snapshot with a distinct value in every figure: two workers, three queues each way.
fn snapshot(health: Option<Unhealthy>) -> StatsSnapshot {
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        n * 7 + n * n
    };
    let controller = ControllerStats {
        capacity_bytes: next(),
        free_bytes: next(),
        reserved_bytes: next(),
        used_bytes: next(),
        quarantined_bytes: next(),
        blocks: next(),
        data_bytes: next(),
        free_slots: std::array::from_fn(|_| next()),
        reserved_slots: std::array::from_fn(|_| next()),
        cycles: next(),
        commits: next(),
        commit_seq: next(),
        last_batch_messages: next(),
        max_batch_messages: next(),
        messages_total: next(),
        allocations: next(),
        last_commit_ns: next() * 1_000_003,
        max_commit_ns: next() * 1_000_003,
        total_commit_ns: next() * 1_000_003,
        last_sync_ns: next() * 1_000_003,
        total_sync_ns: next() * 1_000_003,
        pauses: next(),
        outbox_waiting: next(),
        log_bytes_used: next(),
        log_records: next(),
        log_records_written: next(),
        checkpoints: next(),
        last_checkpoint_ns: next() * 1_000_003,
        total_checkpoint_ns: next() * 1_000_003,
        log_full_waits: next(),
        failed: true,
    };
    let mut worker = |zero_statuses: bool| {
        let mut w = WorkerStats {
            requests: next(),
            by_method: std::array::from_fn(|_| next()),
            by_status: std::array::from_fn(|_| next()),
            latency: Default::default(),
            bytes_in: next(),
            bytes_out: next(),
            connections_open: next(),
            connections_accepted: next(),
            connections_rejected: next(),
            pool_free: std::array::from_fn(|_| next()),
            pool_target: std::array::from_fn(|_| next()),
            refill_requests: next(),
            ops_in_flight: next(),
            controller_requests_waiting: next(),
            controller_wait_ns: next() * 999_983,
            corrupt_blocks_detected: next(),
            timeouts: next(),
            buffer_granted_bytes: next(),
            buffer_waits: next(),
            small_piece_uploads: next(),
            storage_timeouts: next(),
        };
        if zero_statuses {
            for i in (0..STATUSES.len()).step_by(3) {
                w.by_status[i] = 0;
            }
        }
        for (m, h) in w.latency.iter_mut().enumerate() {
            for k in 0..(m as u64 * 5 + 3) {
                h.record(k * k * 37_000 + m as u64 * 11_000);
            }
        }
        w
    };
    let workers = vec![worker(false), worker(true)];
    StatsSnapshot {
        controller,
        workers,
        queue_to_controller: vec![next(), next(), next()],
        queue_to_worker: vec![next(), next(), next()],
        uptime_s: next(),
        scrub_blocks: next(),
        scrub_corrupt: next(),
        scrub_passes: next(),
        version: "1.2.3-test",
        durability: "full",
        verify_reads: "crc32c",
        health,
    }
}

fn unhealthy() -> Option<Unhealthy> {
    Some(Unhealthy::StorageFailed {
        cause: "disk \"sdb\" said\\no\n\u{1}".to_owned(),
    })
}

#[test]
fn json_is_byte_identical_to_the_recorded_output() {
    assert_eq!(
        render_json(&snapshot(None)),
        include_str!("golden/stats_healthy.json")
    );
    assert_eq!(
        render_json(&snapshot(unhealthy())),
        include_str!("golden/stats_failed.json")
    );
}

#[test]
fn prometheus_is_byte_identical_to_the_recorded_output() {
    assert_eq!(
        render_prometheus(&snapshot(None)),
        include_str!("golden/metrics_healthy.txt")
    );
    assert_eq!(
        render_prometheus(&snapshot(unhealthy())),
        include_str!("golden/metrics_failed.txt")
    );
}

#[test]
#[ignore = "writes the golden files: run once on the old renderer"]
fn record_golden_outputs() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/stats/golden");
    let write = |name: &str, text: String| std::fs::write(format!("{dir}/{name}"), text).unwrap();
    write("stats_healthy.json", render_json(&snapshot(None)));
    write("stats_failed.json", render_json(&snapshot(unhealthy())));
    write("metrics_healthy.txt", render_prometheus(&snapshot(None)));
    write(
        "metrics_failed.txt",
        render_prometheus(&snapshot(unhealthy())),
    );
}

#[test]
fn the_table_names_each_figure_once_and_follows_the_naming_rules() {
    let mut prometheus = std::collections::BTreeSet::new();
    for figure in table::ALL {
        assert!(figure.json.is_some() || figure.prometheus.is_some());
        assert!(!figure.help.is_empty() && figure.help.ends_with('.'));
        if let Some(name) = figure.prometheus {
            assert!(prometheus.insert(name), "{name} named twice");
            let is_counter = figure.kind == table::Kind::Counter;
            assert_eq!(is_counter, name.ends_with("_total"), "{name}");
        }
    }
    let rendered = render_prometheus(&snapshot(None));
    for name in prometheus {
        assert!(
            rendered.contains(&format!("_{name} ")),
            "{name} is not rendered"
        );
    }
}
