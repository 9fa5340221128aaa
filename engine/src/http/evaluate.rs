//! Evaluating request values the worker acts on: `Range`, `If-None-Match`, query pairs.
//!
//! Owns: [`RangeSpec`]/[`parse_range`], [`if_none_match_matches`], [`query_pairs`].
//! Invariants: a range the server cannot serve exactly is answered in full (`Full`) or refused
//! (`Unsatisfiable`), never served partly wrong.
//! Must never: allocate or panic on request bytes.

use super::*;

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

pub(super) fn skip_list_separators(bytes: &[u8]) -> &[u8] {
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
