//! The operation table: every I/O operation in flight, by op id (slot index + generation).
//!
//! Owns: [`OpTable`] (entries, free list, the count in flight, the queue of ops not yet
//! handed to the driver, the age of the data-file ops in flight), [`OpKind`], and
//! `Worker::submit_file`.
//! Invariants: an entry is in use exactly while its op is in flight (`in_flight` counts
//! them); a reused entry bumps its generation, so a stale completion is never taken for a new
//! op; a connection has at most one file op at a time; the front of `file_ages` is the oldest
//! data-file op still in flight (submission times never decrease, retired ones are popped).
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

/// How many retired file ops `OpTable::file_ages` may hold beyond twice those in flight.
const FILE_AGES_SLACK: usize = 64;

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
    /// Data-file ops by submission time, oldest first; retired ones leave from the front
    /// (lazily: an entry behind the front may be retired already). A read or write the disk
    /// never completes has no deadline a request can enforce (its buffer belongs to the
    /// kernel), so its age is what tells the watchdog (`oldest_file_op_since`).
    file_ages: VecDeque<(OpId, Instant)>,
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

    /// [`submit`](Self::submit) for a data-file op, whose age is watched from `now` on.
    pub(super) fn submit_file(&mut self, user: OpUser, op: Op, now: Instant) -> OpId {
        debug_assert!(matches!(op, Op::ReadAt { .. } | Op::WriteAt { .. }));
        if let Op::WriteAt {
            offset,
            start,
            end,
            slot_end,
            ..
        } = &op
        {
            assert!(
                offset + (end - start) as u64 <= *slot_end
                    && slot_end.is_multiple_of(crate::io::WRITE_PAD_BYTES),
                "a write ends inside its slot, which ends on a pad unit: at {offset}, bytes \
                 {start}..{end}, slot end {slot_end}"
            );
        }
        assert!(
            self.file_ages.back().is_none_or(|(_, t)| *t <= now),
            "file ops are submitted in time order"
        );
        let id = self.submit(user, op);
        self.file_ages.push_back((id, now));
        id
    }

    /// Since when the oldest data-file op in flight has been waiting for the disk.
    pub(super) fn oldest_file_op_since(&self) -> Option<Instant> {
        self.file_ages.front().map(|(_, since)| *since)
    }

    fn is_live(&self, id: OpId) -> bool {
        is_live(&self.entries, id)
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
        while let Some(&(front, _)) = self.file_ages.front() {
            if self.is_live(front) {
                break;
            }
            self.file_ages.pop_front();
        }
        // One stuck op at the front must not let the retired ones behind it pile up.
        if self.file_ages.len() > FILE_AGES_SLACK.max(2 * self.in_flight) {
            let entries = &self.entries;
            self.file_ages.retain(|(id, _)| is_live(entries, *id));
        }
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
            assert!(
                self.is_live(*id),
                "an op waiting for the driver is in flight"
            );
        }
        if let Some(&(front, _)) = self.file_ages.front() {
            assert!(self.is_live(front), "the oldest file op is in flight");
        }
        assert!(
            self.file_ages
                .iter()
                .zip(self.file_ages.iter().skip(1))
                .all(|(a, b)| a.1 <= b.1),
            "file op ages in submission order"
        );
        assert!(
            self.file_ages.len() <= FILE_AGES_SLACK + 2 * self.in_flight,
            "retired file ops are compacted away"
        );
    }
}

fn is_live(entries: &[OpEntry], id: OpId) -> bool {
    entries
        .get(id.index() as usize)
        .is_some_and(|e| e.generation == id.generation() && e.user.is_some())
}

impl Worker {
    pub(super) fn submit(&mut self, conn: Option<ConnRef>, kind: OpKind, op: Op) -> OpId {
        self.ops.submit((conn, kind), op)
    }

    /// Submits a data-file operation for the connection's current request.
    pub(super) fn submit_file(&mut self, r: ConnRef, op: Op) {
        let id = self
            .ops
            .submit_file((Some(r), OpKind::File), op, self.now_seen);
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

    fn read() -> Op {
        Op::ReadAt {
            offset: 0,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    /// The age the watchdog sees is the oldest file op still in flight: one the disk never
    /// completes stays visible however many complete behind it, and those do not pile up.
    #[test]
    fn a_stuck_file_op_stays_the_oldest_and_the_rest_do_not_pile_up() {
        let mut table = OpTable::default();
        assert_eq!(table.oldest_file_op_since(), None);
        let stuck = table.submit_file((conn(0), OpKind::File), read(), at(1));
        table.submit((None, OpKind::Accept), Op::Accept);
        while table.pop_out().is_some() {}
        for i in 0..10_000u64 {
            let id = table.submit_file((conn(1), OpKind::File), read(), at(2 + i));
            assert!(table.pop_out().is_some());
            assert_eq!(table.retire(id), Some((conn(1), OpKind::File)));
            assert_eq!(table.oldest_file_op_since(), Some(at(1)));
            table.check_invariants();
        }
        let newer = table.submit_file((conn(2), OpKind::File), read(), at(20_000));
        assert!(table.pop_out().is_some());
        assert!(table.retire(stuck).is_some());
        assert_eq!(
            table.oldest_file_op_since(),
            Some(at(20_000)),
            "next oldest"
        );
        table.check_invariants();
        assert!(table.retire(newer).is_some());
        assert_eq!(table.oldest_file_op_since(), None, "only non-file ops left");
        table.check_invariants();
    }
}
