//! Issuing a request: its bytes (with a seeded style: legacy paths, upper-case hex, chunked
//! bodies, `Connection: close`, HTTP/1.0), the model's ticket for it, and its place in the
//! client's queue of requests waiting for an answer.
//!
//! Owns: the serialisation of every [`Kind`] into HTTP bytes. Never does: send the bytes (that
//! is [`super::client`]) or choose the request (that is [`super::draw`]). Invariant: every
//! request that reads or writes an address holds the model's ticket for it until answered.

use rand::RngExt;

use super::{Ctx, Workload, BLOCK_MAX_BYTES, SIZE_EDGES};
use crate::http_client::{self, Style};
use crate::request::{Edge, Kind, Req};

/// The pieces of a chunked probe: each well under the limit, their sum exactly at it or one
/// byte over it.
const CHUNK_PROBE_BYTES: usize = 65_536;
const _: () = assert!(CHUNK_PROBE_BYTES < BLOCK_MAX_BYTES);

/// `GET /health` padded (one `X-Pad` field) to a head of exactly `max_header_bytes`, or one
/// byte more.
fn head_at(max_header_bytes: usize, edge: Edge, style: &Style) -> Vec<u8> {
    let pad_field = |pad: usize| vec![format!("X-Pad: {}", "a".repeat(pad))];
    let bare = http_client::bodyless("GET", "/health", style, None, &pad_field(0)).len();
    let want = match edge {
        Edge::AtLimit => max_header_bytes,
        Edge::OverByOne => max_header_bytes + 1,
    };
    assert!(
        want > bare,
        "a head limit of {max_header_bytes} bytes leaves no room to pad"
    );
    let bytes = http_client::bodyless("GET", "/health", style, None, &pad_field(want - bare));
    assert_eq!(bytes.len(), want);
    bytes
}

