//! Reading a connection: receives, head parsing, and feeding bytes to the request's body.
//!
//! Owns: `process` (drive a connection with the bytes it has), `want_bytes` (post a receive
//! sized by the request's grant) and `try_head`.
//! Invariants: one receive per connection at a time; a connection between requests holds only
//! a small buffer; an upload without a grant never grows its buffer.
//! Must never: receive into a buffer that holds the rest of a body already (it would strand it).

use super::*;

impl Worker {
    /// Drives a connection with the bytes it has: parse heads, feed bodies, ask for more bytes.
    pub(super) fn process(&mut self, now: Instant, r: ConnRef) {
        loop {
            let Some(conn) = conn_at(&mut self.conns.entries, r) else {
                return;
            };
            if conn.is_closing() || conn.over_limit() || conn.recv_op.is_some() {
                return;
            }
            let Some(rbuf) = conn.rbuf.as_mut() else {
                return;
            };
            if conn.discard > 0 {
                let n = (conn.discard as usize).min(rbuf.len());
                rbuf.drain(..n);
                conn.discard -= n as u64;
                if conn.discard > 0 {
                    self.want_bytes(now, r);
                    return;
                }
            }
            if conn.state == ConnState::Lingering {
                self.close_conn(r);
                return;
            }
            let progressed = match conn.active.as_ref().map(|a| &a.stage) {
                None => self.try_head(now, r),
                Some(Stage::Body { .. }) => self.feed_body(now, r),
                Some(Stage::Verify(_)) => self.feed_verify(now, r),
                Some(Stage::Stream(_)) => self.feed_stream(now, r),
                Some(_) => return,
            };
            if !progressed {
                self.want_bytes(now, r);
                return;
            }
        }
    }

    /// Posts a receive if the connection wants bytes; closes on EOF.
    pub(super) fn want_bytes(&mut self, now: Instant, r: ConnRef) {
        let chunk = self.config.recv_chunk_bytes;
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        if conn.is_closing() || conn.recv_op.is_some() {
            return;
        }
        let buffered = conn.rbuf.as_ref().map_or(0, Vec::len);
        // A request with a grant receives in full chunks; without one (a head, an upload
        // beyond the budget) in small ones, into the buffer it has.
        let granted = conn.grant.is_some();
        let chunk = if granted { chunk } else { IDLE_RECV_BYTES };
        let stream = matches!(
            conn.active.as_ref().map(|a| &a.stage),
            Some(Stage::Stream(_))
        );
        let reading = match conn.active.as_ref().map(|a| &a.stage) {
            None | Some(Stage::Body { .. } | Stage::Verify(_)) => true,
            // Receive only body bytes not already buffered (a receive holds the buffer, so
            // posting one with the rest of the body inside would strand it), and stop at a
            // chunk while the stream cannot take bytes: memory per upload stays bounded.
            Some(Stage::Stream(s)) => s.remaining > buffered as u64 && buffered < chunk,
            _ => false,
        };
        if !reading && conn.discard == 0 {
            return;
        }
        if conn.eof {
            let mid_request = conn.active.is_some() || conn.head_started.is_some();
            if mid_request && conn.active.is_none() {
                // A truncated head: answer it, then close.
                self.respond_error_closing(
                    now,
                    r,
                    Method::Other,
                    Status::BAD_REQUEST,
                    "incomplete request",
                );
            } else {
                self.close_conn(r);
            }
            return;
        }
        let mut buf = conn.rbuf.take().expect("not receiving");
        let handle = conn.handle;
        // Between requests a connection holds only a small buffer (memory with many idle
        // connections); a request in progress receives in full chunks. Buffers are swapped
        // through the pools, not reallocated.
        let idle = conn.active.is_none() && conn.head_started.is_none() && buf.is_empty();
        if idle && buf.capacity() > 2 * IDLE_RECV_BYTES {
            let small = self.small_buf();
            self.recycle(std::mem::replace(&mut buf, small));
        }
        let mut max = if idle { IDLE_RECV_BYTES } else { chunk };
        let room = buf.capacity() - buf.len();
        if room < max {
            if !granted && (stream || room >= IDLE_RECV_BYTES / 8) {
                // No budget for a bigger buffer: fill the one there is. An upload whose
                // buffer is full waits for its piece to be written (which calls `process`).
                if room == 0 {
                    self.conns.live_mut(r).rbuf = Some(buf);
                    return;
                }
                max = room;
            } else {
                let mut bigger = self.recv_buf(buf.len() + max);
                bigger.extend_from_slice(&buf);
                self.recycle(std::mem::replace(&mut buf, bigger));
            }
        }
        let id = self.submit(
            Some(r),
            OpKind::Recv,
            Op::Recv {
                conn: handle,
                buf,
                max,
            },
        );
        self.conns.live_mut(r).recv_op = Some(id);
    }

    /// Parses a head from the buffer; returns whether it made progress.
    pub(super) fn try_head(&mut self, now: Instant, r: ConnRef) -> bool {
        let mut max = self.config.max_header_bytes;
        if self.config.bugs.head_limit_exclusive() {
            max -= 1;
        }
        let conn = self.conns.live_mut(r);
        let rbuf = conn.rbuf.as_mut().expect("buffer present");
        if rbuf.is_empty() {
            return false;
        }
        if conn.head_started.is_none() {
            conn.head_started = Some(now);
        }
        let started = conn.head_started.expect("set above");
        match http::parse_head_with(rbuf, max, &mut self.bufs.heads) {
            Ok(HeadParse::Partial) => false,
            Err(e) => {
                rbuf.clear();
                self.respond_error_closing(now, r, Method::Other, e.status, e.reason);
                false
            }
            Ok(HeadParse::Complete { head, head_len }) => {
                rbuf.drain(..head_len);
                conn.head_started = None;
                conn.keep_alive = head.keep_alive && !self.shutting_down;
                self.stats.requests += 1;
                self.stats.by_method[stats::method_index(head.method)] += 1;
                self.start_request(now, r, head, started);
                true
            }
        }
    }
}
