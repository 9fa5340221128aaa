//! /metrics through a real Prometheus text-format parser, /stats as real JSON, the background
//! scrub finding a block corrupted under a running server, and the shipped config file.

mod common;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::{body, find, Server};
use prometheus_parse::{Scrape, Value};

fn metrics(server: &Server) -> Scrape {
    let r = server.request("GET", "/metrics", &[], None);
    r.expect(200);
    let text = r.text();
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    // Every family announces HELP and TYPE before its samples.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {family} "))
                || text.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}"
        );
        assert!(
            text.contains(&format!("# HELP {family} "))
                || text.contains(&format!("# HELP {name} "))
        );
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition format")
}

fn sample<'a>(scrape: &'a Scrape, name: &str) -> &'a Value {
    &scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("metric {name} missing"))
        .value
}

/// /metrics parses as Prometheus text and agrees with what the server did.
#[test]
fn metrics_parse_and_count() {
    let server = Server::start(&[]);
    let a = body(1, 5000);
    let hash = server.put_ok(&a);
    server.assert_stored(&a);
    let scrape = metrics(&server);
    match sample(&scrape, "buddy_blocks_blocks") {
        Value::Gauge(v) => assert_eq!(*v, 1.0),
        other => panic!("blocks is not a gauge: {other:?}"),
    }
    match sample(&scrape, "buddy_blocks_used_bytes") {
        Value::Gauge(v) => assert_eq!(*v, 8192.0),
        other => panic!("used_bytes is not a gauge: {other:?}"),
    }
    let capacity = match sample(&scrape, "buddy_blocks_capacity_bytes") {
        Value::Gauge(v) => *v,
        other => panic!("{other:?}"),
    };
    let sum: f64 = ["free", "reserved", "used"]
        .iter()
        .map(
            |k| match sample(&scrape, &format!("buddy_blocks_{k}_bytes")) {
                Value::Gauge(v) => *v,
                other => panic!("{other:?}"),
            },
        )
        .sum();
    assert_eq!(sum, capacity, "accounting identity in /metrics");
    // Worker counters are published every 50 ms: another worker's view may lag a little.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let scrape = metrics(&server);
        let count = match sample(&scrape, "buddy_blocks_put_duration_seconds") {
            Value::Histogram(buckets) => {
                let inf = buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .expect("+Inf");
                inf.count
            }
            other => panic!("put latency is not a histogram: {other:?}"),
        };
        if count >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the PUT was never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.delete(&hash).expect(204);
}

/// /stats is valid JSON with SPEC's required keys.
#[test]
fn stats_is_json_with_required_keys() {
    let server = Server::start(&["--durability", "relaxed", "--verify-reads", "sha256"]);
    server.put_ok(&body(2, 100));
    let r = server.request("GET", "/stats", &[], None);
    r.expect(200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    for key in [
        "capacity_bytes",
        "free_bytes",
        "reserved_bytes",
        "used_bytes",
        "blocks",
        "data_bytes",
        "durability",
        "verify_reads",
        "corrupt_blocks_detected",
        "free_slots",
        "workers",
        "controller",
        "queues",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["durability"], "relaxed");
    assert_eq!(v["verify_reads"], "sha256");
    assert_eq!(v["blocks"], 1);
    assert_eq!(v["data_bytes"], 100);
    let n = |k: &str| v[k].as_u64().unwrap();
    assert_eq!(
        n("free_bytes") + n("reserved_bytes") + n("used_bytes"),
        n("capacity_bytes")
    );
}

/// The background scrub re-hashes stored blocks and reports one corrupted under it.
#[test]
fn scrub_finds_a_corrupted_block() {
    let server = Server::start(&["--scrub-interval", "1ms"]);
    let mut good = body(3, 20_000);
    good[..16].copy_from_slice(b"SCRUB-MARKER-123");
    server.put_ok(&good);
    server.put_ok(&body(4, 3000));
    let path = server.dir.join("blocks.data");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut image = vec![0u8; file.metadata().unwrap().len() as usize];
    file.read_exact_at(&mut image, 0).unwrap();
    let at = find(&image, b"SCRUB-MARKER-123").expect("block bytes in the data file") as u64;
    file.write_all_at(b"scrub-marker-123", at).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = server.request("GET", "/stats", &[], None);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if v["scrub"]["corrupt"].as_u64() == Some(1) && v["scrub"]["passes"].as_u64() >= Some(1) {
            assert_eq!(v["corrupt_blocks_detected"], 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scrub did not report the corrupt block: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The corrupt block is never served.
    assert_eq!(server.get(&common::sha256_hex(&good)).status, 500);
    let scrape = metrics(&server);
    match sample(&scrape, "buddy_blocks_corrupt_blocks_detected_total") {
        Value::Counter(v) => assert!(*v >= 1.0),
        other => panic!("{other:?}"),
    }
}

/// The sample config shipped in deploy/ parses, and flags override it.
#[test]
fn shipped_config_parses_and_flags_override() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/buddy-blocks.toml");
    let out = std::process::Command::new(common::BIN)
        .args([
            "serve",
            "--config",
            config,
            "--durability",
            "relaxed",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("durability = \"relaxed\""), "{text}");
    assert!(text.contains("log_format = \"json\""), "{text}");
    let bad = std::env::temp_dir().join(format!("bb-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, "no_such_key = 1\n").unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--config", bad.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key"));
    let _ = std::fs::remove_file(bad);
}
