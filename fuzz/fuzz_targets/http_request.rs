//! Fuzzes the HTTP/1.1 request parser and chunked decoder (engine/src/http/) the way a worker
//! drives them: a connection's bytes arrive in pieces and the receive buffer grows.
//!
//! Input layout (arbitrary's encoding): `u16` head limit, `u16` body limit, then split points
//! (each: an odd byte then a little-endian `u16`; an even byte ends the list), then the stream.
//!
//! Properties, for each pipelined request in the stream (at most `REQUESTS_MAX`):
//! - `parse_head` on growing prefixes never panics, and the first answer that is not `Partial`
//!   agrees with `parse_head` on everything received: the same head and length when complete,
//!   an error when that is an error (the same one, unless the prefix already hit the 431 limit).
//! - The chunked decoder gives the same output, errors and end as when fed all at once.

#![no_main]

use arbitrary::Arbitrary;
use engine::http::{parse_head, BodyFraming, ChunkedDecoder, HeadParse, HttpError};
use libfuzzer_sys::fuzz_target;

/// Pipelined requests followed per input: bounds the work per run.
const REQUESTS_MAX: usize = 8;
/// Split points used per input: each costs one parse of a prefix.
const SPLITS_MAX: usize = 64;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    max_header_bytes: u16,
    max_body_bytes: u16,
    splits: Vec<u16>,
    stream: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let max_header_bytes = usize::from(input.max_header_bytes).max(1);
    let max_body_bytes = u64::from(input.max_body_bytes);
    let mut splits: Vec<usize> = input
        .splits
        .iter()
        .take(SPLITS_MAX)
        .map(|&s| s.into())
        .collect();
    splits.sort_unstable();

    let mut stream = input.stream;
    for _ in 0..REQUESTS_MAX {
        let Some((framing, head_len)) = check_head(stream, &splits, max_header_bytes) else {
            // No complete head: the decoder still must not care how raw bytes are split.
            check_chunked(stream, &splits, max_body_bytes);
            return;
        };
        let body = &stream[head_len..];
        let body_len = match framing {
            BodyFraming::None => 0,
            BodyFraming::Length(n) => usize::try_from(n).unwrap_or(usize::MAX).min(body.len()),
            BodyFraming::Chunked => match check_chunked(body, &splits, max_body_bytes) {
                Some(consumed) => consumed,
                None => return,
            },
        };
        stream = &body[body_len..];
        if stream.is_empty() {
            return;
        }
    }
});

/// Checks the prefix property for the request at the start of `stream`; returns its framing and
/// head length when the head is complete and valid.
fn check_head(stream: &[u8], splits: &[usize], limit: usize) -> Option<(BodyFraming, usize)> {
    let whole = parse_head(stream, limit);
    assert_eq!(
        whole,
        parse_head(stream, limit),
        "parse_head is deterministic"
    );
    let first = first_answer(stream, splits, limit);
    match (&first, &whole) {
        (Ok(HeadParse::Partial), _) => assert_eq!(whole, Ok(HeadParse::Partial)),
        (Ok(HeadParse::Complete { .. }), _) => assert_eq!(first, whole),
        (Err(seen), Err(all)) => assert!(seen == all || seen.status == 431, "{seen:?} {all:?}"),
        (Err(seen), Ok(_)) => panic!("a prefix failed with {seen:?} but the whole did not"),
    }
    match whole {
        Ok(HeadParse::Complete { head, head_len }) => {
            assert!((1..=stream.len().min(limit)).contains(&head_len));
            Some((head.body, head_len))
        }
        Ok(HeadParse::Partial) => {
            assert!(stream.len() < limit);
            None
        }
        Err(error) => {
            assert!(matches!(error.status.code(), 400 | 431 | 505), "{error:?}");
            None
        }
    }
}

/// The first answer that is not `Partial` as `stream` arrives cut at `splits`, then whole.
fn first_answer(stream: &[u8], splits: &[usize], limit: usize) -> Result<HeadParse, HttpError> {
    let ends = splits
        .iter()
        .map(|&s| s.min(stream.len()))
        .chain([stream.len()]);
    for end in ends {
        let answer = parse_head(&stream[..end], limit);
        if answer != Ok(HeadParse::Partial) {
            return answer;
        }
    }
    Ok(HeadParse::Partial)
}

/// Feeds `body` whole and in pieces cut at `splits`; both must agree. Returns the bytes the body
/// took when it ended cleanly.
fn check_chunked(body: &[u8], splits: &[usize], max_body_bytes: u64) -> Option<usize> {
    let mut whole_decoder = ChunkedDecoder::new(max_body_bytes);
    let mut whole_out = Vec::new();
    let whole = whole_decoder.decode(body, &mut whole_out);

    let mut decoder = ChunkedDecoder::new(max_body_bytes);
    let mut out = Vec::new();
    let mut consumed_total = 0usize;
    let mut start = 0usize;
    let mut pieces = Ok(0);
    for end in splits
        .iter()
        .map(|&s| s.min(body.len()))
        .chain([body.len()])
    {
        let piece = &body[start..end.max(start)];
        start = end.max(start);
        match decoder.decode(piece, &mut out) {
            Ok(consumed) => {
                assert!(consumed == piece.len() || decoder.is_done());
                consumed_total += consumed;
                pieces = Ok(consumed_total);
            }
            Err(error) => {
                assert_eq!(decoder.decode(b"0\r\n\r\n", &mut out), Err(error.clone()));
                pieces = Err(error);
                break;
            }
        }
    }
    assert_eq!(pieces, whole, "pieces and whole disagree");
    assert_eq!(out, whole_out);
    assert_eq!(decoder.is_done(), whole_decoder.is_done());
    assert_eq!(decoder.decoded_bytes(), whole_out.len() as u64);
    assert!(decoder.decoded_bytes() <= max_body_bytes);
    match whole {
        Ok(consumed) if whole_decoder.is_done() => Some(consumed),
        Ok(_) => None,
        Err(error) => {
            assert!(matches!(error.status.code(), 400 | 413 | 431), "{error:?}");
            None
        }
    }
}
