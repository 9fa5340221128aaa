//! `POST /blocks/missing` and the merged `GET /blocks` listing.
//!
//! Owns the cluster meaning of both: a block is *missing* unless at least W of its replicas
//! hold it (so a client that re-uploads what is under-replicated restores the count), and the
//! listing is the sorted union of every member's listing. It never changes a node.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::StatusCode;

use super::reply::{self, Reply};
use super::Gateway;
use crate::block_hash::{self, BlockHash};
use crate::node_client::MISSING_HASHES_MAX;

/// Listing page size when the client names none, and the most it may ask for (as on a node).
const LIST_LIMIT_DEFAULT: usize = 1000;
const LIST_LIMIT_MAX: usize = 10_000;

impl Gateway {
    pub(super) async fn missing(&self, body: &[u8]) -> Reply {
        let hashes = match parse_hash_lines(body) {
            Ok(hashes) => hashes,
            Err(message) => return reply::text(StatusCode::BAD_REQUEST, message),
        };
        let map = match self.current_map() {
            Ok(map) => map,
            Err(refusal) => return *refusal,
        };
        let placement = self.placement(&map);
        // Which of the request's hashes each node is asked about (the block's replicas).
        let mut asked: BTreeMap<&str, (&str, Vec<BlockHash>)> = BTreeMap::new();
        for hash in &hashes {
            for node in placement.replicas(hash) {
                let entry = asked.entry(&node.id).or_insert((&node.addr, Vec::new()));
                entry.1.push(*hash);
            }
        }
        let calls: Vec<_> = asked
            .iter()
            .map(|(_, (addr, list))| {
                let (client, addr, list) = (self.nodes.clone(), addr.to_string(), list.clone());
                tokio::spawn(async move { client.missing(&addr, &list).await })
            })
            .collect();
        let mut holders: BTreeMap<BlockHash, usize> = BTreeMap::new();
        for ((id, (_, list)), call) in asked.iter().zip(calls) {
            // An unreachable node holds nothing a client may rely on.
            let absent = match call.await {
                Ok(Ok(absent)) => absent,
                Ok(Err(e)) => {
                    self.note_failure(id, &e);
                    continue;
                }
                Err(_) => continue,
            };
            let absent: std::collections::BTreeSet<BlockHash> = absent.into_iter().collect();
            for h in list.iter().filter(|h| !absent.contains(h)) {
                *holders.entry(*h).or_default() += 1;
            }
        }
        let quorum = self.config.write_quorum;
        let mut out = String::new();
        for h in hashes {
            if holders.get(&h).copied().unwrap_or(0) < quorum {
                out.push_str(&h.to_string());
                out.push('\n');
            }
        }
        reply::body(StatusCode::OK, "text/plain", Bytes::from(out))
    }

    /// The first `limit` hashes after `after` over all members. A node that cannot be listed is
    /// named in `X-Buddy-Unlisted-Nodes`; with W or more of them the listing could miss
    /// acknowledged blocks, so the answer is `503`.
    pub(super) async fn listing(&self, query: &str) -> Reply {
        let (after, limit) = match parse_listing_query(query) {
            Ok(q) => q,
            Err(message) => return reply::text(StatusCode::BAD_REQUEST, message),
        };
        let map = match self.current_map() {
            Ok(map) => map,
            Err(refusal) => return *refusal,
        };
        let members: Vec<_> = map.members().collect();
        let calls: Vec<_> = members
            .iter()
            .map(|n| {
                let (client, addr) = (self.nodes.clone(), n.addr.clone());
                tokio::spawn(async move { client.list(&addr, after.as_ref(), limit).await })
            })
            .collect();
        let mut merged: BTreeMap<BlockHash, u64> = BTreeMap::new();
        let mut unlisted = Vec::new();
        for (node, call) in members.iter().zip(calls) {
            match call.await {
                Ok(Ok(page)) => merged.extend(page),
                Ok(Err(e)) => {
                    self.note_failure(&node.id, &e);
                    unlisted.push(node.id.clone());
                }
                Err(_) => unlisted.push(node.id.clone()),
            }
        }
        if unlisted.len() >= self.config.write_quorum {
            let message = format!("cannot list: nodes {} do not answer", unlisted.join(", "));
            return reply::text(StatusCode::SERVICE_UNAVAILABLE, message);
        }
        let mut out = String::new();
        for (hash, len) in merged.into_iter().take(limit) {
            out.push_str(&format!("{hash} {len}\n"));
        }
        let mut r = reply::body(StatusCode::OK, "text/plain", Bytes::from(out));
        if !unlisted.is_empty() {
            r.headers_mut()
                .insert("x-buddy-unlisted-nodes", reply::value(unlisted.join(",")));
        }
        r
    }
}

/// Up to 10,000 hashes, one per line (`\n` or `\r\n`, blank lines ignored).
fn parse_hash_lines(body: &[u8]) -> Result<Vec<BlockHash>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 text".to_string())?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let hash = block_hash::parse(line)
            .map_err(|_| format!("line {}: not a 64-hex block address", i + 1))?;
        if out.len() == MISSING_HASHES_MAX {
            return Err(format!("more than {MISSING_HASHES_MAX} hashes"));
        }
        out.push(hash);
    }
    Ok(out)
}

/// `after=<hash>&limit=<n>`, both optional; limit clamped to 10,000.
fn parse_listing_query(query: &str) -> Result<(Option<BlockHash>, usize), String> {
    let (mut after, mut limit) = (None, LIST_LIMIT_DEFAULT);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" => after = Some(block_hash::parse(value).map_err(|e| e.to_string())?),
            "limit" => {
                limit = match value.parse::<usize>() {
                    Ok(n) if n > 0 => n.min(LIST_LIMIT_MAX),
                    _ => return Err(format!("limit {value:?}: not a positive number")),
                }
            }
            _ => {}
        }
    }
    Ok((after, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The missing body parser names the bad line and skips blank ones.
    #[test]
    fn hash_lines() {
        let h = "ab".repeat(32);
        let body = format!("{h}\r\n\n{h}\n");
        assert_eq!(parse_hash_lines(body.as_bytes()).unwrap().len(), 2);
        let bad = format!("{h}\nnope\n");
        assert_eq!(
            parse_hash_lines(bad.as_bytes()).unwrap_err(),
            "line 2: not a 64-hex block address"
        );
    }

    /// Listing queries: defaults, clamping, refusals.
    #[test]
    fn listing_queries() {
        assert_eq!(parse_listing_query("").unwrap(), (None, 1000));
        assert_eq!(parse_listing_query("limit=99999").unwrap().1, 10_000);
        assert!(parse_listing_query("limit=0").is_err());
        assert!(parse_listing_query("after=zz").is_err());
    }
}
