//! Deadlines: when each connection's wait ends, and what happens when it does.
//!
//! Owns: `conn_deadline` (one deadline per connection state), the exact scan
//! (`earliest_deadline`), `check_timeouts` and `on_deadline`. `Worker::poll_timeout` and
//! `Worker::tick` (mod.rs) use a lazy cache over these (`deadline_cache`).
//! Invariants: every request waits for a bounded time (408, 503, or a closed connection);
//! a piece being written is answered only once its write returns.
//! Must never: answer a request whose file op is in flight (its completion needs the stage).

use super::*;

impl Worker {
    /// The shortest timeout any deadline is set with.
    pub(super) fn min_timeout(&self) -> Duration {
        let c = &self.config;
        c.request_timeout.min(c.idle_timeout).min(c.slot_wait_limit)
    }

    /// The earliest deadline of any connection (exact scan).
    pub(super) fn earliest_deadline(&self) -> Option<Instant> {
        self.conns
            .entries
            .iter()
            .flatten()
            .filter_map(|c| self.conn_deadline(c))
            .min()
    }

    pub(super) fn conn_deadline(&self, conn: &Conn) -> Option<Instant> {
        if conn.is_closing() {
            return None;
        }
        let c = &self.config;
        if conn.send_op.is_some() {
            return Some(conn.send_started + c.request_timeout);
        }
        if conn.state == ConnState::Lingering {
            return Some(conn.last_activity + LINGER_TIMEOUT);
        }
        match &conn.active {
            None => Some(match conn.head_started {
                Some(t) => t + c.request_timeout,
                None => conn.last_activity + c.idle_timeout,
            }),
            Some(a) => match &a.stage {
                Stage::Body { .. } | Stage::Verify(_) => Some(a.started + c.request_timeout),
                Stage::WaitSlot { deadline, .. } => Some(*deadline),
                Stage::WaitBuffer { deadline, .. } => {
                    Some((*deadline).min(a.started + c.request_timeout))
                }
                // Waiting for the controller (or the flush behind it): answered by the request
                // timeout whatever storage does (SPEC's liveness line).
                Stage::Occupy { .. } | Stage::Release => Some(a.asked + c.request_timeout),
                Stage::Stream(s) => {
                    let request = if s.slot.is_none() {
                        Some(s.deadline.min(a.started + c.request_timeout))
                    } else {
                        (s.remaining > 0).then_some(a.started + c.request_timeout)
                    };
                    [request, s.lane_deadline].into_iter().flatten().min()
                }
                _ => None,
            },
        }
    }

    pub(super) fn check_timeouts(&mut self, now: Instant) {
        for index in 0..self.conns.entries.len() {
            let Some(conn) = self.conns.entries[index].as_ref() else {
                continue;
            };
            let Some(deadline) = self.conn_deadline(conn) else {
                continue;
            };
            if now < deadline {
                continue;
            }
            let r = self.conn_ref(index);
            self.on_deadline(now, r);
        }
    }

    pub(super) fn on_deadline(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        if conn.send_op.is_some() {
            // A client that does not read its response.
            self.stats.timeouts += 1;
            self.close_conn(r);
            return;
        }
        match conn.active.as_ref().map(|a| &a.stage) {
            None if conn.head_started.is_none() => self.close_conn(r),
            None | Some(Stage::Body { .. } | Stage::Verify(_)) => {
                self.stats.timeouts += 1;
                let method = conn
                    .active
                    .as_ref()
                    .map_or(Method::Other, |a| a.head.method);
                self.respond_error_closing(
                    now,
                    r,
                    method,
                    Status::REQUEST_TIMEOUT,
                    "request not completed in time",
                );
            }
            Some(Stage::WaitSlot { .. }) => {
                self.respond_busy(now, r, "no free slot in time; try again");
            }
            Some(Stage::WaitBuffer { .. }) => {
                // A GET's address goes out of flight before the answer replaces the stage
                // (and the waiters behind this one are served).
                self.abandon_request(r);
                self.respond_busy(now, r, "no buffer memory free in time; try again");
            }
            Some(Stage::Stream(s)) if s.lane_deadline.is_some_and(|d| now >= d) => {
                self.degrade_stream(r);
                self.process(now, r);
                // Its queue entry is dead now; the ones behind it may fit.
                self.serve_buffer_waiters(now);
            }
            Some(Stage::Stream(s)) if s.slot.is_none() => {
                self.respond_busy(now, r, "no free slot in time; try again");
            }
            // A piece is being written: answer once it is done (the deadline fires again);
            // answering now would drop the stage the write's completion needs.
            Some(Stage::Stream(s)) if s.writing => {}
            Some(Stage::Occupy { .. } | Stage::Release) => self.answer_unconfirmed(now, r),
            Some(Stage::Stream(_)) => {
                self.stats.timeouts += 1;
                // The slot goes back to the pool before the answer replaces the stage.
                self.abandon_request(r);
                self.respond_error_closing(
                    now,
                    r,
                    Method::Put,
                    Status::REQUEST_TIMEOUT,
                    "request not completed in time",
                );
            }
            _ => {}
        }
    }
}
