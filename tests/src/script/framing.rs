//! Steps of framing and bad input: chunked bodies (good, in pieces, a bad chunk, a total one
//! byte over the limit in chunks that each fit), lengths (none, zero, over the limit, both
//! framings, conflicting, not a number), pipelining, a request in small fragments, heads at
//! and over the limit, malformed request lines, unknown methods and paths, `Expect`,
//! `Connection: close`, HTTP/1.0; and, in a script of their own, clients that stop halfway
//! (the request timeout).

use std::time::Duration;

use sim::http_client::{self, Style};
use sim::scripted::Step;

use crate::compare::Compare;

use super::{content, Script};

/// The largest block.
const BLOCK_MAX: usize = 524_288;
/// The default head limit (`--max-header-bytes`), which both sides run with.
const HEAD_MAX: usize = 16 * 1024;

pub(super) fn add(s: &mut Script) {
    chunked(s);
    lengths(s);
    pipelines(s);
    heads(s);
    persistence(s);
}

fn token_line(s: &Script) -> String {
    format!(
        "Authorization: Bearer {}\r\n",
        String::from_utf8(s.token.clone()).expect("ASCII")
    )
}

fn chunked(s: &mut Script) {
    let style = Style {
        chunked: true,
        chunk_bytes: 1000,
        ..Style::default()
    };
    let body = content(70_000, 20);
    s.one(
        "chunked put",
        http_client::put(&body, None, &style, s.auth()),
    );
    let bytes = http_client::put(&content(5000, 21), None, &style, s.auth());
    let pieces = bytes.chunks(333).map(<[u8]>::to_vec).collect();
    s.pieces("chunked put in pieces", pieces, 1, Duration::ZERO);
    let auth = token_line(s);
    let head =
        format!("PUT /block HTTP/1.1\r\nHost: d\r\n{auth}Transfer-Encoding: chunked\r\n\r\n");
    let cases: [(&str, String); 4] = [
        (
            "chunk extension and trailer",
            "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n".into(),
        ),
        ("bad chunk size", "zz\r\nabc\r\n0\r\n\r\n".into()),
        ("chunk without its CRLF", "3\r\nabcd0\r\n\r\n".into()),
        ("empty chunked body", "0\r\n\r\n".into()),
    ];
    for (label, body) in cases {
        s.one(label, format!("{head}{body}").into_bytes());
    }
    // 512 chunks of 1 KiB and one of a byte: each fits, the total is one byte over.
    let piece = content(1024, 22);
    let mut over = head.clone().into_bytes();
    for _ in 0..BLOCK_MAX / 1024 {
        over.extend_from_slice(b"400\r\n");
        over.extend_from_slice(&piece);
        over.extend_from_slice(b"\r\n");
    }
    over.extend_from_slice(b"1\r\nx\r\n0\r\n\r\n");
    s.one("chunks over the limit in total", over);
    let mut exact = head.into_bytes();
    exact.extend_from_slice(format!("{:x}\r\n", BLOCK_MAX).as_bytes());
    exact.extend_from_slice(&content(BLOCK_MAX, 23));
    exact.extend_from_slice(b"\r\n0\r\n\r\n");
    s.one("one chunk of exactly the limit", exact);
}

