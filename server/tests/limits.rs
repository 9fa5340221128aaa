//! Limits of SPEC.md against the real binary: capacity exhaustion (507), the request and
//! idle timeouts (408), and the connection limit (503).

mod common;

use std::time::{Duration, Instant};

use common::*;

const ONLY_512K_POOL: &str = "4k=0,8k=0,16k=0,32k=0,64k=0,128k=0,256k=0,512k=1";

/// PUTs distinct 512 KiB blocks until the first 507; returns the stored ones.
fn fill_until_507(s: &Server, seed: u64, max: usize) -> Vec<Vec<u8>> {
    fill_with_until_507(s, seed, max, BLOCK_MAX)
}

/// PUTs distinct blocks of `len` bytes until the first 507; returns the stored ones.
fn fill_with_until_507(s: &Server, seed: u64, max: usize, len: usize) -> Vec<Vec<u8>> {
    let mut stored = Vec::new();
    for i in 0..max {
        let data = body(seed + i as u64, len);
        let r = s.put(&data);
        match r.status {
            201 => stored.push(data),
            507 => return stored,
            other => panic!("PUT {i}: {other} {:?}", r.text()),
        }
    }
    panic!("no 507 after {max} PUTs of 512 KiB");
}

#[test]
fn capacity_exhaustion_507_then_delete_frees_room() {
    let s = Server::start(&[
        "--capacity",
        "2MiB",
        "--workers",
        "1",
        "--pool-target",
        ONLY_512K_POOL,
    ]);
    let stored = fill_until_507(&s, 1, 10);
    assert_eq!(stored.len(), 4, "the whole 2 MiB holds four 512 KiB blocks");
    let st = s.stats();
    st.assert_identity();
    assert_eq!((st.used, st.free, st.reserved), (2 << 20, 0, 0));
    // Still full: another 507, and a small block finds no room either.
    s.put(&body(100, BLOCK_MAX)).expect(507);
    s.put(&body(101, 10)).expect(507);
    // GETs are still served.
    for d in &stored {
        s.assert_stored(d);
    }
    // A DELETE frees room and the next PUT succeeds.
    s.delete(&sha256_hex(&stored[1])).expect(204);
    let next = body(102, BLOCK_MAX);
    let r = s.put(&next);
    assert_eq!(r.status, 201, "PUT after a DELETE: {:?}", r.text());
    s.assert_stored(&next);
    s.get(&sha256_hex(&stored[1])).expect(404);
    s.assert_healthy();
}

/// A PUT of bytes already stored is a 200 even when the store is full (it needs no slot).
#[test]
fn duplicate_put_succeeds_when_full() {
    let s = Server::start(&[
        "--capacity",
        "2MiB",
        "--workers",
        "1",
        "--pool-target",
        ONLY_512K_POOL,
    ]);
    let stored = fill_until_507(&s, 1, 10);
    let r = s.put(&stored[0]);
    assert_eq!(
        r.status,
        200,
        "a duplicate PUT needs no room: {:?}",
        r.text()
    );
    assert_eq!(r.text(), sha256_hex(&stored[0]));
    let small = body(7, 100);
    s.delete(&sha256_hex(&stored[1])).expect(204);
    s.put(&small).expect(201);
    let smalls = fill_with_until_507(&s, 50, 200, 4096);
    assert_eq!(smalls.len(), 127);
    s.put(&small).expect(200);
    s.assert_healthy();
}

#[test]
fn capacity_exhaustion_with_default_pools_uses_the_whole_capacity() {
    // Two workers whose default pools want more than the whole capacity: slots parked in
    // pools are handed back before a PUT gets 507.
    let s = Server::start(&["--capacity", "2MiB", "--workers", "2"]);
    s.stats().assert_identity();
    let stored = fill_until_507(&s, 200, 10);
    assert_eq!(stored.len(), 4, "the whole capacity is usable");
    let st = s.stats();
    st.assert_identity();
    assert_eq!(st.used, 2 << 20);
    for d in &stored {
        s.assert_stored(d);
    }
    s.delete(&sha256_hex(&stored[0])).expect(204);
    s.put(&body(300, BLOCK_MAX)).expect(201);
    // Small blocks after big ones: delete one more and fill it with small ones.
    s.delete(&sha256_hex(&stored[1])).expect(204);
    let mut small = 0;
    for i in 0..200u64 {
        let r = s.put(&body(400 + i, 4096));
        match r.status {
            201 => small += 1,
            507 => break,
            other => panic!("small PUT: {other} {:?}", r.text()),
        }
    }
    assert_eq!(small, 128, "a freed 512 KiB slot holds 128 blocks of 4 KiB");
    s.assert_healthy();
}

