//! Black-box tests of SPEC.md's API table, error table and connection handling, against the
//! real `buddy-blocks` binary.

mod common;

use std::time::Duration;

use common::*;

fn etag(hash: &str) -> String {
    format!("\"{hash}\"")
}

#[test]
fn put_get_head_delete_roundtrip_with_headers_and_dedup() {
    let s = Server::start(&[]);
    let data = body(1, 10_000);
    let hash = sha256_hex(&data);
    let before = s.stats();

    let r = s.put(&data);
    r.expect(201);
    assert_eq!(
        r.body,
        hash.as_bytes(),
        "body is the hash without a newline"
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/block/{hash}").as_str())
    );
    assert_eq!(r.header("etag"), Some(etag(&hash).as_str()));
    let after_first = s.stats();
    assert_eq!(after_first.used, before.used + 16384);
    assert_eq!(after_first.blocks, before.blocks + 1);
    assert_eq!(after_first.data_bytes, before.data_bytes + 10_000);
    after_first.assert_identity();

    // The same bytes again: 200, same headers, nothing new stored.
    let r = s.put(&data);
    r.expect(200);
    assert_eq!(r.body, hash.as_bytes());
    assert_eq!(
        r.header("location"),
        Some(format!("/block/{hash}").as_str())
    );
    assert_eq!(r.header("etag"), Some(etag(&hash).as_str()));
    let after_dup = s.stats();
    assert_eq!(
        after_dup.used, after_first.used,
        "a duplicate PUT must not leak a slot"
    );
    assert_eq!(after_dup.blocks, after_first.blocks);
    after_dup.assert_identity();

    let r = s.get(&hash);
    r.expect(200);
    assert!(r.body == data);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("etag"), Some(etag(&hash).as_str()));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.header("content-length"), Some("10000"));

    // Upper-case hex is accepted.
    let r = s.get(&hash.to_uppercase());
    r.expect(200);
    assert!(r.body == data);

    // HEAD: GET's headers, no body; the connection stays usable (no stray body bytes).
    let mut c = s.conn();
    let r = c.request("HEAD", &format!("/block/{hash}"), &[], None);
    r.expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("10000"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("etag"), Some(etag(&hash).as_str()));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(
        c.is_quiet_for(Duration::from_millis(100)),
        "HEAD must not send a body"
    );
    let r = c.request("GET", "/health", &[], None);
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));

    // DELETE: 204, then 404; GET and HEAD 404 (HEAD without a body).
    let r = c.request("DELETE", &format!("/block/{hash}"), &[], None);
    r.expect(204);
    assert!(r.body.is_empty());
    assert!(
        c.is_quiet_for(Duration::from_millis(100)),
        "204 must not send a body"
    );
    c.request("DELETE", &format!("/block/{hash}"), &[], None)
        .expect(404);
    c.request("GET", &format!("/block/{hash}"), &[], None)
        .expect(404);
    let r = c.request("HEAD", &format!("/block/{hash}"), &[], None);
    r.expect(404);
    assert!(
        c.is_quiet_for(Duration::from_millis(100)),
        "HEAD 404 must not send a body"
    );
    c.request("GET", "/health", &[], None).expect(200);

    let end = s.wait_stats("the slot to come back", |st| st.used == before.used);
    assert_eq!(end.blocks, before.blocks);
    end.assert_identity();
}

#[test]
fn put_with_address_in_path() {
    let s = Server::start(&[]);
    let data = body(2, 3000);
    let hash = sha256_hex(&data);

    let r = s.request("PUT", &format!("/block/{hash}"), &[], Some(&data));
    r.expect(201);
    assert_eq!(r.body, hash.as_bytes());
    assert_eq!(
        r.header("location"),
        Some(format!("/block/{hash}").as_str())
    );
    assert_eq!(r.header("etag"), Some(etag(&hash).as_str()));
    s.assert_stored(&data);
    // Upper-case address in the path, same bytes: a duplicate.
    s.request(
        "PUT",
        &format!("/block/{}", hash.to_uppercase()),
        &[],
        Some(&data),
    )
    .expect(200);

    // A body that hashes to something else: 422 and nothing stored.
    let before = s.stats();
    let other = body(3, 3000);
    let r = s.request("PUT", &format!("/block/{hash}"), &[], Some(&other));
    r.expect(422);
    assert!(!r.body.is_empty(), "errors carry a short text");
    s.get(&sha256_hex(&other)).expect(404);
    let after = s.stats();
    assert_eq!((after.used, after.blocks), (before.used, before.blocks));
    after.assert_identity();
    // The original block is untouched.
    s.assert_stored(&data);
}

