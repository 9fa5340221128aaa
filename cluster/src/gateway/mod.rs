//! The gateway: a node's HTTP API in front of the cluster, stateless apart from the map.
//!
//! Owns the listener, the per-connection HTTP/1.1 server (hyper), the routing of a request to
//! its handler, the request body limits and the request deadline. Handlers live in `blocks`
//! (PUT/GET/HEAD/DELETE), `sync` (missing, listing) and `ops` (health, stats, metrics).
//!
//! It never stores a block itself and never changes the map: every byte goes to and comes
//! from nodes, placement is computed from the map in `MapCell`. Every request has a deadline
//! (`request_timeout`); every node call inside it has its own (`NodeClient`).

mod blocks;
mod ops;
mod reply;
mod sync;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::block_hash::{self, BlockHash};
use crate::map_watch::MapCell;
use crate::node_client::{NodeClient, NodeError, BLOCK_BYTES_MAX};
use crate::node_map::NodeMap;
use crate::placement::Placement;
pub use ops::Metrics;
use reply::{Refusal, Reply};

/// How long a stopping gateway waits for requests in progress.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node that failed is tried last by reads.
const SUSPECT_FOR: Duration = Duration::from_secs(2);
/// Largest `POST /blocks/missing` body: 10,000 lines of 64 hex and CRLF.
const MISSING_BODY_BYTES_MAX: usize = 10_000 * 66;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// R: copies of each block.
    pub replicas: usize,
    /// W: node acknowledgements before a PUT is acknowledged.
    pub write_quorum: usize,
    /// Deadline of a whole request, body included.
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// Clients' PUTs and DELETEs must carry `Authorization: Bearer <token>` (as on a node).
    pub auth_token: Option<String>,
}

pub struct Gateway {
    pub config: GatewayConfig,
    pub cell: MapCell,
    pub nodes: NodeClient,
    pub metrics: Metrics,
    started: Instant,
    /// Nodes that failed recently (id → when), read last until `SUSPECT_FOR` passed.
    suspects: Mutex<HashMap<String, Instant>>,
}

/// A request the gateway understands.
enum Route {
    PutBlock(Option<BlockHash>),
    GetBlock(BlockHash),
    HeadBlock(BlockHash),
    DeleteBlock(BlockHash),
    Missing,
    Listing,
    Health,
    Stats,
    Metrics,
}

impl Gateway {
    pub fn new(config: GatewayConfig, cell: MapCell, nodes: NodeClient) -> Arc<Gateway> {
        assert!(config.write_quorum >= 1 && config.write_quorum <= config.replicas);
        Arc::new(Gateway {
            config,
            cell,
            nodes,
            metrics: Metrics::default(),
            started: Instant::now(),
            suspects: Mutex::new(HashMap::new()),
        })
    }

    /// Serves connections until `shutdown` resolves, then drains: no new connections, idle
    /// ones closed, requests in progress finished (at most `DRAIN_TIMEOUT`).
    pub async fn serve(
        self: Arc<Gateway>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let max = self.config.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "over --max-connections: connection refused");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (gw, stop) = (self.clone(), stop_rx.clone());
            tokio::spawn(async move {
                gw.connection(stream, peer, stop).await;
                drop(slot);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!("connections still busy after {DRAIN_TIMEOUT:?}: stopping anyway");
        }
    }

