//! A connection's life: accepted, receiving, sending, closing, closed.
//!
//! Owns: the completion handlers of accept, recv, send, file and close ops, sending queued
//! responses (`pump_send`), ending a request (`after_send`, `end_request`), and closing
//! (`close_conn`, `abandon_request`, `maybe_finish_close`).
//! Invariants: a connection is closed (its slot freed) only once no op on it is in flight;
//! what a request holds (slot, grant, waiter place) goes back when it is abandoned.
//! Must never: free a connection slot with an op in flight, or drop a buffer an op owns.

use super::*;

/// What the completion of a data-file op (a read or write of a request) means for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum FileOutcome {
    /// This many more bytes moved (a short transfer goes on from there).
    Moved(usize),
    /// A transient error: the same transfer again.
    Again,
    /// The op failed: the request is answered `500`.
    Failed,
    /// The connection is closing: the request ends without an answer.
    Abandoned,
}

impl FileOutcome {
    pub(super) fn of(result: Result<u64, Errno>, closing: bool) -> FileOutcome {
        match result {
            _ if closing => FileOutcome::Abandoned,
            Ok(n) if n > 0 => FileOutcome::Moved(usize::try_from(n).expect("fits a buffer")),
            Err(e) if e.is_transient() => FileOutcome::Again,
            _ => FileOutcome::Failed,
        }
    }
}

impl Worker {
    pub(super) fn on_accept(&mut self, now: Instant, c: Completion) {
        self.accept.op = None;
        let handle = match c.result {
            Ok(h) => ConnHandle(h),
            Err(e) => {
                if e != Errno::ECANCELED && !e.is_transient() && e != Errno::ECONNABORTED {
                    self.accept.retry_at = Some(now + ACCEPT_RETRY_DELAY);
                }
                return;
            }
        };
        self.stats.connections_accepted += 1;
        if self.shutting_down {
            self.io_out_close_raw(handle);
            return;
        }
        let rejecting = self.conns.open >= self.config.max_connections;
        if rejecting && self.conns.over_limit >= REJECTING_MAX {
            self.stats.connections_rejected += 1;
            self.io_out_close_raw(handle);
            return;
        }
        let index = match self.conns.free.pop() {
            Some(i) => i,
            None => {
                self.conns.entries.push(None);
                self.conns.generations.push(0);
                self.conns.entries.len() - 1
            }
        };
        self.conns.generations[index] = self.conns.generations[index].wrapping_add(1);
        let generation = self.conns.generations[index];
        let rbuf = self.small_buf();
        self.conns.entries[index] = Some(Conn {
            generation,
            handle,
            rbuf: Some(rbuf),
            recv_op: None,
            send_op: None,
            send_started: now,
            file_op: None,
            outq: VecDeque::new(),
            eof: false,
            active: None,
            head_started: None,
            last_activity: now,
            keep_alive: !rejecting,
            state: ConnState::Open,
            admission: if rejecting {
                Admission::OverLimit
            } else {
                Admission::Admitted
            },
            discard: 0,
            grant: None,
        });
        let r = ConnRef { index, generation };
        if rejecting {
            self.conns.over_limit += 1;
            self.stats.connections_rejected += 1;
            self.respond_busy(now, r, "too many connections");
        } else {
            self.conns.open += 1;
            self.process(now, r);
        }
    }

    /// Closes a handle that never became a connection.
    pub(super) fn io_out_close_raw(&mut self, handle: ConnHandle) {
        self.submit(None, OpKind::Cancel, Op::Close { conn: handle });
    }

