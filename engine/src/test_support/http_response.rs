//! The one HTTP/1.1 response parser of the test side: the simulator's clients, the server's
//! black-box tests and the benchmarks' load generator all read responses with it.
//!
//! It is written apart from the engine's request parser (`crate::http`, over httparse), so a bug
//! shared by both sides cannot hide itself. It parses from a byte buffer that the caller fills:
//! [`parse_head`] reads the status line and headers, [`Head::framing`] says how the body is
//! delimited, and [`Head::finish`] (or [`parse_response`], both at once) cuts the whole response
//! out of the buffer. `Ok(None)` always means "incomplete: read more bytes and call again".
//!
//! Invariants: it never reads past the response it returns (the count of bytes used is exact, so
//! pipelined responses stay in the buffer); it never accepts a head or body over the caller's
//! [`Limits`]; it holds no state between calls, reads no clock and allocates only the response.

use std::fmt;

/// What the response answers: a `HEAD` request gets no body whatever its headers say.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answering {
    Head,
    /// Any other method.
    Other,
}

impl Answering {
    /// `Head` when `head_request`, else `Other`.
    pub fn head_if(head_request: bool) -> Answering {
        if head_request {
            Answering::Head
        } else {
            Answering::Other
        }
    }
}

/// Whether the peer has closed its side: only then is a body framed by the close complete.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StreamEnd {
    Open,
    Closed,
}

/// Largest head and body the caller accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limits {
    /// An incomplete head longer than this is an error.
    pub head_bytes_max: usize,
    /// A `Content-Length` above this is an error.
    pub body_bytes_max: u64,
}

impl Limits {
    /// No limit (the black-box tests read whatever the server sends).
    pub const NONE: Limits = Limits {
        head_bytes_max: usize::MAX,
        body_bytes_max: u64::MAX,
    };
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    /// No body: a `HEAD` answer, 1xx, 204 or 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs until the server closes the connection.
    UntilClose,
}

/// Why bytes are not a response.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("response head too long")]
    HeadTooLong,
    #[error("empty response")]
    Empty,
    #[error("bad status line {0:?}")]
    BadStatusLine(String),
    #[error("header without a colon: {0:?}")]
    HeaderWithoutColon(String),
    #[error("response head is not UTF-8")]
    NotUtf8,
    #[error("bad Content-Length {0:?}")]
    BadContentLength(String),
    #[error("body of {0} bytes")]
    BodyTooLarge(u64),
    #[error("bad chunk size line {0:?}")]
    BadChunkSize(String),
}

/// A response's status line and headers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Head {
    /// `x` of `HTTP/1.x`.
    pub version_minor: u8,
    pub status: u16,
    /// Names and values as sent, surrounding whitespace trimmed; in order, repeats kept.
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, including the empty line that ends it.
    pub len_bytes: usize,
}

/// A whole response.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// `x` of `HTTP/1.x`.
    pub version_minor: u8,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// The first value of header `name` (case-insensitive).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether a response with these headers ends its connection: a `close` token in `Connection`,
