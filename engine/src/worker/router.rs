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
        let conn = self.conns.live_mut(r);
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
            Route::GetBlock { .. } => self.queue_lookup(r, Lookup::Block),
            Route::DeleteBlock { hash } => {
                self.ask(r, Stage::Release, |worker, request| ToController::Release {
                    worker,
                    request,
                    hash,
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
                    let method = stage_method(&self.conns.entries, r);
                    self.respond_full(
                        now,
                        r,
                        method,
                        Status::SERVICE_UNAVAILABLE,
                        &headers,
                        &body,
                        After::AsAsked,
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

    /// Sends one controller request (a write: occupy or release) for the connection's current
    /// request, which waits for the reply in `stage`; records that a reply is awaited.
    pub(super) fn ask(
        &mut self,
        r: ConnRef,
        stage: Stage,
        make: impl FnOnce(WorkerId, RequestId) -> ToController,
    ) {
        assert!(
            matches!(stage, Stage::Release | Stage::Occupy { .. }),
            "a request asks the controller only in a stage that waits for it"
        );
        let request = self.next_request();
        let waiter = Waiter {
            conn: r,
            sent: self.now_seen,
        };
        let fresh = self.link.pending.insert(request, waiter).is_none();
        assert!(fresh, "request ids are not reused");
        self.link.out.push_back(make(self.config.id, request));
        let now_seen = self.now_seen;
        let active = self.active_mut(r);
        active.stage = stage;
        active.asked = now_seen;
    }

    pub(super) fn next_request(&mut self) -> RequestId {
        let id = self.link.next_request;
        self.link.next_request += 1;
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
        let given = given.trim_ascii();
        if self.config.bugs.token_prefix_accepted() && !given.is_empty() {
            return token.starts_with(given);
        }
        constant_time_eq(given, token)
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
        let after = match head.body {
            BodyFraming::None => After::AsAsked,
            BodyFraming::Length(n) if n <= DISCARD_MAX_BYTES && !head.expect_continue => {
                self.conns.live_mut(r).discard = n;
                After::AsAsked
            }
            _ => After::Close,
        };
        let span = self.request_span(&head);
        let conn = self.conns.live_mut(r);
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
        self.respond_full(now, r, method, status, &headers[..n], &body, after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    /// The route of one request line (with an optional extra header line).
    fn routed(line: &str, header: &str) -> Result<Route, Refusal> {
        let text = format!("{line} HTTP/1.1\r\nHost: h\r\n{header}\r\n");
        match http::parse_head(text.as_bytes(), 16 * 1024) {
            Ok(HeadParse::Complete { head, .. }) => route(&head),
            other => panic!("{line:?} does not parse: {other:?}"),
        }
    }

    fn get(line: &str) -> Result<Route, Refusal> {
        routed(line, "")
    }

    fn refused(line: &str) -> (u16, Option<&'static str>) {
        let refusal = get(line).expect_err(line);
        (refusal.status.code(), refusal.allow)
    }

    #[test]
    fn block_paths_route_by_method() {
        let hash = BlockHash::from_hex(HEX.as_bytes()).unwrap();
        let block = |head_only| Route::GetBlock {
            hash,
            head_only,
            flavour: Flavour::Block,
        };
        assert_eq!(get(&format!("GET /block/{HEX}")), Ok(block(false)));
        assert_eq!(get(&format!("HEAD /block/{HEX}")), Ok(block(true)));
        assert_eq!(
            get(&format!("GET /{HEX}")),
            Ok(block(false)),
            "the short form"
        );
        let put = Route::PutBlock {
            expected: Some(hash),
        };
        assert_eq!(get(&format!("PUT /block/{HEX}")), Ok(put));
        assert_eq!(
            get(&format!("DELETE /{HEX}")),
            Ok(Route::DeleteBlock { hash })
        );
        let unnamed = Ok(Route::PutBlock { expected: None });
        assert_eq!(get("PUT /block"), unnamed);
        assert_eq!(get("PUT /"), unnamed);
    }

    #[test]
    fn service_paths_route_to_their_handlers() {
        assert_eq!(get("POST /blocks/missing"), Ok(Route::Missing));
        assert_eq!(get("GET /blocks?after=&limit=3"), Ok(Route::List));
        assert_eq!(get("HEAD /blocks"), Ok(Route::List));
        assert_eq!(get("GET /health"), Ok(Route::Health));
        assert_eq!(get("GET /stats"), Ok(Route::Stats));
        assert_eq!(get("GET /metrics"), Ok(Route::Metrics));
    }

    #[test]
    fn wrong_methods_get_405_with_what_is_allowed() {
        assert_eq!(refused("GET /block"), (405, Some("PUT")));
        assert_eq!(refused("GET /blocks/missing"), (405, Some("POST")));
        assert_eq!(refused("DELETE /blocks"), (405, Some("GET, HEAD")));
        assert_eq!(refused("PUT /health"), (405, Some("GET, HEAD")));
        let all = Some("GET, HEAD, PUT, DELETE");
        assert_eq!(refused(&format!("POST /block/{HEX}")), (405, all));
    }

    #[test]
    fn bad_addresses_and_unknown_paths_are_refused() {
        assert_eq!(refused("GET /block/abc"), (400, None));
        assert_eq!(refused(&format!("GET /block/{}", &HEX[1..])), (400, None));
        assert_eq!(refused("GET /nothing"), (404, None));
        assert_eq!(refused("GET /blocks/other"), (404, None));
        assert_eq!(refused("GET /ipfs/not-a-cid?format=raw"), (400, None));
    }

    #[test]
    fn ipfs_paths_become_block_routes_of_their_digest() {
        let cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";
        let hash = BlockHash::of(b"hello world");
        let route = get(&format!("GET /ipfs/{cid}?format=raw"));
        let Ok(Route::GetBlock {
            hash: routed,
            head_only: false,
            flavour: Flavour::Ipfs(_),
        }) = route
        else {
            panic!("{route:?}")
        };
        assert_eq!(routed, hash, "the CID's digest");
        let put = get(&format!("PUT /ipfs/{cid}"));
        assert_eq!(
            put,
            Ok(Route::PutBlock {
                expected: Some(hash)
            })
        );
        let inline = get("GET /ipfs/bafkqaaa?format=raw");
        assert!(
            matches!(
                inline,
                Ok(Route::IpfsInline {
                    head_only: false,
                    ..
                })
            ),
            "{inline:?}"
        );
    }

    #[test]
    fn a_refusal_is_an_error_status() {
        let refusal = Refusal::new(Status::METHOD_NOT_ALLOWED, "no").allow("GET");
        assert_eq!(refusal.allow, Some("GET"));
        assert!(std::panic::catch_unwind(|| Refusal::new(Status::OK, "fine")).is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