    pub(super) fn on_recv(&mut self, now: Instant, r: ConnRef, c: Completion) {
        let buf = c.buf.expect("recv returns its buffer");
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            panic!("recv completion for a vanished connection");
        };
        conn.recv_op = None;
        conn.rbuf = Some(buf);
        if conn.is_closing() {
            self.maybe_finish_close(r);
            return;
        }
        match c.result {
            Ok(0) => conn.eof = true,
            Ok(n) => {
                conn.last_activity = now;
                self.stats.bytes_in += n;
            }
            Err(e) if e.is_transient() || e == Errno::ECANCELED => {}
            Err(_) => {
                self.close_conn(r);
                return;
            }
        }
        self.process(now, r);
    }

    pub(super) fn on_send(&mut self, now: Instant, r: ConnRef, c: Completion) {
        let buf = c.buf.expect("send returns its buffer");
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            panic!("send completion for a vanished connection");
        };
        conn.send_op = None;
        let closing = conn.is_closing();
        let (_, start, end) = conn.outq.front_mut().expect("a send has a queued response");
        match c.result {
            Ok(n) if n > 0 && !closing => {
                *start += n as usize;
                debug_assert!(*start <= *end);
                self.stats.bytes_out += n;
                conn.last_activity = now;
                if *start >= *end {
                    conn.outq.pop_front();
                    self.recycle(buf);
                } else {
                    let front = conn.outq.front_mut().expect("front exists");
                    front.0 = buf;
                }
            }
            Err(e) if e.is_transient() && !closing => {
                let front = conn.outq.front_mut().expect("front exists");
                front.0 = buf;
            }
            _ => {
                conn.outq.pop_front();
                self.recycle(buf);
                self.close_conn(r);
                self.maybe_finish_close(r);
                return;
            }
        }
        self.pump_send(now, r);
        self.after_send(now, r);
    }

    /// After a send: if the response is complete, end the request.
    pub(super) fn after_send(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        if conn.send_op.is_some() || !conn.outq.is_empty() {
            return;
        }
        let done = matches!(
            conn.active.as_ref().map(|a| &a.stage),
            Some(Stage::Responded)
        );
        if done {
            if let Some(a) = conn.active.take() {
                self.bufs.heads.recycle(a.head);
            }
            self.release_grant(now, r);
            self.end_request(now, r);
        }
    }

    /// The connection's request is answered and sent: close, linger, or go on to the next.
    pub(super) fn end_request(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        assert!(conn.active.is_none(), "the request ended before");
        assert!(conn.grant.is_none(), "its grant went back with it");
        conn.last_activity = now;
        if conn.over_limit() || !conn.keep_alive {
            if conn.discard > 0 && !conn.eof {
                // Lingering close: drain the refused body the client may still send, so
                // the close does not reset the connection before it reads the answer.
                assert_eq!(conn.state, ConnState::Open, "lingers once");
                conn.state = ConnState::Lingering;
                // Its deadline is nearer than the `min_timeout / 2` the lazy deadline cache
                // assumes of a new one: lower the cache, or the close comes up to that late.
                self.deadline_cache = self.deadline_cache.min(now + LINGER_TIMEOUT);
                self.process(now, r);
            } else {
                self.close_conn(r);
            }
            return;
        }
        if self.shutting_down {
            let buffered = conn.rbuf.as_ref().is_some_and(|b| !b.is_empty());
            if !buffered {
                self.close_conn(r);
                return;
            }
        }
        self.process(now, r);
    }

    pub(super) fn pump_send(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        if conn.send_op.is_some() || conn.is_closing() {
            return;
        }
        let Some((buf, start, end)) = conn.outq.front_mut() else {
            return;
        };
        let buf = std::mem::take(buf);
        let (start, end) = (*start, *end);
        let handle = conn.handle;
        conn.send_started = now;
        let id = self.submit(
            Some(r),
            OpKind::Send,
            Op::Send {
                conn: handle,
                buf,
                start,
                end,
            },
        );
        conn_at(&mut self.conns.entries, r)
            .expect("still open")
            .send_op = Some(id);
    }

    pub(super) fn on_file(&mut self, now: Instant, r: ConnRef, c: Completion) {
        let buf = c.buf.expect("file ops return their buffer");
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            panic!("file completion for a vanished connection");
        };
        conn.file_op = None;
        let closing = conn.is_closing();
        let outcome = FileOutcome::of(c.result, closing);
        let active = conn.active.as_mut().expect("file op belongs to a request");
        match &mut active.stage {
            Stage::Write { .. } => self.on_write_done(now, r, buf, outcome),
            Stage::Stream(_) => self.on_stream_write_done(now, r, buf, outcome),
            Stage::Read { .. } => self.on_read_done(now, r, buf, outcome),
            _ => panic!("file completion in a stage without file I/O"),
        }
        if closing {
            self.maybe_finish_close(r);
        }
    }

    pub(super) fn on_closed(&mut self, r: ConnRef) {
        let conn = self.conns.entries[r.index]
            .take()
            .expect("closed connection exists");
        assert_eq!(conn.generation, r.generation);
        assert!(conn.recv_op.is_none() && conn.send_op.is_none() && conn.file_op.is_none());
        assert_eq!(
            conn.state,
            ConnState::CloseSubmitted,
            "closed after its close op"
        );
        if conn.over_limit() {
            self.conns.over_limit -= 1;
        } else {
            self.conns.open -= 1;
        }
        if let Some(b) = conn.rbuf {
            self.recycle(b);
        }
        self.conns.free.push(r.index);
        if let Some(grant) = conn.grant {
            self.budget.give_back(grant);
            self.serve_buffer_waiters(self.now_seen);
        }
    }

    pub(super) fn close_conn(&mut self, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        conn.state = ConnState::Closing;
        let cancel = [conn.recv_op, conn.send_op];
        for target in cancel.into_iter().flatten() {
            self.submit(Some(r), OpKind::Cancel, Op::Cancel { target });
        }
        self.abandon_request(r);
        self.maybe_finish_close(r);
    }

    /// Undo what the current request holds (a waiting PUT's place, buffers).
    pub(super) fn abandon_request(&mut self, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        let Some(active) = conn.active.as_mut() else {
            return;
        };
        let stage = active.stage.take();
        match stage {
            // In-flight file ops keep their stage until they complete.
            Stage::Write { .. } | Stage::Read { .. } => active.stage = stage,
            Stage::Stream(s) if s.writing => active.stage = Stage::Stream(s),
            Stage::Stream(s) => {
                if let Some(slot) = s.slot {
                    self.slots.pools.put_back(slot);
                }
                self.recycle_piece(s.piece);
                if s.lane_deadline.is_some() {
                    // Its queue entry is dead now; the ones behind it may fit.
                    self.serve_buffer_waiters(self.now_seen);
                }
            }
            Stage::Body { body, .. } | Stage::WaitSlot { body, .. } => self.recycle(body),
            Stage::WaitBuffer { need, .. } => {
                if let BufferNeed::Read { version, .. } = need {
                    self.end_read(version);
                }
                // Its queue entry is dead now; the ones behind it may fit.
                self.serve_buffer_waiters(self.now_seen);
            }
            _ => {}
        }
    }

    pub(super) fn maybe_finish_close(&mut self, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        if conn.state != ConnState::Closing {
            return;
        }
        if conn.recv_op.is_some() || conn.send_op.is_some() || conn.file_op.is_some() {
            return;
        }
        conn.state = ConnState::CloseSubmitted;
        let handle = conn.handle;
        for (buf, _, _) in std::mem::take(&mut conn.outq) {
            self.recycle(buf);
        }
        self.submit(Some(r), OpKind::Close, Op::Close { conn: handle });
    }
}
