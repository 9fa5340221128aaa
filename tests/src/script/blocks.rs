//! Steps of the block API: PUT (new, duplicate, at its hash, legacy paths, a mismatch), GET
//! and HEAD (cases of hex, legacy path, absent), conditional requests, ranges, auth (no token,
//! a wrong one, a prefix, one byte more), `POST /blocks/missing`, `GET /blocks`, DELETE.

use engine::hash::BlockHash;
use sim::http_client;

use super::{content, Script};

/// The sizes stored: the smallest block, both sides of a class edge, a large one, the largest.
const SIZES: [usize; 5] = [1, 4096, 4097, 100_000, 524_288];

pub(super) fn add(s: &mut Script) {
    s.one("health", s.get("GET", "/health", &[]));
    let blocks: Vec<Vec<u8>> = SIZES
        .iter()
        .enumerate()
        .map(|(i, len)| content(*len, i as u8))
        .collect();
    let keep = s.fresh();
    for (i, b) in blocks.iter().enumerate() {
        s.on(keep, &format!("put block {i}"), &[s.put(b)]);
    }
    s.on(keep, "put a duplicate", &[s.put(&blocks[1])]);
    let at = content(3000, 9);
    let at_hash = BlockHash::of(&at);
    s.one("put at its hash", s.put_at(&at_hash, &at));
    s.one(
        "put at a wrong hash",
        s.put_at(&at_hash, &content(3000, 10)),
    );
    let legacy = content(777, 11);
    let legacy_put = http_client::put(&legacy, None, &legacy_style(), s.auth());
    s.one("put to the legacy path", legacy_put);
    auth(s, &blocks[0]);
    reads(s, &blocks);
    ranges(s, &BlockHash::of(&blocks[3]));
    listings(s, &blocks);
    deletes(s, &blocks);
}

fn legacy_style() -> http_client::Style {
    http_client::Style {
        legacy_path: true,
        ..http_client::Style::default()
    }
}

fn auth(s: &mut Script, body: &[u8]) {
    let token = String::from_utf8(s.token.clone()).expect("an ASCII token");
    let prefix = &token[..token.len() - 1];
    let longer = format!("{token}x");
    let cases = [
        ("put without a token", None),
        ("put with a wrong token", Some("Bearer wrong".to_string())),
        ("put with a token prefix", Some(format!("Bearer {prefix}"))),
        (
            "put with a token one byte longer",
            Some(format!("Bearer {longer}")),
        ),
        ("put with the token, no scheme", Some(token.clone())),
        (
            "put with the token, basic scheme",
            Some(format!("Basic {token}")),
        ),
    ];
    for (label, header) in cases {
        let mut req = format!(
            "PUT /block HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(h) = header {
            req.push_str(&format!("Authorization: {h}\r\n"));
        }
        req.push_str("\r\n");
        s.one(label, [req.as_bytes(), body].concat());
    }
    let hash = BlockHash::of(body).to_hex();
    let del = format!("DELETE /block/{hash} HTTP/1.1\r\nHost: d\r\n\r\n");
    s.one("delete without a token", del.into_bytes());
}

fn reads(s: &mut Script, blocks: &[Vec<u8>]) {
    for (i, b) in blocks.iter().enumerate() {
        let hex = BlockHash::of(b).to_hex();
        s.one(
            &format!("get block {i}"),
            s.get("GET", &format!("/block/{hex}"), &[]),
        );
        s.one(
            &format!("head block {i}"),
            s.get("HEAD", &format!("/block/{hex}"), &[]),
        );
    }
    let hex = BlockHash::of(&blocks[2]).to_hex();
    let upper = hex.to_ascii_uppercase();
    s.one(
        "get in upper-case hex",
        s.get("GET", &format!("/block/{upper}"), &[]),
    );
    s.one(
        "get on the legacy path",
        s.get("GET", &format!("/{hex}"), &[]),
    );
    let absent = BlockHash::of(b"never stored").to_hex();
    s.one("get absent", s.get("GET", &format!("/block/{absent}"), &[]));
    s.one(
        "head absent",
        s.get("HEAD", &format!("/block/{absent}"), &[]),
    );
    let path = format!("/block/{hex}");
    let conditions = [
        (
            "if-none-match the etag",
            format!("If-None-Match: \"{hex}\""),
        ),
        (
            "if-none-match another",
            "If-None-Match: \"abc\"".to_string(),
        ),
        (
            "if-none-match a list",
            format!("If-None-Match: \"x\", \"{hex}\""),
        ),
        ("if-none-match star", "If-None-Match: *".to_string()),
        ("if-none-match weak", format!("If-None-Match: W/\"{hex}\"")),
    ];
    for (label, header) in conditions {
        s.one(label, s.get("GET", &path, &[&header]));
    }
    let head_304 = format!("If-None-Match: \"{hex}\"");
    s.one("head if-none-match", s.get("HEAD", &path, &[&head_304]));
}

