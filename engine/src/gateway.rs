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

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal {
        status,
        reason,
        allow: None,
    }
}

const NO_FORMAT: Refusal = refuse(
    400,
    "trustless gateway: send Accept: application/vnd.ipld.raw or application/vnd.ipld.car \
     (or ?format=raw / ?format=car)",
);
const NOT_ACCEPTABLE: Refusal = refuse(
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

fn cid_refusal(error: CidError) -> Refusal {
    refuse(400, error.reason())
}

/// The format from `?format=` (which wins, as the spec says) or else from `Accept`, with the
/// CAR parameters from the chosen `Accept` element and the `car-*`/`dag-scope` query
/// parameters (which win).
pub fn negotiate(query: &[u8], accept: Option<&[u8]>) -> Result<Negotiated, Refusal> {
    let params = QueryParams::parse(query)?;
    let accepted = match accept {
        Some(value) => best_accepted(value),
        None => None,
    };
    let (kind, source) = match (params.format, accepted) {
        (Some(kind), _) => (kind, FormatSource::Query),
        (None, Some(choice)) => (choice.kind, FormatSource::Accept),
        (None, None) if accept.is_none() => return Err(NO_FORMAT),
        (None, None) => return Err(NOT_ACCEPTABLE),
    };
    let format = match kind {
        Kind::Raw => Format::Raw,
        Kind::Car => {
            let from_accept = accepted
                .filter(|choice| choice.kind == Kind::Car)
                .and_then(|choice| choice.dups);
            Format::Car {
                scope: params.scope.unwrap_or(DagScope::All),
                dups: params.dups.or(from_accept).unwrap_or(Dups::No),
            }
        }
    };
    Ok(Negotiated { format, source })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Raw,
    Car,
}

/// The `/ipfs/` query parameters that matter (others, like `filename`, are ignored).
#[derive(Default)]
struct QueryParams {
    format: Option<Kind>,
    scope: Option<DagScope>,
    dups: Option<Dups>,
}

impl QueryParams {
    fn parse(query: &[u8]) -> Result<QueryParams, Refusal> {
        let mut params = QueryParams::default();
        for (name, value) in http::query_pairs(query) {
            match name {
                b"format" => {
                    params.format = Some(match value {
                        b"raw" => Kind::Raw,
                        b"car" => Kind::Car,
                        _ => {
                            return Err(refuse(
                                400,
                                "unsupported format: this trustless gateway serves \
                                 format=raw and format=car",
                            ));
                        }
                    });
                }
                b"dag-scope" => {
                    params.scope = Some(match value {
                        b"block" => DagScope::Block,
                        b"entity" => DagScope::Entity,
                        b"all" => DagScope::All,
                        _ => return Err(refuse(400, "dag-scope must be block, entity or all")),
                    });
                }
                // A byte range of the entity implies dag-scope=entity.
                b"entity-bytes" => {
                    params.scope.get_or_insert(DagScope::Entity);
                }
                b"car-version" if value != b"1" => {
                    return Err(refuse(400, "only CAR version 1 is produced"));
                }
                b"car-order" if value != b"dfs" && value != b"unk" => {
                    return Err(refuse(400, "car-order must be dfs or unk"));
                }
                b"car-dups" => {
                    params.dups = Some(match value {
                        b"y" => Dups::Yes,
                        b"n" => Dups::No,
                        _ => return Err(refuse(400, "car-dups must be y or n")),
                    });
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

/// One acceptable element of an `Accept` header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Choice {
    kind: Kind,
    dups: Option<Dups>,
    /// Quality in thousandths (RFC 9110 §12.4.2).
    q: u16,
}

/// The element of `Accept` with the highest `q` (the first on a tie) that names a format this
/// gateway produces, in a variant it can produce. Wildcards choose nothing: a trustless client
/// names the format it verifies.
fn best_accepted(value: &[u8]) -> Option<Choice> {
    let mut best: Option<Choice> = None;
    for element in value.split(|&b| b == b',') {
        let Some(choice) = parse_media_range(element) else {
            continue;
        };
        if choice.q > 0 && best.is_none_or(|b| choice.q > b.q) {
            best = Some(choice);
        }
    }
    best
}

fn parse_media_range(element: &[u8]) -> Option<Choice> {
    let mut parts = element.split(|&b| b == b';');
    let media_type = trim(parts.next()?);
    let kind = if media_type.eq_ignore_ascii_case(b"application/vnd.ipld.raw") {
        Kind::Raw
    } else if media_type.eq_ignore_ascii_case(b"application/vnd.ipld.car") {
        Kind::Car
    } else {
        return None;
    };
    let mut choice = Choice {
        kind,
        dups: None,
        q: 1000,
    };
    for param in parts {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(at) => (trim(param.get(..at)?), unquote(trim(param.get(at + 1..)?))),
            None => (trim(param), &b""[..]),
        };
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        let car = kind == Kind::Car;
        // A CAR variant this gateway cannot produce makes the element unacceptable.
        let unproducible = (car && is(b"version") && value != b"1")
            || (car && is(b"order") && value != b"dfs" && value != b"unk");
        if unproducible {
            return None;
        }
        if is(b"q") {
            choice.q = parse_quality(value)?;
        } else if car && is(b"dups") {
            choice.dups = Some(match value {
                b"y" => Dups::Yes,
                b"n" => Dups::No,
                _ => return None,
            });
        }
    }
    Some(choice)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn parse_quality(value: &[u8]) -> Option<u16> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(at) => (value.get(..at)?, value.get(at + 1..)?),
        None => (value, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        let digit = fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
        thousandths = thousandths * 10 + digit;
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

fn unquote(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_prefix(b"\"")
        .and_then(|b| b.strip_suffix(b"\""))
        .unwrap_or(bytes)
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// The response to a read, as far as headers and body framing go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Answer<'a> {
    pub cid: &'a ContentId,
    pub negotiated: Negotiated,
    /// The request path (`/ipfs/<cid>` as sent) and query, for `Content-Location`.
    pub path: &'a [u8],
    pub query: &'a [u8],
}

impl Answer<'_> {
    /// The opaque part of the ETag: the CID's canonical text and the response format (spec:
    /// "etag should be based on requested CID and response type"; a CAR's names its scope).
    pub fn etag_opaque(&self) -> String {
        let cid = self.cid.canonical();
        match self.negotiated.format {
            Format::Raw => format!("{cid}.raw"),
            Format::Car { scope, .. } => format!("{cid}.car.{}", scope_name(scope)),
        }
    }

    /// True when an `If-None-Match` value matches this answer's ETag.
    pub fn not_modified(&self, if_none_match: Option<&[u8]>) -> bool {
        if_none_match.is_some_and(|v| http::if_none_match_matches(v, &self.etag_opaque()))
    }

    /// Appends the response head of a 200/206 (`content_range` for 206; `content_length`
    /// `None` for a HEAD whose length is not worked out).
    pub fn write_head(
        &self,
        out: &mut Vec<u8>,
        status: u16,
        content_range: Option<&[u8]>,
        content_length: Option<u64>,
        persistence: Persistence,
    ) {
        assert!(matches!(status, 200 | 206), "status {status}");
        assert_eq!(status == 206, content_range.is_some());
        let etag = format!("\"{}\"", self.etag_opaque());
        let cid = self.cid.canonical();
        let (content_type, disposition, ranges) = match self.negotiated.format {
            Format::Raw => (
                "application/vnd.ipld.raw".to_owned(),
                format!("attachment; filename=\"{cid}.bin\""),
                "bytes",
            ),
            Format::Car { dups, .. } => (
                format!(
                    "application/vnd.ipld.car; version=1; order=dfs; dups={}",
                    dups_name(dups)
                ),
                format!("attachment; filename=\"{cid}.car\""),
                "none",
            ),
        };
        let location = self.content_location();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("Content-Type", content_type.as_bytes()),
            ("ETag", etag.as_bytes()),
            ("Cache-Control", CACHE_CONTROL_IMMUTABLE),
            ("X-Content-Type-Options", b"nosniff"),
            ("Content-Disposition", disposition.as_bytes()),
            ("Vary", b"Accept"),
            ("Accept-Ranges", ranges.as_bytes()),
        ];
        if let Some(location) = &location {
            headers.push(("Content-Location", location));
        }
        if let Some(range) = content_range {
            headers.push(("Content-Range", range));
        }
        http::write_response_head(
            out,
            http::Status::new(status),
            &headers,
            content_length,
            persistence,
        );
    }

    /// Appends the head of a `304 Not Modified`.
    pub fn write_not_modified(&self, out: &mut Vec<u8>, persistence: Persistence) {
        let etag = format!("\"{}\"", self.etag_opaque());
        let headers: [(&str, &[u8]); 3] = [
            ("ETag", etag.as_bytes()),
            ("Cache-Control", CACHE_CONTROL_IMMUTABLE),
            ("Vary", b"Accept"),
        ];
        http::write_response_head(out, http::Status::NOT_MODIFIED, &headers, None, persistence);
    }

    /// `<path>?format=<f>[&<query>]` when the format came from `Accept` only.
    fn content_location(&self) -> Option<Vec<u8>> {
        if self.negotiated.source == FormatSource::Query {
            return None;
        }
        let format: &[u8] = match self.negotiated.format {
            Format::Raw => b"raw",
            Format::Car { .. } => b"car",
        };
        let mut out = self.path.to_vec();
        out.extend_from_slice(b"?format=");
        out.extend_from_slice(format);
        if !self.query.is_empty() {
            out.push(b'&');
            out.extend_from_slice(self.query);
        }
        (out.len() <= CONTENT_LOCATION_BYTES_MAX).then_some(out)
    }

    /// Whether the answer to this request is the root block alone: a raw response, a CAR of
    /// `dag-scope=block`, or a CAR whose DAG below the root is empty. A CAR of a DAG that
    /// goes on below the root is refused before the status line (never sent incomplete).
    pub fn check_block_suffices(&self, block: &[u8]) -> Result<(), Refusal> {
        let Format::Car { scope, .. } = self.negotiated.format else {
            return Ok(());
        };
        let leaf = match self.cid.codec() {
            CODEC_RAW => true,
            CODEC_DAG_PB => !dag_pb_has_links(block),
            _ => false,
        };
        if scope == DagScope::Block || leaf {
            Ok(())
        } else {
            Err(refuse(
                400,
                "this gateway sends CARs of the root block only: this DAG has links (or a \
                 codec it does not walk), so ask dag-scope=block, or fetch each block with \
                 format=raw",
            ))
        }
    }
}

fn scope_name(scope: DagScope) -> &'static str {
    match scope {
        DagScope::Block => "block",
        DagScope::Entity => "entity",
        DagScope::All => "all",
    }
}

fn dups_name(dups: Dups) -> &'static str {
    match dups {
        Dups::Yes => "y",
        Dups::No => "n",
    }
}

// ---------------------------------------------------------------------------------------------
// CARv1 (ipld/ipld specs/transport/car/carv1): varint(header length) | dag-cbor header
// {"roots": [cid], "version": 1} | per block: varint(cid length + data length) | cid | data.

/// Appends the CAR bytes that come before the root block's data: the header with `cid` as the
/// only root and, unless the CID is an identity CID (never a CAR block), the block section's
/// length and CID. The data of `data_len` bytes follows; nothing else does.
pub fn write_car_prefix(out: &mut Vec<u8>, cid: &ContentId, data_len: usize) {
    let mut cid_bytes = Vec::with_capacity(64);
    cid.write_bytes(&mut cid_bytes);
    let mut header = Vec::with_capacity(96);
    header.extend_from_slice(&[0xa2, 0x65]);
    header.extend_from_slice(b"roots");
    header.extend_from_slice(&[0x81, 0xd8, 0x2a]);
    // A CID link in dag-cbor: tag 42 over a byte string of 0x00 (identity multibase) + CID.
    push_cbor_bytes_head(&mut header, cid_bytes.len() + 1);
    header.push(0x00);
    header.extend_from_slice(&cid_bytes);
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    push_varint(out, header.len() as u64);
    out.extend_from_slice(&header);
    match cid.address() {
        Address::Stored(_) => {
            push_varint(out, (cid_bytes.len() + data_len) as u64);
            out.extend_from_slice(&cid_bytes);
        }
        Address::Inline => assert_eq!(data_len, 0, "an identity CID has no CAR block"),
    }
}

/// The length of the whole CAR: prefix and data.
pub fn car_len(cid: &ContentId, data_len: usize) -> u64 {
    let mut prefix = Vec::with_capacity(160);
    write_car_prefix(&mut prefix, cid, data_len);
    (prefix.len() + data_len) as u64
}

fn push_cbor_bytes_head(out: &mut Vec<u8>, len: usize) {
    assert!(len <= usize::from(u16::MAX), "a CID is short");
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=255 => out.extend_from_slice(&[0x58, len as u8]),
        _ => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// True if a dag-pb node (protobuf `PBNode`: field 1 Data, field 2 Links) lists a link. Reads
/// the top-level fields only; bytes that are not a well-formed message count as no links
/// found (the CAR then carries the block the CID names, which the client verifies).
pub fn dag_pb_has_links(block: &[u8]) -> bool {
    let mut rest = block;
    while !rest.is_empty() {
        let Some((key, after_key)) = read_varint(rest) else {
            return false;
        };
        let (field, wire_type) = (key >> 3, key & 7);
        if field == 2 && wire_type == 2 {
            return true;
        }
        rest = match wire_type {
            0 => match read_varint(after_key) {
                Some((_, after)) => after,
                None => return false,
            },
            2 => {
                let Some((len, after_len)) = read_varint(after_key) else {
                    return false;
                };
                match usize::try_from(len).ok().and_then(|n| after_len.get(n..)) {
                    Some(after) => after,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    false
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_RAW: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";
    const HELLO_V0: &str = "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4";

    fn raw(query: &str, accept: Option<&str>) -> Result<Negotiated, Refusal> {
        negotiate(query.as_bytes(), accept.map(str::as_bytes))
    }

    fn car(scope: DagScope, dups: Dups) -> Format {
        Format::Car { scope, dups }
    }

    #[test]
    fn format_comes_from_the_query_first_then_accept() {
        let from = |query, accept| raw(query, accept).map(|n| (n.format, n.source));
        assert_eq!(
            from("format=raw", Some("application/vnd.ipld.car")),
            Ok((Format::Raw, FormatSource::Query))
        );
        assert_eq!(
            from("", Some("application/vnd.ipld.raw")),
            Ok((Format::Raw, FormatSource::Accept))
        );
        assert_eq!(
            from("format=car", None),
            Ok((car(DagScope::All, Dups::No), FormatSource::Query))
        );
        assert_eq!(
            from(
                "dag-scope=block",
                Some("application/vnd.ipld.car; version=1; order=dfs; dups=y")
            ),
            Ok((car(DagScope::Block, Dups::Yes), FormatSource::Accept))
        );
        assert_eq!(
            from("format=car&car-dups=y&entity-bytes=0:*", None),
            Ok((car(DagScope::Entity, Dups::Yes), FormatSource::Query))
        );
    }

    #[test]
    fn accept_picks_the_highest_quality_variant_it_can_produce() {
        let format = |accept| raw("", Some(accept)).map(|n| n.format);
        assert_eq!(
            format("application/vnd.ipld.car;q=0.5, application/vnd.ipld.raw"),
            Ok(Format::Raw)
        );
        assert_eq!(
            format("application/vnd.ipld.raw;q=0.2, application/vnd.ipld.car;q=0.9"),
            Ok(car(DagScope::All, Dups::No))
        );
        assert_eq!(
            format("application/vnd.ipld.car;order=foo, application/vnd.ipld.raw;q=0.1"),
            Ok(Format::Raw)
        );
        assert_eq!(format("APPLICATION/VND.IPLD.RAW"), Ok(Format::Raw));
        assert_eq!(
            format("text/html, application/vnd.ipld.raw;q=0.5, */*;q=0.8"),
            Ok(Format::Raw)
        );
    }

    #[test]
    fn no_format_is_400_and_nothing_producible_is_406() {
        let status = |query, accept| raw(query, accept).map_err(|r| r.status);
        assert_eq!(status("", None), Err(400));
        assert_eq!(status("", Some("*/*")), Err(406));
        assert_eq!(status("", Some("text/html")), Err(406));
        assert_eq!(
            status("", Some("application/vnd.ipld.car; version=2")),
            Err(406)
        );
        assert_eq!(status("", Some("application/vnd.ipld.raw;q=0")), Err(406));
        assert_eq!(status("", Some("application/vnd.ipld.raw;q=2")), Err(406));
        assert_eq!(status("format=tar", None), Err(400));
        assert_eq!(status("format=car&car-version=2", None), Err(400));
        assert_eq!(status("format=car&car-order=foo", None), Err(400));
        assert_eq!(status("format=car&car-dups=maybe", None), Err(400));
        assert_eq!(status("format=car&dag-scope=everything", None), Err(400));
    }

    #[test]
    fn routes_map_cids_onto_block_requests() {
        let hash = BlockHash::of(b"hello world");
        let get = route(Method::Get, HELLO_V0.as_bytes(), b"format=raw", None);
        assert!(
            matches!(get, Ok(IpfsRequest::Read { hash: h, head_only: false, .. }) if h == hash)
        );
        let head = route(Method::Head, HELLO_RAW.as_bytes(), b"format=car", None);
        assert!(matches!(
            head,
            Ok(IpfsRequest::Read {
                head_only: true,
                ..
            })
        ));
        assert_eq!(
            route(Method::Put, HELLO_RAW.as_bytes(), b"", None),
            Ok(IpfsRequest::Put { hash })
        );
        assert_eq!(
            route(Method::Delete, HELLO_V0.as_bytes(), b"", None),
            Ok(IpfsRequest::Delete { hash })
        );
        assert!(matches!(
            route(Method::Get, b"bafkqaaa", b"format=raw", None),
            Ok(IpfsRequest::ReadInline {
                head_only: false,
                ..
            })
        ));
    }

    #[test]
    fn bad_routes_are_refused_with_the_spec_statuses() {
        let status = |method, rest: &str, query: &str| {
            route(method, rest.as_bytes(), query.as_bytes(), None).map_err(|r| r.status)
        };
        assert_eq!(status(Method::Get, "", "format=raw"), Err(400));
        assert_eq!(status(Method::Get, "not-a-cid", "format=raw"), Err(400));
        assert_eq!(status(Method::Put, "not-a-cid", ""), Err(400));
        let sha512 = format!("f01551340{}", "ab".repeat(64));
        assert_eq!(status(Method::Get, &sha512, "format=raw"), Err(400));
        assert_eq!(
            status(Method::Get, &format!("{HELLO_RAW}/a"), "format=car"),
            Err(400)
        );
        assert_eq!(status(Method::Put, "bafkqaaa", ""), Err(400));
        assert_eq!(status(Method::Get, HELLO_RAW, ""), Err(400));
        let post = route(Method::Post, HELLO_RAW.as_bytes(), b"", None).unwrap_err();
        assert_eq!((post.status, post.allow), (405, Some(IPFS_METHODS)));
    }

    #[test]
    fn raw_response_head_has_every_header_the_spec_asks() {
        let cid = ContentId::parse(HELLO_RAW.as_bytes()).unwrap();
        let path = format!("/ipfs/{HELLO_RAW}");
        let answer = Answer {
            cid: &cid,
            negotiated: raw("", Some("application/vnd.ipld.raw")).unwrap(),
            path: path.as_bytes(),
            query: b"x=1",
        };
        let mut out = Vec::new();
        answer.write_head(&mut out, 200, None, Some(11), Persistence::KeepOpen);
        let text = String::from_utf8(out).unwrap();
        for line in [
            "HTTP/1.1 200 OK\r\n".to_owned(),
            "Content-Type: application/vnd.ipld.raw\r\n".to_owned(),
            format!("ETag: \"{HELLO_RAW}.raw\"\r\n"),
            "Cache-Control: public, max-age=29030400, immutable\r\n".to_owned(),
            "X-Content-Type-Options: nosniff\r\n".to_owned(),
            format!("Content-Disposition: attachment; filename=\"{HELLO_RAW}.bin\"\r\n"),
            "Vary: Accept\r\n".to_owned(),
            format!("Content-Location: /ipfs/{HELLO_RAW}?format=raw&x=1\r\n"),
            "Content-Length: 11\r\n".to_owned(),
        ] {
            assert!(text.contains(&line), "{line:?} missing from {text}");
        }
        assert!(answer.not_modified(Some(format!("\"{HELLO_RAW}.raw\"").as_bytes())));
        assert!(!answer.not_modified(Some(format!("\"{HELLO_RAW}\"").as_bytes())));
    }

    #[test]
    fn the_longest_response_prefix_fits_its_bound() {
        // The longest canonical CID of a stored block: a 10-byte codec varint, base32.
        let long = format!("f01ffffffffffffffffff011220{}", "ab".repeat(32));
        let cid = ContentId::parse(long.as_bytes()).unwrap();
        assert!(cid.canonical().len() >= 70, "{}", cid.canonical());
        let path = format!("/ipfs/{}", cid.canonical());
        let query = "q".repeat(CONTENT_LOCATION_BYTES_MAX - path.len() - 12);
        for format in [Format::Raw, car(DagScope::Entity, Dups::Yes)] {
            let answer = Answer {
                cid: &cid,
                negotiated: Negotiated {
                    format,
                    source: FormatSource::Accept,
                },
                path: path.as_bytes(),
                query: query.as_bytes(),
            };
            assert!(
                answer.content_location().is_some(),
                "at the bound it is sent"
            );
            let mut out = Vec::new();
            let range: &[u8] = b"bytes 524287-524287/524288";
            match format {
                Format::Raw => {
                    let keep = Persistence::KeepAlive10;
                    answer.write_head(&mut out, 206, Some(range), Some(1), keep);
                }
                Format::Car { .. } => {
                    let keep = Persistence::KeepAlive10;
                    answer.write_head(&mut out, 200, None, Some(u64::MAX), keep);
                    write_car_prefix(&mut out, &cid, 524_288);
                }
            }
            assert!(
                out.len() <= RESPONSE_PREFIX_BYTES_MAX,
                "{} bytes",
                out.len()
            );
        }
        let long_query = "q".repeat(CONTENT_LOCATION_BYTES_MAX);
        let too_long = Answer {
            cid: &cid,
            negotiated: Negotiated {
                format: Format::Raw,
                source: FormatSource::Accept,
            },
            path: path.as_bytes(),
            query: long_query.as_bytes(),
        };
        assert_eq!(too_long.content_location(), None);
    }

    #[test]
    fn car_prefix_matches_a_carv1_written_by_the_js_car_library() {
        // @ipld/car CarWriter.create([cid]) + put({cid, bytes: "hello world"}), hex.
        let cid = ContentId::parse(HELLO_RAW.as_bytes()).unwrap();
        let mut out = Vec::new();
        write_car_prefix(&mut out, &cid, 11);
        out.extend_from_slice(b"hello world");
        let expected = "3aa265726f6f747381d82a58250001551220b94d27b9934d3e08a52e52d7da7dab\
                        fac484efe37a5380ee9088f7ace2efcde96776657273696f6e012f01551220b94d27\
                        b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde968656c6c6f\
                        20776f726c64";
        assert_eq!(hex(&out), expected);
        assert_eq!(car_len(&cid, 11), out.len() as u64);
        let identity = ContentId::parse(b"bafkqaaa").unwrap();
        let mut out = Vec::new();
        write_car_prefix(&mut out, &identity, 0);
        assert_eq!(
            hex(&out),
            "19a265726f6f747381d82a4500015500006776657273696f6e01"
        );
    }

    #[test]
    fn dag_pb_links_are_found_and_garbage_has_none() {
        // PBNode { Links: [PBLink { Hash: 34 bytes }], Data: 08 02 }
        let mut with_link = vec![0x12, 0x24, 0x0a, 0x22, 0x12, 0x20];
        with_link.extend_from_slice(&[7u8; 32]);
        with_link.extend_from_slice(&[0x0a, 0x02, 0x08, 0x02]);
        assert!(dag_pb_has_links(&with_link));
        assert!(!dag_pb_has_links(&[0x0a, 0x02, 0x08, 0x02]));
        assert!(!dag_pb_has_links(&[]));
        assert!(!dag_pb_has_links(&[0x0a, 0xff]));
        assert!(!dag_pb_has_links(&[0xff; 12]));
    }

    #[test]
    fn a_car_of_a_dag_with_links_is_refused_unless_block_scope() {
        let v0 = ContentId::parse(HELLO_V0.as_bytes()).unwrap();
        let mut node = vec![0x12, 0x24, 0x0a, 0x22, 0x12, 0x20];
        node.extend_from_slice(&[7u8; 32]);
        let answer = |scope| Answer {
            cid: &v0,
            negotiated: Negotiated {
                format: car(scope, Dups::No),
                source: FormatSource::Query,
            },
            path: b"/ipfs/x",
            query: b"",
        };
        assert_eq!(
            answer(DagScope::All)
                .check_block_suffices(&node)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(answer(DagScope::Block).check_block_suffices(&node), Ok(()));
        assert_eq!(
            answer(DagScope::All).check_block_suffices(&[0x0a, 0x00]),
            Ok(())
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
