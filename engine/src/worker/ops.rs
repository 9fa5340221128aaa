//! The operation table: every I/O operation in flight, by op id (slot index + generation).
//!
//! Owns: [`OpKind`], [`OpEntry`], and submitting (`submit`, `submit_file`) and retiring
//! (`retire`) operations. A submitted op goes to `io_out` for `Worker::poll_io`.
//! Invariants: an entry is in use exactly while its op is in flight (`ops_in_flight` counts
//! them); a retired slot bumps its generation on reuse, so a stale completion is never taken
//! for a new op; a connection has at most one file op at a time.
//! Must never: touch the buffer an op owns (the driver hands it back with the completion).

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum OpKind {
    Accept,
    Recv,
    Send,
    File,
    Close,
    Cancel,
}

#[derive(Debug)]
pub(super) struct OpEntry {
    pub(super) generation: u32,
    pub(super) user: Option<(Option<ConnRef>, OpKind)>,
}

impl Worker {
    pub(super) fn submit(&mut self, conn: Option<ConnRef>, kind: OpKind, op: Op) -> OpId {
        let index = match self.op_free.pop() {
            Some(i) => i,
            None => {
                self.ops.push(OpEntry {
                    generation: 0,
                    user: None,
                });
                (self.ops.len() - 1) as u32
            }
        };
        let entry = &mut self.ops[index as usize];
        assert!(entry.user.is_none(), "op slot {index} in use");
        entry.generation = entry.generation.wrapping_add(1);
        entry.user = Some((conn, kind));
        let id = OpId::new(index, entry.generation);
        self.ops_in_flight += 1;
        self.io_out.push_back((id, op));
        id
    }

    /// Submits a data-file operation for the connection's current request.
    pub(super) fn submit_file(&mut self, r: ConnRef, op: Op) {
        debug_assert!(matches!(op, Op::ReadAt { .. } | Op::WriteAt { .. }));
        let id = self.submit(Some(r), OpKind::File, op);
        let conn = conn_at(&mut self.conns, r).expect("a file op belongs to an open connection");
        assert!(
            conn.file_op.is_none(),
            "one file op per connection at a time"
        );
        conn.file_op = Some(id);
    }

    pub(super) fn retire(&mut self, id: OpId) -> Option<(Option<ConnRef>, OpKind)> {
        let entry = self.ops.get_mut(id.index() as usize)?;
        if entry.generation != id.generation() {
            return None;
        }
        let user = entry.user.take()?;
        self.op_free.push(id.index());
        self.ops_in_flight -= 1;
        Some(user)
    }
}
