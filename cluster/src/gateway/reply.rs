//! Building the gateway's responses: plain-text errors and block answers with the node's headers.
//!
//! Owns the response shapes only; it never decides a status on its own.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::block_hash::BlockHash;

pub type Reply = Response<Full<Bytes>>;
/// A reply that ends a request early (boxed: a `Reply` is large for an `Err`).
pub type Refusal = Box<Reply>;

pub fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Box::new(text(status, message))
}

/// A short `text/plain` answer (errors and `ok`), ending in a newline unless empty.
pub fn text(status: StatusCode, message: impl Into<String>) -> Reply {
    let mut message = message.into();
    if !message.is_empty() && !message.ends_with('\n') {
        message.push('\n');
    }
    let mut r = Response::new(Full::new(Bytes::from(message)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// A body with a content type.
pub fn body(status: StatusCode, content_type: &'static str, bytes: Bytes) -> Reply {
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The answer to a PUT the cluster accepted: the node's status, Location, ETag, the hash.
pub fn stored(created: bool, hash: &BlockHash) -> Reply {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut r = body(status, "text/plain", Bytes::from(hash.to_string()));
    let h = r.headers_mut();
    h.insert(header::LOCATION, value(format!("/block/{hash}")));
    h.insert(header::ETAG, etag(hash));
    r
}

/// GET's headers for a block of `len` bytes (HEAD sends them with no body).
pub fn block_headers(r: &mut Reply, hash: &BlockHash) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ETAG, etag(hash));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

pub fn etag(hash: &BlockHash) -> HeaderValue {
    value(format!("\"{hash}\""))
}

/// A header value from text the gateway made itself (always visible ASCII).
pub fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("gateway-made header values are ASCII")
}