#[test]
fn compatibility_forms() {
    let s = Server::start(&[]);
    let data = body(4, 777);
    let hash = sha256_hex(&data);
    let r = s.request("PUT", "/", &[], Some(&data));
    r.expect(201);
    assert_eq!(r.body, hash.as_bytes());
    assert_eq!(
        r.header("location"),
        Some(format!("/block/{hash}").as_str())
    );
    s.request("PUT", "/", &[], Some(&data)).expect(200);

    let r = s.request("GET", &format!("/{hash}"), &[], None);
    r.expect(200);
    assert!(r.body == data);
    assert_eq!(r.header("etag"), Some(etag(&hash).as_str()));
    let r = s.request("HEAD", &format!("/{hash}"), &[], None);
    r.expect(200);
    assert_eq!(r.header("content-length"), Some("777"));
    s.request("DELETE", &format!("/{hash}"), &[], None)
        .expect(204);
    s.request("GET", &format!("/{hash}"), &[], None).expect(404);
    s.request("HEAD", &format!("/{hash}"), &[], None)
        .expect(404);
    s.request("DELETE", &format!("/{hash}"), &[], None)
        .expect(404);
    s.assert_healthy();
}

#[test]
fn conditional_get_and_ranges() {
    let s = Server::start(&[]);
    let data = body(5, 1000);
    let hash = sha256_hex(&data);
    s.put(&data).expect(201);
    let path = format!("/block/{hash}");
    let mut c = s.conn();

    // If-None-Match with the ETag: 304 with the ETag, no body; connection still usable.
    let r = c.request("GET", &path, &[("If-None-Match", &etag(&hash))], None);
    r.expect(304);
    assert_eq!(r.header("etag"), Some(etag(&hash).as_str()));
    let other = etag(&"0".repeat(64));
    let r = c.request(
        "GET",
        &path,
        &[("If-None-Match", &format!("{other}, {}", etag(&hash)))],
        None,
    );
    r.expect(304);
    let r = c.request("GET", &path, &[("If-None-Match", &other)], None);
    r.expect(200);
    assert!(r.body == data);

    let range = |c: &mut Conn, spec: &str| c.request("GET", &path, &[("Range", spec)], None);
    for (spec, first, last) in [
        ("bytes=0-9", 0usize, 9usize),
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-10", 990, 999),
        ("bytes=995-5000", 995, 999), // an end past the block is clamped
        ("bytes=0-999", 0, 999),
        ("bytes=999-999", 999, 999),
        ("bytes=-5000", 0, 999),
    ] {
        let r = range(&mut c, spec);
        assert_eq!(r.status, 206, "{spec}: {:?}", r.text());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "{spec}"
        );
        assert!(r.body == data[first..=last], "{spec}: wrong bytes");
        assert_eq!(r.header("etag"), Some(etag(&hash).as_str()));
    }
    for spec in ["bytes=1000-", "bytes=1000-2000", "bytes=5000-6000"] {
        let r = range(&mut c, spec);
        assert_eq!(r.status, 416, "{spec}");
        assert_eq!(r.header("content-range"), Some("bytes */1000"), "{spec}");
    }
    // A multi-range request may be answered 200 with the whole block (or 206).
    let r = range(&mut c, "bytes=0-1,5-6");
    assert!(
        r.status == 200 || r.status == 206,
        "multi-range: {}",
        r.status
    );
    if r.status == 200 {
        assert!(r.body == data);
    }
    // The connection survived all of it.
    c.request("GET", "/health", &[], None).expect(200);
    s.assert_healthy();
}