    async fn connection(
        self: Arc<Gateway>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let service = service_fn(move |req| {
            let gw = self.clone();
            async move { Ok::<_, Infallible>(gw.handle(req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let served = tokio::select! {
            served = conn.as_mut() => served,
            _ = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    async fn handle(self: Arc<Gateway>, req: Request<Incoming>) -> Reply {
        self.metrics.count_request(req.method());
        let deadline = self.config.request_timeout;
        let reply = match tokio::time::timeout(deadline, self.route_and_run(req)).await {
            Ok(reply) => reply,
            Err(_) => reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the cluster did not answer within {deadline:?}"),
            ),
        };
        self.metrics.count_status(reply.status());
        reply
    }

    /// Routes and runs one request. Every body is accounted for: the routes that take one
    /// read it (`read_body`), and every other answer, refusals included, reads and drops
    /// what the client sent (`answer_unread`), so the connection stays usable for the next
    /// request. (Left unread, hyper closes the connection under the client's next request.)
    async fn route_and_run(&self, req: Request<Incoming>) -> Reply {
        let route = match route(req.method(), req.uri().path()) {
            Ok(route) => route,
            Err(refusal) => return answer_unread(req, *refusal).await,
        };
        let writes = matches!(route, Route::PutBlock(_) | Route::DeleteBlock(_));
        if writes && !self.authorized(req.headers()) {
            let mut r = reply::text(
                StatusCode::UNAUTHORIZED,
                "this gateway needs a bearer token",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return answer_unread(req, r).await;
        }
        match route {
            Route::PutBlock(expected) => match read_body(req, BLOCK_BYTES_MAX).await {
                Ok(body) => self.put(expected, body).await,
                Err(refusal) => *refusal,
            },
            Route::Missing => match read_body(req, MISSING_BODY_BYTES_MAX).await {
                Ok(body) => self.missing(&body).await,
                Err(refusal) => *refusal,
            },
            Route::GetBlock(_)
            | Route::HeadBlock(_)
            | Route::DeleteBlock(_)
            | Route::Listing
            | Route::Health
            | Route::Stats
            | Route::Metrics => {
                let (parts, body) = req.into_parts();
                let drained = drain_body(&parts.headers, body, BLOCK_BYTES_MAX).await;
                let reply = self.run_bodiless(route, &parts).await;
                close_unless(drained, reply)
            }
        }
    }

    /// The routes that take no body.
    async fn run_bodiless(&self, route: Route, parts: &hyper::http::request::Parts) -> Reply {
        match route {
            Route::GetBlock(hash) => self.get(hash, &parts.headers).await,
            Route::HeadBlock(hash) => self.head(hash).await,
            Route::DeleteBlock(hash) => self.delete(hash).await,
            Route::Listing => self.listing(parts.uri.query().unwrap_or("")).await,
            Route::Health => self.health().await,
            Route::Stats => self.stats().await,
            Route::Metrics => self.prometheus(),
            Route::PutBlock(_) | Route::Missing => {
                unreachable!("route_and_run reads the bodies of PUT and missing")
            }
        }
    }

    /// Whether a write may go on: no token configured, or the right one (compared in time
    /// independent of where it differs).
    fn authorized(&self, headers: &header::HeaderMap) -> bool {
        let Some(token) = &self.config.auth_token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or(b"");
        let want = token.as_bytes();
        let differ = given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        given.len() == want.len() && differ == 0
    }

    /// The map in use, or the `503` that says there is none yet.
    fn current_map(&self) -> Result<Arc<NodeMap>, Refusal> {
        self.cell.map().ok_or_else(|| {
            let status = self.cell.status();
            let why = status.error().unwrap_or("no answer yet");
            reply::refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no node map yet: etcd {} ({why})", status.name()),
            )
        })
    }

    fn placement<'m>(&self, map: &'m NodeMap) -> Placement<'m> {
        Placement::new(map, self.config.replicas)
    }

    /// Notes a node's failure: connection-level errors make it a suspect.
    fn note_failure(&self, id: &str, error: &NodeError) {
        self.metrics.count_node_error();
        if matches!(error, NodeError::Timeout(_) | NodeError::Transport(_)) {
            let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
            suspects.insert(id.to_string(), Instant::now());
        }
    }

    fn is_suspect(&self, id: &str) -> bool {
        let suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        suspects.get(id).is_some_and(|t| t.elapsed() < SUSPECT_FOR)
    }
}

fn route(method: &Method, path: &str) -> Result<Route, Refusal> {
    let block = |rest: &str| {
        block_hash::parse(rest).map_err(|e| reply::refuse(StatusCode::BAD_REQUEST, e.to_string()))
    };
    let allow = |methods: &'static str| {
        let mut r = reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(methods));
        Err(Box::new(r))
    };
    match path {
        "/block" | "/" => match *method {
            Method::PUT => Ok(Route::PutBlock(None)),
            _ => allow("PUT"),
        },
        "/blocks/missing" => match *method {
            Method::POST => Ok(Route::Missing),
            _ => allow("POST"),
        },
        "/blocks" | "/health" | "/stats" | "/metrics" => match (method, path) {
            (&Method::GET, "/blocks") => Ok(Route::Listing),
            (&Method::GET, "/health") => Ok(Route::Health),
            (&Method::GET, "/stats") => Ok(Route::Stats),
            (&Method::GET, "/metrics") => Ok(Route::Metrics),
            _ => allow("GET"),
        },
        _ => {
            let rest = path.strip_prefix("/block/").map(block).or_else(|| {
                let bare = path.strip_prefix('/')?;
                block_hash::parse(bare).ok().map(Ok)
            });
            let Some(hash) = rest else {
                return Err(reply::refuse(StatusCode::NOT_FOUND, "unknown path"));
            };
            let hash = hash?;
            match *method {
                Method::PUT => Ok(Route::PutBlock(Some(hash))),
                Method::GET => Ok(Route::GetBlock(hash)),
                Method::HEAD => Ok(Route::HeadBlock(hash)),
                Method::DELETE => Ok(Route::DeleteBlock(hash)),
                _ => allow("GET, HEAD, PUT, DELETE"),
            }
        }
    }
}

/// Answers `reply` to a request whose body nobody reads: the body is read and dropped first.
async fn answer_unread(req: Request<Incoming>, reply: Reply) -> Reply {
    let (parts, body) = req.into_parts();
    let drained = drain_body(&parts.headers, body, BLOCK_BYTES_MAX).await;
    close_unless(drained, reply)
}

/// Reads and drops a body nobody needs; false when it declares more than `limit` bytes or
/// cannot be read whole (the connection must then close).
async fn drain_body(headers: &header::HeaderMap, body: Incoming, limit: usize) -> bool {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return false;
    }
    Limited::new(body, limit).collect().await.is_ok()
}

/// `reply`, with `Connection: close` unless the request's body was read whole.
fn close_unless(drained: bool, mut reply: Reply) -> Reply {
    if !drained {
        reply.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    reply
}

/// Reads a request body of 1..=`limit` bytes: `411` without framing, `413` past the limit
/// (refused from `Content-Length` before reading), `400` when empty.
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Refusal> {
    let headers = req.headers();
    let framed = headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING);
    if !framed {
        return Err(reply::refuse(
            StatusCode::LENGTH_REQUIRED,
            "a body needs Content-Length",
        ));
    }
    // Refused with the body (partly) unread: the connection closes.
    let too_large = || {
        let r = reply::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {limit} bytes"),
        );
        Box::new(close_unless(false, r))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            let message = format!("reading the body: {e}");
            let r = reply::text(StatusCode::BAD_REQUEST, message);
            return Err(Box::new(close_unless(false, r)));
        }
    };
    if bytes.is_empty() {
        return Err(reply::refuse(StatusCode::BAD_REQUEST, "empty body"));
    }
    assert!(bytes.len() <= limit);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths map to the node's routes; bad hashes and methods get their statuses.
    #[test]
    fn routes() {
        let h = "ab".repeat(32);
        assert!(matches!(
            route(&Method::PUT, "/block"),
            Ok(Route::PutBlock(None))
        ));
        assert!(matches!(
            route(&Method::GET, &format!("/block/{h}")),
            Ok(Route::GetBlock(_))
        ));
        assert!(matches!(
            route(&Method::DELETE, &format!("/{h}")),
            Ok(Route::DeleteBlock(_))
        ));
        assert!(matches!(route(&Method::GET, "/blocks"), Ok(Route::Listing)));
        let status = |m: &Method, p: &str| route(m, p).err().map(|r| r.status());
        assert_eq!(
            status(&Method::GET, "/block/xyz"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(&Method::GET, "/nothing"),
            Some(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            status(&Method::POST, "/block"),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            status(&Method::PUT, "/stats"),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
    }
}
