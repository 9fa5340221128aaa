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

mod chunked;
mod evaluate;
mod fields;
mod head;
mod response;
#[cfg(test)]
mod tests;

pub use chunked::ChunkedDecoder;
pub use evaluate::{if_none_match_matches, parse_range, query_pairs, RangeSpec};
use fields::*;
use head::*;
pub use head::{
    parse_head, parse_head_with, BodyFraming, HeadBuffers, HeadParse, HttpError, RequestHead,
};
pub use response::{reason_phrase, write_response_head, Persistence, Status};

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