fn lengths(s: &mut Script) {
    let auth = token_line(s);
    let put = |extra: &str| format!("PUT /block HTTP/1.1\r\nHost: d\r\n{auth}{extra}\r\n");
    let cases: [(&str, String); 8] = [
        ("put without a length", put("")),
        ("put of zero bytes", put("Content-Length: 0\r\n")),
        (
            "length one over the limit",
            put(&format!("Content-Length: {}\r\n", BLOCK_MAX + 1)),
        ),
        (
            "length and chunked",
            put("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
        ),
        (
            "two lengths",
            put("Content-Length: 3\r\nContent-Length: 4\r\n"),
        ),
        (
            "two equal lengths",
            put("Content-Length: 3\r\nContent-Length: 3\r\n"),
        ),
        ("length not a number", put("Content-Length: 3x\r\n")),
        ("transfer-encoding gzip", put("Transfer-Encoding: gzip\r\n")),
    ];
    for (label, head) in cases {
        let mut bytes = head.into_bytes();
        if label.contains("equal") {
            bytes.extend_from_slice(b"abc");
        }
        s.one(label, bytes);
    }
    let exact = content(BLOCK_MAX, 24);
    s.one("put of exactly the limit", s.put(&exact));
    let expect = put(&format!(
        "Expect: 100-continue\r\nContent-Length: {}\r\n",
        10
    ));
    s.one(
        "expect 100-continue",
        [expect.as_bytes(), b"0123456789"].concat(),
    );
}

fn pipelines(s: &mut Script) {
    let a = content(6000, 30);
    let hash = engine::hash::BlockHash::of(&a);
    let path = format!("/block/{}", hash.to_hex());
    let conn = s.fresh();
    let reqs = [
        s.put(&a),
        s.get("GET", &path, &[]),
        s.get("HEAD", &path, &[]),
        s.put(&a),
        s.delete(&hash),
        s.get("GET", &path, &[]),
        s.get("GET", "/nowhere", &[]),
        s.get("GET", "/health", &[]),
    ];
    s.on(conn, "a pipeline of eight", &reqs);
    let b = content(100, 31);
    let bytes = [s.put(&b), s.get("GET", "/health", &[])].concat();
    let pieces = bytes.chunks(7).map(<[u8]>::to_vec).collect();
    let step_heads = 2;
    s.pieces(
        "a put and a get in 7-byte pieces",
        pieces,
        step_heads,
        Duration::ZERO,
    );
    let bad_then_good = [b"BLAH\r\n\r\n".to_vec(), s.get("GET", "/health", &[])];
    let conn = s.fresh();
    s.on(
        conn,
        "a bad request line, then a good request",
        &bad_then_good,
    );
    let refused_body = [s.get("POST", "/block", &[]), s.get("GET", "/health", &[])];
    let conn = s.fresh();
    s.on(conn, "a refused request, then a good one", &refused_body);
}

fn heads(s: &mut Script) {
    let fill = |len: usize| -> Vec<u8> {
        let start = "GET /health HTTP/1.1\r\nHost: d\r\nX-Fill: ";
        let pad = len - start.len() - 4;
        format!("{start}{}\r\n\r\n", "a".repeat(pad)).into_bytes()
    };
    s.one("a head of exactly the limit", fill(HEAD_MAX));
    s.one("a head one byte over the limit", fill(HEAD_MAX + 1));
    let cases: [(&str, &[u8]); 10] = [
        ("garbage", b"\x00\x01\x02garbage\r\n\r\n"),
        ("no version", b"GET /health\r\n\r\n"),
        ("HTTP/2.0", b"GET /health HTTP/2.0\r\nHost: d\r\n\r\n"),
        (
            "a header without a colon",
            b"GET /health HTTP/1.1\r\nHost d\r\n\r\n",
        ),
        ("bare LF line ends", b"GET /health HTTP/1.1\nHost: d\n\n"),
        (
            "an unknown method",
            b"BREW /block HTTP/1.1\r\nHost: d\r\n\r\n",
        ),
        (
            "POST to a block",
            b"POST /block/00 HTTP/1.1\r\nHost: d\r\n\r\n",
        ),
        (
            "DELETE /health",
            b"DELETE /health HTTP/1.1\r\nHost: d\r\n\r\n",
        ),
        (
            "PUT /stats",
            b"PUT /stats HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\n\r\nx",
        ),
        (
            "a short block path",
            b"GET /block/abc HTTP/1.1\r\nHost: d\r\n\r\n",
        ),
    ];
    for (label, bytes) in cases {
        s.one(label, bytes.to_vec());
    }
    s.one("an unknown path", s.get("GET", "/nowhere/at/all", &[]));
    s.one("an absolute URI", s.get("GET", "http://d/health", &[]));
    s.one("a query on health", s.get("GET", "/health?x=1", &[]));
}

fn persistence(s: &mut Script) {
    s.one(
        "connection: close",
        s.get("GET", "/health", &["Connection: close"]),
    );
    s.one("HTTP/1.0", b"GET /health HTTP/1.0\r\n\r\n".to_vec());
    let conn = s.fresh();
    let keep = b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec();
    s.on(conn, "HTTP/1.0 keep-alive", &[keep.clone(), keep]);
}

/// Clients that stop halfway through a head or a body, then stay silent past the request
/// timeout: each gets a 408 and the close.
pub(super) fn timeouts(s: &mut Script, request_timeout: Duration) {
    let auth = token_line(s);
    let halves = [
        (
            "half a head",
            b"GET /health HTTP/1.1\r\nHost: d\r\n".to_vec(),
        ),
        (
            "half a body",
            format!("PUT /block HTTP/1.1\r\nHost: d\r\n{auth}Content-Length: 100\r\n\r\n")
                .into_bytes()
                .into_iter()
                .chain(content(50, 50))
                .collect(),
        ),
    ];
    for (label, half) in halves {
        let conn = s.fresh();
        s.push(
            label,
            Step {
                conn,
                pieces: vec![half],
                heads: Vec::new(),
                pause: Duration::ZERO,
            },
            Compare::Exact,
        );
        let silence = Step {
            conn,
            pieces: Vec::new(),
            heads: vec![false],
            pause: request_timeout + Duration::from_millis(300),
        };
        s.push(
            &format!("{label}, then silence past the request timeout"),
            silence,
            Compare::Exact,
        );
    }
}
