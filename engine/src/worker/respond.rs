//! Writing responses: status line, headers and body into a buffer queued on the connection.
//!
//! Owns: `respond_full`, `respond_head_only`, `respond_text`, `respond_error`, the 503s
//! (`respond_busy`, `respond_unavailable`, `answer_unconfirmed`) and `queue_response`
//! (stats, latency, the `Responded` stage).
//! Invariants: a response ends the request's stage (`Responded`); a HEAD, 204 or 304 carries
//! no body; a request answered `503` for the controller has no pending reply left.
//! Must never: queue a response with no bytes.

use super::*;

/// What happens to the connection after an answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum After {
    /// As the request asked (kept open unless it said `Connection: close`, or the worker
    /// is shutting down).
    AsAsked,
    /// `Connection: close`, and closed once sent (the rest of the request may be unread).
    Close,
}

impl Worker {
    /// `503` with `Retry-After`, then close (the request's body may still be unread).
    pub(super) fn respond_busy(&mut self, now: Instant, r: ConnRef, reason: &str) {
        self.respond_unavailable(now, r, reason, After::Close);
    }

    pub(super) fn respond_unavailable(
        &mut self,
        now: Instant,
        r: ConnRef,
        reason: &str,
        after: After,
    ) {
        let headers: [(&str, &[u8]); 1] = [("Retry-After", b"1")];
        let body: [&[u8]; 2] = [reason.as_bytes(), b"\n"];
        let method = self
            .conn_mut(r)
            .and_then(|c| c.active.as_ref())
            .map_or(Method::Other, |a| a.head.method);
        self.respond_full(
            now,
            r,
            method,
            Status::SERVICE_UNAVAILABLE,
            &headers,
            &body,
            after,
        );
    }

    /// A request that waited for the controller until its request timeout: it is answered
    /// `503` saying what may have happened, its pending replies are forgotten (a late one
    /// finds no waiter, so it cannot answer this connection's next request), and the
    /// connection stays open: the request was read whole.
    pub(super) fn answer_unconfirmed(&mut self, now: Instant, r: ConnRef) {
        let Some(stage) = stage_of(&self.conns.entries, r) else {
            return;
        };
        let reason = match stage {
            Stage::Occupy { .. } => {
                "storage did not confirm the write in time; it may or may not be stored: \
                 retry (storing the same bytes again is harmless)"
            }
            Stage::Release => {
                "storage did not confirm the delete in time; it may or may not have \
                 happened: retry"
            }
            _ => "storage did not answer in time; try again",
        };
        let waiting = self.link.pending.len();
        self.link.pending.retain(|_, w| w.conn != r);
        assert!(
            self.link.pending.len() < waiting,
            "a request waiting for the controller has a reply pending"
        );
        self.stats.storage_timeouts += 1;
        self.abandon_request(r);
        self.respond_unavailable(now, r, reason, After::AsAsked);
    }

    /// An error answer with a one-line plain-text body; the connection stays as the request
    /// asked.
    pub(super) fn respond_error(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: Status,
        reason: &str,
    ) {
        self.respond_error_then(now, r, method, status, reason, After::AsAsked);
    }

    /// An error answer after which the connection closes (the rest of the request may be
    /// unread, or the connection cannot be trusted to frame the next one).
    pub(super) fn respond_error_closing(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: Status,
        reason: &str,
    ) {
        self.respond_error_then(now, r, method, status, reason, After::Close);
    }

    fn respond_error_then(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: Status,
        reason: &str,
        after: After,
    ) {
        assert!(status.is_error(), "an error response has an error status");
        let body: [&[u8]; 2] = [reason.as_bytes(), b"\n"];
        self.respond_full(now, r, method, status, &[], &body, after);
    }