/// or HTTP/1.0 without a `keep-alive` token.
fn says_close(version_minor: u8, headers: &[(String, String)]) -> bool {
    let has_token = |token: &str| {
        header(headers, "connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has_token("close") || (version_minor == 0 && !has_token("keep-alive"))
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The response ends its connection (see [`Response::says_close`]).
    pub fn says_close(&self) -> bool {
        says_close(self.version_minor, &self.headers)
    }

    /// How the body is delimited; a `Content-Length` that is not a number is an error.
    pub fn framing(&self, answering: Answering) -> Result<Framing, ResponseError> {
        let status = self.status;
        if answering == Answering::Head
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Ok(Framing::Empty);
        }
        let chunked = self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return Ok(Framing::Chunked);
        }
        Ok(match self.content_length()? {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        })
    }

    /// `Content-Length` as sent (also on answers without a body, such as HEAD's); a value that
    /// is not a number is an error.
    pub fn content_length(&self) -> Result<Option<u64>, ResponseError> {
        self.header("content-length")
            .map(|v| {
                v.parse()
                    .map_err(|_| ResponseError::BadContentLength(v.to_owned()))
            })
            .transpose()
    }

    /// The whole response once its body is in `buf` (which starts with this head), and the bytes
    /// it takes; `Ok(None)` while incomplete.
    pub fn finish(
        self,
        buf: &[u8],
        answering: Answering,
        limits: &Limits,
        end: StreamEnd,
    ) -> Result<Option<(Response, usize)>, ResponseError> {
        assert!(
            buf.len() >= self.len_bytes,
            "finish: buffer shorter than the head"
        );
        let rest = &buf[self.len_bytes..];
        let (body, body_used) = match self.framing(answering)? {
            Framing::Empty => (Vec::new(), 0),
            Framing::Length(n) if n > limits.body_bytes_max => {
                return Err(ResponseError::BodyTooLarge(n))
            }
            Framing::Length(n) => {
                let Ok(n) = usize::try_from(n) else {
                    return Err(ResponseError::BodyTooLarge(n));
                };
                if rest.len() < n {
                    return Ok(None);
                }
                (rest[..n].to_vec(), n)
            }
            Framing::Chunked => match parse_chunked(rest)? {
                Some(done) => done,
                None => return Ok(None),
            },
            Framing::UntilClose => match end {
                StreamEnd::Open => return Ok(None),
                StreamEnd::Closed => (rest.to_vec(), rest.len()),
            },
        };
        let used = self.len_bytes + body_used;
        assert!(used <= buf.len());
        let response = Response {
            version_minor: self.version_minor,
            status: self.status,
            headers: self.headers,
            body,
        };
        Ok(Some((response, used)))
    }
}

/// Parses one response head from the start of `buf`; `Ok(None)` while the empty line that ends
/// it has not arrived.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, ResponseError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > limits.head_bytes_max {
            return Err(ResponseError::HeadTooLong);
        }
        return Ok(None);
    };
    let mut lines = buf[..head_end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or(ResponseError::Empty)?;
    let (version_minor, status) = parse_status_line(status_line)?;
    let mut headers = Vec::new();
    for line in lines {
        let text = std::str::from_utf8(line).map_err(|_| ResponseError::NotUtf8)?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| ResponseError::HeaderWithoutColon(text.to_owned()))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let head = Head {
        version_minor,
        status,
        headers,
        len_bytes: head_end + 4,
    };
    assert!(head.len_bytes <= buf.len());
    Ok(Some(head))
}

/// `HTTP/1.x NNN ...` -> (x, NNN).
fn parse_status_line(line: &[u8]) -> Result<(u8, u16), ResponseError> {
    let bad = || ResponseError::BadStatusLine(String::from_utf8_lossy(line).into_owned());
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    match rest {
        [minor, b' ', a, b, c, ..]
            if minor.is_ascii_digit() && [a, b, c].iter().all(|d| d.is_ascii_digit()) =>
        {
            let digit = |d: &u8| u16::from(d - b'0');
            Ok((minor - b'0', digit(a) * 100 + digit(b) * 10 + digit(c)))
        }
        _ => Err(bad()),
    }
}

/// Parses one response (head and body) from the start of `buf`: `Ok(None)` while incomplete,
/// else the response and the bytes it took.
pub fn parse_response(
    buf: &[u8],
    answering: Answering,
    limits: &Limits,
    end: StreamEnd,
) -> Result<Option<(Response, usize)>, ResponseError> {
    match parse_head(buf, limits)? {
        Some(head) => head.finish(buf, answering, limits, end),
        None => Ok(None),
    }
}