#[test]
fn sizes_are_byte_exact() {
    let s = Server::start(&[]);
    let sizes = [
        1usize, 2, 4095, 4096, 4097, 8192, 65_537, 262_144, 524_287, 524_288,
    ];
    let mut expected_used = s.stats().used;
    for (i, &len) in sizes.iter().enumerate() {
        let data = body(100 + i as u64, len);
        let r = s.put(&data);
        assert_eq!(r.status, 201, "size {len}");
        expected_used += slot_bytes(len);
    }
    for (i, &len) in sizes.iter().enumerate() {
        let data = body(100 + i as u64, len);
        s.assert_stored(&data);
        let r = s.head(&sha256_hex(&data));
        assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    }
    let st = s.stats();
    assert_eq!(st.used, expected_used);
    assert_eq!(st.blocks, sizes.len() as u64);
    assert_eq!(st.data_bytes, sizes.iter().sum::<usize>() as u64);
    st.assert_identity();
    // One byte over the maximum is refused (the head alone is enough: a body the server
    // will not read could turn the answer into a reset).
    let mut c = s.conn();
    c.send(
        format!(
            "PUT /block HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            BLOCK_MAX + 1
        )
        .as_bytes(),
    );
    c.read_response(false).expect(413);
    s.assert_healthy();
}

