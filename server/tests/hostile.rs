//! Hostile clients (issue 5): lying lengths, smuggling shapes, bad bytes, random streams,
//! disconnects mid-body and mid-response. After each: the server is healthy, stored blocks
//! are byte-exact, and the accounting identity holds with nothing leaked.

mod common;

use std::time::Duration;

use common::*;

/// A server with a few stored blocks, and the figures to compare against afterwards.
struct Fixture {
    s: Server,
    blocks: Vec<Vec<u8>>,
    used: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let s = Server::start(&["--request-timeout", "3s"]);
        let blocks: Vec<Vec<u8>> = [1usize, 5000, 70_000, BLOCK_MAX]
            .iter()
            .enumerate()
            .map(|(i, &n)| body(i as u64, n))
            .collect();
        for b in &blocks {
            s.put(b).expect(201);
        }
        let used = s.stats().used;
        Fixture { s, blocks, used }
    }

    /// Healthy, every block byte-exact, nothing leaked; then delete everything and require
    /// used_bytes == 0.
    #[track_caller]
    fn verify_and_empty(&self) {
        self.s.assert_healthy();
        for b in &self.blocks {
            self.s.assert_stored(b);
        }
        let st = self.s.wait_stats("no leak", |st| st.used == self.used);
        st.assert_identity();
        assert_eq!(st.blocks, self.blocks.len() as u64);
        for b in &self.blocks {
            self.s.delete(&sha256_hex(b)).expect(204);
        }
        let st = self.s.wait_stats("everything deleted", |st| st.used == 0);
        st.assert_identity();
        assert_eq!(st.blocks, 0);
    }
}

/// Sends `bytes` on a fresh connection, half-closes, and returns every response that comes
/// back before the server closes (the server must close within the timeout).
#[track_caller]
fn exchange(s: &Server, bytes: &[u8]) -> Vec<Response> {
    let mut c = s.conn();
    c.set_read_timeout(Duration::from_secs(8));
    let _ = c.try_send(bytes);
    c.shutdown_write();
    let mut out = Vec::new();
    while let Ok(r) = c.try_read_response(false) {
        out.push(r);
        if out.len() > 10 {
            break;
        }
    }
    assert!(
        c.closed_within(Duration::from_secs(8)),
        "server closes after {:?}",
        bytes.get(..40)
    );
    out
}

#[test]
fn lying_content_length() {
    let f = Fixture::new();
    let s = &f.s;
    // Shorter than announced, then close: nothing stored.
    let data = body(100, 1000);
    let mut req = b"PUT /block HTTP/1.1\r\nContent-Length: 1000\r\n\r\n".to_vec();
    req.extend_from_slice(&data[..500]);
    let answers = exchange(s, &req);
    assert!(answers.iter().all(|r| r.status >= 400), "{answers:?}");
    s.get(&sha256_hex(&data)).expect(404);
    s.get(&sha256_hex(&data[..500])).expect(404);

    // Longer than announced: the first bytes are the block, the rest is a bad next request.
    let mut req =
        b"PUT /block HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGARBAGE-NOT-HTTP\r\n\r\n".to_vec();
    req.extend_from_slice(b"");
    let answers = exchange(s, &req);
    assert_eq!(answers.first().map(|r| r.status), Some(201), "{answers:?}");
    assert_eq!(answers[0].text(), sha256_hex(b"hello"));
    assert!(answers[1..].iter().all(|r| r.status == 400), "{answers:?}");
    s.assert_stored(b"hello");
    s.delete(&sha256_hex(b"hello")).expect(204);

    // Lengths that are not decimal numbers. (`5, 5` may be accepted as 5: RFC 9110 8.6.)
    for cl in [
        "-1",
        "-0",
        "18446744073709551616",
        "99999999999999999999999",
        "0x10",
        "1e3",
        "",
        " ",
    ] {
        let req = format!("PUT /block HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nhello");
        let answers = exchange(s, req.as_bytes());
        assert!(!answers.is_empty(), "Content-Length {cl:?}: no answer");
        assert_eq!(answers[0].status, 400, "Content-Length {cl:?}");
    }
    // Chunk sizes that are not hex numbers, or overflow.
    for size in ["-1", "fffffffffffffffffffff", "0x5", "g", " 5", "5 5"] {
        let req = format!(
            "PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n"
        );
        let answers = exchange(s, req.as_bytes());
        assert!(!answers.is_empty(), "chunk size {size:?}: no answer");
        assert!(
            matches!(answers[0].status, 400 | 413),
            "chunk size {size:?}: {}",
            answers[0].status
        );
    }
    // A chunk longer than its size line says.
    let answers = exchange(
        s,
        b"PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(answers.first().map(|r| r.status), Some(400));
    s.get(&sha256_hex(b"hel")).expect(404);
    f.verify_and_empty();
}

#[test]
fn request_smuggling_shapes_are_refused() {
    let f = Fixture::new();
    let s = &f.s;
    let smuggled = "GET /health HTTP/1.1\r\n\r\n";
    let shapes = [
        "PUT /block HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "PUT /block HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\nhello",
        "PUT /block HTTP/1.1\r\nContent-Length: 5, 30\r\n\r\nhello",
        "PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "PUT /block HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\nhello",
        "PUT /block HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "PUT /block HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "PUT /block HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
        "PUT /block HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "PUT /block HTTP/1.1\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",
        "PUT /block HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for shape in shapes {
        let answers = exchange(s, format!("{shape}{smuggled}").as_bytes());
        assert!(!answers.is_empty(), "no answer to {shape:?}");
        assert_eq!(answers[0].status, 400, "{shape:?}");
        assert!(
            answers[0].says_close(),
            "{shape:?}: a framing error closes the connection"
        );
        assert_eq!(
            answers.len(),
            1,
            "{shape:?}: the smuggled request was answered"
        );
    }
    s.get(&sha256_hex(b"hello")).expect(404);
    // Bare LF line ends: refused or understood, but never misframed.
    let answers = exchange(
        s,
        b"GET /health HTTP/1.1\nHost: x\n\nGET /health HTTP/1.1\r\n\r\n",
    );
    assert!(
        answers
            .iter()
            .all(|r| r.status == 400 || (r.status == 200 && r.body == b"ok")),
        "{answers:?}"
    );
    f.verify_and_empty();
}

#[test]
fn bad_bytes_in_request_lines() {
    let f = Fixture::new();
    let s = &f.s;
    for req in [
        b"GET /a\0b HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /block/\0\0\0 HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /\xff\xfe\xfd HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1\r\nX: a\0b\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1\r\nX-\xff: y\r\n\r\n".to_vec(),
        b"G\0T /health HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /health\r\n".to_vec(),
    ] {
        let answers = exchange(s, &req);
        assert!(!answers.is_empty(), "no answer to {req:?}");
        assert_eq!(
            answers[0].status,
            400,
            "{:?}",
            String::from_utf8_lossy(&req)
        );
    }
    // Only empty lines: ignored or refused.
    let answers = exchange(s, b"\r\n\r\n\r\n");
    assert!(answers.iter().all(|r| r.status == 400), "{answers:?}");
    // Versions it does not speak.
    for req in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        b"GET / HTTP/3.0\r\n\r\n",
        b"GET / HTTP/1.2\r\n\r\n",
    ] {
        let answers = exchange(s, req);
        assert!(!answers.is_empty(), "no answer to {req:?}");
        assert!(
            matches!(answers[0].status, 400 | 505),
            "{req:?}: {}",
            answers[0].status
        );
    }
    // An absolute URI: understood or refused, never a crash.
    let answers = exchange(s, b"GET http://127.0.0.1/health HTTP/1.1\r\n\r\n");
    assert!(
        answers.iter().all(|r| matches!(r.status, 200 | 400 | 404)),
        "{answers:?}"
    );
    f.verify_and_empty();
}

