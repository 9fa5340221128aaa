//! Starting a request: routing its head to a [`Route`], authorization, refusals, and asking
//! the controller.
//!
//! Owns: `route` (method and path to a route or a refusal), `authorized`, `start_request`,
//! `refuse`, `ask` (one controller request for the connection's request).
//! Invariants: writes (PUT, DELETE) run only with the bearer token when one is configured;
//! a refused request's small body is skipped so the connection stays usable.
//! Must never: route on anything but the head (method, path, headers).

use super::*;

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A request refused at its head: the status, a short reason for the plain-text body, and
/// the `Allow` header of a 405.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Refusal {
    pub(super) status: Status,
    pub(super) reason: &'static str,
    pub(super) allow: Option<&'static str>,
}

impl Refusal {
    pub(super) const fn new(status: Status, reason: &'static str) -> Refusal {
        assert!(status.is_error(), "a refusal is an error status");
        Refusal {
            status,
            reason,
            allow: None,
        }
    }

    const fn allow(mut self, methods: &'static str) -> Refusal {
        self.allow = Some(methods);
        self
    }
}

/// The route of a request head (method and path; `/ipfs/` also reads `Accept` and the
/// query), or why it is refused. Pure: the same head always routes the same way.
pub(super) fn route(head: &RequestHead) -> Result<Route, Refusal> {
    let path = head.path.as_slice();
    let m = head.method;
    let not_allowed = |allow: &'static str| {
        Err(Refusal::new(Status::METHOD_NOT_ALLOWED, "method not allowed").allow(allow))
    };
    let block_methods = "GET, HEAD, PUT, DELETE";
    let hash_route = |hash: BlockHash| match m {
        Method::Get => Ok(Route::GetBlock {
            hash,
            head_only: false,
            flavour: Flavour::Block,
        }),
        Method::Head => Ok(Route::GetBlock {
            hash,
            head_only: true,
            flavour: Flavour::Block,
        }),
        Method::Put => Ok(Route::PutBlock {
            expected: Some(hash),
        }),
        Method::Delete => Ok(Route::DeleteBlock { hash }),
        _ => not_allowed(block_methods),
    };
    let read_only = |route: Route| match m {
        Method::Get | Method::Head => Ok(route),
        _ => not_allowed("GET, HEAD"),
    };
    match path {
        b"/" | b"/block" => match m {
            Method::Put => Ok(Route::PutBlock { expected: None }),
            _ => not_allowed("PUT"),
        },
        b"/blocks/missing" => match m {
            Method::Post => Ok(Route::Missing),
            _ => not_allowed("POST"),
        },
        b"/blocks" => read_only(Route::List),
        b"/health" => read_only(Route::Health),
        b"/stats" => read_only(Route::Stats),
        b"/metrics" => read_only(Route::Metrics),
        _ => {
            if let Some(rest) = path.strip_prefix(b"/ipfs/") {
                ipfs::ipfs_route(m, rest, head)
            } else if let Some(rest) = path.strip_prefix(b"/block/") {
                match BlockHash::from_hex(rest) {
                    Some(hash) => hash_route(hash),
                    None => {
                        let reason = "block address must be 64 hex characters";
                        Err(Refusal::new(Status::BAD_REQUEST, reason))
                    }
                }
            } else if let Some(hash) = path.strip_prefix(b"/").and_then(BlockHash::from_hex) {
                hash_route(hash)
            } else {
                Err(Refusal::new(Status::NOT_FOUND, "no such path"))
            }
        }
    }
}