fn ranges(s: &mut Script, hash: &BlockHash) {
    let path = format!("/block/{}", hash.to_hex());
    let ranges = [
        "bytes=0-0",
        "bytes=10-19",
        "bytes=99999-",
        "bytes=99999-99999",
        "bytes=-5",
        "bytes=99990-200000",
        "bytes=100000-",
        "bytes=-0",
        "bytes=5-4",
        "bytes=0-1,5-6",
        "bytes=abc",
        "items=0-1",
    ];
    for r in ranges {
        s.one(
            &format!("range {r}"),
            s.get("GET", &path, &[&format!("Range: {r}")]),
        );
    }
    s.one(
        "head with a range",
        s.get("HEAD", &path, &["Range: bytes=0-9"]),
    );
    let both = [
        "Range: bytes=0-9".to_string(),
        format!("If-None-Match: \"{}\"", hash.to_hex()),
    ];
    let both: Vec<&str> = both.iter().map(String::as_str).collect();
    s.one("range and if-none-match", s.get("GET", &path, &both));
}

fn listings(s: &mut Script, blocks: &[Vec<u8>]) {
    let mut hexes: Vec<String> = blocks.iter().map(|b| BlockHash::of(b).to_hex()).collect();
    hexes.sort();
    let queries = [
        "/blocks".to_string(),
        "/blocks?limit=2".to_string(),
        format!("/blocks?after={}&limit=3", hexes[1]),
        format!("/blocks?after={}", hexes[hexes.len() - 1]),
        "/blocks?limit=0".to_string(),
        "/blocks?limit=10001".to_string(),
        "/blocks?limit=x".to_string(),
        "/blocks?after=zz".to_string(),
    ];
    for q in queries {
        s.one(&format!("list {q}"), s.get("GET", &q, &[]));
    }
    s.one("head of a listing", s.get("HEAD", "/blocks?limit=1", &[]));
    let absent = BlockHash::of(b"absent").to_hex();
    let mut lines = vec![
        hexes[0].clone(),
        absent.clone(),
        hexes[2].to_ascii_uppercase(),
    ];
    lines.push(BlockHash::of(b"also absent").to_hex());
    missing(s, "missing: a mix", &format!("{}\n", lines.join("\n")));
    missing(
        s,
        "missing: no final newline, CRLF",
        &format!("{absent}\r\n{}", hexes[1]),
    );
    missing(s, "missing: a bad line", &format!("{absent}\nnot-a-hash\n"));
    missing(s, "missing: empty", "");
    s.one("missing: GET", s.get("GET", "/blocks/missing", &[]));
}

fn missing(s: &mut Script, label: &str, body: &str) {
    let req = format!(
        "POST /blocks/missing HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.one(label, req.into_bytes());
}

fn deletes(s: &mut Script, blocks: &[Vec<u8>]) {
    let hash = BlockHash::of(&blocks[0]);
    let conn = s.fresh();
    let path = format!("/block/{}", hash.to_hex());
    let requests = [s.delete(&hash), s.delete(&hash), s.get("GET", &path, &[])];
    s.on(conn, "delete, delete again, get", &requests);
    s.one("put it back", s.put(&blocks[0]));
    let legacy = format!(
        "DELETE /{} HTTP/1.1\r\nHost: d\r\n",
        BlockHash::of(&blocks[4]).to_hex()
    );
    let token = String::from_utf8(s.token.clone()).expect("an ASCII token");
    let legacy = format!("{legacy}Authorization: Bearer {token}\r\n\r\n");
    s.one("delete on the legacy path", legacy.into_bytes());
}
