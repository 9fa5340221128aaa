//! The buffer budget (`WorkerConfig::buffer_budget_bytes`): grants of large I/O buffers to
//! requests, upload lanes within their cap, and two first-come-first-served wait queues.
//!
//! Owns: `granted`, `lanes_granted`, `buffer_waiters`, `lane_waiters` and the functions that
//! take, give back and serve grants.
//! Invariants: the grants add up to `granted` <= budget, lanes to `lanes_granted` <= `lane_cap`;
//! a grant keeps its kind; a waiter is served only when it is first in its queue.
//! Must never: grant past the budget, or skip a waiter that is first in its queue.

use super::*;

impl Worker {
    /// The budget a GET of a block of `len` bytes takes: the capacity of its [`read_buf`]
    /// (small buffers are a connection's own and come free).
    ///
    /// [`read_buf`]: Worker::read_buf
    pub(super) fn read_grant(&self, len: u32) -> usize {
        let end = HEAD_ROOM_BYTES + len as usize;
        if end <= IDLE_RECV_BYTES {
            0
        } else if end <= self.recv_buf_bytes() {
            self.recv_buf_bytes()
        } else {
            LARGE_BUF_BYTES
        }
    }

    /// The most the upload lanes may hold together: half the budget, and always room for one
    /// buffered body beside them.
    pub(super) fn lane_cap(&self) -> usize {
        let budget = self.config.buffer_budget_bytes;
        (budget / 2).min(budget - LARGE_BUF_BYTES - self.recv_buf_bytes())
    }

    /// The grant of an upload's lane: a piece and a receive buffer.
    pub(super) fn lane_bytes(&self) -> usize {
        STREAM_PIECE_BYTES + self.recv_buf_bytes()
    }

    /// The grant of a body read into one buffer: the most it may hold, and a receive buffer.
    pub(super) fn body_grant(&self, reader: &BodyReader) -> usize {
        let limit = match reader {
            BodyReader::Length { remaining } => *remaining,
            BodyReader::Chunked(decoder) => decoder.max_body_bytes(),
        };
        (limit as usize).max(LARGE_BUF_BYTES) + self.recv_buf_bytes()
    }

    /// Raises the grant of `r`'s current request to `need` bytes of the buffer budget (an
    /// upload's lane when `lane`). Refused when that would overrun the budget (or the lanes'
    /// cap), or when others wait in the same queue and this one is not the first of them
    /// (`first_waiter`): waiters are served in order.
    pub(super) fn take_grant(
        &mut self,
        r: ConnRef,
        need: usize,
        lane: bool,
        first_waiter: bool,
    ) -> bool {
        let budget = self.config.buffer_budget_bytes;
        let cap = self.lane_cap();
        assert!(need <= budget, "a grant of {need} bytes never fits");
        let queue_empty = if lane {
            self.lane_waiters.is_empty()
        } else {
            self.buffer_waiters.is_empty()
        };
        let conn = conn_at(&mut self.conns, r).expect("open");
        if conn.grant >= need {
            return true;
        }
        assert!(
            conn.grant == 0 || conn.lane == lane,
            "a grant keeps its kind"
        );
        let others = self.granted - conn.grant;
        let lanes = self.lanes_granted - if conn.lane { conn.grant } else { 0 };
        let fits = others + need <= budget && (!lane || lanes + need <= cap);
        if !fits || !(queue_empty || first_waiter) {
            return false;
        }
        self.granted = others + need;
        if lane {
            self.lanes_granted = lanes + need;
        }
        conn.grant = need;
        conn.lane = lane;
        true
    }

    /// Takes back a request's grant (the caller then serves the waiters).
    pub(super) fn drop_grant(&mut self, grant: usize, lane: bool) {
        self.granted -= grant;
        if lane {
            self.lanes_granted -= grant;
        }
    }

    /// Gives the grant of `r`'s request back to the budget, serving waiters.
    pub(super) fn release_grant(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns, r) else {
            return;
        };
        let grant = std::mem::take(&mut conn.grant);
        let lane = std::mem::take(&mut conn.lane);
        if grant > 0 {
            self.drop_grant(grant, lane);
            self.serve_buffer_waiters(now);
        }
    }

    /// Parks `r`'s request until the budget has room for it (or its deadline: 503).
    pub(super) fn wait_for_buffer(&mut self, now: Instant, r: ConnRef, need: BufferNeed) {
        self.stats.buffer_waits += 1;
        let deadline = now + self.config.slot_wait_limit;
        let active = conn_at(&mut self.conns, r)
            .and_then(|c| c.active.as_mut())
            .expect("active");
        active.stage = Stage::WaitBuffer { need, deadline };
        self.buffer_waiters.push_back(r);
    }

    /// Grants of the requests waiting, in order in each queue, while the budget has room. Call
    /// whenever a grant is given back or a waiter leaves (its entry may have blocked others).
    pub(super) fn serve_buffer_waiters(&mut self, now: Instant) {
        if self.serving {
            return;
        }
        self.serving = true;
        while self.serve_queue(now, false) | self.serve_queue(now, true) {}
        self.serving = false;
    }

    /// Serves one queue (`lanes`: the uploads') from its front; whether anything happened.
    pub(super) fn serve_queue(&mut self, now: Instant, lanes: bool) -> bool {
        let mut progressed = false;
        loop {
            let queue = if lanes {
                &self.lane_waiters
            } else {
                &self.buffer_waiters
            };
            let Some(&r) = queue.front() else {
                return progressed;
            };
            let need = match stage_of(&self.conns, r) {
                Some(Stage::WaitBuffer {
                    need: BufferNeed::Read { location, .. },
                    ..
                }) if !lanes => self.read_grant(location.len),
                Some(Stage::WaitBuffer {
                    need: BufferNeed::Body { reader, .. },
                    ..
                }) if !lanes => self.body_grant(reader),
                Some(Stage::Stream(s)) if lanes && s.lane_deadline.is_some() => self.lane_bytes(),
                // Answered (timed out), gone on in small pieces, or closed meanwhile.
                _ => {
                    self.pop_waiter(lanes);
                    progressed = true;
                    continue;
                }
            };
            if !self.take_grant(r, need, lanes, true) {
                return progressed;
            }
            self.pop_waiter(lanes);
            progressed = true;
            if lanes {
                self.give_lane(r);
                self.process(now, r);
                continue;
            }
            let active = conn_at(&mut self.conns, r)
                .and_then(|c| c.active.as_mut())
                .expect("checked above");
            let Stage::WaitBuffer { need, .. } =
                std::mem::replace(&mut active.stage, Stage::Responded)
            else {
                unreachable!("checked above")
            };
            match need {
                BufferNeed::Read { location, seq } => self.start_read(r, location, seq),
                BufferNeed::Body {
                    reader,
                    send_continue,
                } => {
                    self.begin_body(now, r, reader, send_continue);
                    self.process(now, r);
                }
            }
        }
    }

    pub(super) fn pop_waiter(&mut self, lanes: bool) {
        if lanes {
            self.lane_waiters.pop_front();
        } else {
            self.buffer_waiters.pop_front();
        }
    }
}
