//! Request-head parsing: the request line and header fields (over `httparse`) into a
//! [`RequestHead`], with the body's framing decided once and for all.
//!
//! Owns: [`parse_head`]/[`parse_head_with`], [`HeadParse`], [`HttpError`], [`BodyFraming`],
//! [`RequestHead`], [`HeadBuffers`] (recycled head allocations) and the request-target rules.
//! Invariants: a partial head and the same bytes in full give the same answer (a prefix that
//! fails fails with the same status); every smuggling shape is a `400`.
//! Must never: guess a body length, or panic on bytes from the network.

use super::*;

/// How the request body is delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BodyFraming {
    /// Neither `Content-Length` nor `Transfer-Encoding`: no body (a PUT gets 411 from the worker).
    None,
    Length(u64),
    Chunked,
}

/// The parts of a request head the server uses, copied out of the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// Target up to `?`, as sent (origin-form); absolute-form `http://host/p` gives `/p`.
    pub path: Vec<u8>,
    /// Target after `?`, possibly empty.
    pub query: Vec<u8>,
    /// HTTP/1.0 (else HTTP/1.1).
    pub http10: bool,
    /// Whether the connection may stay open after this request's response.
    pub keep_alive: bool,
    pub body: BodyFraming,
    pub authorization: Option<Vec<u8>>,
    pub if_none_match: Option<Vec<u8>>,
    pub range: Option<Vec<u8>>,
    /// `Accept` (every line joined by commas), for `/ipfs/` content negotiation.
    pub accept: Option<Vec<u8>>,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// A request the server refuses: the status, and a short reason for the plain-text body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: Status,
    pub reason: &'static str,
}

impl HttpError {
    pub(super) const fn new(status: u16, reason: &'static str) -> HttpError {
        HttpError {
            status: Status::new(status),
            reason,
        }
    }

    pub(super) const fn bad(reason: &'static str) -> HttpError {
        HttpError::new(400, reason)
    }
}

/// Outcome of `parse_head` on the bytes received so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadParse {
    /// The head is not complete yet and still within the size limit: receive more.
    Partial,
    /// The head is `buf[..head_len]`; the body (or the next request) starts at `head_len`.
    Complete { head: RequestHead, head_len: usize },
}

/// Parses the request head at the start of `buf`.
///
/// `Partial` while incomplete and `buf.len() < max_header_bytes`; an incomplete head of
/// `max_header_bytes` or more, or a complete one longer than that, is `431`. The result depends
/// only on the bytes, so growing `buf` never turns an error or a complete head into anything else.
pub fn parse_head(buf: &[u8], max_header_bytes: usize) -> Result<HeadParse, HttpError> {
    parse_head_with(buf, max_header_bytes, &mut HeadBuffers::default())
}

/// Spare byte buffers for the parts of a request head that are copied out of the receive buffer
/// (path, query, some header values). A worker gives every finished request's head back
/// ([`HeadBuffers::recycle`]) and parses the next head with them ([`parse_head_with`]), so a
/// keep-alive request allocates nothing for its head.
#[derive(Default, Debug)]
pub struct HeadBuffers {
    spare: Vec<Vec<u8>>,
}

/// Most spare buffers kept, and the largest capacity kept (a long target or header value is
/// rare: its buffer is dropped rather than kept).
pub(super) const HEAD_SPARE_MAX: usize = 64;

pub(super) const HEAD_SPARE_BYTES_MAX: usize = 4096;

impl HeadBuffers {
    /// `bytes` in a spare buffer (or a new one when none is left).
    pub(super) fn copy(&mut self, bytes: &[u8]) -> Vec<u8> {
        match self.spare.pop() {
            Some(mut v) => {
                v.clear();
                v.extend_from_slice(bytes);
                v
            }
            None => bytes.to_vec(),
        }
    }

    /// Keeps the buffers of a head that is done with.
    pub fn recycle(&mut self, head: RequestHead) {
        let parts = [
            Some(head.path),
            Some(head.query),
            head.authorization,
            head.if_none_match,
            head.range,
            head.accept,
        ];
        for v in parts.into_iter().flatten() {
            if self.spare.len() < HEAD_SPARE_MAX && v.capacity() <= HEAD_SPARE_BYTES_MAX {
                self.spare.push(v);
            }
        }
    }
}