#[test]
fn random_byte_streams() {
    let f = Fixture::new();
    let s = &f.s;
    let mut rng = Rng::new(2024);
    let prefixes: [&[u8]; 6] = [
        b"",
        b"PUT /block HTTP/1.1\r\n",
        b"GET /block/",
        b"PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PUT /block HTTP/1.1\r\nContent-Length: 100\r\n\r\n",
        b"POST /blocks/missing HTTP/1.1\r\nContent-Length: 300\r\n\r\n",
    ];
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for i in 0..48u64 {
            let mut bytes = prefixes[(i % prefixes.len() as u64) as usize].to_vec();
            let n = 1 + rng.below(3000) as usize;
            let start = bytes.len();
            bytes.resize(start + n, 0);
            rng.fill(&mut bytes[start..]);
            if i % 5 == 0 {
                // Mostly printable noise with line ends.
                for b in &mut bytes[start..] {
                    *b = b"abc: 0123\r\n\t /"[(*b % 14) as usize];
                }
            }
            handles.push(scope.spawn(move || {
                let mut c = s.conn();
                c.set_read_timeout(Duration::from_secs(8));
                let _ = c.try_send(&bytes);
                c.shutdown_write();
                while c.try_read_response(false).is_ok() {}
                assert!(
                    c.closed_within(Duration::from_secs(8)),
                    "stream {i}: not closed"
                );
            }));
        }
        for h in handles {
            h.join().expect("stream thread");
        }
    });
    // Random PUT bodies may have been stored; they are real blocks, so remove them.
    for (hash, _) in s.list_all() {
        if !f.blocks.iter().any(|b| sha256_hex(b) == hash) {
            s.delete(&hash).expect(204);
        }
    }
    f.verify_and_empty();
}

