//! The one audit of the index: every block's slot inside the capacity, no two slots
//! overlapping, reservations clear of blocks, the allocator's accounting adding up; with the
//! totals. Used by startup (`Controller::open`), `buddy-blocks check` (which also re-hashes each
//! block's bytes through `visit`) and the simulator (`Controller::check_against_store`).
//!
//! Reads the index only; it must never change the store. Invariant of its result: `allocator`
//! has exactly the blocks' slots allocated (when `problems` names no block), never the
//! reservations.

use crate::buddy::{BuddyAllocator, Slot};
use crate::hash::BlockHash;
use crate::message::WorkerId;
use crate::meta::{IndexEntry, MetaError, MetaRead};

/// One thing wrong with the index.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum IndexProblem {
    #[error("{hash}: slot past the capacity")]
    PastCapacity { hash: BlockHash },
    #[error("{hash}: slot {slot:?} overlaps: {error}")]
    Overlap {
        hash: BlockHash,
        slot: Slot,
        error: String,
    },
    #[error("the index's slots overlap (no single entry at fault)")]
    OverlapUnattributed,
    #[error("reservation {slot:?} (worker {worker}): {error}")]
    Reservation {
        slot: Slot,
        worker: WorkerId,
        error: String,
    },
    #[error("allocator accounting does not add up")]
    Accounting,
}

impl IndexProblem {
    /// A problem a server must not serve over (everything but a reservation's: reservations
    /// go back to free at startup anyway).
    pub fn refuses_serving(&self) -> bool {
        !matches!(self, IndexProblem::Reservation { .. })
    }
}

/// What the index holds, and what is wrong with it.
#[derive(Debug)]
pub struct IndexAudit {
    pub blocks: u64,
    /// Bytes of the blocks' slots.
    pub used_bytes: u64,
    /// Bytes of the blocks themselves.
    pub data_bytes: u64,
    pub reservations: Vec<(Slot, WorkerId)>,
    /// Every block's slot allocated, nothing else.
    pub allocator: BuddyAllocator,
    /// In index order, then the reservations', then accounting.
    pub problems: Vec<IndexProblem>,
}

impl IndexAudit {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem a server must not serve over, if any.
    pub fn block_problem(&self) -> Option<&IndexProblem> {
        self.problems.iter().find(|p| p.refuses_serving())
    }
}

/// Audits the index in `read` against `capacity_bytes`. `visit` sees every entry whose slot
/// lies inside the capacity (`check` re-hashes its bytes there).
pub fn audit_index(
    read: &impl MetaRead,
    capacity_bytes: u64,
    mut visit: impl FnMut(&BlockHash, &IndexEntry),
) -> Result<IndexAudit, MetaError> {
    assert!(capacity_bytes > 0, "a capacity");
    let (mut blocks, mut used_bytes, mut data_bytes) = (0u64, 0u64, 0u64);
    let mut slots = Vec::new();
    let mut past_capacity = false;
    read.for_each_entry(&mut |hash, entry| {
        blocks += 1;
        used_bytes += entry.slot.bytes();
        data_bytes += u64::from(entry.len);
        if entry.slot.end() > capacity_bytes {
            past_capacity = true;
            return;
        }
        slots.push(entry.slot);
        visit(hash, entry);
    })?;
    // One pass over the sorted slots (a million blocks in a fraction of a second); when the
    // index is inconsistent, marking slot by slot names every entry at fault, in index order.
    let fast = (!past_capacity)
        .then(|| BuddyAllocator::from_allocated(capacity_bytes, slots).ok())
        .flatten();
    let mut problems = Vec::new();
    let allocator = match fast {
        Some(allocator) => allocator,
        None => slot_by_slot(read, capacity_bytes, &mut problems)?,
    };
    let mut audit = IndexAudit {
        blocks,
        used_bytes,
        data_bytes,
        reservations: Vec::new(),
        allocator,
        problems,
    };
    audit_reservations(read, capacity_bytes, &mut audit)?;
    assert!(
        audit.problems.iter().any(IndexProblem::refuses_serving)
            || audit.allocator.allocated_bytes() == audit.used_bytes,
        "a clean index allocates exactly its blocks' slots"
    );
    Ok(audit)
}