#[test]
fn chunked_put() {
    let s = Server::start(&[]);
    let te = [("Transfer-Encoding", "chunked")];
    for (seed, len, sizes) in [
        (10u64, 10_000usize, vec![1000usize, 1, 4096, 17]),
        (11, 1, vec![1]),
        (12, 200_000, vec![65_536, 3]),
        (13, BLOCK_MAX, vec![100_000]),
    ] {
        let data = body(seed, len);
        let r = s.request("PUT", "/block", &te, Some(&chunked(&data, &sizes)));
        assert_eq!(r.status, 201, "chunked {len}: {:?}", r.text());
        assert_eq!(r.body, sha256_hex(&data).as_bytes());
        s.assert_stored(&data);
    }
    // Many one-byte chunks, on the address path, with an extension and a trailer.
    let data = body(14, 300);
    let hash = sha256_hex(&data);
    let mut wire = Vec::new();
    for (i, b) in data.iter().enumerate() {
        if i == 0 {
            wire.extend_from_slice(b"1;name=value\r\n");
        } else {
            wire.extend_from_slice(b"1\r\n");
        }
        wire.push(*b);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    let mut c = s.conn();
    let r = c.request("PUT", &format!("/block/{hash}"), &te, Some(&wire));
    r.expect(201);
    // The connection is still in sync after the chunked body.
    c.request("GET", "/health", &[], None).expect(200);
    s.assert_stored(&data);

    // Decoded total over the limit: 413 as soon as a chunk size line goes past it (nothing
    // is sent after that line, so no unread bytes can turn the answer into a reset).
    let big = body(15, BLOCK_MAX);
    let mut wire = chunked(&big, &[65_536]);
    wire.truncate(wire.len() - b"0\r\n\r\n".len());
    wire.extend_from_slice(b"1\r\n");
    let mut c = s.conn();
    c.send(&request_bytes("PUT", "/block", &te, Some(&wire)));
    let r = c.read_response(false);
    r.expect(413);
    assert!(r.says_close());
    // An empty chunked body: 400.
    s.request("PUT", "/block", &te, Some(b"0\r\n\r\n"))
        .expect(400);
    s.assert_healthy();
}

#[test]
fn blocks_missing() {
    let s = Server::start(&[]);
    let stored: Vec<Vec<u8>> = (0..3).map(|i| body(20 + i, 100 + i as usize)).collect();
    for b in &stored {
        s.put(b).expect(201);
    }
    let absent: Vec<String> = (0..3).map(|i| sha256_hex(&body(30 + i, 50))).collect();
    let input = [
        absent[0].clone(),
        sha256_hex(&stored[0]),
        absent[1].to_uppercase(),
        sha256_hex(&stored[1]).to_uppercase(),
        absent[2].clone(),
        sha256_hex(&stored[2]),
    ];
    // CRLF line ends and a trailing newline are fine.
    let text = input.join("\r\n") + "\n";
    let r = s.request("POST", "/blocks/missing", &[], Some(text.as_bytes()));
    r.expect(200);
    let lines: Vec<String> = r.text().lines().map(str::to_lowercase).collect();
    assert_eq!(lines, absent, "the absent ones, in input order");

    // Everything present: an empty answer.
    let text: String = stored.iter().map(|b| sha256_hex(b) + "\n").collect();
    let r = s.request("POST", "/blocks/missing", &[], Some(text.as_bytes()));
    r.expect(200);
    assert_eq!(r.text().trim(), "");

    // A bad line: 400 naming it.
    let text = format!("{}\nnot-a-hash\n{}\n", absent[0], absent[1]);
    let r = s.request("POST", "/blocks/missing", &[], Some(text.as_bytes()));
    r.expect(400);
    let msg = r.text();
    assert!(
        msg.contains("line 2") || msg.contains("not-a-hash"),
        "names the bad line: {msg:?}"
    );

    s.request("GET", "/blocks/missing", &[], None).expect(405);
    s.assert_healthy();
}

#[test]
fn blocks_listing() {
    let s = Server::start(&[]);
    let mut expected: Vec<(String, u64)> = Vec::new();
    for i in 0..25u64 {
        let len = 1 + (i as usize * 997) % 20_000;
        let data = body(40 + i, len);
        s.put(&data).expect(201);
        expected.push((sha256_hex(&data), len as u64));
    }
    expected.sort();

    let r = s.request("GET", "/blocks", &[], None);
    r.expect(200);
    let text = r.text();
    assert!(
        text.lines().all(|l| l.len() >= 66),
        "`<hash> <len>` lines: {text:?}"
    );
    assert_eq!(parse_listing(&text), expected, "ascending, with lengths");

    // Paging with limit and after.
    let mut got: Vec<(String, u64)> = Vec::new();
    let mut pages = 0;
    loop {
        let path = match got.last() {
            Some((h, _)) => format!("/blocks?after={h}&limit=10"),
            None => "/blocks?limit=10".to_string(),
        };
        let r = s.request("GET", &path, &[], None);
        r.expect(200);
        let page = parse_listing(&r.text());
        assert!(page.len() <= 10);
        pages += 1;
        let n = page.len();
        got.extend(page);
        if n < 10 {
            break;
        }
    }
    assert_eq!(got, expected);
    assert_eq!(pages, 3);

    // `after` a hash that is not stored starts after its position.
    let mid = &expected[12].0;
    let before_mid = hex_dec(mid);
    let r = s.request("GET", &format!("/blocks?after={mid}&limit=1"), &[], None);
    assert_eq!(parse_listing(&r.text()), vec![expected[13].clone()]);
    let r = s.request(
        "GET",
        &format!("/blocks?after={before_mid}&limit=2"),
        &[],
        None,
    );
    assert_eq!(parse_listing(&r.text()), expected[12..14].to_vec());
    // After the last: empty.
    let last = &expected[24].0;
    let r = s.request("GET", &format!("/blocks?after={last}"), &[], None);
    r.expect(200);
    assert_eq!(r.text(), "");

    s.request("GET", "/blocks?limit=0", &[], None).expect(400);
    s.request("GET", "/blocks?limit=abc", &[], None).expect(400);
    s.request("GET", "/blocks?after=xyz", &[], None).expect(400);
    s.assert_healthy();
}

/// The hex hash one less than `h` (so it is not stored and sorts right before `h`).
fn hex_dec(h: &str) -> String {
    let mut digits: Vec<u8> = h
        .bytes()
        .map(|c| (c as char).to_digit(16).unwrap() as u8)
        .collect();
    for d in digits.iter_mut().rev() {
        if *d > 0 {
            *d -= 1;
            break;
        }
        *d = 15;
    }
    digits
        .iter()
        .map(|d| char::from_digit(u32::from(*d), 16).unwrap())
        .collect()
}

#[test]
fn health_stats_metrics() {
    let s = Server::start(&[]);
    let r = s.request("GET", "/health", &[], None);
    r.expect(200);
    assert_eq!(r.text(), "ok");
    let r = s.request("HEAD", "/health", &[], None);
    r.expect(200);
    assert!(r.body.is_empty());

    s.put(&body(50, 5000)).expect(201);
    let r = s.request("GET", "/stats", &[], None);
    r.expect(200);
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let json = r.text();
    assert!(json.trim_start().starts_with('{') && json.trim_end().ends_with('}'));
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
    ] {
        assert!(
            json.contains(&format!("\"{key}\":")),
            "/stats lacks {key}: {json}"
        );
    }
    let st = Stats::parse(json.clone());
    st.assert_identity();
    assert_eq!(st.capacity, 32 << 20);
    assert_eq!((st.blocks, st.data_bytes, st.used), (1, 5000, 8192));
    assert_eq!(json_str(&json, "durability").as_deref(), Some("full"));
    assert_eq!(json_str(&json, "verify_reads").as_deref(), Some("crc32c"));
    assert_eq!(json_u64(&json, "corrupt_blocks_detected"), Some(0));

    let r = s.request("GET", "/metrics", &[], None);
    r.expect(200);
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    let text = r.text();
    assert!(text.contains("# TYPE "), "{text}");
    // Same figures as /stats.
    let used_line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("used_bytes"))
        .expect("a used_bytes metric");
    assert!(used_line.ends_with(" 8192"), "{used_line}");

    s.request("PUT", "/stats", &[], Some(b"x")).expect(405);
    s.request("POST", "/health", &[], Some(b"x")).expect(405);
}

