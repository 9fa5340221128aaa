//! Response heads: the status line, headers, `Content-Length` and `Connection`.
//!
//! Owns: [`Status`] (a status code with its reason phrase), [`Persistence`] and
//! [`write_response_head`].
//! Invariants: a head written ends with an empty line; header names are tokens and values
//! carry no CR, LF or NUL (asserted: they come from the server).
//! Must never: copy a request's bytes into a header unchecked (response splitting).

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