impl Worker {
    pub(super) fn start_request(
        &mut self,
        now: Instant,
        r: ConnRef,
        head: RequestHead,
        started: Instant,
    ) {
        let route = match route(&head) {
            Ok(route) => route,
            Err(refusal) => {
                self.refuse(now, r, head, started, refusal);
                return;
            }
        };
        let writes = matches!(route, Route::PutBlock { .. } | Route::DeleteBlock { .. });
        if writes && !self.authorized(&head) {
            let refusal = Refusal::new(Status::UNAUTHORIZED, "missing or wrong bearer token");
            self.refuse(now, r, head, started, refusal);
            return;
        }
        let span = self.request_span(&head);
        let conn = conn_at(&mut self.conns, r).expect("open");
        conn.active = Some(Active {
            head,
            route,
            started,
            asked: started,
            stage: Stage::Responded,
            span,
        });
        match route {
            Route::PutBlock { .. } => self.start_body(now, r, BLOCK_LEN_MAX_BYTES),
            Route::Missing => self.start_body(now, r, MISSING_BODY_MAX_BYTES),
            Route::GetBlock { hash, .. } => {
                self.ask(r, 0, Stage::Lookup, |worker, request| {
                    ToController::GetAddress {
                        worker,
                        request,
                        hash,
                    }
                });
            }
            Route::DeleteBlock { hash } => {
                self.ask(r, 0, Stage::Release, |worker, request| {
                    ToController::Release {
                        worker,
                        request,
                        hash,
                    }
                });
            }
            Route::IpfsInline {
                head_only,
                negotiated,
            } => self.respond_ipfs_inline(now, r, head_only, negotiated),
            Route::List => self.start_list(now, r),
            Route::Health => match self.health(now) {
                None => self.respond_text(now, r, Status::OK, b"ok", "text/plain"),
                Some(why) => {
                    let line = format!("{}\n", why.reason());
                    let headers: [(&str, &[u8]); 3] = [
                        ("Content-Type", b"text/plain"),
                        ("Cache-Control", b"no-store"),
                        ("Retry-After", b"1"),
                    ];
                    let body: [&[u8]; 1] = [line.as_bytes()];
                    let method = stage_method(&self.conns, r);
                    self.respond_full(
                        now,
                        r,
                        method,
                        Status::SERVICE_UNAVAILABLE,
                        &headers,
                        &body,
                        false,
                    );
                }
            },
            Route::Stats => {
                let body = stats::render_json(&self.snapshot_now()).into_bytes();
                self.respond_text(now, r, Status::OK, &body, "application/json")
            }
            Route::Metrics => {
                let body = stats::render_prometheus(&self.snapshot_now()).into_bytes();
                self.respond_text(now, r, Status::OK, &body, "text/plain; version=0.0.4")
            }
        }
    }

    /// Sends one controller request for the connection's current request.
    pub(super) fn ask(
        &mut self,
        r: ConnRef,
        tag: usize,
        stage: Stage,
        make: impl FnOnce(WorkerId, RequestId) -> ToController,
    ) {
        let request = self.next_request();
        self.pending.insert(
            request,
            Waiter {
                conn: r,
                tag,
                sent: self.now_seen,
            },
        );
        self.msg_out.push_back(make(self.config.id, request));
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active request");
        active.stage = stage;
        active.asked = self.now_seen;
    }

    pub(super) fn next_request(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// The span of one request (cheap when debug logging is off).
    pub(super) fn request_span(&self, head: &RequestHead) -> tracing::Span {
        let span = tracing::debug_span!(
            "request",
            worker = self.config.id,
            id = self.stats.requests,
            method = ?head.method,
            path = %String::from_utf8_lossy(&head.path),
        );
        span.in_scope(|| tracing::debug!("request"));
        span
    }

    pub(super) fn authorized(&self, head: &RequestHead) -> bool {
        let Some(token) = &self.config.auth_token else {
            return true;
        };
        let Some(value) = &head.authorization else {
            return false;
        };
        let Some(given) = value.strip_prefix(b"Bearer ") else {
            return false;
        };
        constant_time_eq(given.trim_ascii(), token)
    }

    /// Answers a request refused at its head, skipping a small declared body so the connection
    /// stays usable.
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        r: ConnRef,
        head: RequestHead,
        started: Instant,
        refusal: Refusal,
    ) {
        let Refusal {
            status,
            reason,
            allow,
        } = refusal;
        let method = head.method;
        let close = match head.body {
            BodyFraming::None => false,
            BodyFraming::Length(n) if n <= DISCARD_MAX_BYTES && !head.expect_continue => {
                conn_at(&mut self.conns, r).expect("open").discard = n;
                false
            }
            _ => true,
        };
        let span = self.request_span(&head);
        let conn = conn_at(&mut self.conns, r).expect("open");
        conn.active = Some(Active {
            head,
            route: Route::Health,
            started,
            asked: started,
            stage: Stage::Responded,
            span,
        });
        let mut headers: [(&str, &[u8]); 2] = [("", b""); 2];
        let mut n = 0;
        if let Some(allow) = allow {
            headers[n] = ("Allow", allow.as_bytes());
            n += 1;
        }
        if status == Status::UNAUTHORIZED {
            headers[n] = ("WWW-Authenticate", b"Bearer");
            n += 1;
        }
        let body: [&[u8]; 2] = [reason.as_bytes(), b"\n"];
        self.respond_full(now, r, method, status, &headers[..n], &body, close);
    }
}
