//! The HTTP client the gateway and repair use to talk to nodes.
//!
//! Owns the connection pool (hyper-util's pooled HTTP/1.1 client, keep-alive per node) and the
//! mapping of a node's answers to typed results: a 404 is a value (`None`, `false`), any other
//! non-success status an error carrying the status and the node's one-line reason.
//!
//! It never retries and never decides policy (quorums, fallbacks): callers do. Every request,
//! body included, has a deadline (`timeout`), and a response body larger than it may be
//! (a block, or a listing page) is refused rather than buffered.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::block_hash::{self, BlockHash, HASH_HEX_LEN};

/// The largest block, as on a node.
pub const BLOCK_BYTES_MAX: usize = 512 * 1024;
/// Most hashes one `POST /blocks/missing` may carry, as on a node.
pub const MISSING_HASHES_MAX: usize = 10_000;
/// Largest response body read from a node: a full listing page of 10,000 lines is ~750 KB.
const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Idle keep-alive connections kept per node.
const IDLE_CONNECTIONS_PER_NODE_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unreachable: {0}")]
    Transport(String),
    #[error("answered {status}: {reason}")]
    Status { status: u16, reason: String },
    #[error("bad answer: {0}")]
    Protocol(String),
}

/// What a node said to a PUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// `201`: the node did not have the block before.
    Created,
    /// `200`: the node already had it.
    Existed,
}

#[derive(Clone)]
pub struct NodeClient {
    http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    /// `Authorization: Bearer <token>` sent with every request, for nodes started with a token.
    authorization: Option<HeaderValue>,
}

/// A node's answer, body read in full.
struct Answer {
    status: StatusCode,
    /// The `Content-Length` header (what a HEAD answer says the block's length is).
    content_length: Option<u64>,
    body: Bytes,
}