#[test]
fn stats_report_the_modes_and_capacity_rounding() {
    // 5 MiB + 1000 bytes rounds down to a multiple of 512 KiB.
    let s = Server::start(&[
        "--durability",
        "relaxed",
        "--verify-reads",
        "sha256",
        "--capacity",
        "5243880",
    ]);
    let st = s.stats();
    assert_eq!(json_str(&st.raw, "durability").as_deref(), Some("relaxed"));
    assert_eq!(json_str(&st.raw, "verify_reads").as_deref(), Some("sha256"));
    assert_eq!(st.capacity, 5 << 20);
    st.assert_identity();
    let data = body(51, 70_000);
    s.put(&data).expect(201);
    s.assert_stored(&data);
}

#[test]
fn bad_requests_are_400() {
    let s = Server::start(&[]);
    let data = body(60, 100);
    s.put(&data).expect(201);
    for path in [
        "/block/xyz",
        &format!("/block/{}", "a".repeat(63)),
        &format!("/block/{}", "g".repeat(64)),
    ] {
        let r = s.request("GET", path, &[], None);
        assert_eq!(r.status, 400, "GET {path}");
        assert!(!r.body.is_empty());
        assert_eq!(
            s.request("DELETE", path, &[], None).status,
            400,
            "DELETE {path}"
        );
        assert_eq!(
            s.request("PUT", path, &[], Some(&data)).status,
            400,
            "PUT {path}"
        );
    }
    // An empty body.
    s.request("PUT", "/block", &[("Content-Length", "0")], Some(b""))
        .expect(400);
    // Both Content-Length and Transfer-Encoding.
    let mut c = s.conn();
    c.send(b"PUT /block HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    c.read_response(false).expect(400);
    // Non-numeric and conflicting lengths.
    for cl in ["abc", "-1", "0x10", "+5", "5 5", "99999999999999999999999"] {
        let mut c = s.conn();
        let _ = c.try_send(
            format!("PUT /block HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nhello").as_bytes(),
        );
        let r = c.read_response(false);
        assert_eq!(r.status, 400, "Content-Length: {cl}");
    }
    let mut c = s.conn();
    c.send(b"PUT /block HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
    c.read_response(false).expect(400);
    // A malformed request line.
    for line in [
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 x\r\n\r\n",
    ] {
        let mut c = s.conn();
        c.send(line.as_bytes());
        let r = c.read_response(false);
        assert_eq!(r.status, 400, "{line:?}");
    }
    // A bad chunk.
    let mut c = s.conn();
    c.send(b"PUT /block HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n");
    c.read_response(false).expect(400);
    s.assert_stored(&data);
    assert_eq!(s.stats().blocks, 1);
    s.assert_healthy();
}

#[test]
fn not_found_and_method_not_allowed() {
    let s = Server::start(&[]);
    let absent = sha256_hex(b"never stored");
    for path in ["/nope", "/blockz", "/block/", "/xyz", "/blocks/other"] {
        let r = s.request("GET", path, &[], None);
        assert_eq!(
            r.status,
            if path == "/block/" { 400 } else { 404 },
            "GET {path}"
        );
    }
    s.get(&absent).expect(404);
    s.request("GET", &format!("/{absent}"), &[], None)
        .expect(404);
    s.delete(&absent).expect(404);
    s.assert_healthy();

    for (method, path, allow) in [
        ("POST", "/block".to_string(), "PUT"),
        ("GET", "/block".to_string(), "PUT"),
        ("DELETE", "/health".to_string(), "GET"),
        ("PUT", "/blocks".to_string(), "GET"),
        ("GET", "/blocks/missing".to_string(), "POST"),
        ("POST", format!("/block/{absent}"), "GET"),
        ("PATCH", format!("/block/{absent}"), "DELETE"),
    ] {
        let r = s.request(
            method,
            &path,
            &[],
            if method == "GET" { None } else { Some(b"x") },
        );
        assert_eq!(r.status, 405, "{method} {path}");
        let a = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"));
        assert!(a.contains(allow), "{method} {path}: Allow {a:?}");
    }
    s.assert_healthy();
}

#[test]
fn put_without_length_is_411() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    c.send(b"PUT /block HTTP/1.1\r\nHost: x\r\n\r\n");
    c.read_response(false).expect(411);
    s.assert_healthy();
    assert_eq!(s.stats().blocks, 0);
}

#[test]
fn oversize_is_413_without_reading_the_body() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    // Only the head: the answer must come without the body being sent.
    c.send(b"PUT /block HTTP/1.1\r\nHost: x\r\nContent-Length: 600000\r\n\r\n");
    c.set_read_timeout(Duration::from_secs(3));
    let r = c.read_response(false);
    r.expect(413);
    assert!(
        r.says_close(),
        "the unread body makes the connection unusable"
    );
    assert!(c.closed_within(Duration::from_secs(3)));
    // On the address path too, and with a huge length.
    let mut c = s.conn();
    let hash = sha256_hex(b"x");
    c.send(format!("PUT /block/{hash} HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n").as_bytes());
    c.read_response(false).expect(413);
    s.assert_healthy();
}