    pub(super) fn respond_text(
        &mut self,
        now: Instant,
        r: ConnRef,
        status: Status,
        body: &[u8],
        ty: &str,
    ) {
        let head_only = self
            .conn_mut(r)
            .and_then(|c| c.active.as_ref())
            .is_some_and(|a| a.head.method == Method::Head);
        let headers: [(&str, &[u8]); 2] = [
            ("Content-Type", ty.as_bytes()),
            ("Cache-Control", b"no-store"),
        ];
        if head_only {
            self.respond_head_only(
                now,
                r,
                Method::Head,
                status,
                &headers,
                Some(body.len() as u64),
            );
            return;
        }
        let method = Method::Get;
        self.respond_full(now, r, method, status, &headers, &[body], After::AsAsked);
    }

    /// A response with a body; `After::Close` forces `Connection: close` and closing after
    /// it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_full(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: Status,
        headers: &[(&str, &[u8])],
        body: &[&[u8]],
        after: After,
    ) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        if after == After::Close {
            conn.keep_alive = false;
        }
        let persistence = persistence_of(conn);
        let head_request = conn
            .active
            .as_ref()
            .is_some_and(|a| a.head.method == Method::Head);
        let body_len: usize = body.iter().map(|part| part.len()).sum();
        let mut buf = if HEAD_ROOM_BYTES + body_len <= IDLE_RECV_BYTES {
            self.small_buf()
        } else {
            Vec::with_capacity(HEAD_ROOM_BYTES + body_len)
        };
        // Every header plus a default Content-Type, without a heap allocation.
        const HEADERS_MAX: usize = 8;
        assert!(headers.len() < HEADERS_MAX, "{} headers", headers.len());
        let mut all: [(&str, &[u8]); HEADERS_MAX] = [("", b""); HEADERS_MAX];
        all[..headers.len()].copy_from_slice(headers);
        let mut n = headers.len();
        if !headers.iter().any(|(k, _)| *k == "Content-Type") {
            all[n] = ("Content-Type", b"text/plain");
            n += 1;
        }
        http::write_response_head(
            &mut buf,
            status,
            &all[..n],
            Some(body_len as u64),
            persistence,
        );
        if !head_request && status.allows_body() {
            for part in body {
                buf.extend_from_slice(part);
            }
        }
        let end = buf.len();
        self.queue_response(now, r, method, status, buf, 0, end);
    }

    /// A response without a body (HEAD, 204, 304): `content_length` is announced, not sent.
    pub(super) fn respond_head_only(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: Status,
        headers: &[(&str, &[u8])],
        content_length: Option<u64>,
    ) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        let persistence = persistence_of(conn);
        let mut buf = self.small_buf();
        http::write_response_head(&mut buf, status, headers, content_length, persistence);
        let end = buf.len();
        self.queue_response(now, r, method, status, buf, 0, end);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn queue_response(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        status: Status,
        buf: Vec<u8>,
        start: usize,
        end: usize,
    ) {
        assert!(start < end && end <= buf.len(), "a response has bytes");
        self.stats.by_status[stats::status_index(status.code())] += 1;
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        let started = conn.active.as_ref().map(|a| a.started);
        match conn.active.as_mut() {
            Some(a) => a.stage = Stage::Responded,
            None => {
                // Answered before a head was complete (400, 408, 431, 503 on accept).
                conn.head_started = None;
                conn.active = Some(Active {
                    head: RequestHead {
                        method,
                        path: Vec::new(),
                        query: Vec::new(),
                        http10: false,
                        keep_alive: false,
                        body: BodyFraming::None,
                        authorization: None,
                        if_none_match: None,
                        range: None,
                        accept: None,
                        expect_continue: false,
                    },
                    route: Route::Health,
                    started: now,
                    asked: now,
                    stage: Stage::Responded,
                    span: tracing::Span::none(),
                });
            }
        }
        conn.outq.push_back((buf, start, end));
        if let Some(t) = started {
            let ns = now.saturating_since(t).as_nanos() as u64;
            self.stats.latency[stats::method_index(method)].record(ns);
            if let Some(a) = conn.active.as_ref() {
                a.span.in_scope(|| {
                    tracing::debug!(status = status.code(), latency_us = ns / 1000, "response")
                });
            }
        } else if status.is_error() {
            tracing::debug!(
                worker = self.config.id,
                status = status.code(),
                "refused before a request head"
            );
        }
        self.pump_send(now, r);
    }
}
