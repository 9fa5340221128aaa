//! Restarts, crashes, graceful shutdown and the offline `check` command, against the real
//! `buddy-blocks` binary.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// Sum of the default pool targets of one worker (4k=10,8k=10,16k=10,32k=5,64k=5,128k=3,
/// 256k=2,512k=2), in bytes.
const DEFAULT_POOL_BYTES: u64 = 10 * 4096
    + 10 * 8192
    + 10 * 16384
    + 5 * 32768
    + 5 * 65536
    + 3 * 131_072
    + 2 * 262_144
    + 2 * 524_288;

#[test]
fn restart_keeps_everything() {
    let mut s = Server::start(&[]);
    let mut kept = Vec::new();
    let mut deleted = Vec::new();
    for i in 0..30u64 {
        let len = [1usize, 4095, 4096, 4097, 100_000, 524_288][i as usize % 6] + (i as usize / 6);
        let len = len.min(BLOCK_MAX);
        let data = body(1000 + i, len);
        s.put(&data).expect(201);
        if i % 7 == 3 {
            deleted.push(data);
        } else {
            kept.push(data);
        }
    }
    for d in &deleted {
        s.delete(&sha256_hex(d)).expect(204);
    }
    let before = s.stats();
    let listing = s.list_all();
    s.stop_ok();

    s.restart();
    for d in &kept {
        s.assert_stored(d);
    }
    for d in &deleted {
        s.get(&sha256_hex(d)).expect(404);
    }
    let after = s.stats();
    after.assert_identity();
    assert_eq!(
        (after.blocks, after.used, after.data_bytes, after.capacity),
        (
            before.blocks,
            before.used,
            before.data_bytes,
            before.capacity
        )
    );
    assert_eq!(after.blocks, kept.len() as u64);
    assert_eq!(s.list_all(), listing);

    // A second restart, with a larger capacity: the file grows, everything stays.
    s.stop_ok();
    s.restart_with(&["--capacity", "48MiB"]);
    for d in &kept {
        s.assert_stored(d);
    }
    let st = s.stats();
    assert_eq!(st.capacity, 48 << 20);
    st.assert_identity();
    s.put(&body(1999, 524_288)).expect(201);
    s.stop_ok();
    // A smaller capacity is refused with a clear message.
    let out = run_serve_expecting_refusal(&s.dir, &["--capacity", "16MiB"]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(
        text.contains("smaller") || text.contains("shrink"),
        "{text}"
    );
    assert!(run_check(&s.dir, false).status.success());
}

#[derive(Default)]
struct Ledger {
    /// PUTs answered 2xx (seed, len).
    acked_puts: Vec<(u64, usize)>,
    /// PUTs sent without an answer: may or may not be stored.
    unknown_puts: Vec<(u64, usize)>,
    /// DELETEs answered 204.
    acked_deletes: HashSet<String>,
    /// DELETEs sent without an answer.
    unknown_deletes: HashSet<String>,
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged() {
    let mut s = Server::start(&["--capacity", "64MiB"]);
    let ledger = Mutex::new(Ledger::default());
    // Some blocks stored before the load.
    for i in 0..10u64 {
        let len = 1000 + i as usize * 5000;
        s.put(&body(i, len)).expect(201);
        ledger.lock().unwrap().acked_puts.push((i, len));
    }
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (addr, ledger, stop) = (s.addr, &ledger, &stop);
            scope.spawn(move || {
                let mut rng = Rng::new(t + 77);
                let Ok(mut c) = Conn::connect(addr) else {
                    return;
                };
                let mut mine: Vec<(u64, usize)> = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    if i.is_multiple_of(3) && !mine.is_empty() {
                        let (seed, len) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        let hash = sha256_hex(&body(seed, len));
                        ledger.lock().unwrap().unknown_deletes.insert(hash.clone());
                        let req = request_bytes("DELETE", &format!("/block/{hash}"), &[], None);
                        let answer = c.try_send(&req).and_then(|_| c.try_read_response(false));
                        match answer {
                            Ok(r) => {
                                assert_eq!(r.status, 204, "DELETE: {:?}", r.text());
                                let mut l = ledger.lock().unwrap();
                                l.unknown_deletes.remove(&hash);
                                l.acked_deletes.insert(hash);
                            }
                            Err(_) => return,
                        }
                    } else {
                        let seed = 1_000_000 * (t + 1) + i;
                        let len = 1 + rng.below(150_000) as usize;
                        let data = body(seed, len);
                        ledger.lock().unwrap().unknown_puts.push((seed, len));
                        let req = request_bytes("PUT", "/block", &[], Some(&data));
                        let answer = c.try_send(&req).and_then(|_| c.try_read_response(false));
                        match answer {
                            Ok(r) => {
                                assert_eq!(r.status, 201, "PUT: {:?}", r.text());
                                let mut l = ledger.lock().unwrap();
                                l.unknown_puts.retain(|&(s, _)| s != seed);
                                l.acked_puts.push((seed, len));
                                mine.push((seed, len));
                            }
                            Err(_) => return,
                        }
                    }
                }
            });
        }
        // Let the load run, then crash the server in the middle of it.
        let deadline = started + Duration::from_secs(5);
        while ledger.lock().unwrap().acked_puts.len() < 120 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        s.kill9();
        stop.store(true, Ordering::Relaxed);
    });

    let ledger = ledger.into_inner().unwrap();
    assert!(
        ledger.acked_puts.len() > 20,
        "the load made progress: {}",
        ledger.acked_puts.len()
    );
    assert!(!ledger.acked_deletes.is_empty());
    s.restart();
    let mut expected_present = 0;
    for &(seed, len) in &ledger.acked_puts {
        let data = body(seed, len);
        let hash = sha256_hex(&data);
        if ledger.acked_deletes.contains(&hash) {
            let r = s.get(&hash);
            assert_eq!(r.status, 404, "an acknowledged DELETE came back: {hash}");
        } else if !ledger.unknown_deletes.contains(&hash) {
            s.assert_stored(&data);
            expected_present += 1;
        }
    }
    // Nothing else is stored, and every listed length is right.
    let mut known: HashMap<String, usize> = HashMap::new();
    for &(seed, len) in ledger.acked_puts.iter().chain(ledger.unknown_puts.iter()) {
        known.insert(sha256_hex(&body(seed, len)), len);
    }
    let listing = s.list_all();
    for (hash, len) in &listing {
        assert_eq!(
            known.get(hash).map(|&l| l as u64),
            Some(*len),
            "unexpected block {hash}"
        );
    }
    for &(seed, len) in &ledger.unknown_puts {
        // An unanswered PUT is all or nothing.
        let data = body(seed, len);
        let r = s.get(&sha256_hex(&data));
        assert!(
            r.status == 404 || (r.status == 200 && r.body == data),
            "torn PUT {seed}"
        );
    }
    assert!(listing.len() >= expected_present);
    let st = s.stats();
    st.assert_identity();
    assert_eq!(st.blocks, listing.len() as u64);
    assert_eq!(
        st.used,
        listing
            .iter()
            .map(|(_, l)| slot_bytes(*l as usize))
            .sum::<u64>()
    );
    assert_eq!(st.data_bytes, listing.iter().map(|(_, l)| *l).sum::<u64>());
    // Reservations of the crashed process went back to free: only the new pools hold slots.
    assert!(
        st.reserved <= 2 * DEFAULT_POOL_BYTES,
        "reserved {} after restart",
        st.reserved
    );
    // New writes work, and a clean stop leaves a directory `check` accepts.
    let data = body(424_242, 9999);
    s.put(&data).expect(201);
    s.stop_ok();
    let out = run_check(&s.dir, false);
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight() {
    let mut s = Server::start(&[]);
    let early = body(1, 3000);
    s.put(&early).expect(201);

    // An idle keep-alive connection and a PUT whose body is half sent.
    let mut idle = s.conn();
    idle.request("GET", "/health", &[], None).expect(200);
    let data = body(2, 200_000);
    let hash = sha256_hex(&data);
    let mut busy = s.conn();
    busy.send(
        format!(
            "PUT /block HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .as_bytes(),
    );
    busy.send(&data[..100_000]);
    std::thread::sleep(Duration::from_millis(50));

    s.signal(libc::SIGTERM);
    assert!(
        idle.closed_within(Duration::from_secs(3)),
        "idle keep-alive closed at once"
    );
    std::thread::sleep(Duration::from_millis(100));
    busy.send(&data[100_000..]);
    let r = busy.read_response(false);
    r.expect(201);
    assert_eq!(r.body, hash.as_bytes());
    let status = s.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        s.log_text()
    );

    s.restart();
    s.assert_stored(&early);
    s.assert_stored(&data);
    s.stats().assert_identity();
}

