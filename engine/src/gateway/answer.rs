//! The response headers of an `/ipfs/` read ([`Answer`]): `Content-Type`, `ETag` from the CID,
//! `Content-Disposition`, `Content-Location`, `Vary`, caching, and the body length. The bytes it
//! names are computed from the same CID and block length the worker sends.

use super::*;

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
    pub(super) fn content_location(&self) -> Option<Vec<u8>> {
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

pub(super) fn scope_name(scope: DagScope) -> &'static str {
    match scope {
        DagScope::Block => "block",
        DagScope::Entity => "entity",
        DagScope::All => "all",
    }
}

pub(super) fn dups_name(dups: Dups) -> &'static str {
    match dups {
        Dups::Yes => "y",
        Dups::No => "n",
    }
}
