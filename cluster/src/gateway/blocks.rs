//! Block requests through the gateway: PUT to R replicas with a write quorum W, GET and HEAD
//! from the first replica that has the block (verified), DELETE on every member or not at all.
//!
//! Owns the replication policy of a single request. It never retries a node within a request
//! beyond the read fallback, never writes to a node outside the block's replicas, and never
//! answers a GET with bytes whose SHA-256 is not the address.

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::StatusCode;
use tokio::sync::mpsc;

use super::reply::{self, Reply};
use super::Gateway;
use crate::block_hash::BlockHash;
use crate::node_client::{NodeError, Stored};

/// A node taking part in one request: its id and address, owned so tasks can outlive it.
#[derive(Clone)]
struct Target {
    id: String,
    addr: String,
}

impl Gateway {
    /// The nodes a block is read from, in order; recent failures go last.
    fn read_targets(&self, map: &crate::node_map::NodeMap, hash: &BlockHash) -> Vec<Target> {
        let order = self.placement(map).read_order(hash);
        let (mut good, suspect): (Vec<_>, Vec<_>) =
            order.into_iter().partition(|n| !self.is_suspect(&n.id));
        good.extend(suspect);
        good.into_iter()
            .map(|n| Target {
                id: n.id.clone(),
                addr: n.addr.clone(),
            })
            .collect()
    }