#[test]
fn graceful_shutdown_is_bounded_by_the_drain_timeout() {
    let mut s = Server::start(&["--drain-timeout", "1s"]);
    let before = s.stats();
    // A request that never finishes.
    let mut stuck = s.conn();
    stuck.send(b"PUT /block HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc");
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        s.log_text()
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "drain took {:?}",
        t.elapsed()
    );
    drop(stuck);
    s.restart();
    let st = s.stats();
    st.assert_identity();
    assert_eq!((st.blocks, st.used), (before.blocks, before.used));
}

/// Copies a stopped server's data directory.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Flips one byte in the middle of the only occurrence of `marker` in the data file.
fn corrupt_in_place(data_dir: &Path, marker: &[u8]) {
    let path = data_dir.join("blocks.data");
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    let at = find(&bytes, marker).expect("the block's bytes in blocks.data");
    assert!(
        find(&bytes[at + 1..], marker).is_none(),
        "the marker is unique"
    );
    let pos = at + marker.len() / 2;
    file.seek(SeekFrom::Start(pos as u64)).unwrap();
    file.write_all(&[bytes[pos] ^ 0x55]).unwrap();
    file.sync_all().unwrap();
}

#[test]
fn check_finds_and_repairs_corruption() {
    let mut s = Server::start(&[]);
    let mut marker = b"BUDDY-BLOCKS-CORRUPT-ME:".repeat(300);
    marker.extend_from_slice(&body(7, 1000));
    let victim_hash = sha256_hex(&marker);
    s.put(&marker).expect(201);
    let others: Vec<Vec<u8>> = (0..6)
        .map(|i| body(100 + i, 500 + i as usize * 20_000))
        .collect();
    for o in &others {
        s.put(o).expect(201);
    }
    s.stop_ok();

    let out = run_check(&s.dir, false);
    assert!(
        out.status.success(),
        "check on a clean directory: {}",
        output_text(&out)
    );

    let copy = s.tmp_path().join("copy");
    copy_dir(&s.dir, &copy);
    corrupt_in_place(&copy, &marker);
    let out = run_check(&copy, false);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&victim_hash),
        "check names the hash: {}",
        output_text(&out)
    );
    // The original directory is untouched.
    assert!(run_check(&s.dir, false).status.success());

    // A server on the corrupt copy never serves the bad bytes: 500, counted.
    {
        let tmp = tempfile::tempdir().unwrap();
        let c = Server::start_on(tmp, copy.clone(), &[]);
        let r = c.get(&victim_hash);
        assert_eq!(r.status, 500, "corrupt block served: {:?}", r.headers);
        assert!(r.body.len() < 200, "no part of the block is sent");
        let r = c.request(
            "GET",
            &format!("/block/{victim_hash}"),
            &[("Range", "bytes=0-9")],
            None,
        );
        assert_eq!(r.status, 500);
        // The IPFS gateway reads through the same verification.
        let cid = format!("f01551220{victim_hash}");
        for format in ["raw", "car"] {
            let r = c.request("GET", &format!("/ipfs/{cid}?format={format}"), &[], None);
            assert_eq!(r.status, 500, "corrupt block served as {format}");
            assert!(r.body.len() < 200, "no part of the block is sent");
        }
        for o in &others {
            c.assert_stored(o);
        }
        // Counted as corruption (workers publish their counters within a fraction of a second).
        c.wait_stats("corrupt_blocks_detected >= 4", |st| {
            json_u64(&st.raw, "corrupt_blocks_detected").unwrap() >= 4
        });
        drop(c); // kill -9 is fine for the check below: nothing was written.
    }

    let out = run_check(&copy, true);
    let text = output_text(&out);
    assert!(
        text.contains(&victim_hash),
        "repair lists the dropped block: {text}"
    );
    let out = run_check(&copy, false);
    assert!(
        out.status.success(),
        "check after repair: {}",
        output_text(&out)
    );

    // The repaired copy serves: the victim is gone, its slot is free, the rest intact.
    let tmp = tempfile::tempdir().unwrap();
    let c = Server::start_on(tmp, copy, &[]);
    c.get(&victim_hash).expect(404);
    for o in &others {
        c.assert_stored(o);
    }
    let st = c.stats();
    st.assert_identity();
    assert_eq!(st.blocks, others.len() as u64);
    assert_eq!(
        st.used,
        others.iter().map(|o| slot_bytes(o.len())).sum::<u64>()
    );
    c.put(&marker).expect(201);
    c.assert_stored(&marker);
}

#[test]
fn check_refuses_while_a_server_runs() {
    let s = Server::start(&[]);
    s.put(&body(1, 100)).expect(201);
    let out = run_check(&s.dir, false);
    assert!(
        !out.status.success(),
        "check ran beside a live server: {}",
        output_text(&out)
    );
    let text = output_text(&out).to_lowercase();
    assert!(
        text.contains("in use") || text.contains("running") || text.contains("another process"),
        "a clear message: {text}"
    );
    // A second server on the same directory is refused too.
    let out = run_serve_expecting_refusal(&s.dir, &[]);
    assert!(!out.status.success(), "{}", output_text(&out));
    s.assert_healthy();
}
