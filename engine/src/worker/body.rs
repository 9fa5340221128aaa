//! Request bodies read into one buffer (chunked PUTs, `POST /blocks/missing`, a PUT that
//! needs its hash before a 507).
//!
//! Owns: `start_body` (framing checks: 411, 400, 413; the pre-check of a PUT to a named hash),
//! `read_body` (the streamed PUT, or one buffer), `begin_body` (with
//! the budget's grant, or a wait for it), `feed_body`, `body_complete`, `100 Continue`.
//! Invariants: a body never grows past its grant; its hash and CRC cover every byte taken.
//! Must never: read a body before it has a grant of the budget.

use super::*;

impl Worker {
    /// The framing checks, then: a `PUT` to a named hash asks the worker's view first (a
    /// stored block needs no slot: `verify.rs`); any other body is read (`read_body`).
    pub(super) fn start_body(&mut self, now: Instant, r: ConnRef, max_bytes: u64) {
        let Some(reader) = self.body_reader(now, r, max_bytes) else {
            return;
        };
        if let Route::PutBlock {
            expected: Some(hash),
        } = self.active_mut(r).route
        {
            self.queue_lookup(r, Lookup::PreCheck { hash, reader });
            return;
        }
        self.read_body(now, r, reader);
    }

    /// A PUT with Content-Length streams into its slot; any other body is read into one
    /// buffer.
    pub(super) fn read_body(&mut self, now: Instant, r: ConnRef, reader: BodyReader) {
        let put = matches!(self.active_mut(r).route, Route::PutBlock { .. });
        match reader {
            BodyReader::Length { remaining } if put => self.start_stream(now, r, remaining),
            reader => self.begin_body(now, r, reader, SendContinue::IfExpected),
        }
    }

    /// How the body is framed, or `None` once the request is answered (411, 400, 413).
    fn body_reader(&mut self, now: Instant, r: ConnRef, max_bytes: u64) -> Option<BodyReader> {
        let conn = self.conns.live_mut(r);
        let active = conn.active.as_ref().expect("active");
        let method = active.head.method;
        let reader = match active.head.body {
            BodyFraming::None => {
                self.respond_error(
                    now,
                    r,
                    method,
                    Status::LENGTH_REQUIRED,
                    "a body with Content-Length or chunked \
                    transfer coding is required",
                );
                return None;
            }
            BodyFraming::Length(0) => {
                self.respond_error(now, r, method, Status::BAD_REQUEST, "empty body");
                return None;
            }
            BodyFraming::Length(n) if n > max_bytes => {
                // Answered at once with `Connection: close`. A body of moderate size that the
                // client sends anyway is drained first (lingering close): closing a socket
                // with unread bytes resets it, and the client might lose the 413.
                if n <= OVERSIZE_DISCARD_MAX_BYTES && !active.head.expect_continue {
                    conn.discard = n;
                }
                self.respond_error_closing(
                    now,
                    r,
                    method,
                    Status::CONTENT_TOO_LARGE,
                    "body too large",
                );
                return None;
            }
            BodyFraming::Length(n) => BodyReader::Length { remaining: n },
            BodyFraming::Chunked => BodyReader::Chunked(ChunkedDecoder::new(max_bytes)),
        };
        Some(reader)
    }

    /// Reads a body into one buffer, once the request has the budget for it (else it waits).
    pub(super) fn begin_body(
        &mut self,
        now: Instant,
        r: ConnRef,
        reader: BodyReader,
        send_continue: SendContinue,
    ) {
        let need = self.body_grant(&reader);
        if !self.take_grant(r, need, GrantKind::Buffer, Turn::New) {
            let need = BufferNeed::Body {
                reader,
                send_continue,
            };
            self.wait_for_buffer(now, r, need);
            return;
        }
        // Room for the whole body at once (a `POST /blocks/missing` may exceed a large
        // buffer): it never grows past its grant.
        let capacity = need - self.recv_buf_bytes();
        let mut body = self.large_buf();
        body.reserve_exact(capacity);
        let active = self.active_mut(r);
        active.stage = Stage::Body {
            reader,
            body,
            hasher: sha2::Sha256::new(),
            crc: 0,
        };
        if send_continue == SendContinue::IfExpected {
            self.send_continue_if_expected(now, r);
        }
    }

    pub(super) fn send_continue_if_expected(&mut self, now: Instant, r: ConnRef) {
        let conn = self.conns.live_mut(r);
        let expect = conn.active.as_ref().is_some_and(|a| a.head.expect_continue);
        let buffered = conn.rbuf.as_ref().is_some_and(|b| !b.is_empty());
        if expect && !buffered {
            conn.outq
                .push_back((b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), 0, 25));
            self.pump_send(now, r);
        }
    }

    /// Moves buffered bytes into the body; returns whether anything happened.
    pub(super) fn feed_body(&mut self, now: Instant, r: ConnRef) -> bool {
        let conn = self.conns.live_mut(r);
        let rbuf = conn.rbuf.as_mut().expect("buffer present");
        let active = conn.active.as_mut().expect("active");
        let method = active.head.method;
        let Stage::Body {
            reader,
            body,
            hasher,
            crc,
        } = &mut active.stage
        else {
            unreachable!("feed_body outside the body stage")
        };
        let before = body.len();
        let result = reader.take(rbuf, body);
        if result.is_ok() {
            hasher.update(&body[before..]);
            *crc = crc32c::crc32c_append(*crc, &body[before..]);
        }
        self.fed(now, r, method, result, Worker::body_complete)
    }

    /// After body bytes were taken from `r`'s receive buffer: drops them from it, then the
    /// framing error's answer, or `complete` once the body is whole. Returns whether anything
    /// happened.
    pub(super) fn fed(
        &mut self,
        now: Instant,
        r: ConnRef,
        method: Method,
        result: Result<(usize, bool), HttpError>,
        complete: fn(&mut Worker, Instant, ConnRef),
    ) -> bool {
        let rbuf = self
            .conns
            .live_mut(r)
            .rbuf
            .as_mut()
            .expect("buffer present");
        match result {
            Err(e) => {
                rbuf.clear();
                self.respond_error_closing(now, r, method, e.status, e.reason);
                true
            }
            Ok((consumed, done)) => {
                rbuf.drain(..consumed);
                if done {
                    complete(self, now, r);
                    return true;
                }
                consumed > 0
            }
        }
    }

    pub(super) fn body_complete(&mut self, now: Instant, r: ConnRef) {
        let conn = self.conns.live_mut(r);
        let active = conn.active.as_mut().expect("active");
        let stage = active.stage.take();
        let Stage::Body {
            body, hasher, crc, ..
        } = stage
        else {
            unreachable!()
        };
        let method = active.head.method;
        if body.is_empty() {
            self.recycle(body);
            self.respond_error(now, r, method, Status::BAD_REQUEST, "empty body");
            return;
        }
        match active.route {
            Route::Missing => self.start_missing(now, r, body),
            Route::PutBlock { expected } => {
                let hash = BlockHash(hasher.finalize().into());
                if expected.is_some_and(|e| e != hash) {
                    self.recycle(body);
                    self.respond_error(
                        now,
                        r,
                        method,
                        Status::UNPROCESSABLE_CONTENT,
                        "body does not hash to the address \
                        in the path",
                    );
                    return;
                }
                let deadline = now + self.config.slot_wait_limit;
                active.stage = Stage::WaitSlot {
                    body,
                    hash,
                    crc,
                    deadline,
                };
                self.try_take_slot(now, r);
            }
            _ => unreachable!("only PUT and missing have bodies"),
        }
    }
}