#[test]
fn request_timeout_408_and_others_still_served() {
    let s = Server::start(&["--request-timeout", "1s"]);
    let before = s.stats();
    let t0 = Instant::now();
    // A head that never ends.
    let mut head = s.conn();
    head.send(b"GET /health HTTP/1.1\r\nHost: x\r\n");
    // A body that never ends.
    let mut partial = s.conn();
    partial.send(b"PUT /block HTTP/1.1\r\nContent-Length: 1000\r\n\r\n0123456789");
    // A slowloris: one byte every 100 ms.
    let mut slow = s.conn();
    let slow_req = b"GET /health HTTP/1.1\r\nHost: slowly-slowly-slowly\r\n\r\n";

    // Others are answered promptly meanwhile.
    let mut i = 0;
    let mut max_latency = Duration::ZERO;
    while t0.elapsed() < Duration::from_millis(700) {
        if i < slow_req.len() {
            let _ = slow.try_send(&slow_req[i..i + 1]);
            i += 1;
        }
        let t = Instant::now();
        s.request("GET", "/health", &[], None).expect(200);
        max_latency = max_latency.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        max_latency < Duration::from_millis(500),
        "others waited {max_latency:?}"
    );

    for (name, c) in [("head", &mut head), ("body", &mut partial)] {
        let r = c.read_response(false);
        assert_eq!(r.status, 408, "{name}: {:?}", r.text());
        assert!(r.says_close(), "{name}: 408 closes");
        assert!(c.closed_within(Duration::from_secs(2)), "{name}: closed");
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "408 before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "408 too late: {elapsed:?}"
    );
    // The slowloris is cut off too (with 408, or closed).
    match slow.try_read_response(false) {
        Ok(r) => assert_eq!(r.status, 408),
        Err(e) => panic!("slowloris: {e}"),
    }
    let after = s.stats();
    after.assert_identity();
    assert_eq!((after.used, after.blocks), (before.used, before.blocks));
    s.assert_healthy();
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let s = Server::start(&["--idle-timeout", "1s"]);
    let mut c = s.conn();
    c.request("GET", "/health", &[], None).expect(200);
    let t = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(4)),
        "idle connection closed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "closed too early: {:?}",
        t.elapsed()
    );
    // A connection that keeps working is not cut.
    let mut busy = s.conn();
    for _ in 0..6 {
        busy.request("GET", "/health", &[], None).expect(200);
        std::thread::sleep(Duration::from_millis(300));
    }
    s.assert_healthy();
}

#[test]
fn connections_beyond_the_limit_get_503() {
    let s = Server::start(&["--workers", "1", "--max-connections", "4"]);
    let mut held: Vec<Conn> = (0..4).map(|_| s.conn()).collect();
    for c in &mut held {
        c.request("GET", "/health", &[], None).expect(200);
    }
    // One more: 503 with Retry-After and Connection: close, then closed.
    let mut extra = s.conn();
    let r = extra.read_response(false);
    r.expect(503);
    assert!(r.says_close());
    assert!(r.header("retry-after").is_some());
    assert!(extra.closed_within(Duration::from_secs(3)));
    // A flood: each gets 503 or is closed; none hangs.
    let flood: Vec<Conn> = (0..100)
        .filter_map(|_| Conn::connect(s.addr).ok())
        .collect();
    for mut c in flood {
        c.set_read_timeout(Duration::from_secs(5));
        if let Ok(r) = c.try_read_response(false) {
            assert_eq!(r.status, 503);
        }
        assert!(
            c.closed_within(Duration::from_secs(5)),
            "a rejected connection is closed"
        );
    }
    // The held ones still work.
    for c in &mut held {
        c.request("GET", "/health", &[], None).expect(200);
    }
    // Once some close, new clients are served again.
    held.truncate(2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = s.conn();
        match c.request("GET", "/health", &[], None).status {
            200 => break,
            503 => assert!(Instant::now() < deadline, "slots never came back"),
            other => panic!("{other}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(50));
    s.assert_healthy();
    let open = json_u64(&s.stats().raw, "connections_open").unwrap();
    assert!(open <= 2, "connections released: {open} open");
}

/// `--buffer-memory` bounds the large buffers a worker's requests hold; requests beyond it
/// wait their turn instead of failing: 16 clients moving 512 KiB blocks both ways through a
/// 1 MiB budget (one large buffer at a time) all succeed, byte-exact.
#[test]
fn large_requests_beyond_the_buffer_memory_wait_and_succeed() {
    let (s, stored) = Server::small_buffer_memory(4, 700);
    std::thread::scope(|scope| {
        for t in 0..16u64 {
            let (s, stored) = (&s, &stored);
            scope.spawn(move || {
                let mut c = s.conn();
                for i in 0..4u64 {
                    let data = body(800 + t * 10 + i, BLOCK_MAX);
                    let r = c.request("PUT", "/block", &[], Some(&data));
                    assert_eq!((r.status, r.text()), (201, sha256_hex(&data)));
                    let want = &stored[((t + i) % 4) as usize];
                    let path = format!("/block/{}", sha256_hex(want));
                    let r = c.request("GET", &path, &[], None);
                    assert_eq!(r.status, 200);
                    assert!(r.body == *want, "GET {path}: the stored bytes");
                }
            });
        }
    });
    let raw = s.stats().raw;
    assert!(
        json_u64(&raw, "buffer_waits").unwrap() > 0,
        "16 clients through one large buffer waited for it"
    );
    assert_eq!(json_u64(&raw, "buffer_granted_bytes"), Some(0));
    s.assert_healthy();
}
