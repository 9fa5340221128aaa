//! The buffer budget (`WorkerConfig::buffer_budget_bytes`): grants of large I/O buffers to
//! requests, upload lanes within their cap, and two first-come-first-served wait queues.
//!
//! Owns: `granted`, `lanes_granted`, `buffer_waiters`, `lane_waiters` and the functions that
//! take, give back and serve grants.
//! Invariants: the grants add up to `granted` <= budget, lanes to `lanes_granted` <= `lane_cap`;
//! a grant keeps its kind; a waiter is served only when it is first in its queue.
//! Must never: grant past the budget, or skip a waiter that is first in its queue.

use super::*;

/// What a grant pays for; each kind has its own queue of waiters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum GrantKind {
    /// A GET's read buffer, or a body read into one buffer.
    Buffer,
    /// An upload's lane: a piece and a receive buffer. Lanes together stay within
    /// the budget's lane cap, so uploads (slow ones included) leave GETs their share.
    Lane,
}

impl GrantKind {
    /// Both kinds, in the order the queues are served.
    pub(super) const ALL: [GrantKind; 2] = [GrantKind::Buffer, GrantKind::Lane];
}

/// The bytes of the budget one request holds, and what for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Grant {
    pub(super) bytes: usize,
    pub(super) kind: GrantKind,
}

/// Where a request asking for a grant stands in its kind's queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Turn {
    /// Not queued: it may take a grant only if nobody waits in its queue.
    New,
    /// First in its queue: it goes before the rest (waiters are served in order).
    First,
}

/// The worker's budget of large I/O buffers: what is granted, and who waits, per kind.
#[derive(Debug)]
pub(super) struct Budget {
    budget_bytes: usize,
    /// The most the upload lanes may hold together: half the budget, and always room for one
    /// buffered body beside them.
    lane_cap_bytes: usize,
    /// Sum of the grants held.
    granted_bytes: usize,
    /// Sum of the grants that are lanes (within `granted_bytes`).
    lanes_granted_bytes: usize,
    /// Requests in `Stage::WaitBuffer`, first come first served.
    buffer_waiters: VecDeque<ConnRef>,
    /// Uploads waiting for a lane, first come first served.
    lane_waiters: VecDeque<ConnRef>,
    /// The waiters are being served (a nested call returns; the running one goes on).
    serving: bool,
}

impl Budget {
    /// A budget of `budget_bytes`, with room for a buffered body (a large buffer and a receive
    /// buffer of `recv_buf_bytes`) beside the lanes.
    pub(super) fn new(budget_bytes: usize, recv_buf_bytes: usize) -> Budget {
        assert!(
            budget_bytes >= LARGE_BUF_BYTES + recv_buf_bytes,
            "a budget of {budget_bytes} bytes holds a buffered body"
        );
        let lane_cap_bytes =
            (budget_bytes / 2).min(budget_bytes - LARGE_BUF_BYTES - recv_buf_bytes);
        Budget {
            budget_bytes,
            lane_cap_bytes,
            granted_bytes: 0,
            lanes_granted_bytes: 0,
            buffer_waiters: VecDeque::new(),
            lane_waiters: VecDeque::new(),
            serving: false,
        }
    }

    pub(super) fn granted_bytes(&self) -> usize {
        self.granted_bytes
    }