#[test]
fn huge_headers_are_431() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let big = "a".repeat(20 * 1024);
    let _ = c.try_send(format!("GET /health HTTP/1.1\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.read_response(false);
    r.expect(431);
    // Many small headers adding up over the limit.
    let mut c = s.conn();
    let mut req = String::from("GET /health HTTP/1.1\r\n");
    for i in 0..2000 {
        req.push_str(&format!("X-H{i}: value\r\n"));
    }
    req.push_str("\r\n");
    let _ = c.try_send(req.as_bytes());
    c.read_response(false).expect(431);
    // Just under the limit is fine.
    let mut c = s.conn();
    let ok = "b".repeat(15 * 1024);
    c.send(format!("GET /health HTTP/1.1\r\nX-Big: {ok}\r\n\r\n").as_bytes());
    c.read_response(false).expect(200);
    s.assert_healthy();
}

#[test]
fn auth_token_protects_writes() {
    let s = Server::start(&["--auth-token", "s3cret"]);
    let data = body(70, 2000);
    let hash = sha256_hex(&data);
    let good = [("Authorization", "Bearer s3cret")];
    let r = s.request("PUT", "/block", &[], Some(&data));
    r.expect(401);
    s.request(
        "PUT",
        "/block",
        &[("Authorization", "Bearer wrong")],
        Some(&data),
    )
    .expect(401);
    s.request("PUT", "/block", &[("Authorization", "s3cret")], Some(&data))
        .expect(401);
    s.request("PUT", &format!("/block/{hash}"), &[], Some(&data))
        .expect(401);
    s.request("PUT", "/", &[], Some(&data)).expect(401);
    s.get(&hash).expect(404);
    assert_eq!(s.stats().blocks, 0);

    s.request("PUT", "/block", &good, Some(&data)).expect(201);
    // Reads need no token.
    s.assert_stored(&data);
    s.head(&hash).expect(200);
    s.request("POST", "/blocks/missing", &[], Some(hash.as_bytes()))
        .expect(200);
    s.request("GET", "/blocks", &[], None).expect(200);
    s.request("GET", "/stats", &[], None).expect(200);

    s.delete(&hash).expect(401);
    s.request(
        "DELETE",
        &format!("/block/{hash}"),
        &[("Authorization", "Bearer s3cre")],
        None,
    )
    .expect(401);
    s.request("DELETE", &format!("/{hash}"), &[], None)
        .expect(401);
    s.assert_stored(&data);
    s.request("DELETE", &format!("/block/{hash}"), &good, None)
        .expect(204);
    s.get(&hash).expect(404);

    // A 401 keeps a keep-alive connection usable (the small body is skipped).
    let mut c = s.conn();
    c.request("PUT", "/block", &[], Some(&data)).expect(401);
    c.request("GET", "/health", &[], None).expect(200);
    s.assert_healthy();
}

#[test]
fn keep_alive_100_requests_on_one_connection() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let mut stored = Vec::new();
    for i in 0..100u64 {
        let r = match i % 4 {
            0 => {
                let data = body(200 + i, 100 + (i as usize * 131) % 9000);
                let r = c.request("PUT", "/block", &[], Some(&data));
                r.expect(201);
                stored.push(data);
                r
            }
            1 => {
                let data = stored.last().unwrap();
                let r = c.request("GET", &format!("/block/{}", sha256_hex(data)), &[], None);
                r.expect(200);
                assert!(&r.body == data);
                r
            }
            2 => c.request(
                "HEAD",
                &format!("/block/{}", sha256_hex(stored.last().unwrap())),
                &[],
                None,
            ),
            _ => c.request("GET", "/health", &[], None),
        };
        assert!(r.status < 300, "request {i}: {}", r.status);
        assert!(!r.says_close(), "request {i} closed the connection");
    }
    assert_eq!(s.stats().blocks, 25);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start(&[]);
    let a = body(80, 5000);
    let b = body(81, 70_000);
    let (ha, hb) = (sha256_hex(&a), sha256_hex(&b));
    let mut wire = Vec::new();
    wire.extend(request_bytes("PUT", "/block", &[], Some(&a)));
    wire.extend(request_bytes("GET", &format!("/block/{ha}"), &[], None));
    wire.extend(request_bytes("HEAD", &format!("/block/{ha}"), &[], None));
    wire.extend(request_bytes("PUT", &format!("/block/{hb}"), &[], Some(&b)));
    wire.extend(request_bytes("GET", "/health", &[], None));
    wire.extend(request_bytes("GET", &format!("/block/{hb}"), &[], None));
    wire.extend(request_bytes("GET", "/nope", &[], None));
    wire.extend(request_bytes("DELETE", &format!("/block/{ha}"), &[], None));
    wire.extend(request_bytes("GET", &format!("/block/{ha}"), &[], None));
    wire.extend(request_bytes("PUT", "/block", &[], Some(&a)));
    wire.extend(request_bytes(
        "GET",
        &format!("/block/{ha}"),
        &[("Range", "bytes=0-1")],
        None,
    ));
    let mut c = s.conn();
    c.send(&wire);
    let expect: [(u16, bool); 11] = [
        (201, false),
        (200, false),
        (200, true),
        (201, false),
        (200, false),
        (200, false),
        (404, false),
        (204, false),
        (404, false),
        (201, false),
        (206, false),
    ];
    let mut got = Vec::new();
    for (status, head) in expect {
        let r = c.read_response(head);
        assert_eq!(
            r.status,
            status,
            "answers in order: {got:?} then {} {:?}",
            r.status,
            r.text()
        );
        got.push(r);
    }
    assert_eq!(got[0].body, ha.as_bytes());
    assert!(
        got[1].body == a,
        "a GET after a PUT on the same connection sees the block"
    );
    assert_eq!(got[2].header("content-length"), Some("5000"));
    assert!(got[4].body == b"ok");
    assert!(got[5].body == b);
    assert_eq!(got[10].body, &a[..2]);

    // Many small pipelined GETs in one write.
    let mut wire = Vec::new();
    for _ in 0..50 {
        wire.extend(request_bytes("GET", &format!("/block/{hb}"), &[], None));
        wire.extend(request_bytes("GET", "/health", &[], None));
    }
    c.send(&wire);
    for _ in 0..50 {
        assert!(c.read_response(false).body == b);
        assert_eq!(c.read_response(false).body, b"ok");
    }
}

