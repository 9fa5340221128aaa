//! [`recover`]: replay of the log at start, before the controller opens.
//!
//! From the index's [`LogState`] (where replay starts, which run wrote the records) it walks
//! the valid records in order ([`Scanner`]) and applies each to the index: `Release` deletes the
//! hash, `Occupy` puts the entry (and unreserves its slot). A torn or invalid record ends the
//! replay; nothing acknowledged is ever behind it, because record `k + 1` is written only after
//! record `k`'s flush returned. For the same reason only the *last* valid record may describe
//! blocks that never reached the disk: its occupies are verified (SHA-256 of the slot's bytes)
//! and those that fail are dropped (that batch was never acknowledged).
//!
//! Idempotent: each transaction applies up to [`RECOVER_RECORDS_PER_TXN`] records (and about
//! [`RECOVER_OPS_PER_TXN`] ops) and moves
//! the `LogState` past them in the same commit, so a crash anywhere leaves an index state that
//! says where to continue, and the records are still in the region (a checkpoint frees log
//! space only after it returned, and recovery writes no record). The last commit is durable,
//! draws a new run id and leaves the log empty.
//!
//! The caller makes the data file durable first (`datafile::sync_before_open`; the simulator:
//! `disk.sync()`), so the blocks verified here are on stable storage before the index says so.
//! Never writes the log region; never panics on bytes read from disk.

use std::collections::BTreeMap;

use crate::buddy::Slot;
use crate::bugs::Bugs;
use crate::hash::BlockHash;
use crate::meta::{Header, IndexEntry, LogState, MetaError, MetaRead, MetaStore, MetaTxn};

use super::record::{LogOp, RunStamp};
use super::scan::{
    verify_blocks, BlockReader, LogDisk, ScanEnd, ScannedRecord, Scanner, TornRecords,
};
use super::{LogPos, WalIoError};

/// Records applied per index transaction at most (bounds the transaction and the memory held).
pub const RECOVER_RECORDS_PER_TXN: usize = 10_000;
/// A transaction ends once it holds this many ops (about 10 MB held). Large transactions
/// matter: random hashes dirty pages all over the tree, and each commit writes every page it
/// dirtied, so fewer, larger transactions write the tree fewer times.
pub const RECOVER_OPS_PER_TXN: usize = 65_536;

/// What a replay did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Recovered {
    /// Where replay started (the index's `LogState`).
    pub start: LogPos,
    /// Why it stopped.
    pub end: ScanEnd,
    /// Where the new run's first record goes (the log is empty).
    pub next: LogPos,
    pub run_id: u64,
    pub records: u64,
    pub ops: u64,
    /// Occupies of the last record whose bytes were not on disk (never acknowledged).
    pub occupies_dropped: u64,
    pub bytes_verified: u64,
}

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Io(#[from] WalIoError),
    #[error("the index has no header: not a store")]
    NoHeader,
    #[error("the index has no log state: the store predates the write-ahead log")]
    NoLogState,
    #[error("the log region holds {disk} sectors but the index says {index}")]
    RegionMismatch { index: u64, disk: u64 },
    #[error("log record {log_seq} contradicts the index: {what}")]
    Inconsistent { log_seq: u64, what: String },
}

/// Replays the log into `store` (see the module doc). `new_run_id` must differ from the
/// stored one (the driver draws it at random; the simulator from its seed). `bugs`: the
/// simulator's known bug `replay_torn_record` (always off in the server).
pub fn recover<M: MetaStore, D: LogDisk, B: BlockReader>(
    store: &mut M,
    disk: &mut D,
    blocks: &mut B,
    new_run_id: u64,
    bugs: Bugs,
) -> Result<Recovered, RecoverError> {
    let (header, state) = {
        let read = store.read()?;
        let header = read.header()?.ok_or(RecoverError::NoHeader)?;
        (header, read.log_state()?.ok_or(RecoverError::NoLogState)?)
    };
    if state.log_sectors != disk.log_sectors() {
        return Err(RecoverError::RegionMismatch {
            index: state.log_sectors,
            disk: disk.log_sectors(),
        });
    }
    assert_ne!(new_run_id, state.run_id, "a new run needs a new run id");
    let stamp = RunStamp {
        run_id: state.run_id,
        node_id: header.node_id,
    };
    let mut out = Recovered {
        start: state.next,
        end: ScanEnd::Open,
        next: state.next,
        run_id: new_run_id,
        records: 0,
        ops: 0,
        occupies_dropped: 0,
        bytes_verified: 0,
    };
    let torn = if bugs.replay_torn_record() {
        TornRecords::Replay
    } else {
        TornRecords::End
    };
    let mut scanner = Scanner::new(disk, stamp, state.next).with_torn_records(torn);
    let mut chunk: Vec<(ScannedRecord, Vec<bool>)> = Vec::new();
    let mut chunk_ops = 0usize;
    let mut buf = Vec::new();
    let mut pending = scanner.next_record()?;
    while let Some(current) = pending {
        let following = scanner.next_record()?;
        let keep = if following.is_some() || torn == TornRecords::Replay {
            vec![true; current.record.ops.len()]
        } else {
            let keep = verify_blocks(blocks, &current.record, &mut buf)?;
            out.bytes_verified += occupy_bytes(&current.record.ops);
            out.occupies_dropped += keep.iter().filter(|k| !**k).count() as u64;
            keep
        };
        out.records += 1;
        out.ops += keep.iter().filter(|k| **k).count() as u64;
        chunk_ops += current.record.ops.len();
        chunk.push((current, keep));
        let full = chunk.len() == RECOVER_RECORDS_PER_TXN || chunk_ops >= RECOVER_OPS_PER_TXN;
        if full || following.is_none() {
            apply_chunk(store, &chunk, state)?;
            chunk.clear();
            chunk_ops = 0;
        }
        pending = following;
    }
    out.end = scanner.end();
    out.next = scanner.pos();
    assert_eq!(
        out.end.at(),
        Some(out.next),
        "the walk ended where it stopped"
    );
    finish(store, state, out.next, new_run_id)?;
    Ok(out)
}

