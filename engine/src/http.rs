//! HTTP/1.1 wire format: request-head parsing, chunked-body decoding, `Range` and
//! `If-None-Match` evaluation, query splitting and response-head writing.
//!
//! Owns: the rules that decide how a request is framed (`Content-Length` versus
//! `Transfer-Encoding: chunked`, and every smuggling shape that must be refused), which status a
//! malformed request gets, and the exact bytes of a response head.
//!
//! Invariants: every function is pure and total over its untrusted input — it does no I/O, keeps
//! no clock, and never panics on bytes from the network (no unchecked indexing, no unwrap on a
//! parse). Panics are reserved for programmer errors in arguments the server itself supplies
//! (a zero head limit, a response header value containing CR or LF).
//!
//! Must never: guess a body length. Any ambiguity in framing is a `400`, because a guess that
//! differs from a proxy's guess is how request smuggling works.

/// Size of the `httparse` header array: a request with more header fields gets `431`.
pub const HEADERS_MAX: usize = 64;
/// Longest chunk-size line (hex digits, extensions and CRLF) the chunked decoder accepts.
pub const CHUNK_SIZE_LINE_BYTES_MAX: usize = 1024;
/// Largest trailer section (every trailer line with its CRLF, and the final CRLF).
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;

const _: () = assert!(HEADERS_MAX >= 16);
const _: () = assert!(CHUNK_SIZE_LINE_BYTES_MAX >= 16 + 2);
const _: () = assert!(TRAILER_BYTES_MAX >= CHUNK_SIZE_LINE_BYTES_MAX);

/// The request methods the server routes; anything else is `Other` (the router answers 405/501).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
    Other,
}

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
    pub status: u16,
    pub reason: &'static str,
}

impl HttpError {
    const fn new(status: u16, reason: &'static str) -> HttpError {
        HttpError { status, reason }
    }

