//! `Worker::check_invariants`: the cross-checks the simulator runs after every step.
//!
//! Owns: the accounting identities (open connections, ops in flight, grants and lanes),
//! buffer ownership, the reader horizon, and each request stage's promises about the budget.
//! Must never: change state (it only reads and asserts).

use super::*;

impl Worker {
    pub fn check_invariants(&self) {
        let open = self.conns.iter().flatten().filter(|c| !c.rejecting).count();
        assert_eq!(open, self.conns_open, "open connection count");
        let in_flight = self.ops.iter().filter(|o| o.user.is_some()).count();
        assert_eq!(in_flight, self.ops_in_flight, "in-flight op count");
        assert!(
            self.horizon() >= self.horizon_reported,
            "the reader horizon never goes back"
        );
        assert!(self
            .reads_in_flight
            .last()
            .is_none_or(|&s| s <= self.addresses_received));
        for conn in self.conns.iter().flatten() {
            assert!(
                conn.rbuf.is_some() != conn.recv_op.is_some(),
                "buffer owned exactly once"
            );
        }
        let grants: usize = self.conns.iter().flatten().map(|c| c.grant).sum();
        assert_eq!(grants, self.granted, "granted buffer bytes add up");
        let lanes: usize = self
            .conns
            .iter()
            .flatten()
            .filter(|c| c.lane)
            .map(|c| c.grant)
            .sum();
        assert_eq!(lanes, self.lanes_granted, "lane bytes add up");
        assert!(
            self.lanes_granted <= self.lane_cap(),
            "lanes within their cap"
        );
        assert!(!self.serving, "serving waiters is not left half done");
        assert!(
            self.granted <= self.config.buffer_budget_bytes,
            "{} bytes granted over a budget of {}",
            self.granted,
            self.config.buffer_budget_bytes
        );
        for (index, conn) in self.conns.iter().enumerate() {
            let Some(conn) = conn else { continue };
            assert!(
                conn.grant == 0 || conn.active.is_some(),
                "a grant belongs to a request"
            );
            assert!(!conn.lane || conn.grant > 0, "a lane is a grant");
            let r = ConnRef {
                index,
                generation: conn.generation,
            };
            if let Some(Stage::Stream(s)) = conn.active.as_ref().map(|a| &a.stage) {
                if s.lane_deadline.is_some() {
                    assert!(s.piece_max == 0 && conn.grant == 0 && s.piece.capacity() == 0);
                    assert!(
                        s.slot.is_some(),
                        "an upload asks for a lane once it has a slot"
                    );
                    assert!(
                        self.lane_waiters.contains(&r),
                        "an upload waiting is queued"
                    );
                } else if s.slot.is_some() {
                    assert!(
                        s.piece_max > 0,
                        "an upload with a slot has a piece or waits"
                    );
                } else {
                    assert!(
                        s.piece_max == 0 && conn.grant == 0,
                        "an upload waiting for space holds no buffer"
                    );
                }
            }
            let Some(Stage::WaitBuffer { need, .. }) = conn.active.as_ref().map(|a| &a.stage)
            else {
                continue;
            };
            assert!(
                self.buffer_waiters.contains(&r),
                "a request waiting for the buffer budget is queued"
            );
            if let BufferNeed::Read { seq, .. } = need {
                assert!(
                    self.reads_in_flight.contains(seq),
                    "a GET waiting for a buffer keeps its address in flight"
                );
            }
        }
    }
}