#[test]
fn http10_and_connection_close_are_honoured() {
    let s = Server::start(&[]);
    let data = body(90, 1234);
    let hash = sha256_hex(&data);
    s.put(&data).expect(201);

    // HTTP/1.0: the server answers and closes, saying so.
    for path in ["/health".to_string(), format!("/block/{hash}")] {
        let mut c = s.conn();
        c.send(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        r.expect(200);
        assert!(r.says_close(), "HTTP/1.0 response: {:?}", r.headers);
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "closed after an HTTP/1.0 answer"
        );
    }
    // HTTP/1.0 PUT works.
    let other = body(91, 10);
    let mut c = s.conn();
    c.send(
        &[
            b"PUT /block HTTP/1.0\r\nContent-Length: 10\r\n\r\n".as_slice(),
            &other,
        ]
        .concat(),
    );
    c.read_response(false).expect(201);
    assert!(c.closed_within(Duration::from_secs(3)));
    s.assert_stored(&other);

    // HTTP/1.1 with Connection: close.
    for (method, path) in [
        ("GET", format!("/block/{hash}")),
        ("HEAD", format!("/block/{hash}")),
        ("GET", "/nope".into()),
    ] {
        let mut c = s.conn();
        let r = c.request(method, &path, &[("Connection", "close")], None);
        assert!(r.says_close(), "{method} {path}: {:?}", r.headers);
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "{method} {path}: closed"
        );
    }
    // A pipelined request after Connection: close is not answered.
    let mut c = s.conn();
    let mut wire = request_bytes("GET", "/health", &[("Connection", "close")], None);
    wire.extend(request_bytes("GET", "/health", &[], None));
    c.send(&wire);
    c.read_response(false).expect(200);
    assert!(c.closed_within(Duration::from_secs(3)));
    s.assert_healthy();
}

