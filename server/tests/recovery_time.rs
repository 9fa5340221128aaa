//! The time to replay a write-ahead log of 100,000 records at start (issue 18), against the
//! real binary. Ignored (minutes: 100,000 flushes): run it with
//! `cargo test -p server --release --test recovery_time -- --ignored --nocapture`.
//!
//! A kill -9 keeps libmdbx's weak commits, so the index already holds what the log says; to
//! make the start replay every record, the test puts back the index file as it was on disk
//! right after the store opened (its durable state, which is what a power loss before any
//! checkpoint leaves), with checkpoints kept off (`BUDDY_BLOCKS_TEST_NO_CHECKPOINT=1`) and a
//! 1 GiB log.

mod common;

use std::collections::VecDeque;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const RECORDS: u64 = 100_000;
const CLIENTS: u64 = 4;
/// Blocks each client keeps stored; older ones are deleted (each DELETE is a record too).
const KEPT_PER_CLIENT: usize = 16;

/// One client: PUTs fresh small blocks and deletes its oldest beyond [`KEPT_PER_CLIENT`];
/// returns the blocks it leaves stored (acknowledged).
fn churn(addr: std::net::SocketAddr, client: u64, stop: &AtomicBool) -> Vec<Vec<u8>> {
    let mut c = Conn::connect(addr).expect("connect");
    let mut kept: VecDeque<Vec<u8>> = VecDeque::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let data = body(client << 40 | i, 64);
        let r = c.request("PUT", "/block", &[], Some(&data));
        assert_eq!(r.status, 201, "{}", r.text());
        kept.push_back(data);
        if kept.len() > KEPT_PER_CLIENT {
            let old = kept.pop_front().expect("one");
            let r = c.request("DELETE", &format!("/block/{}", sha256_hex(&old)), &[], None);
            assert_eq!(r.status, 204, "{}", r.text());
        }
    }
    kept.into()
}

#[test]
#[ignore]
fn replay_of_100000_records_written_by_the_binary_is_timed() {
    let mut s = Server::start_with_env(
        &["--log-size", "1GiB", "--capacity", "64MiB"],
        &[("BUDDY_BLOCKS_TEST_NO_CHECKPOINT", "1")],
    );
    let index = s.dir.join("index.mdbx").join("mdbx.dat");
    let durable_copy = s.tmp_path().join("mdbx.dat.at-open");
    // Nothing was written since the open's durable commit: the file is that durable state.
    fs::copy(&index, &durable_copy).unwrap();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let kept: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (addr, stop) = (s.addr, &stop);
                scope.spawn(move || churn(addr, t + 1, stop))
            })
            .collect();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let written = json_u64(&s.stats().raw, "log_records_written").expect("a figure");
            if written >= RECORDS {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(3600),
                "{written} records in an hour"
            );
        }
        stop.store(true, Ordering::Relaxed);
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("a client failed"))
            .collect()
    });
    eprintln!("{RECORDS}+ records written in {:?}", started.elapsed());
    s.kill9();
    // A power loss before any checkpoint: the index as it was durable at open.
    fs::copy(&durable_copy, &index).unwrap();
    let _ = fs::remove_file(s.dir.join("index.mdbx").join("mdbx.lck"));
    s.restart();
    let log = s.log_text();
    let line = log
        .lines()
        .rfind(|l| l.contains("replayed the write-ahead log"))
        .expect("a replay line");
    eprintln!("{line}");
    let field = |name: &str| -> u64 {
        let rest = line.split(&format!("{name}=")).nth(1).expect(name);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect(name)
    };
    assert!(field("records") >= RECORDS, "{line}");
    eprintln!(
        "replayed {} records ({} ops) in {} ms",
        field("records"),
        field("ops"),
        field("ms")
    );
    for data in &kept {
        s.assert_stored(data);
    }
    let st = s.stats();
    st.assert_identity();
    assert_eq!(st.blocks, kept.len() as u64);
    s.stop_ok();
}