    const fn bad(reason: &'static str) -> HttpError {
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
const HEAD_SPARE_MAX: usize = 64;
const HEAD_SPARE_BYTES_MAX: usize = 4096;

impl HeadBuffers {
    /// `bytes` in a spare buffer (or a new one when none is left).
    fn copy(&mut self, bytes: &[u8]) -> Vec<u8> {
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
fn version_error(buf: &[u8]) -> HttpError {
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
fn request_line_version(buf: &[u8]) -> Option<&[u8]> {
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
fn head_from_parsed(
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
fn split_target(target: &[u8]) -> Result<(&[u8], &[u8]), HttpError> {
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
fn absolute_form_rest(target: &[u8]) -> Option<&[u8]> {
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

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        bytes.get(prefix.len()..)
    } else {
        None
    }
}

/// The header fields that matter, gathered from every header line of one request.
#[derive(Default)]
struct HeaderFields {
    content_length: Option<u64>,
    chunked: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    authorization: Option<Vec<u8>>,
    if_none_match: Option<Vec<u8>>,
    range: Option<Vec<u8>>,
    accept: Option<Vec<u8>>,
    expect_continue: bool,
}

impl HeaderFields {
    fn collect(
        headers: &[httparse::Header<'_>],
        buffers: &mut HeadBuffers,
    ) -> Result<HeaderFields, HttpError> {
        assert!(headers.len() <= HEADERS_MAX);
        let mut fields = HeaderFields::default();
        for header in headers {
            fields.add(header.name.as_bytes(), header.value, buffers)?;
        }
        Ok(fields)
    }

    fn add(
        &mut self,
        name: &[u8],
        value: &[u8],
        buffers: &mut HeadBuffers,
    ) -> Result<(), HttpError> {
        let is = |expected: &[u8]| name.eq_ignore_ascii_case(expected);
        if is(b"content-length") {
            self.add_content_length(value)?;
        } else if is(b"transfer-encoding") {
            if self.chunked {
                return Err(HttpError::bad("more than one Transfer-Encoding"));
            }
            if !trim_ows(value).eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::bad(
                    "Transfer-Encoding other than exactly 'chunked'",
                ));
            }
            self.chunked = true;
        } else if is(b"connection") {
            for token in list_elements(value) {
                self.connection_close |= token.eq_ignore_ascii_case(b"close");
                self.connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if is(b"authorization") {
            if self.authorization.is_some() {
                return Err(HttpError::bad("more than one Authorization"));
            }
            self.authorization = Some(buffers.copy(trim_ows(value)));
        } else if is(b"if-none-match") {
            // A list field: several lines mean the same as one line joined by commas.
            append_list(&mut self.if_none_match, value, buffers);
        } else if is(b"range") {
            // Not a list, but joining makes repeated lines a multi-range, which is ignored.
            append_list(&mut self.range, value, buffers);
        } else if is(b"accept") {
            append_list(&mut self.accept, value, buffers);
        } else if is(b"expect") {
            self.expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    /// Every element of every `Content-Length` line must be the same decimal number.
    fn add_content_length(&mut self, value: &[u8]) -> Result<(), HttpError> {
        for element in value.split(|&b| b == b',') {
            let length = parse_decimal(trim_ows(element))
                .ok_or(HttpError::bad("Content-Length is not a decimal number"))?;
            match self.content_length {
                Some(seen) if seen != length => {
                    return Err(HttpError::bad("conflicting Content-Length values"));
                }
                _ => self.content_length = Some(length),
            }
        }
        assert!(self.content_length.is_some());
        Ok(())
    }
}

fn append_list(slot: &mut Option<Vec<u8>>, value: &[u8], buffers: &mut HeadBuffers) {
    let value = trim_ows(value);
    match slot {
        Some(joined) => {
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value);
        }
        None => *slot = Some(buffers.copy(value)),
    }
}

/// The non-empty, OWS-trimmed elements of a comma-separated list.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `bytes` without leading and trailing spaces and tabs.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or(&[])
}

/// One or more ASCII digits as a `u64`; `None` for anything else, including overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Digits as a `u64`, saturating at `u64::MAX` (a huge range bound is valid, just past the end).
fn parse_decimal_saturating(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Where the chunked decoder is inside the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a chunk size (`digits` of them so far, value `size`).
    SizeDigits {
        size: u64,
        digits: u32,
    },
    /// After the digits: optional whitespace, then `;` extensions or CR.
    SizeAfterDigits {
        size: u64,
    },
    /// Inside chunk extensions: anything up to CR.
    SizeExtension {
        size: u64,
    },
    /// Saw the CR ending a chunk-size line; LF must follow.
    SizeLf {
        size: u64,
    },
    /// Copying chunk data; `remaining` bytes of this chunk are still to come.
    Data {
        remaining: u64,
    },
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerLineStart,
    /// Inside a trailer line (ignored).
    TrailerLine,
    /// Saw the CR ending a trailer line; LF must follow. `empty` if that line was empty.
    TrailerLf {
        empty: bool,
    },
    Done,
    /// Refused the body; `ChunkedDecoder::failure` says why.
    Failed,
}

/// Incremental decoder of a `Transfer-Encoding: chunked` body.
///
/// Feed the bytes in any pieces; the output, the errors and the consumed counts add up to the
/// same as feeding them at once. Chunk extensions and trailers are checked for shape and
/// otherwise ignored. Line ends must be CRLF. After the terminating zero chunk and its trailer
/// section the decoder is done and consumes nothing more (what follows is the next request).
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    max_body_bytes: u64,
    /// Sum of the chunk sizes accepted so far (never above `max_body_bytes`).
    declared_bytes: u64,
    /// Data bytes appended to `out` so far (never above `declared_bytes`).
    decoded_bytes: u64,
    /// Bytes of the current chunk-size line, CRLF included.
    size_line_bytes: usize,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    /// Set exactly when `state` is `Failed`: every later call returns it again.
    failure: Option<HttpError>,
}

impl ChunkedDecoder {
    /// The most body bytes this decoder accepts.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    /// A decoder that refuses (413) a body whose decoded size would exceed `max_body_bytes`.
    pub fn new(max_body_bytes: u64) -> Self {
        ChunkedDecoder {
            state: ChunkState::SizeDigits { size: 0, digits: 0 },
            max_body_bytes,
            declared_bytes: 0,
            decoded_bytes: 0,
            size_line_bytes: 0,
            trailer_bytes: 0,
            failure: None,
        }
    }

    /// Consumes from `input`, appending decoded body bytes to `out`; returns the bytes consumed,
    /// which is all of `input` unless the body ended inside it. After an error every later call
    /// returns the same error.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        if let Some(error) = &self.failure {
            assert!(self.state == ChunkState::Failed);
            return Err(error.clone());
        }
        let out_len_before = out.len();
        let mut consumed = 0usize;
        while consumed < input.len() {
            let rest = input.get(consumed..).unwrap_or(&[]);
            match self.state {
                ChunkState::Done => break,
                ChunkState::Failed => unreachable!("a failed decoder returns on entry"),
                ChunkState::Data { remaining } => {
                    let take = rest
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(rest.get(..take).unwrap_or(&[]));
                    self.decoded_bytes += take as u64;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data { remaining }
                    };
                    consumed += take;
                }
                _ => {
                    let byte = rest.first().copied().unwrap_or(0);
                    consumed += 1;
                    if let Err(error) = self.step(byte) {
                        self.state = ChunkState::Failed;
                        self.failure = Some(error.clone());
                        return Err(error);
                    }
                }
            }
        }
        assert!(consumed <= input.len());
        assert!(self.decoded_bytes <= self.declared_bytes);
        assert!(self.declared_bytes <= self.max_body_bytes);
        assert!((out.len() - out_len_before) as u64 <= consumed as u64);
        Ok(consumed)
    }

    /// True once the terminating zero chunk and the trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Body bytes decoded so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes
    }

    /// Advances the framing state by one byte (everything except chunk data).
    fn step(&mut self, byte: u8) -> Result<(), HttpError> {
        const BAD_CHUNK: HttpError = HttpError::bad("malformed chunk");
        self.state = match self.state {
            ChunkState::SizeDigits { .. }
            | ChunkState::SizeAfterDigits { .. }
            | ChunkState::SizeExtension { .. }
            | ChunkState::SizeLf { .. } => self.step_size_line(byte)?,
            ChunkState::DataCr if byte == b'\r' => ChunkState::DataLf,
            ChunkState::DataLf if byte == b'\n' => ChunkState::SizeDigits { size: 0, digits: 0 },
            ChunkState::DataCr | ChunkState::DataLf => {
                return Err(HttpError::bad("chunk data not followed by CRLF"));
            }
            ChunkState::TrailerLineStart
            | ChunkState::TrailerLine
            | ChunkState::TrailerLf { .. } => self.step_trailer(byte)?,
            ChunkState::Data { .. } | ChunkState::Done | ChunkState::Failed => {
                return Err(BAD_CHUNK);
            }
        };
        Ok(())
    }

    /// One byte of a chunk-size line: `1*HEXDIG [ BWS ";" ext ] CRLF`.
    fn step_size_line(&mut self, byte: u8) -> Result<ChunkState, HttpError> {
        const BAD_SIZE: HttpError = HttpError::bad("malformed chunk size line");
        self.size_line_bytes += 1;
        if self.size_line_bytes > CHUNK_SIZE_LINE_BYTES_MAX {
            return Err(HttpError::bad("chunk size line too long"));
        }
        let next = match self.state {
            ChunkState::SizeDigits { size, digits } => match hex_digit(byte) {
                Some(_) if size > u64::MAX >> 4 => {
                    return Err(HttpError::bad("chunk size overflows"));
                }
                Some(d) => ChunkState::SizeDigits {
                    size: (size << 4) | d,
                    digits: digits + 1,
                },
                None if digits == 0 => return Err(BAD_SIZE),
                None => {
                    self.check_chunk_fits(size)?;
                    after_size_digits(size, byte).ok_or(BAD_SIZE)?
                }
            },
            ChunkState::SizeAfterDigits { size } => {
                after_size_digits(size, byte).ok_or(BAD_SIZE)?
            }
            ChunkState::SizeExtension { size } => match byte {
                b'\r' => ChunkState::SizeLf { size },
                b'\t' => ChunkState::SizeExtension { size },
                _ if byte < b' ' || byte == 0x7f => return Err(BAD_SIZE),
                _ => ChunkState::SizeExtension { size },
            },
            ChunkState::SizeLf { size } if byte == b'\n' => self.end_size_line(size),
            _ => return Err(BAD_SIZE),
        };
        Ok(next)
    }

    /// 413 as soon as a chunk size would take the body over the limit.
    fn check_chunk_fits(&mut self, size: u64) -> Result<(), HttpError> {
        match self.declared_bytes.checked_add(size) {
            Some(total) if total <= self.max_body_bytes => {
                self.declared_bytes = total;
                Ok(())
            }
            _ => Err(HttpError::new(413, "body too large")),
        }
    }

    fn end_size_line(&mut self, size: u64) -> ChunkState {
        assert!(self.size_line_bytes <= CHUNK_SIZE_LINE_BYTES_MAX);
        self.size_line_bytes = 0;
        if size == 0 {
            ChunkState::TrailerLineStart
        } else {
            ChunkState::Data { remaining: size }
        }
    }

    /// One byte of the trailer section: `*( field-line CRLF ) CRLF`, field lines ignored.
    fn step_trailer(&mut self, byte: u8) -> Result<ChunkState, HttpError> {
        const BAD_TRAILER: HttpError = HttpError::bad("malformed trailer section");
        self.trailer_bytes += 1;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(HttpError::new(431, "trailer section too large"));
        }
        let next = match (self.state, byte) {
            (ChunkState::TrailerLineStart, b'\r') => ChunkState::TrailerLf { empty: true },
            (ChunkState::TrailerLineStart, b' ' | b'\t') => {
                return Err(HttpError::bad("obsolete line folding in trailer"));
            }
            (ChunkState::TrailerLine, b'\r') => ChunkState::TrailerLf { empty: false },
            (ChunkState::TrailerLine, b'\t') => ChunkState::TrailerLine,
            (ChunkState::TrailerLineStart | ChunkState::TrailerLine, _)
                if byte < b' ' || byte == 0x7f =>
            {
                return Err(BAD_TRAILER);
            }
            (ChunkState::TrailerLineStart | ChunkState::TrailerLine, _) => ChunkState::TrailerLine,
            (ChunkState::TrailerLf { empty: true }, b'\n') => ChunkState::Done,
            (ChunkState::TrailerLf { empty: false }, b'\n') => ChunkState::TrailerLineStart,
            _ => return Err(BAD_TRAILER),
        };
        Ok(next)
    }
}

/// The state after a chunk size's digits, given the byte that ended them.
fn after_size_digits(size: u64, byte: u8) -> Option<ChunkState> {
    match byte {
        b' ' | b'\t' => Some(ChunkState::SizeAfterDigits { size }),
        b';' => Some(ChunkState::SizeExtension { size }),
        b'\r' => Some(ChunkState::SizeLf { size }),
        _ => None,
    }
}

fn hex_digit(byte: u8) -> Option<u64> {
    match byte {
        b'0'..=b'9' => Some(u64::from(byte - b'0')),
        b'a'..=b'f' => Some(u64::from(byte - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(byte - b'A' + 10)),
        _ => None,
    }
}

/// What a `Range` header asks of a block of `len` bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RangeSpec {
    /// Serve the whole block with 200 (no range, or one the server ignores).
    Full,
    /// Serve `start..=end_inclusive` with 206; both lie inside the block.
    Partial { start: u64, end_inclusive: u64 },
    /// 416 with `Content-Range: bytes */<len>`.
    Unsatisfiable,
}

/// Evaluates a `Range` value against a block of `len` bytes (RFC 9110 §14.1.2, §14.2).
///
/// A single `bytes=a-b`, `bytes=a-` or `bytes=-n` is honoured, an end past the block clamped.
/// A multi-range, another unit or bad syntax (including `b < a`) is ignored: `Full`. A start at
/// or past the end, or `-0`, is `Unsatisfiable`.
pub fn parse_range(value: &[u8], len: u64) -> RangeSpec {
    assert!(len > 0, "blocks are at least one byte");
    let value = trim_ows(value);
    let Some(set) = strip_prefix_ignore_case(value, b"bytes=") else {
        return RangeSpec::Full;
    };
    if set.contains(&b',') {
        return RangeSpec::Full;
    }
    let spec = trim_ows(set);
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeSpec::Full;
    };
    let first = spec.get(..dash).unwrap_or(&[]);
    let last = spec.get(dash + 1..).unwrap_or(&[]);
    // An empty side is `None` here, which is what separates `a-`, `-n` and `a-b`.
    let result = match (
        parse_decimal_saturating(first),
        parse_decimal_saturating(last),
    ) {
        (Some(start), Some(end)) if end < start => RangeSpec::Full,
        (Some(start), Some(_)) if start >= len => RangeSpec::Unsatisfiable,
        (Some(start), Some(end)) => RangeSpec::Partial {
            start,
            end_inclusive: end.min(len - 1),
        },
        (Some(start), None) if last.is_empty() && start >= len => RangeSpec::Unsatisfiable,
        (Some(start), None) if last.is_empty() => RangeSpec::Partial {
            start,
            end_inclusive: len - 1,
        },
        (None, Some(0)) if first.is_empty() => RangeSpec::Unsatisfiable,
        (None, Some(suffix)) if first.is_empty() => RangeSpec::Partial {
            start: len.saturating_sub(suffix),
            end_inclusive: len - 1,
        },
        _ => RangeSpec::Full,
    };
    if let RangeSpec::Partial {
        start,
        end_inclusive,
    } = result
    {
        assert!(start <= end_inclusive && end_inclusive < len);
    }
    result
}

/// True if an `If-None-Match` value matches the entity tag `"<etag_hex>"` (RFC 9110 §13.1.2):
/// `*` matches; otherwise any listed tag whose opaque part equals it, weak `W/"…"` compared
/// weakly. Elements without their quotes never match.
pub fn if_none_match_matches(value: &[u8], etag_hex: &str) -> bool {
    assert!(!etag_hex.is_empty() && !etag_hex.contains('"'));
    let mut rest = trim_ows(value);
    if rest == b"*" {
        return true;
    }
    let wanted = etag_hex.as_bytes();
    // Elements are `[W/]"etagc*"`; a comma may appear inside the quotes, so scan, do not split.
    loop {
        rest = skip_list_separators(rest);
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix(b"W/").unwrap_or(rest);
        let quoted = tag.strip_prefix(b"\"").and_then(|inner| {
            let close = inner.iter().position(|&b| b == b'"')?;
            Some((inner.get(..close)?, inner.get(close + 1..)?))
        });
        match quoted {
            Some((opaque, after)) => {
                if opaque == wanted {
                    return true;
                }
                rest = after;
            }
            None => {
                // Malformed element: skip to the next comma.
                let next = rest
                    .iter()
                    .position(|&b| b == b',')
                    .map_or(rest.len(), |i| i + 1);
                rest = rest.get(next..).unwrap_or(&[]);
            }
        }
    }
}

fn skip_list_separators(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_ows(b) && b != b',')
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or(&[])
}

