//! The simulated clients' HTTP/1.1: request bytes out, responses parsed back, independently of
//! the engine's own parser (a bug shared by both sides would hide itself).

use engine::hash::BlockHash;

/// A parsed response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// `Connection: close` was present.
    pub close: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn content_length(&self) -> Option<u64> {
        let v = self.header("Content-Length")?;
        std::str::from_utf8(v).ok()?.trim().parse().ok()
    }
}

/// Most bytes of a response head the client accepts.
const RESPONSE_HEAD_MAX_BYTES: usize = 8192;
/// Largest response body (a 512 KiB block).
const RESPONSE_BODY_MAX_BYTES: u64 = 1 << 20;

/// Parses one response from the start of `buf`: `Ok(None)` when incomplete, else the response
/// and the bytes it took. `head_request`: the request was HEAD (no body whatever the length).
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > RESPONSE_HEAD_MAX_BYTES {
            return Err("response head too long".into());
        }
        return Ok(None);
    };
    let head = &buf[..head_end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or("empty response")?;
    let rest = status_line
        .strip_prefix(b"HTTP/1.1 ")
        .ok_or_else(|| format!("bad status line {:?}", String::from_utf8_lossy(status_line)))?;
    if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "bad status code in {:?}",
            String::from_utf8_lossy(status_line)
        ));
    }
    let status =
        (rest[0] - b'0') as u16 * 100 + (rest[1] - b'0') as u16 * 10 + (rest[2] - b'0') as u16;
    let mut headers = Vec::new();
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or("header without a colon")?;
        let name = String::from_utf8(line[..colon].to_vec()).map_err(|_| "non-ASCII header")?;
        let value = line[colon + 1..].trim_ascii().to_vec();
        headers.push((name, value));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
        close: false,
    };
    resp.close = resp
        .header("Connection")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
    let no_body = head_request || status == 204 || status == 304 || (100..200).contains(&status);
    let body_len = if no_body {
        0
    } else {
        resp.content_length()
            .ok_or_else(|| format!("{status} without Content-Length"))?
    };
    if body_len > RESPONSE_BODY_MAX_BYTES {
        return Err(format!("body of {body_len} bytes"));
    }
    let total = head_end + 4 + body_len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    resp.body = buf[head_end + 4..total].to_vec();
    Ok(Some((resp, total)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
            (r.status, r.body.as_slice(), r.close),
            (200, &b"abc"[..], false)
        );
        let (r2, m) = parse_response(&raw[n..], false).unwrap().unwrap();
        assert_eq!((r2.status, r2.close, n + m), (204, true, raw.len()));
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