/// [`parse_head`] taking the copied parts' buffers from `buffers`.
pub fn parse_head_with(
    buf: &[u8],
    max_header_bytes: usize,
    buffers: &mut HeadBuffers,
) -> Result<HeadParse, HttpError> {
    assert!(
        max_header_bytes > 0,
        "a zero head limit refuses every request"
    );
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() < max_header_bytes => {
            return Ok(HeadParse::Partial);
        }
        Ok(httparse::Status::Partial) => {
            return Err(HttpError::new(431, "request head too large"));
        }
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(431, "too many header fields"));
        }
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(HttpError::bad("malformed request line or header")),
    };
    assert!(head_len <= buf.len());
    if head_len > max_header_bytes {
        return Err(HttpError::new(431, "request head too large"));
    }
    let head = head_from_parsed(&request, buffers)?;
    assert!(head.path.first() == Some(&b'/'));
    Ok(HeadParse::Complete { head, head_len })
}

/// A version httparse refused: `505` when it is a well-formed `HTTP/<digit>` other than 1.x
/// (HTTP/2's preface `PRI * HTTP/2.0`), else `400`. Only the version's first six bytes decide,
/// and httparse reports the error only once it has seen the offending byte among them, so every
/// prefix of the stream that fails gives the same status.
pub(super) fn version_error(buf: &[u8]) -> HttpError {
    let version = request_line_version(buf).unwrap_or(&[]);
    let well_formed =
        version.starts_with(b"HTTP/") && version.get(5).is_some_and(u8::is_ascii_digit);
    if well_formed {
        HttpError::new(505, "HTTP version not supported")
    } else {
        HttpError::bad("malformed HTTP version")
    }
}

/// The bytes after the second space of the request line (after any leading empty lines).
pub(super) fn request_line_version(buf: &[u8]) -> Option<&[u8]> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let line = buf.get(start..)?;
    let line_end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let line = line.get(..line_end)?;
    let mut parts = line.splitn(3, |&b| b == b' ');
    let _method = parts.next()?;
    let _target = parts.next()?;
    parts.next()
}

/// Builds a `RequestHead` from a complete httparse request, enforcing the framing rules.
pub(super) fn head_from_parsed(
    request: &httparse::Request<'_, '_>,
    buffers: &mut HeadBuffers,
) -> Result<RequestHead, HttpError> {
    let method = match request.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    let http10 = match request.version {
        Some(0) => true,
        Some(1) => false,
        _ => return Err(HttpError::new(505, "HTTP version not supported")),
    };
    let (path, query) = split_target(request.path.unwrap_or("").as_bytes())?;
    let fields = HeaderFields::collect(request.headers, buffers)?;
    let path = buffers.copy(path);
    let query = buffers.copy(query);
    let body = match (fields.content_length, fields.chunked) {
        (Some(_), true) => {
            return Err(HttpError::bad("both Content-Length and Transfer-Encoding"));
        }
        (None, true) if http10 => {
            // RFC 9112 §6.1: HTTP/1.0 has no chunked coding; such framing is faulty.
            return Err(HttpError::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        (None, true) => BodyFraming::Chunked,
        (Some(len), false) => BodyFraming::Length(len),
        (None, false) => BodyFraming::None,
    };
    let keep_alive = if http10 {
        fields.connection_keep_alive && !fields.connection_close
    } else {
        !fields.connection_close
    };
    Ok(RequestHead {
        method,
        path,
        query,
        http10,
        keep_alive,
        body,
        authorization: fields.authorization,
        if_none_match: fields.if_none_match,
        range: fields.range,
        accept: fields.accept,
        expect_continue: fields.expect_continue,
    })
}

/// Splits a request target into path and query. Origin-form (`/p?q`) is kept as sent;
/// absolute-form (`http://host/p?q`) loses its scheme and authority. Anything else is `400`.
pub(super) fn split_target(target: &[u8]) -> Result<(&[u8], &[u8]), HttpError> {
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(HttpError::bad(
            "control character or space in request target",
        ));
    }
    let origin: &[u8] = if target.first() == Some(&b'/') {
        target
    } else {
        absolute_form_rest(target).ok_or(HttpError::bad("request target must start with '/'"))?
    };
    let (path, query): (&[u8], &[u8]) = match origin.iter().position(|&b| b == b'?') {
        Some(at) => (
            origin.get(..at).unwrap_or(&[]),
            origin.get(at + 1..).unwrap_or(&[]),
        ),
        None => (origin, &[]),
    };
    let path: &[u8] = if path.is_empty() { b"/" } else { path };
    assert!(path.first() == Some(&b'/'));
    Ok((path, query))
}

/// For `http://host[/path][?query]` (scheme case-insensitive, host non-empty), the part from the
/// path on (possibly empty or starting with `?`); `None` for anything else.
pub(super) fn absolute_form_rest(target: &[u8]) -> Option<&[u8]> {
    let after_scheme = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))?;
    let authority_len = after_scheme
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after_scheme.len());
    if authority_len == 0 {
        return None;
    }
    after_scheme.get(authority_len..)
}

pub(super) fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        bytes.get(prefix.len()..)
    } else {
        None
    }
}
