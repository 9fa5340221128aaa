//! Response heads: the status line, headers, `Content-Length` and `Connection`.
//!
//! Owns: [`Status`] (a status code with its reason phrase), [`Persistence`] and
//! [`write_response_head`].
//! Invariants: a head written ends with an empty line; header names are tokens and values
//! carry no CR, LF or NUL (asserted: they come from the server).
//! Must never: copy a request's bytes into a header unchecked (response splitting).

/// An HTTP status code. A newtype, not an enum: the gateway and the stats table carry codes
/// of their own, and any three-digit code can be written (its reason phrase is then
/// `Unknown`). The codes SPEC.md uses are named constants.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Status(u16);

impl Status {
    pub const CONTINUE: Status = Status(100);
    pub const OK: Status = Status(200);
    pub const CREATED: Status = Status(201);
    pub const NO_CONTENT: Status = Status(204);
    pub const PARTIAL_CONTENT: Status = Status(206);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const BAD_REQUEST: Status = Status(400);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const NOT_ACCEPTABLE: Status = Status(406);
    pub const REQUEST_TIMEOUT: Status = Status(408);
    pub const LENGTH_REQUIRED: Status = Status(411);
    pub const CONTENT_TOO_LARGE: Status = Status(413);
    pub const RANGE_NOT_SATISFIABLE: Status = Status(416);
    pub const UNPROCESSABLE_CONTENT: Status = Status(422);
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const HTTP_VERSION_NOT_SUPPORTED: Status = Status(505);
    pub const INSUFFICIENT_STORAGE: Status = Status(507);

    /// The status `code`; panics unless it has three digits (a programmer error: codes come
    /// from the server).
    pub const fn new(code: u16) -> Status {
        assert!(code >= 100 && code <= 999, "a status code has three digits");
        Status(code)
    }

    pub const fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase (`Unknown` for a code SPEC.md does not use).
    pub fn reason(self) -> &'static str {
        reason_phrase(self.0)
    }

    /// A 4xx or 5xx.
    pub const fn is_error(self) -> bool {
        self.0 >= 400
    }

    /// Whether a response with this status may carry a body (not 1xx, 204 or 304).
    pub const fn allows_body(self) -> bool {
        !(self.0 < 200 || self.0 == 204 || self.0 == 304)
    }
}

impl PartialEq<u16> for Status {
    fn eq(&self, code: &u16) -> bool {
        self.0 == *code
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The reason phrase of `status` for every status SPEC.md uses; `Unknown` for any other.
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
    status: Status,
    headers: &[(&str, &[u8])],
    content_length: Option<u64>,
    persistence: Persistence,
) {
    let out_len_before = out.len();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status.code()));
    out.push(b' ');
    out.extend_from_slice(status.reason().as_bytes());
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
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(super) fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
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
