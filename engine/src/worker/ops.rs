//! The operation table: every I/O operation in flight, by op id (slot index + generation).
//!
//! Owns: [`OpTable`] (entries, free list, the count in flight, the queue of ops not yet
//! handed to the driver), [`OpKind`], and `Worker::submit_file`.
//! Invariants: an entry is in use exactly while its op is in flight (`in_flight` counts
//! them); a reused entry bumps its generation, so a stale completion is never taken for a new
//! op; a connection has at most one file op at a time.
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

/// Who an operation in flight belongs to: its connection (none for accept and for closing a
/// handle that never became one) and what it is.
pub(super) type OpUser = (Option<ConnRef>, OpKind);

#[derive(Debug)]
struct OpEntry {
    generation: u32,
    user: Option<OpUser>,
}

/// Every operation in flight, by [`OpId`] (entry index + generation).
#[derive(Debug, Default)]
pub(super) struct OpTable {
    entries: Vec<OpEntry>,
    /// Entries not in use.
    free: Vec<u32>,
    /// Entries in use.
    in_flight: usize,
    /// Submitted ops not yet taken by the driver (`Worker::poll_io`).
    out: VecDeque<(OpId, Op)>,
}

impl OpTable {
    /// Records `op` as in flight for `user` and queues it for the driver; its id.
    pub(super) fn submit(&mut self, user: OpUser, op: Op) -> OpId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(OpEntry {
                    generation: 0,
                    user: None,
                });
                u32::try_from(self.entries.len() - 1).expect("op table index fits an op id")
            }
        };
        let entry = &mut self.entries[index as usize];
        assert!(entry.user.is_none(), "op slot {index} in use");
        entry.generation = entry.generation.wrapping_add(1);
        entry.user = Some(user);
        let id = OpId::new(index, entry.generation);
        self.in_flight += 1;
        self.out.push_back((id, op));
        id
    }

    /// The owner of the op `id` names, whose completion has come; `None` for an id that is
    /// not in flight (unknown, stale generation, or retired already).
    pub(super) fn retire(&mut self, id: OpId) -> Option<OpUser> {
        let entry = self.entries.get_mut(id.index() as usize)?;
        if entry.generation != id.generation() {
            return None;
        }
        let user = entry.user.take()?;
        self.free.push(id.index());
        self.in_flight -= 1;
        Some(user)
    }

    /// The next submitted op for the driver.
    pub(super) fn pop_out(&mut self) -> Option<(OpId, Op)> {
        self.out.pop_front()
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// No op in flight and none waiting for the driver.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.out.is_empty()
    }

    pub(super) fn check_invariants(&self) {
        let in_use = self.entries.iter().filter(|e| e.user.is_some()).count();
        assert_eq!(in_use, self.in_flight, "in-flight op count");
        assert_eq!(
            in_use + self.free.len(),
            self.entries.len(),
            "every entry is in use or free"
        );
        for (id, _) in &self.out {
            let entry = &self.entries[id.index() as usize];
            assert!(
                entry.generation == id.generation() && entry.user.is_some(),
                "an op waiting for the driver is in flight"
            );
        }
    }
}

impl Worker {
    pub(super) fn submit(&mut self, conn: Option<ConnRef>, kind: OpKind, op: Op) -> OpId {
        self.ops.submit((conn, kind), op)
    }

    /// Submits a data-file operation for the connection's current request.
    pub(super) fn submit_file(&mut self, r: ConnRef, op: Op) {
        debug_assert!(matches!(op, Op::ReadAt { .. } | Op::WriteAt { .. }));
        let id = self.submit(Some(r), OpKind::File, op);
        let conn =
            conn_at(&mut self.conns.entries, r).expect("a file op belongs to an open connection");
        assert!(
            conn.file_op.is_none(),
            "one file op per connection at a time"
        );
        conn.file_op = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(index: usize) -> Option<ConnRef> {
        Some(ConnRef {
            index,
            generation: 1,
        })
    }

    #[test]
    fn ops_queue_for_the_driver_in_order_and_retire_once() {
        let mut table = OpTable::default();
        let a = table.submit((None, OpKind::Accept), Op::Accept);
        let b = table.submit((conn(3), OpKind::Cancel), Op::Cancel { target: a });
        assert_ne!(a, b);
        assert_eq!(table.in_flight(), 2);
        assert!(matches!(table.pop_out(), Some((id, Op::Accept)) if id == a));
        assert!(
            matches!(table.pop_out(), Some((id, Op::Cancel { target })) if id == b && target == a)
        );
        assert!(table.pop_out().is_none());
        assert_eq!(table.retire(b), Some((conn(3), OpKind::Cancel)));
        assert_eq!(table.retire(b), None, "a completion is taken once");
        assert!(!table.is_idle(), "the accept is still in flight");
        assert_eq!(table.retire(a), Some((None, OpKind::Accept)));
        assert!(table.is_idle());
        table.check_invariants();
    }

    #[test]
    fn a_reused_entry_does_not_answer_to_its_old_id() {
        let mut table = OpTable::default();
        let old = table.submit((conn(1), OpKind::Recv), Op::Accept);
        assert!(table.pop_out().is_some());
        assert!(table.retire(old).is_some());
        let new = table.submit((conn(2), OpKind::Send), Op::Accept);
        assert!(table.pop_out().is_some());
        assert_eq!(new.index(), old.index(), "the free entry is reused");
        assert_eq!(new.generation(), old.generation().wrapping_add(1));
        assert_eq!(table.retire(old), None, "a stale id finds nothing");
        assert_eq!(table.in_flight(), 1);
        assert_eq!(table.retire(new), Some((conn(2), OpKind::Send)));
        table.check_invariants();
    }

    #[test]
    fn an_unknown_id_finds_nothing() {
        let mut table = OpTable::default();
        assert_eq!(table.retire(OpId::new(7, 1)), None);
        table.submit((None, OpKind::Accept), Op::Accept);
        assert_eq!(table.retire(OpId::new(0, 9)), None);
        table.check_invariants();
        assert!(table.pop_out().is_some());
        assert_eq!(table.in_flight(), 1);
        table.check_invariants();
    }
}
