//! `Worker::check_invariants`: the cross-checks the simulator runs after every step.
//!
//! Owns: the accounting identities (open connections, ops in flight, grants and lanes),
//! buffer ownership, the reader horizon, and each request stage's promises about the budget.
//! Must never: change state (it only reads and asserts).

use super::*;

impl Worker {
    pub fn check_invariants(&self) {
        let open = self
            .conns
            .entries
            .iter()
            .flatten()
            .filter(|c| !c.over_limit())
            .count();
        assert_eq!(open, self.conns.open, "open connection count");
        assert!(
            self.conns.over_limit <= REJECTING_MAX,
            "over-limit connections bounded"
        );
        assert_eq!(self.conns.entries.len(), self.conns.generations.len());
        for &index in &self.conns.free {
            assert!(
                self.conns.entries[index].is_none(),
                "a free slot holds no connection"
            );
        }
        for (index, conn) in self.conns.entries.iter().enumerate() {
            if let Some(conn) = conn {
                assert_eq!(
                    conn.generation, self.conns.generations[index],
                    "a connection has its slot's generation"
                );
            }
        }
        self.ops.check_invariants();
        self.check_reader_horizon();
        for conn in self.conns.entries.iter().flatten() {
            assert!(
                conn.rbuf.is_some() != conn.recv_op.is_some(),
                "buffer owned exactly once"
            );
        }
        self.budget
            .check_invariants(self.conns.entries.iter().flatten().filter_map(|c| c.grant));
        for (index, conn) in self.conns.entries.iter().enumerate() {
            let Some(conn) = conn else { continue };
            assert!(
                conn.grant.is_none() || conn.active.is_some(),
                "a grant belongs to a request"
            );
            match conn.state {
                ConnState::Open | ConnState::Closing => {}
                ConnState::Lingering => {
                    assert!(conn.discard > 0, "a lingering connection has bytes to skip");
                    assert!(
                        conn.active.is_none() && conn.grant.is_none(),
                        "a lingering connection's request is over"
                    );
                }
                ConnState::CloseSubmitted => {
                    let ops = [conn.recv_op, conn.send_op, conn.file_op];
                    assert!(
                        ops.iter().all(Option::is_none) && conn.outq.is_empty(),
                        "a connection is closed with nothing in flight or queued"
                    );
                }
            }
            let r = ConnRef {
                index,
                generation: conn.generation,
            };
            if let Some(Stage::Stream(s)) = conn.active.as_ref().map(|a| &a.stage) {
                if s.lane_deadline.is_some() {
                    assert!(s.piece_max == 0 && conn.grant.is_none() && s.piece.capacity() == 0);
                    assert!(
                        s.slot.is_some(),
                        "an upload asks for a lane once it has a slot"
                    );
                    assert!(
                        self.budget.queue(GrantKind::Lane).contains(&r),
                        "an upload waiting is queued"
                    );
                } else if s.slot.is_some() {
                    assert!(
                        s.piece_max > 0,
                        "an upload with a slot has a piece or waits"
                    );
                } else {
                    assert!(
                        s.piece_max == 0 && conn.grant.is_none(),
                        "an upload waiting for space holds no buffer"
                    );
                }
            }
            let Some(Stage::WaitBuffer { need, .. }) = conn.active.as_ref().map(|a| &a.stage)
            else {
                continue;
            };
            assert!(
                self.budget.queue(GrantKind::Buffer).contains(&r),
                "a request waiting for the buffer budget is queued"
            );
            if let BufferNeed::Read { version, .. } = need {
                assert!(
                    self.reads.in_flight.contains_key(version),
                    "a GET waiting for a buffer keeps its address in flight"
                );
            }
        }
    }
}