#[test]
fn concurrent_clients_put_get_delete() {
    let s = Server::start(&["--capacity", "64MiB"]);
    let clients = 64u64;
    let rounds = 6u64;
    let shared: Vec<Vec<u8>> = (0..4)
        .map(|i| body(9000 + i, 3000 + i as usize * 1000))
        .collect();
    let results: Vec<(Vec<Vec<u8>>, Vec<u16>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|t| {
                let s = &s;
                let shared = &shared;
                scope.spawn(move || {
                    let mut rng = Rng::new(t);
                    let mut c = s.conn();
                    let mut kept = Vec::new();
                    let mut shared_statuses = Vec::new();
                    // Everyone PUTs the same shared blocks: exactly one 201 each overall.
                    let sh = &shared[(t % 4) as usize];
                    let r = c.request("PUT", "/block", &[], Some(sh));
                    shared_statuses.push(r.status);
                    for i in 0..rounds {
                        let len = match rng.below(4) {
                            0 => 1 + rng.below(4096) as usize,
                            1 => 4096 + rng.below(60_000) as usize,
                            2 => 1 + rng.below(20_000) as usize,
                            _ => 100_000 + rng.below(100_000) as usize,
                        };
                        let data = body(t * 1000 + i, len);
                        let hash = sha256_hex(&data);
                        let r = c.request("PUT", "/block", &[], Some(&data));
                        assert_eq!(r.status, 201, "client {t} PUT {i}: {:?}", r.text());
                        assert_eq!(r.body, hash.as_bytes());
                        let r = c.request("GET", &format!("/block/{hash}"), &[], None);
                        assert_eq!(r.status, 200);
                        assert!(r.body == data, "client {t}: GET {i} not byte-exact");
                        let r = c.request("GET", &format!("/block/{}", sha256_hex(sh)), &[], None);
                        assert!(r.status == 200 && &r.body == sh, "client {t}: shared block");
                        if i % 2 == 1 {
                            c.request("DELETE", &format!("/block/{hash}"), &[], None)
                                .expect(204);
                            c.request("GET", &format!("/block/{hash}"), &[], None)
                                .expect(404);
                        } else {
                            kept.push(data);
                        }
                    }
                    (kept, shared_statuses)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let statuses: Vec<u16> = results
        .iter()
        .flat_map(|(_, st)| st.iter().copied())
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&st| st == 201).count(),
        shared.len(),
        "{statuses:?}"
    );
    assert!(statuses.iter().all(|&st| st == 201 || st == 200));
    let kept: Vec<&Vec<u8>> = results
        .iter()
        .flat_map(|(k, _)| k.iter())
        .chain(shared.iter())
        .collect();
    for data in &kept {
        s.assert_stored(data);
    }
    let st = s.stats();
    st.assert_identity();
    assert_eq!(st.blocks, kept.len() as u64);
    assert_eq!(
        st.used,
        kept.iter().map(|d| slot_bytes(d.len())).sum::<u64>()
    );
    assert_eq!(
        st.data_bytes,
        kept.iter().map(|d| d.len() as u64).sum::<u64>()
    );
    assert_eq!(s.list_all().len(), kept.len());
}

/// A client that sends an oversize body anyway still reads the 413: the server drains the body
/// before closing (lingering close) instead of resetting the connection with unread bytes.
#[test]
fn oversize_body_sent_anyway_still_gets_413() {
    let s = Server::start(&[]);
    for _ in 0..5 {
        let mut c = s.conn();
        let mut req = b"PUT /block HTTP/1.1\r\nHost: x\r\nContent-Length: 600000\r\n\r\n".to_vec();
        req.extend(std::iter::repeat_n(b'z', 600_000));
        let _ = c.try_send(&req);
        c.set_read_timeout(Duration::from_secs(5));
        let r = c.read_response(false);
        r.expect(413);
        assert!(r.says_close());
    }
    s.assert_healthy();
}