    /// PUT: write to every replica at once, answer after W acknowledgements; the remaining
    /// writes go on after the answer. Fewer than W: `503` naming the failures.
    pub(super) async fn put(&self, expected: Option<BlockHash>, body: Bytes) -> Reply {
        let hash = BlockHash::of(&body);
        if expected.is_some_and(|e| e != hash) {
            let message = format!("the body's SHA-256 is {hash}, not the address in the path");
            return reply::text(StatusCode::UNPROCESSABLE_ENTITY, message);
        }
        let map = match self.current_map() {
            Ok(map) => map,
            Err(refusal) => return *refusal,
        };
        let quorum = self.config.write_quorum;
        let replicas = self.placement(&map).replicas(&hash);
        if replicas.len() < quorum {
            let message = format!(
                "only {} nodes take writes; a PUT needs {quorum} acknowledgements",
                replicas.len()
            );
            return reply::text(StatusCode::SERVICE_UNAVAILABLE, message);
        }
        let (tx, mut rx) = mpsc::channel(replicas.len());
        for node in &replicas {
            let (tx, client, body) = (tx.clone(), self.nodes.clone(), body.clone());
            let target = Target {
                id: node.id.clone(),
                addr: node.addr.clone(),
            };
            tokio::spawn(async move {
                let result = client.put(&target.addr, &hash, body).await;
                let _ = tx.send((target.id, result)).await;
            });
        }
        drop(tx);
        let (mut acks, mut created, mut failures) = (0usize, false, Vec::new());
        let mut pending = replicas.len();
        while acks < quorum && acks + pending >= quorum {
            let Some((id, result)) = rx.recv().await else {
                break;
            };
            pending -= 1;
            match result {
                Ok(stored) => {
                    acks += 1;
                    created |= stored == Stored::Created;
                }
                Err(e) => {
                    self.note_failure(&id, &e);
                    failures.push(format!("{id}: {e}"));
                }
            }
        }
        if acks >= quorum {
            return reply::stored(created, &hash);
        }
        self.metrics.count_quorum_failure();
        let message = format!(
            "not stored: {acks} of {quorum} needed acknowledgements ({})",
            failures.join("; ")
        );
        reply::text(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// GET: the first node in read order that has the block and whose bytes hash to the
    /// address. `404` when nodes answered and none has it, unless W or more nodes could not be
    /// asked (then the block may exist: `503`).
    pub(super) async fn get(&self, hash: BlockHash, request: &HeaderMap) -> Reply {
        let map = match self.current_map() {
            Ok(map) => map,
            Err(refusal) => return *refusal,
        };
        let mut failures = Vec::new();
        for (tried, target) in self.read_targets(&map, &hash).into_iter().enumerate() {
            match self.nodes.get(&target.addr, &hash).await {
                Ok(Some(bytes)) if BlockHash::of(&bytes) == hash => {
                    if tried > 0 {
                        self.metrics.count_fallback();
                    }
                    return block_reply(&hash, bytes, request);
                }
                Ok(Some(_)) => {
                    self.metrics.count_corrupt();
                    tracing::error!(node = %target.id, %hash, "node sent bytes that fail the hash");
                    failures.push(format!("{}: bytes failed the SHA-256 check", target.id));
                }
                Ok(None) => {}
                Err(e) => {
                    self.note_failure(&target.id, &e);
                    failures.push(format!("{}: {e}", target.id));
                }
            }
        }
        self.not_found_or_unknown(failures)
    }

    /// HEAD: as GET, asking nodes with HEAD (no bytes move, so nothing to verify).
    pub(super) async fn head(&self, hash: BlockHash) -> Reply {
        let map = match self.current_map() {
            Ok(map) => map,
            Err(refusal) => return *refusal,
        };
        let mut failures = Vec::new();
        for target in self.read_targets(&map, &hash) {
            match self.nodes.head(&target.addr, &hash).await {
                Ok(Some(len)) => {
                    let mut r =
                        reply::body(StatusCode::OK, "application/octet-stream", Bytes::new());
                    reply::block_headers(&mut r, &hash);
                    r.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    return r;
                }
                Ok(None) => {}
                Err(e) => {
                    self.note_failure(&target.id, &e);
                    failures.push(format!("{}: {e}", target.id));
                }
            }
        }
        self.not_found_or_unknown(failures)
    }

    fn not_found_or_unknown(&self, failures: Vec<String>) -> Reply {
        if failures.len() < self.config.write_quorum {
            return reply::text(StatusCode::NOT_FOUND, "no such block");
        }
        let message = format!(
            "block not found on the nodes that answered ({})",
            failures.join("; ")
        );
        reply::text(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// DELETE: first every member must answer whether it holds the block (one down: `503`,
    /// nothing deleted); then every member is sent the DELETE. `204` only when all confirmed.
    pub(super) async fn delete(&self, hash: BlockHash) -> Reply {
        let map = match self.current_map() {
            Ok(map) => map,
            Err(refusal) => return *refusal,
        };
        let members: Vec<Target> = map
            .members()
            .map(|n| Target {
                id: n.id.clone(),
                addr: n.addr.clone(),
            })
            .collect();
        let probes = self
            .on_all(
                &members,
                |c, addr| async move { c.head(&addr, &hash).await },
            )
            .await;
        let (mut held, mut down) = (false, Vec::new());
        for (target, result) in members.iter().zip(probes) {
            match result {
                Ok(found) => held |= found.is_some(),
                Err(e) => down.push(format!("{}: {e}", target.id)),
            }
        }
        if !down.is_empty() {
            let message = format!(
                "not deleted (nothing was): every node must confirm a DELETE, and {} cannot",
                down.join("; ")
            );
            return reply::text(StatusCode::SERVICE_UNAVAILABLE, message);
        }
        if !held {
            return reply::text(StatusCode::NOT_FOUND, "no such block");
        }
        let results = self
            .on_all(
                &members,
                |c, addr| async move { c.delete(&addr, &hash).await },
            )
            .await;
        let failed: Vec<String> = members
            .iter()
            .zip(results)
            .filter_map(|(t, r)| r.err().map(|e| format!("{}: {e}", t.id)))
            .collect();
        if failed.is_empty() {
            let mut r = reply::text(StatusCode::NO_CONTENT, "");
            r.headers_mut().remove(header::CONTENT_TYPE);
            return r;
        }
        let message = format!(
            "partly deleted: these nodes did not confirm ({}); repeat the DELETE",
            failed.join("; ")
        );
        reply::text(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Runs one call per target concurrently; results in target order.
    async fn on_all<T, F, Fut>(&self, targets: &[Target], call: F) -> Vec<Result<T, NodeError>>
    where
        F: Fn(crate::node_client::NodeClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, NodeError>> + Send + 'static,
        T: Send + 'static,
    {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| tokio::spawn(call(self.nodes.clone(), t.addr.clone())))
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for (target, handle) in targets.iter().zip(handles) {
            let result = handle
                .await
                .unwrap_or_else(|e| Err(NodeError::Transport(format!("task failed: {e}"))));
            if let Err(e) = &result {
                self.note_failure(&target.id, e);
            }
            out.push(result);
        }
        out
    }
}

/// A verified block as GET answers it: `304` for a matching `If-None-Match`, `206` for one
/// satisfiable `Range`, `416` for an unsatisfiable one, else `200` with the whole block.
fn block_reply(hash: &BlockHash, bytes: Bytes, request: &HeaderMap) -> Reply {
    let tag = reply::etag(hash);
    let matches = |v: &HeaderValue| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t.as_bytes() == tag.as_bytes())
        })
    };
    if request.get_all(header::IF_NONE_MATCH).iter().any(matches) {
        let mut r = reply::text(StatusCode::NOT_MODIFIED, "");
        r.headers_mut().remove(header::CONTENT_TYPE);
        reply::block_headers(&mut r, hash);
        return r;
    }
    let len = bytes.len() as u64;
    let range = request.get(header::RANGE).and_then(|v| v.to_str().ok());
    match range.map(|r| parse_range(r, len)) {
        Some(RangeAsk::Part(first, last)) => {
            let part = bytes.slice(first as usize..=last as usize);
            let mut r = reply::body(
                StatusCode::PARTIAL_CONTENT,
                "application/octet-stream",
                part,
            );
            reply::block_headers(&mut r, hash);
            let content_range = format!("bytes {first}-{last}/{len}");
            r.headers_mut()
                .insert(header::CONTENT_RANGE, reply::value(content_range));
            r
        }
        Some(RangeAsk::Unsatisfiable) => {
            let mut r = reply::text(StatusCode::RANGE_NOT_SATISFIABLE, "range outside the block");
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                reply::value(format!("bytes */{len}")),
            );
            r
        }
        Some(RangeAsk::Whole) | None => {
            let mut r = reply::body(StatusCode::OK, "application/octet-stream", bytes);
            reply::block_headers(&mut r, hash);
            r
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Inclusive byte positions.
    Part(u64, u64),
    Unsatisfiable,
    /// Invalid or multi-range syntax: ignored (RFC 9110), the whole block is sent.
    Whole,
}

/// One `bytes=a-b`, `a-` or `-n` range over a block of `len` bytes (end clamped).
fn parse_range(header: &str, len: u64) -> RangeAsk {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), num(a), num(b)) {
        (true, _, Some(0)) => RangeAsk::Unsatisfiable,
        (true, _, Some(n)) => RangeAsk::Part(len.saturating_sub(n), len - 1),
        (false, Some(first), _) if first >= len => RangeAsk::Unsatisfiable,
        (false, Some(first), None) if b.trim().is_empty() => RangeAsk::Part(first, len - 1),
        (false, Some(first), Some(last)) if last >= first => {
            RangeAsk::Part(first, last.min(len - 1))
        }
        _ => RangeAsk::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Single ranges as the node answers them: clamped ends, suffixes, unsatisfiable starts.
    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Part(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=95-", 100), RangeAsk::Part(95, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), RangeAsk::Part(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=9-3", 100), RangeAsk::Whole);
    }

    /// A matching If-None-Match is a 304; a range a 206 with Content-Range.
    #[test]
    fn conditional_and_partial_replies() {
        let bytes = Bytes::from_static(b"hello world");
        let hash = BlockHash::of(&bytes);
        let mut req = HeaderMap::new();
        req.insert(header::IF_NONE_MATCH, reply::etag(&hash));
        assert_eq!(
            block_reply(&hash, bytes.clone(), &req).status(),
            StatusCode::NOT_MODIFIED
        );
        let mut req = HeaderMap::new();
        req.insert(header::RANGE, HeaderValue::from_static("bytes=0-4"));
        let r = block_reply(&hash, bytes, &req);
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 0-4/11");
    }
}
