//! The IPFS Trustless Gateway rules (ipfs/specs `http-gateways/trustless-gateway.md`) for
//! `/ipfs/{cid}`: which block a request names, which response format it gets, and the exact
//! headers and CAR framing of that response.
//!
//! Owns: mapping `/ipfs/{cid}` onto the block store's own requests (a sha2-256 CID is the
//! block of that hash, so GET/HEAD/PUT/DELETE become the `/block/<hash>` requests), content
//! negotiation (`?format=`, `Accept`, the CAR parameters `version`, `order`, `dups` and
//! `dag-scope`), the response headers (`Content-Type`, `ETag` from the CID,
//! `Content-Disposition`, `Content-Location`, `Vary`, `X-Content-Type-Options`, immutable
//! caching), the CARv1 bytes around a block, and whether a CAR of a given scope can be
//! answered with the root block alone.
//!
//! It is a *trustless* gateway: it never deserializes. A request that does not ask for
//! `application/vnd.ipld.raw` or `application/vnd.ipld.car` is refused (400 without `Accept`
//! and `format`, as the spec says for a strict trustless gateway; 406 when `Accept` names
//! nothing this gateway produces). A CAR holds the root block only: `dag-scope=block`, or any
//! scope whose DAG is that one block (a raw block, a dag-pb node without links, an identity
//! CID); a larger DAG is refused before the status line rather than sent incomplete.
//!
//! Invariants: every function is pure and total over request bytes (no I/O, no clock, no panic
//! on input); the bytes a response names (ETag, Content-Length, CAR sections) are computed from
//! the same [`ContentId`] and block length the worker sends.
//!
//! Must never: serve a block under a CID whose multihash is not its SHA-256 (the `cid` module
//! guarantees the address), or put an identity CID's virtual block into a CAR (the spec forbids
//! it; the data is in the CID).
//!
//! Files: `mod.rs` (here) the request types and the router; `negotiate.rs` content negotiation
//! (`?format=`, `Accept`, CAR parameters); `answer.rs` the response headers; `car.rs` the CARv1
//! bytes and the dag-pb link check; `tests.rs`.

mod answer;
mod car;
mod negotiate;

#[cfg(test)]
mod tests;

pub use answer::*;
pub use car::*;
pub use negotiate::*;

use crate::cid::{Address, CidError, ContentId, CODEC_DAG_PB, CODEC_RAW};
use crate::hash::BlockHash;
use crate::http::{self, Method, Persistence};

/// `Cache-Control` the spec requires for every immutable `/ipfs/` response.
pub const CACHE_CONTROL_IMMUTABLE: &[u8] = b"public, max-age=29030400, immutable";
/// Methods `/ipfs/{cid}` answers.
pub const IPFS_METHODS: &str = "GET, HEAD, PUT, DELETE";
/// Longest `Content-Location` sent; a longer one (a long query) is left out (it is a SHOULD),
/// which keeps every response head within [`RESPONSE_PREFIX_BYTES_MAX`].
pub const CONTENT_LOCATION_BYTES_MAX: usize = 256;
/// Most bytes a stored block's response puts before the block: the head of a 200/206 and, for
/// a CAR, the CAR header and the block section's length and CID. The worker keeps this much
/// room in front of every read buffer.
pub const RESPONSE_PREFIX_BYTES_MAX: usize = 960;

/// The response format a read asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// `application/vnd.ipld.raw`: the block's bytes.
    Raw,
    /// `application/vnd.ipld.car; version=1`: a CARv1 stream.
    Car { scope: DagScope, dups: Dups },
}

/// `dag-scope`: how much of the DAG below the root a CAR carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DagScope {
    Block,
    Entity,
    All,
}

/// CAR `dups`: whether repeated blocks are sent again (moot for one block; echoed back).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dups {
    Yes,
    No,
}

/// Where the format came from: the URL (`?format=`), or only the `Accept` header (then the
/// response names the URL with `format` in `Content-Location`, for caches).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FormatSource {
    Query,
    Accept,
}

/// The outcome of content negotiation for a read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Negotiated {
    pub format: Format,
    pub source: FormatSource,
}

/// What an `/ipfs/{cid}` request asks of the store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IpfsRequest {
    /// GET or HEAD of a stored block.
    Read {
        hash: BlockHash,
        head_only: bool,
        negotiated: Negotiated,
    },
    /// GET or HEAD of an identity CID: answered from the CID, the store is not asked.
    ReadInline {
        head_only: bool,
        negotiated: Negotiated,
    },
    /// PUT: store the body if its SHA-256 is `hash`.
    Put {
        hash: BlockHash,
    },
    Delete {
        hash: BlockHash,
    },
}

/// A refused request: status, short reason, and the `Allow` header of a 405.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub allow: Option<&'static str>,
}

pub(super) const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal {
        status,
        reason,
        allow: None,
    }
}

pub(super) const NO_FORMAT: Refusal = refuse(
    400,
    "trustless gateway: send Accept: application/vnd.ipld.raw or application/vnd.ipld.car \
     (or ?format=raw / ?format=car)",
);
pub(super) const NOT_ACCEPTABLE: Refusal = refuse(
    406,
    "trustless gateway: only application/vnd.ipld.raw and application/vnd.ipld.car; \
     version=1 (order=dfs or unk, dups=y or n) are produced",
);

/// Routes `/ipfs/<rest>` (`rest` is the path after `/ipfs/`).
pub fn route(
    method: Method,
    rest: &[u8],
    query: &[u8],
    accept: Option<&[u8]>,
) -> Result<IpfsRequest, Refusal> {
    let (cid_text, below) = match rest.iter().position(|&b| b == b'/') {
        Some(at) => (rest.get(..at).unwrap_or(&[]), true),
        None => (rest, false),
    };
    let cid = ContentId::parse(cid_text).map_err(cid_refusal)?;
    if below {
        return Err(refuse(
            400,
            "content paths below a CID are not supported: request /ipfs/{cid}",
        ));
    }
    let address = cid.address();
    let request = match (method, address) {
        (Method::Get | Method::Head, _) => {
            let negotiated = negotiate(query, accept)?;
            let head_only = method == Method::Head;
            match address {
                Address::Stored(hash) => IpfsRequest::Read {
                    hash,
                    head_only,
                    negotiated,
                },
                Address::Inline => IpfsRequest::ReadInline {
                    head_only,
                    negotiated,
                },
            }
        }
        (Method::Put | Method::Delete, Address::Inline) => {
            return Err(refuse(
                400,
                "an identity CID carries its data inline: nothing to store or delete",
            ));
        }
        (Method::Put, Address::Stored(hash)) => IpfsRequest::Put { hash },
        (Method::Delete, Address::Stored(hash)) => IpfsRequest::Delete { hash },
        _ => {
            return Err(Refusal {
                status: 405,
                reason: "method not allowed",
                allow: Some(IPFS_METHODS),
            });
        }
    };
    Ok(request)
}

pub(super) fn cid_refusal(error: CidError) -> Refusal {
    refuse(400, error.reason())
}
