//! The simulated clients' HTTP/1.1: request bytes out, responses parsed back, independently of
//! the engine's own parser (a bug shared by both sides would hide itself).
//! Responses are read with the shared test-side parser (`engine::test_support::http_response`),
//! which is written apart from the engine's request parser.

use engine::hash::BlockHash;

pub use engine::test_support::http_response::Response;
use engine::test_support::http_response::{parse_head, Answering, Framing, Limits, StreamEnd};

/// What the simulated clients accept: a head of at most 8 KiB, a body of at most 1 MiB (a
/// 512 KiB block and more).
const LIMITS: Limits = Limits {
    head_bytes_max: 8192,
    body_bytes_max: 1 << 20,
};

/// Parses one response from the start of `buf`: `Ok(None)` when incomplete, else the response
/// and the bytes it took. `head_request`: the request was HEAD (no body whatever the length).
/// On top of the shared parser, the engine must answer `HTTP/1.1` and frame every body with
/// `Content-Length`.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<(Response, usize)>, String> {
    let Some(head) = parse_head(buf, &LIMITS).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if head.version_minor != 1 {
        return Err(format!("bad status line: HTTP/1.{}", head.version_minor));
    }
    let answering = Answering::head_if(head_request);
    match head.framing(answering).map_err(|e| e.to_string())? {
        Framing::Empty | Framing::Length(_) => {}
        Framing::Chunked | Framing::UntilClose => {
            return Err(format!("{} without Content-Length", head.status))
        }
    }
    head.finish(buf, answering, &LIMITS, StreamEnd::Open)
        .map_err(|e| e.to_string())
}

/// Options of one request's bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// `/` and `/<hash>` instead of `/block` and `/block/<hash>`.
    pub legacy_path: bool,
    pub upper_hex: bool,
    pub chunked: bool,
    pub close: bool,
    pub http10: bool,
    /// For chunked bodies: the largest chunk.
    pub chunk_bytes: usize,
}

pub fn hash_path(hash: &BlockHash, style: &Style) -> String {
    let mut hex = hash.to_hex();
    if style.upper_hex {
        hex = hex.to_ascii_uppercase();
    }
    if style.legacy_path {
        format!("/{hex}")
    } else {
        format!("/block/{hex}")
    }
}

/// The path of a read (GET, HEAD, range GET) of `hash`: [`hash_path`], except that a legacy-path
/// request with upper-case hex reads through the IPFS gateway instead, naming the block by its
/// CIDv1 (raw codec, sha2-256) in upper-case base16: `/ipfs/F01551220<HEX>?format=raw`. The
/// gateway's raw answers are the `/block/` answers (status, body, length, range), so the same
/// checks hold while `/ipfs/` reads meet the same faults.
pub fn read_path(hash: &BlockHash, style: &Style) -> String {
    if style.legacy_path && style.upper_hex {
        let hex = hash.to_hex().to_ascii_uppercase();
        return format!("/ipfs/F01551220{hex}?format=raw");
    }
    hash_path(hash, style)
}

fn head_lines(out: &mut Vec<u8>, method: &str, path: &str, style: &Style, auth: Option<&[u8]>) {
    let version = if style.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    out.extend_from_slice(format!("{method} {path} {version}\r\nHost: sim\r\n").as_bytes());
    if let Some(token) = auth {
        out.extend_from_slice(b"Authorization: Bearer ");
        out.extend_from_slice(token);
        out.extend_from_slice(b"\r\n");
    }
    if style.close && !style.http10 {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if style.http10 && !style.close {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

/// `PUT` with a body (to `/block`, or to the hash's path when `path_hash` is given).
pub fn put(
    body: &[u8],
    path_hash: Option<&BlockHash>,
    style: &Style,
    auth: Option<&[u8]>,
) -> Vec<u8> {
    let path = match path_hash {
        Some(h) => hash_path(h, style),
        None if style.legacy_path => "/".to_string(),
        None => "/block".to_string(),
    };
    let mut out = Vec::with_capacity(body.len() + 256);
    head_lines(&mut out, "PUT", &path, style, auth);
    if style.chunked && !style.http10 {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        let step = style.chunk_bytes.max(1);
        for piece in body.chunks(step) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// A request without a body; `extra` headers are complete lines without CRLF.
pub fn bodyless(
    method: &str,
    path: &str,
    style: &Style,
    auth: Option<&[u8]>,
    extra: &[String],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    head_lines(&mut out, method, path, style, auth);
    for line in extra {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_responses_and_waits_for_the_rest() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 204 No Content\r\n\
            Connection: close\r\n\r\n";
        let (r, n) = parse_response(raw, false).unwrap().unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.says_close()),
            (200, &b"abc"[..], false)
        );
        let (r2, m) = parse_response(&raw[n..], false).unwrap().unwrap();
        assert_eq!((r2.status, r2.says_close(), n + m), (204, true, raw.len()));
        assert_eq!(parse_response(&raw[..n - 1], false).unwrap(), None);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
        let (h, used) = parse_response(head, true).unwrap().unwrap();
        assert_eq!((h.status, h.body.len(), used), (200, 0, head.len()));
    }

    #[test]
    fn chunked_put_frames_the_body() {
        let style = Style {
            chunked: true,
            chunk_bytes: 2,
            ..Style::default()
        };
        let bytes = put(b"abcde", None, &style, None);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.ends_with("2\r\nab\r\n2\r\ncd\r\n1\r\ne\r\n0\r\n\r\n"),
            "{text}"
        );
    }
}