#[test]
fn disconnects_mid_body_and_mid_response_leak_nothing() {
    let f = Fixture::new();
    let s = &f.s;
    let data = body(500, BLOCK_MAX);
    for cut in [0usize, 1, 100, 4095, 65_536, 300_000, BLOCK_MAX - 1] {
        let mut c = s.conn();
        c.send(format!("PUT /block HTTP/1.1\r\nContent-Length: {BLOCK_MAX}\r\n\r\n").as_bytes());
        let _ = c.try_send(&data[..cut]);
        drop(c);
        let chunked_wire = chunked(&data, &[10_000]);
        let mut c = s.conn();
        c.send(b"PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let _ = c.try_send(&chunked_wire[..cut.min(chunked_wire.len() - 1)]);
        drop(c);
    }
    // Mid-head too.
    for cut in [1usize, 10, 30] {
        let mut c = s.conn();
        let _ = c.try_send(&b"PUT /block HTTP/1.1\r\nContent-Length: 100\r\n\r\n"[..cut]);
    }
    // Mid-response: read a little of a 512 KiB GET, then go.
    let big = sha256_hex(&f.blocks[3]);
    for read in [0usize, 10, 1000, 100_000] {
        let mut c = s.conn();
        c.send(format!("GET /block/{big} HTTP/1.1\r\n\r\n").as_bytes());
        let mut got = 0;
        let mut buf = [0u8; 4096];
        while got < read {
            use std::io::Read;
            match c.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        drop(c);
    }
    // Pipelined GETs never read at all.
    let mut c = s.conn();
    let mut wire = Vec::new();
    for _ in 0..20 {
        wire.extend(request_bytes("GET", &format!("/block/{big}"), &[], None));
    }
    c.send(&wire);
    drop(c);
    s.get(&sha256_hex(&data)).expect(404);
    f.verify_and_empty();
}

#[test]
fn abandoned_puts_return_their_slots() {
    // A store of exactly four 512 KiB slots: any slot an abandoned PUT kept would show as a
    // 507 before the fourth block.
    let s = Server::start(&[
        "--capacity",
        "2MiB",
        "--workers",
        "1",
        "--pool-target",
        "4k=0,8k=0,16k=0,32k=0,64k=0,128k=0,256k=0,512k=1",
        "--request-timeout",
        "1s",
    ]);
    let data = body(600, BLOCK_MAX);
    for (i, cut) in [0usize, 1, 4096, 65_536, 65_537, 300_000, BLOCK_MAX - 1]
        .into_iter()
        .enumerate()
    {
        // Content-Length bodies of several classes, cut short.
        for len in [BLOCK_MAX, 100_000, 5000] {
            let mut c = s.conn();
            c.send(format!("PUT /block HTTP/1.1\r\nContent-Length: {len}\r\n\r\n").as_bytes());
            let _ = c.try_send(&data[..cut.min(len - 1)]);
        }
        // Chunked, cut short.
        let wire = chunked(&data, &[70_000]);
        let mut c = s.conn();
        c.send(b"PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let _ = c.try_send(&wire[..cut.min(wire.len() - 1)]);
        // On the address path, cut short, with the connection kept open until the timeout.
        if i == 3 {
            let mut c = s.conn();
            let hash = sha256_hex(&data);
            c.send(
                format!("PUT /block/{hash} HTTP/1.1\r\nContent-Length: {BLOCK_MAX}\r\n\r\n")
                    .as_bytes(),
            );
            c.send(&data[..cut]);
            c.read_response(false).expect(408);
        }
    }
    // Let the server see every disconnect.
    std::thread::sleep(Duration::from_millis(200));
    let st = s.stats();
    st.assert_identity();
    assert_eq!((st.used, st.blocks), (0, 0));
    // The whole capacity is still there.
    let mut stored = Vec::new();
    for i in 0..4u64 {
        let block = body(700 + i, BLOCK_MAX);
        let r = s.put(&block);
        assert_eq!(r.status, 201, "PUT {i} of 4: {:?}", r.text());
        stored.push(block);
    }
    s.put(&body(800, BLOCK_MAX)).expect(507);
    for b in &stored {
        s.assert_stored(b);
        s.delete(&sha256_hex(b)).expect(204);
    }
    let st = s.wait_stats("everything deleted", |st| st.used == 0);
    st.assert_identity();
    s.assert_healthy();
}

/// Slow uploaders (headers and a first piece of a 512 KiB body, then nothing) take every
/// upload lane of a small `--buffer-memory` and queue for more; large GETs are still served at
/// once (uploads hold at most half of the budget, and those waiting for a lane hold no buffer),
/// and a normal upload behind them succeeds (in small pieces after the lane wait limit).
#[test]
fn slow_uploads_do_not_starve_large_gets() {
    let (s, stored) = Server::small_buffer_memory(2, 900);
    let head = format!("PUT /block HTTP/1.1\r\nHost: x\r\nContent-Length: {BLOCK_MAX}\r\n\r\n");
    let stalled: Vec<Conn> = (0..8)
        .map(|_| {
            let mut c = s.conn();
            c.send(head.as_bytes());
            c.send(&[7u8; 100_000]);
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    for _ in 0..3 {
        for b in &stored {
            s.assert_stored(b);
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "6 large GETs beside 8 stalled uploads took {took:?} (the wait limit is 5 s)"
    );
    let raw = s.stats().raw;
    assert!(
        json_u64(&raw, "buffer_waits").unwrap() > 0,
        "stalled uploads beyond the lanes wait for one"
    );
    let fresh = body(950, BLOCK_MAX);
    s.put_ok(&fresh);
    s.assert_stored(&fresh);
    drop(stalled);
    s.assert_healthy();
}