/// Marks every entry's slot one by one, naming each entry at fault.
fn slot_by_slot(
    read: &impl MetaRead,
    capacity_bytes: u64,
    problems: &mut Vec<IndexProblem>,
) -> Result<BuddyAllocator, MetaError> {
    let mut allocator = BuddyAllocator::new(capacity_bytes);
    let before = problems.len();
    read.for_each_entry(&mut |hash, entry| {
        if entry.slot.end() > capacity_bytes {
            problems.push(IndexProblem::PastCapacity { hash: *hash });
        } else if let Err(e) = allocator.mark_allocated(entry.slot) {
            problems.push(IndexProblem::Overlap {
                hash: *hash,
                slot: entry.slot,
                error: e.to_string(),
            });
        }
    })?;
    if problems.len() == before {
        problems.push(IndexProblem::OverlapUnattributed);
    }
    Ok(allocator)
}

/// Reservations must not overlap blocks (or each other); with them, the allocator's accounting
/// must add up. The allocator is given back with the blocks only.
fn audit_reservations(
    read: &impl MetaRead,
    capacity_bytes: u64,
    audit: &mut IndexAudit,
) -> Result<(), MetaError> {
    audit.reservations = read.reservations()?;
    let mut marked = Vec::new();
    for &(slot, worker) in &audit.reservations {
        match audit.allocator.mark_allocated(slot) {
            Ok(()) => marked.push(slot),
            Err(e) => audit.problems.push(IndexProblem::Reservation {
                slot,
                worker,
                error: e.to_string(),
            }),
        }
    }
    audit.allocator.check_invariants();
    let allocator = &audit.allocator;
    if allocator.free_bytes() + allocator.allocated_bytes() != capacity_bytes {
        audit.problems.push(IndexProblem::Accounting);
    }
    for slot in marked {
        audit
            .allocator
            .free(slot)
            .expect("a reservation marked above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{MemStore, MetaStore, MetaTxn};
    use crate::size_class::SizeClass;

    fn put(txn: &mut impl MetaTxn, n: u8, offset: u64, class: u8) {
        let slot = Slot {
            offset,
            class: SizeClass::new(class).unwrap(),
        };
        let entry = IndexEntry {
            slot,
            len: 1,
            crc32c: 0,
            flags: 0,
            commit_seq: 1,
        };
        txn.put(&BlockHash([n; 32]), &entry).unwrap();
    }

    const CAPACITY: u64 = 1 << 20;

    #[test]
    fn a_clean_index_gives_its_totals_and_an_allocator_of_its_blocks() {
        let mut store = MemStore::new();
        let mut txn = store.begin().unwrap();
        put(&mut txn, 1, 0, 0);
        put(&mut txn, 2, 8192, 1);
        let reserved = Slot {
            offset: 4096,
            class: SizeClass::new(0).unwrap(),
        };
        txn.reserve(reserved, 3).unwrap();
        txn.commit(true).unwrap();
        let mut visited = 0;
        let audit = audit_index(&store.read().unwrap(), CAPACITY, |_, _| visited += 1).unwrap();
        assert!(audit.is_clean(), "{:?}", audit.problems);
        assert_eq!(
            (audit.blocks, audit.used_bytes, visited),
            (2, 4096 + 8192, 2)
        );
        assert_eq!(audit.reservations, vec![(reserved, 3)]);
        assert_eq!(audit.allocator.allocated_bytes(), 4096 + 8192);
    }

    #[test]
    fn every_fault_is_named() {
        let mut store = MemStore::new();
        let mut txn = store.begin().unwrap();
        put(&mut txn, 1, 0, 1);
        put(&mut txn, 2, 4096, 0); // inside block 1's 8 KiB slot
        put(&mut txn, 3, CAPACITY, 0); // past the capacity
        txn.reserve(
            Slot {
                offset: 0,
                class: SizeClass::new(0).unwrap(),
            },
            0,
        )
        .unwrap();
        txn.commit(true).unwrap();
        let audit = audit_index(&store.read().unwrap(), CAPACITY, |_, _| {}).unwrap();
        let kinds: Vec<String> = audit.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(audit.problems.len(), 3, "{kinds:?}");
        assert!(matches!(audit.problems[0], IndexProblem::Overlap { .. }));
        assert!(matches!(
            audit.problems[1],
            IndexProblem::PastCapacity { .. }
        ));
        assert!(matches!(
            audit.problems[2],
            IndexProblem::Reservation { .. }
        ));
        assert!(audit.block_problem().is_some());
    }
}