/// Splits a query string `a=1&b=2` into `(name, value)` pairs, bytes left as sent (no
/// percent-decoding). Empty segments are skipped; a segment without `=` has an empty value.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.iter().position(|&b| b == b'=') {
            Some(at) => (
                segment.get(..at).unwrap_or(&[]),
                segment.get(at + 1..).unwrap_or(&[]),
            ),
            None => (segment, &[][..]),
        })
}

/// The reason phrase for every status SPEC.md uses; `Unknown` for any other.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// What a response says about its connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Persistence {
    /// Kept open, as HTTP/1.1 does by default: nothing to say.
    KeepOpen,
    /// Kept open for an HTTP/1.0 client that asked for it: `Connection: keep-alive` (an
    /// HTTP/1.0 client closes otherwise, or waits for the server to: ApacheBench `-k` hangs).
    KeepAlive10,
    /// Closed after this response: `Connection: close`.
    Close,
}

/// Appends a response head: status line, `headers` in order, then `Content-Length` when given,
/// the `Connection` header `persistence` needs, then the empty line.
///
/// Header names and values come from the server, never verbatim from a request; a name that is
/// not a token or a value with CR, LF or NUL is a programmer error (it would split the response).
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &[u8])],
    content_length: Option<u64>,
    persistence: Persistence,
) {
    assert!(
        (100..=999).contains(&status),
        "status {status} is not three digits"
    );
    let out_len_before = out.len();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        assert!(
            !name.is_empty() && name.bytes().all(is_token_byte),
            "bad header name {name:?}"
        );
        assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "bad value in {name}"
        );
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(length) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, length);
        out.extend_from_slice(b"\r\n");
    }
    match persistence {
        Persistence::KeepOpen => {}
        Persistence::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    assert!(out.ends_with(b"\r\n\r\n") && out.len() > out_len_before);
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut count = 0;
    loop {
        digits[digits.len() - 1 - count] = b'0' + (value % 10) as u8;
        count += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[digits.len() - count..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 16 * 1024;

    fn complete(buf: &[u8]) -> (RequestHead, usize) {
        match parse_head(buf, LIMIT) {
            Ok(HeadParse::Complete { head, head_len }) => (head, head_len),
            other => panic!(
                "expected a complete head for {:?}, got {other:?}",
                show(buf)
            ),
        }
    }

    fn status(buf: &[u8]) -> u16 {
        match parse_head(buf, LIMIT) {
            Err(error) => error.status,
            other => panic!("expected an error for {:?}, got {other:?}", show(buf)),
        }
    }

    fn show(buf: &[u8]) -> String {
        String::from_utf8_lossy(buf).into_owned()
    }

    #[test]
    fn simple_get_parses_with_defaults() {
        let req = b"GET /block/ab?x=1 HTTP/1.1\r\nHost: h\r\n\r\nNEXT";
        let (head, head_len) = complete(req);
        assert_eq!(head_len, req.len() - 4);
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, b"/block/ab");
        assert_eq!(head.query, b"x=1");
        assert!(!head.http10 && head.keep_alive && !head.expect_continue);
        assert_eq!(head.body, BodyFraming::None);
        assert_eq!(
            (head.authorization, head.if_none_match, head.range),
            (None, None, None)
        );
    }

    #[test]
    fn methods_map_and_are_case_sensitive() {
        for (text, method) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("PUT", Method::Put),
            ("POST", Method::Post),
            ("DELETE", Method::Delete),
            ("PATCH", Method::Other),
            ("get", Method::Other),
        ] {
            let req = format!("{text} / HTTP/1.1\r\n\r\n");
            assert_eq!(complete(req.as_bytes()).0.method, method, "{text}");
        }
    }

    #[test]
    fn fields_are_extracted_with_case_insensitive_names() {
        let req = b"PUT /block HTTP/1.1\r\nCONTENT-length: 5\r\nauthorization: Bearer t\r\n\
            If-None-Match: \"a\"\r\nif-none-match: W/\"b\"\r\nRANGE: bytes=0-1\r\n\
            Expect: 100-Continue\r\n\r\nhello";
        let (head, _) = complete(req);
        assert_eq!(head.body, BodyFraming::Length(5));
        assert_eq!(head.authorization.as_deref(), Some(&b"Bearer t"[..]));
        assert_eq!(head.if_none_match.as_deref(), Some(&b"\"a\", W/\"b\""[..]));
        assert_eq!(head.range.as_deref(), Some(&b"bytes=0-1"[..]));
        assert!(head.expect_continue);
    }

    #[test]
    fn keep_alive_follows_version_and_connection_tokens() {
        let cases: [(&[u8], bool); 7] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: foo,keep-alive \r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ];
        for (req, keep_alive) in cases {
            assert_eq!(complete(req).0.keep_alive, keep_alive, "{}", show(req));
        }
        assert!(complete(b"GET / HTTP/1.0\r\n\r\n").0.http10);
    }

    #[test]
    fn chunked_and_content_length_framing() {
        let (head, _) = complete(b"PUT / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n");
        assert_eq!(head.body, BodyFraming::Chunked);
        let (head, _) = complete(b"PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(head.body, BodyFraming::Length(0));
        let (head, _) = complete(b"PUT / HTTP/1.1\r\nContent-Length:\t42 \r\n\r\n");
        assert_eq!(head.body, BodyFraming::Length(42));
        let max = format!("PUT / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", u64::MAX);
        assert_eq!(
            complete(max.as_bytes()).0.body,
            BodyFraming::Length(u64::MAX)
        );
    }

    #[test]
    fn identical_repeated_content_lengths_are_accepted() {
        let req = b"PUT / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7, 7\r\n\r\n";
        assert_eq!(complete(req).0.body, BodyFraming::Length(7));
    }

    #[test]
    fn smuggling_content_length_and_transfer_encoding_is_400() {
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            400
        );
    }

    #[test]
    fn smuggling_conflicting_content_lengths_are_400() {
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n"),
            400
        );
    }

    #[test]
    fn non_numeric_content_lengths_are_400() {
        for value in [
            "+5",
            "-5",
            "5 5",
            "0x10",
            "",
            "5,",
            "1e3",
            "18446744073709551616",
            " , ",
        ] {
            let req = format!("PUT / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 400, "Content-Length: {value:?}");
        }
    }

    #[test]
    fn smuggling_transfer_encodings_other_than_chunked_are_400() {
        for value in [
            "chunked, identity",
            "identity",
            "gzip, chunked",
            "chunked;q=1",
            "chunke",
        ] {
            let req = format!("PUT / HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 400, "Transfer-Encoding: {value:?}");
        }
        let twice =
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(twice), 400);
        assert_eq!(
            status(b"PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn smuggling_obs_fold_and_space_before_colon_are_400() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), 400);
        assert_eq!(status(b"PUT / HTTP/1.1\r\nContent-Length : 5\r\n\r\n"), 400);
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn control_bytes_in_target_or_header_are_400() {
        assert_eq!(status(b"GET /a\0b HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\x01 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\x7f HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), 400);
    }

    #[test]
    fn absolute_form_target_keeps_path_and_query() {
        let (head, _) = complete(b"GET http://example.com:8080/block/ab?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(
            (head.path.as_slice(), head.query.as_slice()),
            (&b"/block/ab"[..], &b"x=1"[..])
        );
        let (head, _) = complete(b"GET HTTPS://h HTTP/1.1\r\n\r\n");
        assert_eq!(
            (head.path.as_slice(), head.query.as_slice()),
            (&b"/"[..], &b""[..])
        );
        let (head, _) = complete(b"GET http://h?q HTTP/1.1\r\n\r\n");
        assert_eq!(
            (head.path.as_slice(), head.query.as_slice()),
            (&b"/"[..], &b"q"[..])
        );
    }

    #[test]
    fn targets_not_origin_or_absolute_form_are_400() {
        for target in [
            "*",
            "block",
            "example.com:80",
            "http:///p",
            "ftp://h/p",
            "http:/h/p",
        ] {
            let req = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 400, "target {target:?}");
        }
    }

    #[test]
    fn http_0_9_and_http_2_preface_are_refused_without_panic() {
        assert_eq!(status(b"GET /\r\n"), 400);
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(status(preface), 505);
        for len in 0..preface.len() {
            let _ = parse_head(&preface[..len], LIMIT);
        }
        assert_eq!(status(b"GET / HTTP/3.0\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.2\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTPS/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn version_error_status_does_not_depend_on_how_much_arrived() {
        let preface = b"PRI * HTTP/2.0\r\n\r\n";
        let first_error = (1..=preface.len())
            .find_map(|len| parse_head(&preface[..len], LIMIT).err())
            .expect("the preface is refused");
        assert_eq!(first_error, parse_head(preface, LIMIT).unwrap_err());
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..HEADERS_MAX {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut exactly_max = req.clone();
        exactly_max.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_head(&exactly_max, LIMIT),
            Ok(HeadParse::Complete { .. })
        ));
        req.extend_from_slice(b"X-last: v\r\n\r\n");
        assert_eq!(status(&req), 431);
    }

    #[test]
    fn oversize_head_is_431_complete_or_not() {
        let req = b"GET / HTTP/1.1\r\nX: 0123456789\r\n\r\n";
        assert!(matches!(
            parse_head(req, req.len()),
            Ok(HeadParse::Complete { .. })
        ));
        assert_eq!(parse_head(req, req.len() - 1).unwrap_err().status, 431);
        let incomplete = &req[..20];
        assert_eq!(parse_head(incomplete, 21), Ok(HeadParse::Partial));
        assert_eq!(parse_head(incomplete, 20).unwrap_err().status, 431);
    }

    #[test]
    fn every_proper_prefix_of_a_valid_head_is_partial() {
        let req = b"\r\nPUT /block HTTP/1.1\r\nContent-Length: 5\r\nHost: h\r\n\r\n";
        for len in 0..req.len() {
            assert_eq!(
                parse_head(&req[..len], LIMIT),
                Ok(HeadParse::Partial),
                "len {len}"
            );
        }
        let (head, head_len) = complete(req);
        assert_eq!((head.method, head_len), (Method::Put, req.len()));
    }

    #[test]
    fn bare_lf_line_ends_are_accepted() {
        let req = b"GET /health HTTP/1.1\nHost: h\n\n";
        let (head, head_len) = complete(req);
        assert_eq!(
            (head.path.as_slice(), head_len),
            (&b"/health"[..], req.len())
        );
    }

    #[test]
    fn pipelined_requests_parse_one_after_the_other() {
        let stream = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let (first, len) = complete(stream);
        let (second, _) = complete(&stream[len..]);
        assert_eq!((first.path, second.path), (b"/a".to_vec(), b"/b".to_vec()));
    }

    fn decode_whole(body: &[u8], max: u64) -> (Result<usize, HttpError>, Vec<u8>, bool) {
        let mut decoder = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let result = decoder.decode(body, &mut out);
        (result, out, decoder.is_done())
    }

    /// Feeds `body` in the given pieces; the result is shaped like `decode_whole`'s.
    fn decode_pieces(
        body: &[u8],
        cuts: &[usize],
        max: u64,
    ) -> (Result<usize, HttpError>, Vec<u8>, bool) {
        let mut decoder = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let mut consumed_total = 0;
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(body.len())).collect();
        ends.sort_unstable();
        ends.push(body.len());
        for end in ends {
            let piece = &body[start..end.max(start)];
            start = end.max(start);
            match decoder.decode(piece, &mut out) {
                Ok(consumed) => {
                    assert!(consumed == piece.len() || decoder.is_done());
                    consumed_total += consumed;
                }
                Err(error) => {
                    assert_eq!(decoder.decode(b"more", &mut out), Err(error.clone()));
                    return (Err(error), out, decoder.is_done());
                }
            }
        }
        (Ok(consumed_total), out, decoder.is_done())
    }

    fn byte_at_a_time(body: &[u8], max: u64) -> (Result<usize, HttpError>, Vec<u8>, bool) {
        let cuts: Vec<usize> = (0..body.len()).collect();
        decode_pieces(body, &cuts, max)
    }

    #[test]
    fn chunked_body_decodes_whole_and_byte_by_byte_alike() {
        let body = b"5\r\nhello\r\nA;name=value;x\r\n, world!!!\r\n0\r\n\r\nGET / HTTP/1.1";
        let whole = decode_whole(body, 1000);
        assert_eq!(
            whole,
            (Ok(body.len() - 14), b"hello, world!!!".to_vec(), true)
        );
        assert_eq!(byte_at_a_time(body, 1000), whole);
    }

    #[test]
    fn chunked_trailers_are_consumed_and_ignored() {
        let body = b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other:\tv\r\n\r\nrest";
        let whole = decode_whole(body, 10);
        assert_eq!(whole, (Ok(body.len() - 4), b"abc".to_vec(), true));
        assert_eq!(byte_at_a_time(body, 10), whole);
    }

    #[test]
    fn chunk_sizes_take_leading_zeros_uppercase_and_whitespace_before_extension() {
        let body = b"0003 ;ext\r\nabc\r\n00Aa\r\n";
        let mut decoder = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        assert_eq!(decoder.decode(body, &mut out), Ok(body.len()));
        assert_eq!((out.as_slice(), decoder.decoded_bytes()), (&b"abc"[..], 3));
        assert!(!decoder.is_done());
    }

    #[test]
    fn done_decoder_consumes_nothing_more() {
        let mut decoder = ChunkedDecoder::new(10);
        let mut out = Vec::new();
        assert_eq!(decoder.decode(b"0\r\n\r\n", &mut out), Ok(5));
        assert!(decoder.is_done() && out.is_empty());
        assert_eq!(decoder.decode(b"GET", &mut out), Ok(0));
    }

    #[test]
    fn malformed_chunks_are_400() {
        let cases: [&[u8]; 12] = [
            b"x\r\n",
            b"\r\n",
            b";ext\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\x00",
            b"-5\r\n",
            b"5 5\r\n",
            b"0\r\nX: a\nY",
            b"0\r\n bad-fold\r\n\r\n",
            b"0\r\n\r\r",
        ];
        for body in cases {
            let whole = decode_whole(body, 1 << 20);
            assert_eq!(
                whole.0.as_ref().map_err(|e| e.status),
                Err(400),
                "{}",
                show(body)
            );
            assert_eq!(byte_at_a_time(body, 1 << 20), whole);
        }
    }

    #[test]
    fn chunk_size_overflow_and_long_size_lines_are_400() {
        let overflow = b"1ffffffffffffffff\r\n";
        assert_eq!(decode_whole(overflow, u64::MAX).0.unwrap_err().status, 400);
        let mut long = b"0".repeat(CHUNK_SIZE_LINE_BYTES_MAX);
        long.extend_from_slice(b"1\r\n");
        assert_eq!(decode_whole(&long, 1 << 20).0.unwrap_err().status, 400);
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', CHUNK_SIZE_LINE_BYTES_MAX));
        assert_eq!(decode_whole(&long_ext, 1 << 20).0.unwrap_err().status, 400);
    }

    #[test]
    fn oversize_chunked_body_is_413_as_soon_as_a_size_says_so() {
        let mut decoder = ChunkedDecoder::new(8);
        let mut out = Vec::new();
        assert_eq!(
            decoder.decode(b"5\r\nhello\r\n3\r\nabc\r\n", &mut out),
            Ok(18)
        );
        // The size line alone is enough: no data of the chunk needs to arrive.
        assert_eq!(decoder.decode(b"1\r", &mut out).unwrap_err().status, 413);
        assert_eq!(out, b"helloabc");
        assert_eq!(
            decode_whole(b"ffffffffffffffff\r\n", u64::MAX - 1)
                .0
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(decode_whole(b"9;", 8).0.unwrap_err().status, 413);
    }

    #[test]
    fn oversize_trailer_section_is_431() {
        let mut body = b"0\r\n".to_vec();
        for _ in 0..TRAILER_BYTES_MAX / 16 + 1 {
            body.extend_from_slice(b"X-Pad: 01234567\r\n");
        }
        body.extend_from_slice(b"\r\n");
        assert_eq!(decode_whole(&body, 10).0.unwrap_err().status, 431);
    }

    #[test]
    fn range_examples_from_rfc_9110() {
        let len = 10_000;
        let partial = |start, end_inclusive| RangeSpec::Partial {
            start,
            end_inclusive,
        };
        assert_eq!(parse_range(b"bytes=0-499", len), partial(0, 499));
        assert_eq!(parse_range(b"bytes=500-999", len), partial(500, 999));
        assert_eq!(parse_range(b"bytes=-500", len), partial(9500, 9999));
        assert_eq!(parse_range(b"bytes=9500-", len), partial(9500, 9999));
        assert_eq!(parse_range(b"bytes=0-0,-1", len), RangeSpec::Full);
        assert_eq!(parse_range(b"bytes=500-600,601-999", len), RangeSpec::Full);
        assert_eq!(parse_range(b"bytes=0-", len), partial(0, 9999));
        assert_eq!(parse_range(b"bytes=0-0", len), partial(0, 0));
        assert_eq!(parse_range(b"bytes=-1", len), partial(9999, 9999));
    }

    #[test]
    fn range_ends_clamp_and_starts_past_the_end_are_unsatisfiable() {
        let partial = |start, end_inclusive| RangeSpec::Partial {
            start,
            end_inclusive,
        };
        assert_eq!(parse_range(b"bytes=5-100", 10), partial(5, 9));
        assert_eq!(
            parse_range(b"bytes=0-99999999999999999999999", 10),
            partial(0, 9)
        );
        assert_eq!(parse_range(b"bytes=-100", 10), partial(0, 9));
        assert_eq!(parse_range(b" Bytes= 2-3 ", 10), partial(2, 3));
        assert_eq!(parse_range(b"bytes=10-20", 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=10-", 10), RangeSpec::Unsatisfiable);
        assert_eq!(
            parse_range(b"bytes=99999999999999999999999-", 10),
            RangeSpec::Unsatisfiable
        );
        assert_eq!(parse_range(b"bytes=-0", 10), RangeSpec::Unsatisfiable);
    }

    #[test]
    fn invalid_ranges_are_ignored() {
        for value in [
            &b"bytes=5-2"[..],
            b"items=0-1",
            b"bytes 0-1",
            b"bytes=",
            b"bytes=-",
            b"bytes=a-b",
            b"bytes=1",
            b"bytes=1-2-3",
            b"bytes=+1-2",
            b"bytes=1 -2",
            b"",
            b"\xff\x00",
        ] {
            assert_eq!(parse_range(value, 10), RangeSpec::Full, "{}", show(value));
        }
    }

    #[test]
    fn if_none_match_cases() {
        let etag = "abc123";
        assert!(if_none_match_matches(b"*", etag));
        assert!(if_none_match_matches(b" * ", etag));
        assert!(if_none_match_matches(b"\"abc123\"", etag));
        assert!(if_none_match_matches(b"W/\"abc123\"", etag));
        assert!(if_none_match_matches(b"\"x\", W/\"y\",\"abc123\"", etag));
        assert!(if_none_match_matches(b"\"a,b\", \"abc123\"", etag));
        assert!(if_none_match_matches(b"junk, \"abc123\"", etag));
        assert!(!if_none_match_matches(b"abc123", etag));
        assert!(!if_none_match_matches(b"\"ABC123\"", etag));
        assert!(!if_none_match_matches(b"\"abc12\"", etag));
        assert!(!if_none_match_matches(b"\"abc123", etag));
        assert!(!if_none_match_matches(b"w/\"abc123\"", etag));
        assert!(!if_none_match_matches(b"\"x\", *", etag));
        assert!(!if_none_match_matches(b"", etag));
    }

    #[test]
    fn query_pairs_split_on_ampersand_and_first_equals() {
        let pairs: Vec<_> = query_pairs(b"after=ab&limit=10&&flag&x=a=b&=v").collect();
        let expected: Vec<(&[u8], &[u8])> = vec![
            (b"after", b"ab"),
            (b"limit", b"10"),
            (b"flag", b""),
            (b"x", b"a=b"),
            (b"", b"v"),
        ];
        assert_eq!(pairs, expected);
        assert_eq!(query_pairs(b"").count(), 0);
    }

    #[test]
    fn reason_phrases_cover_every_status_the_spec_uses() {
        let statuses = [
            200, 201, 204, 206, 304, 400, 401, 404, 405, 406, 408, 411, 413, 416, 422, 431, 500,
            501,
        ];
        for status in statuses.into_iter().chain([503, 505, 507]) {
            assert_ne!(reason_phrase(status), "Unknown", "{status}");
        }
        assert_eq!(reason_phrase(299), "Unknown");
    }

    #[test]
    fn response_head_bytes_are_exact() {
        let mut out = b"previous".to_vec();
        let etag: &[u8] = b"\"ab\"";
        write_response_head(
            &mut out,
            201,
            &[("ETag", etag), ("Location", b"/block/ab")],
            Some(64),
            Persistence::Close,
        );
        let expected = b"previousHTTP/1.1 201 Created\r\nETag: \"ab\"\r\nLocation: /block/ab\r\n\
            Content-Length: 64\r\nConnection: close\r\n\r\n";
        assert_eq!(show(&out), show(expected));
        let mut out = Vec::new();
        write_response_head(&mut out, 304, &[], None, Persistence::KeepOpen);
        assert_eq!(out, b"HTTP/1.1 304 Not Modified\r\n\r\n");
        let mut out = Vec::new();
        write_response_head(&mut out, 200, &[], Some(0), Persistence::KeepOpen);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let mut out = Vec::new();
        write_response_head(&mut out, 204, &[], None, Persistence::KeepAlive10);
        assert_eq!(
            out,
            b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    #[should_panic(expected = "bad value")]
    fn response_header_injection_is_a_programmer_error() {
        write_response_head(
            &mut Vec::new(),
            200,
            &[("X", b"a\r\nSet-Cookie: b")],
            None,
            Persistence::KeepOpen,
        );
    }

    /// Request-like byte strings: real request lines and header lines, sometimes mutated.
    fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
        let line = prop::sample::select(vec![
            &b"GET /block/ab HTTP/1.1\r\n"[..],
            b"PUT /block HTTP/1.0\r\n",
            b"PRI * HTTP/2.0\r\n",
            b"GET /\r\n",
            b"\r\n",
            b"Host: h\r\n",
            b"Content-Length: 5\r\n",
            b"Content-Length: 6\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked, identity\r\n",
            b"Connection: close\r\n",
            b"Range: bytes=0-1\r\n",
            b"X: a\r\n b\r\n",
            b"\n",
        ]);
        let lines = prop::collection::vec(line, 0..12).prop_map(|lines| lines.concat());
        let mutation = prop::option::of((any::<prop::sample::Index>(), any::<u8>()));
        (lines, mutation).prop_map(|(mut bytes, mutation)| {
            if let (Some((at, byte)), false) = (mutation, bytes.is_empty()) {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes
        })
    }

    /// The first non-`Partial` answer a worker would see as `bytes` arrives split at `cuts`.
    fn first_answer(bytes: &[u8], cuts: &[usize], limit: usize) -> Result<HeadParse, HttpError> {
        let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
        ends.sort_unstable();
        ends.push(bytes.len());
        for end in ends {
            let answer = parse_head(&bytes[..end], limit);
            if answer != Ok(HeadParse::Partial) {
                return answer;
            }
        }
        Ok(HeadParse::Partial)
    }

    fn check_head_stream(bytes: &[u8], cuts: &[usize], limit: usize) -> Result<(), TestCaseError> {
        let whole = parse_head(bytes, limit);
        prop_assert_eq!(
            &whole,
            &parse_head(bytes, limit),
            "parse_head is deterministic"
        );
        match first_answer(bytes, cuts, limit) {
            first @ Ok(HeadParse::Complete { .. }) => prop_assert_eq!(first, whole),
            Ok(HeadParse::Partial) => prop_assert_eq!(whole, Ok(HeadParse::Partial)),
            Err(first) => {
                let whole_error = whole.expect_err("an error on a prefix stays an error");
                // An oversize prefix may hide a syntax error further on; otherwise the same.
                prop_assert!(first == whole_error || first.status == 431, "{first:?}");
            }
        }
        Ok(())
    }

    /// Chunked-body-like byte strings: valid chunks, extensions and trailers, sometimes mutated.
    fn chunked_bytes() -> impl Strategy<Value = Vec<u8>> {
        let chunk = prop::collection::vec(any::<u8>(), 1..20).prop_map(|data| {
            let mut out = format!("{:x}\r\n", data.len()).into_bytes();
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            out
        });
        let extra = prop::sample::select(vec![
            &b""[..],
            b"0\r\n\r\n",
            b"0;x=y\r\nT: v\r\n\r\nGET",
            b"3;e\r\nabc\r\n",
            b"ffffffffff\r\n",
        ]);
        let body = (prop::collection::vec(chunk, 0..5), extra)
            .prop_map(|(chunks, extra)| [chunks.concat(), extra.to_vec()].concat());
        let mutation = prop::option::of((any::<prop::sample::Index>(), any::<u8>()));
        (body, mutation).prop_map(|(mut bytes, mutation)| {
            if let (Some((at, byte)), false) = (mutation, bytes.is_empty()) {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Random bytes: no panic on any prefix; the answer never depends on how bytes arrive.
        #[test]
        fn parse_head_on_random_bytes_is_total_and_split_independent(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            cut in any::<prop::sample::Index>(),
            limit in 1usize..400,
        ) {
            let cut = cut.index(bytes.len() + 1);
            let _ = parse_head(&bytes[..cut], limit);
            check_head_stream(&bytes, &[cut], limit)?;
        }

        /// Request-shaped bytes: the first answer over growing prefixes equals the whole's.
        #[test]
        fn parse_head_on_request_shapes_is_split_independent(
            bytes in request_bytes(),
            cuts in prop::collection::vec(0usize..400, 0..6),
            limit in prop::sample::select(vec![24usize, 64, 200, LIMIT]),
        ) {
            check_head_stream(&bytes, &cuts, limit)?;
        }

        /// The chunked decoder gives the same output and errors fed whole or in any pieces.
        #[test]
        fn chunked_decoder_is_split_independent(
            body in prop_oneof![chunked_bytes(), prop::collection::vec(any::<u8>(), 0..64)],
            cuts in prop::collection::vec(0usize..200, 0..8),
            max in prop::sample::select(vec![0u64, 10, 40, 1 << 20]),
        ) {
            let whole = decode_whole(&body, max);
            prop_assert_eq!(&decode_pieces(&body, &cuts, max), &whole);
            prop_assert_eq!(&byte_at_a_time(&body, max), &whole);
        }
    }
}
