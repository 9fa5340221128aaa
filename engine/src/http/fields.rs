//! Header fields of one head: the ones the server reads, collected while `httparse`'s list is
//! walked, and the small lexical helpers (OWS, lists, decimals) they need.
//!
//! Owns: `HeaderFields` and its checks (duplicate or conflicting framing headers refused).
//! Must never: accept a `Content-Length` or `Transfer-Encoding` it cannot read exactly.

use super::*;

/// The header fields that matter, gathered from every header line of one request.
#[derive(Default)]
pub(super) struct HeaderFields {
    pub(super) content_length: Option<u64>,
    pub(super) chunked: bool,
    pub(super) connection_close: bool,
    pub(super) connection_keep_alive: bool,
    pub(super) authorization: Option<Vec<u8>>,
    pub(super) if_none_match: Option<Vec<u8>>,
    pub(super) range: Option<Vec<u8>>,
    pub(super) accept: Option<Vec<u8>>,
    pub(super) expect_continue: bool,
}

impl HeaderFields {
    pub(super) fn collect(
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

    pub(super) fn add(
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
    pub(super) fn add_content_length(&mut self, value: &[u8]) -> Result<(), HttpError> {
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

pub(super) fn append_list(slot: &mut Option<Vec<u8>>, value: &[u8], buffers: &mut HeadBuffers) {
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
pub(super) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

pub(super) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `bytes` without leading and trailing spaces and tabs.
pub(super) fn trim_ows(bytes: &[u8]) -> &[u8] {
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
pub(super) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Digits as a `u64`, saturating at `u64::MAX` (a huge range bound is valid, just past the end).
pub(super) fn parse_decimal_saturating(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}