impl NodeClient {
    /// A client whose every request has `timeout`, sending `token` (if any) as a bearer token.
    pub fn new(timeout: Duration, token: Option<&str>) -> Result<NodeClient, String> {
        assert!(!timeout.is_zero(), "a node timeout must be positive");
        let authorization = token
            .map(|t| HeaderValue::try_from(format!("Bearer {t}")))
            .transpose()
            .map_err(|_| "the node token must be visible ASCII".to_string())?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_NODE_MAX)
            .build(connector);
        Ok(NodeClient {
            http,
            timeout,
            authorization,
        })
    }

    async fn call(
        &self,
        method: Method,
        addr: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Answer, NodeError> {
        let mut request = Request::builder().method(method);
        if let Some(value) = &self.authorization {
            request = request.header(hyper::header::AUTHORIZATION, value.clone());
        }
        let request = request
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(body))
            .map_err(|e| NodeError::Protocol(format!("building the request: {e}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| NodeError::Transport(error_chain(&e)))?;
            let status = response.status();
            let content_length = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| NodeError::Transport(format!("reading the body: {e}")))?
                .to_bytes();
            Ok(Answer {
                status,
                content_length,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(NodeError::Timeout(self.timeout)),
        }
    }

    /// `PUT /block/<hash>`: the node hashes the body itself and refuses a mismatch (422).
    pub async fn put(
        &self,
        addr: &str,
        hash: &BlockHash,
        body: Bytes,
    ) -> Result<Stored, NodeError> {
        assert!(!body.is_empty() && body.len() <= BLOCK_BYTES_MAX);
        let answer = self
            .call(Method::PUT, addr, &format!("/block/{hash}"), body)
            .await?;
        match answer.status {
            StatusCode::CREATED => Ok(Stored::Created),
            StatusCode::OK => Ok(Stored::Existed),
            _ => Err(unexpected(answer)),
        }
    }

    /// `GET /block/<hash>`: the bytes, or `None` if the node does not hold it. The caller
    /// verifies the hash.
    pub async fn get(&self, addr: &str, hash: &BlockHash) -> Result<Option<Bytes>, NodeError> {
        let answer = self
            .call(Method::GET, addr, &format!("/block/{hash}"), Bytes::new())
            .await?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer.body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(unexpected(answer)),
        }
    }

    /// `HEAD /block/<hash>`: the block's length if the node holds it.
    pub async fn head(&self, addr: &str, hash: &BlockHash) -> Result<Option<u64>, NodeError> {
        let answer = self
            .call(Method::HEAD, addr, &format!("/block/{hash}"), Bytes::new())
            .await?;
        match answer.status {
            StatusCode::OK => answer
                .content_length
                .map(Some)
                .ok_or_else(|| NodeError::Protocol("HEAD answer without Content-Length".into())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(unexpected(answer)),
        }
    }

    /// `DELETE /block/<hash>`: `true` if the node held it (204), `false` if not (404).
    pub async fn delete(&self, addr: &str, hash: &BlockHash) -> Result<bool, NodeError> {
        let path = format!("/block/{hash}");
        let answer = self.call(Method::DELETE, addr, &path, Bytes::new()).await?;
        match answer.status {
            StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(unexpected(answer)),
        }
    }

    /// `POST /blocks/missing`: those of `hashes` the node does not hold, in input order.
    pub async fn missing(
        &self,
        addr: &str,
        hashes: &[BlockHash],
    ) -> Result<Vec<BlockHash>, NodeError> {
        assert!(hashes.len() <= MISSING_HASHES_MAX);
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = String::with_capacity(hashes.len() * (HASH_HEX_LEN + 1));
        for h in hashes {
            body.push_str(&h.to_string());
            body.push('\n');
        }
        let answer = self
            .call(Method::POST, addr, "/blocks/missing", Bytes::from(body))
            .await?;
        if answer.status != StatusCode::OK {
            return Err(unexpected(answer));
        }
        let absent = text_lines(&answer.body)?
            .map(|line| block_hash::parse(line).map_err(|e| NodeError::Protocol(e.to_string())))
            .collect();
        absent
    }

    /// `GET /blocks?after=&limit=`: the next page of `(hash, length)` in ascending order.
    pub async fn list(
        &self,
        addr: &str,
        after: Option<&BlockHash>,
        limit: usize,
    ) -> Result<Vec<(BlockHash, u64)>, NodeError> {
        let path = match after {
            Some(h) => format!("/blocks?after={h}&limit={limit}"),
            None => format!("/blocks?limit={limit}"),
        };
        let answer = self.call(Method::GET, addr, &path, Bytes::new()).await?;
        if answer.status != StatusCode::OK {
            return Err(unexpected(answer));
        }
        let page: Vec<(BlockHash, u64)> = text_lines(&answer.body)?
            .map(parse_listing_line)
            .collect::<Result<_, _>>()?;
        if page.windows(2).any(|w| w[0].0 >= w[1].0) || page.len() > limit {
            return Err(NodeError::Protocol(
                "listing page out of order or too long".into(),
            ));
        }
        Ok(page)
    }

    /// `GET /stats`, parsed.
    pub async fn stats(&self, addr: &str) -> Result<serde_json::Value, NodeError> {
        let answer = self.call(Method::GET, addr, "/stats", Bytes::new()).await?;
        if answer.status != StatusCode::OK {
            return Err(unexpected(answer));
        }
        serde_json::from_slice(&answer.body).map_err(|e| NodeError::Protocol(format!("stats: {e}")))
    }

    /// `GET /health`: `Ok` when the node says `200`.
    pub async fn health(&self, addr: &str) -> Result<(), NodeError> {
        let answer = self
            .call(Method::GET, addr, "/health", Bytes::new())
            .await?;
        match answer.status {
            StatusCode::OK => Ok(()),
            _ => Err(unexpected(answer)),
        }
    }
}

fn unexpected(answer: Answer) -> NodeError {
    let text = String::from_utf8_lossy(&answer.body);
    let reason: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    NodeError::Status {
        status: answer.status.as_u16(),
        reason,
    }
}

/// The error and its sources in one line (hyper's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn text_lines(body: &[u8]) -> Result<impl Iterator<Item = &str>, NodeError> {
    let text = std::str::from_utf8(body).map_err(|_| NodeError::Protocol("not UTF-8".into()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()))
}

fn parse_listing_line(line: &str) -> Result<(BlockHash, u64), NodeError> {
    let bad = || NodeError::Protocol(format!("listing line {line:?}"));
    let (hash, len) = line.split_once(' ').ok_or_else(bad)?;
    let hash = block_hash::parse(hash).map_err(|_| bad())?;
    let len = len.parse::<u64>().map_err(|_| bad())?;
    Ok((hash, len))
}