fn occupy_bytes(ops: &[LogOp]) -> u64 {
    ops.iter()
        .map(|op| match op {
            LogOp::Occupy { len, .. } => u64::from(*len),
            LogOp::Release { .. } => 0,
        })
        .sum()
}

/// The hashes a chunk touches: as the index had them before the chunk, and after its ops so
/// far. Read and written in key order (a B-tree takes sorted keys several times faster than
/// hashes in log order), applied in log order in between.
type Overlay = BTreeMap<BlockHash, (Option<IndexEntry>, Option<IndexEntry>)>;

/// Applies records (each with its per-op keep flags) in one non-durable transaction that also
/// moves the `LogState` past the last of them.
fn apply_chunk<M: MetaStore>(
    store: &mut M,
    chunk: &[(ScannedRecord, Vec<bool>)],
    state: LogState,
) -> Result<(), RecoverError> {
    assert!(!chunk.is_empty() && chunk.len() <= RECOVER_RECORDS_PER_TXN);
    let kept = || {
        chunk.iter().flat_map(|(scanned, keep)| {
            assert_eq!(keep.len(), scanned.record.ops.len());
            let ops = scanned.record.ops.iter().zip(keep);
            ops.filter(|(_, k)| **k).map(move |(op, _)| (scanned, op))
        })
    };
    let mut txn = store.begin()?;
    let mut header = txn.header()?.ok_or(RecoverError::NoHeader)?;
    // Where the previous chunk (or the last run) left the index.
    let mut after = txn.log_state()?.ok_or(RecoverError::NoLogState)?.next;
    let mut overlay = Overlay::new();
    kept().for_each(|(_, op)| {
        overlay.insert(op.hash(), (None, None));
    });
    for (hash, (before, now)) in overlay.iter_mut() {
        *before = txn.get(hash)?;
        *now = *before;
    }
    let mut unreserve = BTreeMap::new();
    for (scanned, op) in kept() {
        let h = &scanned.record.header;
        apply_op(
            &mut overlay,
            &mut unreserve,
            &header,
            h.log_seq,
            h.commit_seq,
            op,
        )?;
    }
    for (scanned, _) in chunk {
        let record = &scanned.record;
        assert_eq!(scanned.at.seq, after.seq, "records apply in order");
        header.commit_seq = header.commit_seq.max(record.header.commit_seq);
        after = LogPos {
            seq: scanned.at.seq + 1,
            sector: (scanned.at.sector + record.header.sectors()) % state.log_sectors,
        };
    }
    for (hash, (before, now)) in &overlay {
        match now {
            _ if before == now => {}
            Some(entry) => txn.put(hash, entry)?,
            None => assert!(txn.delete(hash)?, "the overlay read it"),
        }
    }
    for slot in unreserve.values() {
        txn.unreserve(*slot)?;
    }
    txn.set_header(&header)?;
    txn.set_log_state(&LogState {
        next: after,
        ..state
    })?;
    txn.commit(false)?;
    Ok(())
}

/// One op against the overlay; the slots whose reservations it ends go to `unreserve`.
fn apply_op(
    overlay: &mut Overlay,
    unreserve: &mut BTreeMap<u64, Slot>,
    header: &Header,
    log_seq: u64,
    commit_seq: u64,
    op: &LogOp,
) -> Result<(), RecoverError> {
    let inconsistent = |what: String| RecoverError::Inconsistent { log_seq, what };
    let (hash, slot) = (op.hash(), op.slot());
    check_slot(header, slot).map_err(inconsistent)?;
    let (_, now) = overlay
        .get_mut(&hash)
        .expect("every kept op's hash is in the overlay");
    match (op.index_entry(commit_seq), *now) {
        (Some(entry), None) => {
            *now = Some(entry);
            unreserve.insert(slot.offset, slot);
        }
        (Some(entry), Some(e)) if same_block(&e, &entry) => {
            unreserve.insert(slot.offset, slot);
        }
        (None, None) => {}
        (None, Some(e)) if e.slot == slot => *now = None,
        (_, Some(e)) => return Err(inconsistent(held_by(&hash, &e))),
    }
    Ok(())
}

fn same_block(a: &IndexEntry, b: &IndexEntry) -> bool {
    a.slot == b.slot && a.len == b.len && a.crc32c == b.crc32c
}

fn held_by(hash: &BlockHash, e: &IndexEntry) -> String {
    format!("{} is held by another entry ({:?})", hash, e.slot)
}

fn check_slot(header: &Header, slot: Slot) -> Result<(), String> {
    if slot.end() > header.capacity_bytes {
        return Err(format!(
            "slot {slot:?} past the capacity {}",
            header.capacity_bytes
        ));
    }
    Ok(())
}

/// The post-recovery checkpoint: a durable commit of a new run id at `next` (the log is empty).
fn finish<M: MetaStore>(
    store: &mut M,
    state: LogState,
    next: LogPos,
    run_id: u64,
) -> Result<(), RecoverError> {
    let mut txn = store.begin()?;
    let stored = txn.log_state()?.ok_or(RecoverError::NoLogState)?;
    assert_eq!(stored.next, next, "every record up to `next` is applied");
    txn.set_log_state(&LogState {
        next,
        run_id,
        ..state
    })?;
    txn.commit(true)?;
    Ok(())
}