/// A chunked body from the start of `buf`, de-chunked, and the bytes it took (through the
/// trailers' empty line); `Ok(None)` while incomplete.
pub fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ResponseError> {
    let mut body = Vec::new();
    let mut at = 0;
    // Each turn consumes at least one line of `buf`: bounded by its length.
    loop {
        let Some(line_len) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[at..at + line_len]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ResponseError::BadChunkSize(line.clone()))?;
        at += line_len + 2;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                let Some(end) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if buf.len() - at < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl fmt::Debug for Response {
    /// The body is shown only in part: assertion messages stay readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.body[..self.body.len().min(120)];
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body_start", &String::from_utf8_lossy(shown))
            .finish()
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// How many times header `name` appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    /// `Content-Length` as a number, if present and valid.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The response ends its connection: a `close` token in `Connection`, or HTTP/1.0 without
    /// `keep-alive`.
    pub fn says_close(&self) -> bool {
        says_close(self.version_minor, &self.headers)
    }

    /// Panics unless the status is `status`; returns the response for chaining.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Response {
        assert_eq!(
            self.status,
            status,
            "unexpected response: {} {:?}",
            self.status,
            self.text()
        );
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], answering: Answering) -> Option<(Response, usize)> {
        parse_response(buf, answering, &Limits::NONE, StreamEnd::Open).unwrap()
    }

    #[test]
    fn a_length_framed_response_takes_exactly_its_bytes() {
        let buf = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\nLocation: /x\r\n\r\nabcHTTP/1.1";
        let (r, used) = parse(buf, Answering::Other).unwrap();
        assert_eq!((r.status, r.version_minor, used), (201, 1, buf.len() - 8));
        assert_eq!(
            (r.body.as_slice(), r.header("location")),
            (&b"abc"[..], Some("/x"))
        );
        assert!(!r.says_close());
        assert!(parse(&buf[..buf.len() - 9], Answering::Other).is_none());
    }

    #[test]
    fn head_answers_and_204_have_no_body() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
        let (r, used) = parse(buf, Answering::Head).unwrap();
        assert_eq!((r.body.len(), used), (0, buf.len()));
        let buf = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let (r, _) = parse(buf, Answering::Other).unwrap();
        assert!(r.says_close());
    }

    #[test]
    fn chunked_bodies_are_decoded_through_the_trailers() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\n";
        let (r, used) = parse(buf, Answering::Other).unwrap();
        assert_eq!((r.body.as_slice(), used), (&b"abcd"[..], buf.len()));
        for cut in 0..buf.len() {
            assert!(parse(&buf[..cut], Answering::Other).is_none(), "cut {cut}");
        }
    }

    #[test]
    fn a_body_framed_by_close_completes_only_at_the_end_of_the_stream() {
        let buf = b"HTTP/1.0 200 OK\r\n\r\nabc";
        assert!(parse(buf, Answering::Other).is_none());
        let done = parse_response(buf, Answering::Other, &Limits::NONE, StreamEnd::Closed);
        let (r, _) = done.unwrap().unwrap();
        assert_eq!(r.body, b"abc");
        assert!(r.says_close(), "HTTP/1.0 without keep-alive closes");
    }

    #[test]
    fn malformed_and_oversized_responses_are_errors() {
        let limits = Limits {
            head_bytes_max: 16,
            body_bytes_max: 4,
        };
        let err = |buf: &[u8]| parse_response(buf, Answering::Other, &limits, StreamEnd::Open);
        assert_eq!(err(&[b'x'; 17]), Err(ResponseError::HeadTooLong));
        assert!(matches!(
            err(b"HTTP/2 200\r\n\r\n"),
            Err(ResponseError::BadStatusLine(_))
        ));
        assert!(matches!(
            err(b"HTTP/1.1 2x0\r\n\r\n"),
            Err(ResponseError::BadStatusLine(_))
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"),
            Err(ResponseError::HeaderWithoutColon(_))
        ));
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Err(ResponseError::BodyTooLarge(5))
        );
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(ResponseError::BadContentLength(_))
        ));
    }
}
