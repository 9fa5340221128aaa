//! The requests a simulated client can make, as data: what was asked ([`Kind`], [`RangeReq`])
//! and what a request in flight holds ([`Req`]: its model tickets and when it started).
//!
//! Owns: the request vocabulary shared by the workload (which draws, serialises and sends
//! requests) and the oracle (which judges their answers). Never does: draw randomness, touch
//! the network, or judge an answer. Invariant: [`Kind::code`] and [`Kind::name`] are stable,
//! since the trace hash and the status table are built from them.

use engine::hash::BlockHash;

use crate::model::{Model, ReadTicket, WriteTicket};
use crate::trace::hash_prefix;

#[derive(Clone, Debug)]
pub enum Kind {
    Put {
        content: usize,
        path_hash: bool,
    },
    /// `PUT /block/<claimed>` with a body that hashes to something else: 422.
    PutWrongHash {
        body_seed: u64,
        claimed: BlockHash,
    },
    Get {
        hash: BlockHash,
        if_none_match: bool,
    },
    Head {
        hash: BlockHash,
    },
    Range {
        hash: BlockHash,
        spec: RangeReq,
    },
    Delete {
        hash: BlockHash,
    },
    /// A write without the right token (auth on): 401.
    Unauthorized {
        hash: BlockHash,
        delete: bool,
        token: BadToken,
    },
    /// `GET /health` with a head of exactly `max_header_bytes` (200) or one byte more (431).
    HeadLimit {
        edge: Edge,
    },
    /// A chunked `PUT /block` whose pieces each fit but add up to one byte over the largest
    /// block: 413.
    ChunkedOverLimit,
    /// A chunked `PUT /block` whose pieces add up to exactly the largest block (one content per
    /// run): stored like any PUT (201, then 200 as a duplicate), never refused with 413.
    ChunkedAtLimit {
        content: usize,
    },
    Garbage {
        seed: u64,
    },
    BadHex,
    Oversize,
    UnknownPath,
    NotAllowed {
        hash: BlockHash,
    },
    Health,
    Stats,
    Metrics,
    /// `POST /blocks/missing`: the listed addresses that are not stored, in input order.
    Missing {
        hashes: Vec<BlockHash>,
    },
    /// `GET /blocks?after=&limit=`: stored addresses in ascending order.
    List {
        after: Option<BlockHash>,
        limit: u16,
    },
}

impl Kind {
    pub fn is_head(&self) -> bool {
        matches!(self, Kind::Head { .. })
    }

    /// Short name for the trace and the status table.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Put { .. } => "put",
            Kind::PutWrongHash { .. } => "put-wrong-hash",
            Kind::Get { .. } => "get",
            Kind::Head { .. } => "head",
            Kind::Range { .. } => "range",
            Kind::Delete { .. } => "delete",
            Kind::Unauthorized { .. } => "unauthorized",
            Kind::HeadLimit { .. } => "head-limit",
            Kind::ChunkedOverLimit => "chunked-over-limit",
            Kind::ChunkedAtLimit { .. } => "chunked-at-limit",
            Kind::Garbage { .. } => "garbage",
            Kind::BadHex => "bad-hex",
            Kind::Oversize => "oversize",
            Kind::UnknownPath => "unknown-path",
            Kind::NotAllowed { .. } => "not-allowed",
            Kind::Health => "health",
            Kind::Missing { .. } => "missing",
            Kind::List { .. } => "list",
            Kind::Stats => "stats",
            Kind::Metrics => "metrics",
        }
    }

    /// The prefix of the address the request is about (for the trace), 0 if none.
    pub fn target(&self, model: &Model) -> u64 {
        match self {
            Kind::Put { content, .. } | Kind::ChunkedAtLimit { content } => {
                hash_prefix(&model.contents[*content].0)
            }
            Kind::Get { hash, .. }
            | Kind::Head { hash }
            | Kind::Range { hash, .. }
            | Kind::Delete { hash }
            | Kind::Unauthorized { hash, .. }
            | Kind::NotAllowed { hash } => hash_prefix(hash),
            Kind::PutWrongHash { claimed, .. } => hash_prefix(claimed),
            _ => 0,
        }
    }

    pub fn code(&self) -> u64 {
        match self {
            Kind::Put { .. } => 1,
            Kind::PutWrongHash { .. } => 2,
            Kind::Get { .. } => 3,
            Kind::Head { .. } => 4,
            Kind::Range { .. } => 5,
            Kind::Delete { .. } => 6,
            Kind::Unauthorized { .. } => 7,
            Kind::Garbage { .. } => 8,
            Kind::BadHex => 9,
            Kind::Oversize => 10,
            Kind::UnknownPath => 11,
            Kind::NotAllowed { .. } => 12,
            Kind::Health => 13,
            Kind::Missing { .. } => 16,
            Kind::List { .. } => 17,
            Kind::Stats => 14,
            Kind::Metrics => 15,
            Kind::HeadLimit { .. } => 18,
            Kind::ChunkedOverLimit => 19,
            Kind::ChunkedAtLimit { .. } => 20,
        }
    }
}

/// How a write's credentials are wrong (auth on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadToken {
    /// No `Authorization` header.
    Missing,
    /// Another token altogether.
    Other,
    /// The right token less its last byte.
    Prefix,
    /// The right token and one byte more.
    OneMore,
}

impl BadToken {
    /// The token sent, if any, given the right one.
    pub fn sent(self, right: &[u8]) -> Option<Vec<u8>> {
        match self {
            BadToken::Missing => None,
            BadToken::Other => Some(b"not-the-token".to_vec()),
            BadToken::Prefix => Some(right[..right.len() - 1].to_vec()),
            BadToken::OneMore => Some([right, b"x"].concat()),
        }
    }
}

/// Which side of a limit a boundary probe stands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Exactly at the limit: accepted.
    AtLimit,
    /// One byte over it: refused.
    OverByOne,
}

/// A `Range` request: `bytes=a-b`, `bytes=a-` or `bytes=-n`.
#[derive(Clone, Copy, Debug)]
pub enum RangeReq {
    FromTo(u64, u64),
    From(u64),
    Suffix(u64),
}

impl RangeReq {
    pub fn header(&self) -> String {
        match *self {
            RangeReq::FromTo(a, b) => format!("Range: bytes={a}-{b}"),
            RangeReq::From(a) => format!("Range: bytes={a}-"),
            RangeReq::Suffix(n) => format!("Range: bytes=-{n}"),
        }
    }

    /// RFC 9110, independently of the engine: `Some(Some((a, b)))` a 206 of `a..=b`,
    /// `Some(None)` a 416, `None` the whole block with 200.
    pub fn expect(&self, len: u64) -> Option<Option<(u64, u64)>> {
        match *self {
            RangeReq::FromTo(a, b) if b < a => None,
            RangeReq::FromTo(a, _) | RangeReq::From(a) if a >= len => Some(None),
            RangeReq::FromTo(a, b) => Some(Some((a, b.min(len - 1)))),
            RangeReq::From(a) => Some(Some((a, len - 1))),
            RangeReq::Suffix(0) => Some(None),
            RangeReq::Suffix(n) => Some(Some((len.saturating_sub(n), len - 1))),
        }
    }
}

/// One request a client sent (or is sending).
#[derive(Debug)]
pub struct Req {
    pub serial: u64,
    pub kind: Kind,
    pub write: Option<WriteTicket>,
    pub read: Option<ReadTicket>,
    /// `POST /blocks/missing`: one read ticket per listed address.
    pub reads: Vec<ReadTicket>,
    pub started_at: u64,
    /// The server closes the connection after answering this one.
    pub ends_conn: bool,
}