    /// Raises `held` (a request's grant) to `need` bytes of `kind`. Refused when that would
    /// overrun the budget (or the lanes' cap), or when others wait in the kind's queue and
    /// this request is not the first of them: waiters are served in order. A grant already
    /// as large is kept as it is.
    pub(super) fn take(
        &mut self,
        held: &mut Option<Grant>,
        need: usize,
        kind: GrantKind,
        turn: Turn,
    ) -> bool {
        assert!(
            need <= self.budget_bytes,
            "a grant of {need} bytes never fits"
        );
        let held_bytes = held.map_or(0, |g| g.bytes);
        if held_bytes >= need {
            return true;
        }
        assert!(
            held.is_none_or(|g| g.kind == kind),
            "a grant keeps its kind"
        );
        let others = self.granted_bytes - held_bytes;
        let lanes = self.lanes_granted_bytes
            - if kind == GrantKind::Lane {
                held_bytes
            } else {
                0
            };
        let fits = others + need <= self.budget_bytes
            && (kind == GrantKind::Buffer || lanes + need <= self.lane_cap_bytes);
        let my_turn = turn == Turn::First || self.queue(kind).is_empty();
        if !fits || !my_turn {
            return false;
        }
        self.granted_bytes = others + need;
        if kind == GrantKind::Lane {
            self.lanes_granted_bytes = lanes + need;
        }
        *held = Some(Grant { bytes: need, kind });
        debug_assert!(self.granted_bytes <= self.budget_bytes);
        true
    }

    /// Takes back a request's grant (the caller then serves the waiters).
    pub(super) fn give_back(&mut self, grant: Grant) {
        assert!(grant.bytes > 0 && grant.bytes <= self.granted_bytes);
        self.granted_bytes -= grant.bytes;
        if grant.kind == GrantKind::Lane {
            self.lanes_granted_bytes -= grant.bytes;
        }
    }

    /// The requests waiting for a grant of `kind`, first come first.
    pub(super) fn queue(&self, kind: GrantKind) -> &VecDeque<ConnRef> {
        match kind {
            GrantKind::Buffer => &self.buffer_waiters,
            GrantKind::Lane => &self.lane_waiters,
        }
    }

    /// Queues `r` for a grant of `kind`.
    pub(super) fn enqueue(&mut self, kind: GrantKind, r: ConnRef) {
        let queue = match kind {
            GrantKind::Buffer => &mut self.buffer_waiters,
            GrantKind::Lane => &mut self.lane_waiters,
        };
        debug_assert!(!queue.contains(&r), "queued once");
        queue.push_back(r);
    }

    /// Removes the first waiter of `kind` (served, or no longer waiting).
    pub(super) fn pop_waiter(&mut self, kind: GrantKind) {
        let popped = match kind {
            GrantKind::Buffer => self.buffer_waiters.pop_front(),
            GrantKind::Lane => self.lane_waiters.pop_front(),
        };
        assert!(popped.is_some(), "a waiter to pop");
    }

    /// Marks the start of serving the waiters; false when it is already under way.
    fn begin_serving(&mut self) -> bool {
        !std::mem::replace(&mut self.serving, true)
    }

    fn end_serving(&mut self) {
        assert!(self.serving);
        self.serving = false;
    }