impl Workload {
    /// Serialises `kind`, registers it with the model, queues its bytes.
    pub(super) fn issue(&mut self, id: usize, kind: Kind, close: bool, ctx: &mut Ctx<'_>) {
        let style = Style {
            legacy_path: ctx.rng.random_bool(0.1),
            upper_hex: ctx.rng.random_bool(0.1),
            chunked: ctx.rng.random_bool(0.1),
            close,
            http10: close && ctx.rng.random_bool(0.3),
            chunk_bytes: ctx.rng.random_range(1..=65_536),
        };
        let token = ctx.opts.auth_token.as_deref();
        let mut ends_conn = close;
        let mut write = None;
        let mut read = None;
        let mut reads = Vec::new();
        let bytes = match &kind {
            Kind::Put { content, path_hash } => {
                let (hash, body) = &ctx.model.contents[*content];
                let hash = *hash;
                if let Some(i) = SIZE_EDGES.iter().position(|&e| e == body.len()) {
                    self.edges_put[i] = true;
                }
                let b = http_client::put(body, path_hash.then_some(&hash), &style, token);
                write = Some(ctx.model.begin_write(hash));
                b
            }
            Kind::PutWrongHash { body_seed, claimed } => {
                let body = body_seed.to_le_bytes().repeat(3);
                http_client::put(&body, Some(claimed), &style, token)
            }
            Kind::Get {
                hash,
                if_none_match,
            } => {
                read = Some(ctx.model.begin_read(*hash));
                let extra = if *if_none_match {
                    vec![format!("If-None-Match: \"{}\"", hash.to_hex())]
                } else {
                    Vec::new()
                };
                http_client::bodyless(
                    "GET",
                    &http_client::read_path(hash, &style),
                    &style,
                    None,
                    &extra,
                )
            }
            Kind::Head { hash } => {
                read = Some(ctx.model.begin_read(*hash));
                http_client::bodyless(
                    "HEAD",
                    &http_client::read_path(hash, &style),
                    &style,
                    None,
                    &[],
                )
            }
            Kind::Range { hash, spec } => {
                read = Some(ctx.model.begin_read(*hash));
                http_client::bodyless(
                    "GET",
                    &http_client::read_path(hash, &style),
                    &style,
                    None,
                    &[spec.header()],
                )
            }
            Kind::Delete { hash } => {
                write = Some(ctx.model.begin_delete(*hash));
                http_client::bodyless(
                    "DELETE",
                    &http_client::hash_path(hash, &style),
                    &style,
                    token,
                    &[],
                )
            }
            Kind::Unauthorized {
                hash,
                delete,
                token: bad,
            } => {
                let sent = bad.sent(token.unwrap_or(b"sim-token"));
                let auth = sent.as_deref();
                if *delete {
                    http_client::bodyless(
                        "DELETE",
                        &http_client::hash_path(hash, &style),
                        &style,
                        auth,
                        &[],
                    )
                } else {
                    let style = Style {
                        chunked: false,
                        ..style
                    };
                    http_client::put(b"unauthorized", None, &style, auth)
                }
            }
            Kind::Garbage { seed } => {
                ends_conn = true;
                let mut g = seed.to_le_bytes().repeat(4);
                g.push(b' ');
                g.extend_from_slice(b"\r\n\r\n");
                g
            }
            Kind::BadHex => http_client::bodyless("GET", "/block/zz", &style, None, &[]),
            Kind::Oversize => {
                ends_conn = true;
                // Only the head: the server must answer 413 without reading a body.
                http_client::bodyless(
                    "PUT",
                    "/block",
                    &style,
                    token,
                    &[format!("Content-Length: {}", BLOCK_MAX_BYTES + 1)],
                )
            }
            Kind::UnknownPath => http_client::bodyless("GET", "/nowhere", &style, None, &[]),
            Kind::HeadLimit { edge } => {
                ends_conn |= *edge == Edge::OverByOne;
                head_at(ctx.opts.max_header_bytes, *edge, &style)
            }
            Kind::ChunkedOverLimit => {
                ends_conn = true;
                let style = Style {
                    chunked: true,
                    http10: false,
                    chunk_bytes: CHUNK_PROBE_BYTES,
                    ..style
                };
                http_client::put(&[0x5a; BLOCK_MAX_BYTES + 1], None, &style, token)
            }
            Kind::ChunkedAtLimit { content } => {
                let (hash, body) = &ctx.model.contents[*content];
                assert_eq!(body.len(), BLOCK_MAX_BYTES, "a probe exactly at the limit");
                let style = Style {
                    chunked: true,
                    http10: false,
                    chunk_bytes: CHUNK_PROBE_BYTES,
                    ..style
                };
                let b = http_client::put(body, None, &style, token);
                write = Some(ctx.model.begin_write(*hash));
                b
            }
            Kind::NotAllowed { hash } => http_client::bodyless(
                "POST",
                &http_client::hash_path(hash, &style),
                &style,
                None,
                &["Content-Length: 0".to_string()],
            ),
            Kind::Health => http_client::bodyless("GET", "/health", &style, None, &[]),
            Kind::Missing { hashes } => {
                let mut body = Vec::new();
                for h in hashes {
                    reads.push(ctx.model.begin_read(*h));
                    body.extend_from_slice(h.to_hex().as_bytes());
                    let eol: &[u8] = if ctx.rng.random_bool(0.5) {
                        b"\n"
                    } else {
                        b"\r\n"
                    };
                    body.extend_from_slice(eol);
                }
                let mut b = http_client::bodyless(
                    "POST",
                    "/blocks/missing",
                    &style,
                    None,
                    &[format!("Content-Length: {}", body.len())],
                );
                b.extend_from_slice(&body);
                b
            }
            Kind::List { after, limit } => {
                reads = ctx.model.begin_reads_after(after.as_ref());
                let mut path = format!("/blocks?limit={limit}");
                if let Some(a) = after {
                    path.push_str(&format!("&after={}", a.to_hex()));
                }
                http_client::bodyless("GET", &path, &style, None, &[])
            }
            Kind::Stats => {
                reads = ctx.model.begin_reads_after(None);
                http_client::bodyless("GET", "/stats", &style, None, &[])
            }
            Kind::Metrics => {
                reads = ctx.model.begin_reads_after(None);
                http_client::bodyless("GET", "/metrics", &style, None, &[])
            }
        };
        self.serial += 1;
        ctx.trace.ev(
            ctx.now,
            "request",
            [id as u64, self.serial, kind.code(), kind.target(ctx.model)],
        );
        let c = &mut self.clients[id];
        c.out.extend_from_slice(&bytes);
        c.waiting.push_back(Req {
            serial: self.serial,
            kind,
            write,
            read,
            reads,
            started_at: ctx.now,
            ends_conn,
        });
    }
}