    /// The grants held (one per request holding one) add up, within the budget and the cap.
    pub(super) fn check_invariants(&self, grants: impl Iterator<Item = Grant>) {
        let (mut all, mut lanes) = (0, 0);
        for grant in grants {
            assert!(grant.bytes > 0, "a grant holds bytes");
            all += grant.bytes;
            if grant.kind == GrantKind::Lane {
                lanes += grant.bytes;
            }
        }
        assert_eq!(all, self.granted_bytes, "granted buffer bytes add up");
        assert_eq!(lanes, self.lanes_granted_bytes, "lane bytes add up");
        assert!(
            self.lanes_granted_bytes <= self.lane_cap_bytes,
            "lanes within their cap"
        );
        assert!(!self.serving, "serving waiters is not left half done");
        assert!(
            self.granted_bytes <= self.budget_bytes,
            "{} bytes granted over a budget of {}",
            self.granted_bytes,
            self.budget_bytes
        );
    }
}

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

    /// Raises the grant of `r`'s current request to `need` bytes of `kind` (see
    /// [`Budget::take`]).
    pub(super) fn take_grant(
        &mut self,
        r: ConnRef,
        need: usize,
        kind: GrantKind,
        turn: Turn,
    ) -> bool {
        let conn = self.conns.live_mut(r);
        assert!(conn.active.is_some(), "a grant belongs to a request");
        self.budget.take(&mut conn.grant, need, kind, turn)
    }

    /// Gives the grant of `r`'s request back to the budget, serving waiters.
    pub(super) fn release_grant(&mut self, now: Instant, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        if let Some(grant) = conn.grant.take() {
            self.budget.give_back(grant);
            self.serve_buffer_waiters(now);
        }
    }

    /// Parks `r`'s request until the budget has room for it (or its deadline: 503).
    pub(super) fn wait_for_buffer(&mut self, now: Instant, r: ConnRef, need: BufferNeed) {
        self.stats.buffer_waits += 1;
        let deadline = now + self.config.slot_wait_limit;
        let active = self.active_mut(r);
        active.stage = Stage::WaitBuffer { need, deadline };
        self.budget.enqueue(GrantKind::Buffer, r);
    }

    /// Grants of the requests waiting, in order in each queue, while the budget has room. Call
    /// whenever a grant is given back or a waiter leaves (its entry may have blocked others).
    pub(super) fn serve_buffer_waiters(&mut self, now: Instant) {
        if !self.budget.begin_serving() {
            return;
        }
        let [buffers, lanes] = GrantKind::ALL;
        while self.serve_queue(now, buffers) | self.serve_queue(now, lanes) {}
        self.budget.end_serving();
    }

    /// Serves the queue of `kind` from its front; whether anything happened.
    fn serve_queue(&mut self, now: Instant, kind: GrantKind) -> bool {
        let lanes = kind == GrantKind::Lane;
        let mut progressed = false;
        loop {
            let Some(&r) = self.budget.queue(kind).front() else {
                return progressed;
            };
            let need = match stage_of(&self.conns.entries, r) {
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
                    self.budget.pop_waiter(kind);
                    progressed = true;
                    continue;
                }
            };
            if !self.take_grant(r, need, kind, Turn::First) {
                return progressed;
            }
            self.budget.pop_waiter(kind);
            progressed = true;
            if lanes {
                self.give_lane(r);
                self.process(now, r);
                continue;
            }
            let active = conn_at(&mut self.conns.entries, r)
                .and_then(|c| c.active.as_mut())
                .expect("checked above");
            let Stage::WaitBuffer { need, .. } = active.stage.take() else {
                unreachable!("checked above")
            };
            match need {
                BufferNeed::Read { location, version } => self.start_read(r, location, version),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECV: usize = 96 * 1024;
    const BUDGET: usize = 4 << 20;

    fn conn(index: usize) -> ConnRef {
        ConnRef {
            index,
            generation: 1,
        }
    }

    #[test]
    fn the_lane_cap_is_half_the_budget_and_leaves_room_for_a_body() {
        assert_eq!(Budget::new(BUDGET, RECV).lane_cap_bytes, BUDGET / 2);
        let small = LARGE_BUF_BYTES + RECV + 1000;
        assert_eq!(
            Budget::new(small, RECV).lane_cap_bytes,
            1000,
            "a buffered body keeps its room"
        );
        let tight = 2 * LARGE_BUF_BYTES;
        assert_eq!(
            Budget::new(tight, RECV).lane_cap_bytes,
            tight - LARGE_BUF_BYTES - RECV
        );
    }

    #[test]
    fn grants_stay_within_the_budget_and_come_back() {
        let mut budget = Budget::new(BUDGET, RECV);
        let (mut a, mut b) = (None, None);
        assert!(budget.take(&mut a, 3 << 20, GrantKind::Buffer, Turn::New));
        assert_eq!(
            a,
            Some(Grant {
                bytes: 3 << 20,
                kind: GrantKind::Buffer
            })
        );
        assert!(!budget.take(&mut b, 2 << 20, GrantKind::Buffer, Turn::New));
        assert_eq!(b, None, "a refused request holds nothing");
        assert_eq!(budget.granted_bytes(), 3 << 20);
        budget.give_back(a.take().unwrap());
        assert_eq!(budget.granted_bytes(), 0);
        assert!(budget.take(&mut b, 2 << 20, GrantKind::Buffer, Turn::New));
        budget.check_invariants(b.into_iter());
    }

    #[test]
    fn raising_a_grant_counts_only_the_difference() {
        let mut budget = Budget::new(BUDGET, RECV);
        let mut a = None;
        assert!(budget.take(&mut a, 1 << 20, GrantKind::Buffer, Turn::New));
        assert!(
            budget.take(&mut a, 512, GrantKind::Buffer, Turn::New),
            "already held"
        );
        assert_eq!(a.unwrap().bytes, 1 << 20, "a smaller ask keeps the grant");
        assert!(budget.take(&mut a, BUDGET, GrantKind::Buffer, Turn::New));
        assert_eq!(budget.granted_bytes(), BUDGET);
        budget.check_invariants(a.into_iter());
    }

    #[test]
    fn lanes_stop_at_their_cap_while_buffers_still_fit() {
        let mut budget = Budget::new(BUDGET, RECV);
        let lane = STREAM_PIECE_BYTES + RECV;
        let mut lanes = Vec::new();
        loop {
            let mut grant = None;
            if !budget.take(&mut grant, lane, GrantKind::Lane, Turn::New) {
                break;
            }
            lanes.push(grant.unwrap());
        }
        assert_eq!(
            lanes.len(),
            (BUDGET / 2) / lane,
            "lanes fill their cap, no more"
        );
        let mut body = None;
        assert!(
            budget.take(
                &mut body,
                LARGE_BUF_BYTES + RECV,
                GrantKind::Buffer,
                Turn::New
            ),
            "a body fits beside full lanes"
        );
        budget.check_invariants(lanes.iter().copied().chain(body));
    }

    #[test]
    fn waiters_are_served_in_order() {
        let mut budget = Budget::new(BUDGET, RECV);
        let mut big = None;
        assert!(budget.take(&mut big, BUDGET - 1024, GrantKind::Buffer, Turn::New));
        budget.enqueue(GrantKind::Buffer, conn(1));
        budget.give_back(big.take().unwrap());
        let mut newcomer = None;
        assert!(
            !budget.take(&mut newcomer, 1024, GrantKind::Buffer, Turn::New),
            "a newcomer waits behind the queue although it fits"
        );
        let mut lane = None;
        let lane_bytes = STREAM_PIECE_BYTES + RECV;
        assert!(
            budget.take(&mut lane, lane_bytes, GrantKind::Lane, Turn::New),
            "the other kind's queue does not hold a lane up"
        );
        let mut first = None;
        assert!(budget.take(&mut first, 1024, GrantKind::Buffer, Turn::First));
        assert_eq!(budget.queue(GrantKind::Buffer).front(), Some(&conn(1)));
        budget.pop_waiter(GrantKind::Buffer);
        assert!(budget.queue(GrantKind::Buffer).is_empty());
        assert!(budget.take(&mut newcomer, 1024, GrantKind::Buffer, Turn::New));
        budget.check_invariants([first, newcomer, lane].into_iter().flatten());
    }

    /// A budget with one grant of 1 KiB of `kind` taken.
    fn one_grant(kind: GrantKind) -> (Budget, Option<Grant>) {
        let mut budget = Budget::new(BUDGET, RECV);
        let mut grant = None;
        assert!(budget.take(&mut grant, 1024, kind, Turn::New));
        (budget, grant)
    }

    #[test]
    #[should_panic(expected = "a grant keeps its kind")]
    fn a_grant_keeps_its_kind() {
        let (mut budget, mut grant) = one_grant(GrantKind::Lane);
        budget.take(&mut grant, 4096, GrantKind::Buffer, Turn::New);
    }

    #[test]
    #[should_panic(expected = "granted buffer bytes add up")]
    fn a_grant_lost_by_its_request_is_caught() {
        let (budget, _lost) = one_grant(GrantKind::Buffer);
        budget.check_invariants(std::iter::empty());
    }
}
