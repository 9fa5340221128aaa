//! The log's tests: the record codec (round trip, every corruption caught), `LogRing` against
//! a model of live records (proptest), and recovery over an in-memory log and store driven
//! like the controller drives them, with power losses, torn records, crashes mid-recovery and
//! `audit`'s findings.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::buddy::Slot;
use crate::bugs::Bugs;
use crate::hash::BlockHash;
use crate::meta::{
    CrashKind, Header, IndexEntry, LogState, MemStore, MetaRead, MetaStore, MetaTxn, FORMAT_VERSION,
};
use crate::size_class::SizeClass;

const NODE_ID: u64 = 9;
const CAPACITY_BYTES: u64 = 4 << 20;

fn class0_slot(offset: u64) -> Slot {
    Slot {
        offset,
        class: SizeClass::MIN,
    }
}

struct MemLog {
    bytes: Vec<u8>,
}

impl LogDisk for MemLog {
    fn log_sectors(&self) -> u64 {
        self.bytes.len() as u64 / SECTOR_BYTES
    }
    fn read_log(&mut self, sector: u64, out: &mut [u8]) -> Result<(), WalIoError> {
        let at = (sector * SECTOR_BYTES) as usize;
        out.copy_from_slice(&self.bytes[at..at + out.len()]);
        Ok(())
    }
}

struct MemBlocks {
    bytes: Vec<u8>,
}

impl BlockReader for MemBlocks {
    fn read_block(&mut self, slot: Slot, out: &mut [u8]) -> Result<(), WalIoError> {
        let at = slot.offset as usize;
        out.copy_from_slice(&self.bytes[at..at + out.len()]);
        Ok(())
    }
}

/// The controller's use of the log, in miniature: write a record, then commit the index
/// (non-durably) with the `LogState` past it; a checkpoint makes the index durable.
struct Rig {
    store: MemStore,
    log: MemLog,
    blocks: MemBlocks,
    ring: LogRing,
    stamp: RunStamp,
    /// What every acknowledged batch promised.
    model: BTreeMap<BlockHash, IndexEntry>,
    free: Vec<u64>,
    commit_seq: u64,
    block_counter: u64,
}

impl Rig {
    fn new(log_sectors: u64) -> Rig {
        let mut store = MemStore::new();
        let start = LogPos { seq: 1, sector: 0 };
        let mut txn = store.begin().unwrap();
        txn.set_header(&Header {
            format_version: FORMAT_VERSION,
            capacity_bytes: CAPACITY_BYTES,
            node_id: NODE_ID,
            commit_seq: 0,
        })
        .unwrap();
        txn.set_log_state(&LogState {
            log_sectors,
            next: start,
            run_id: 1,
        })
        .unwrap();
        txn.commit(true).unwrap();
        Rig {
            store,
            log: MemLog {
                bytes: vec![0; (log_sectors * SECTOR_BYTES) as usize],
            },
            blocks: MemBlocks {
                bytes: vec![0; CAPACITY_BYTES as usize],
            },
            ring: LogRing::new(log_sectors, start),
            stamp: RunStamp {
                run_id: 1,
                node_id: NODE_ID,
            },
            model: BTreeMap::new(),
            free: (0..CAPACITY_BYTES / 4096).rev().map(|i| i * 4096).collect(),
            commit_seq: 0,
            block_counter: 0,
        }
    }

    /// Makes `puts` new blocks (bytes in their slots) and deletes up to `deletes` stored ones.
    fn ops(&mut self, puts: usize, deletes: usize) -> Vec<LogOp> {
        let mut ops = Vec::new();
        let victims: Vec<_> = self
            .model
            .iter()
            .take(deletes)
            .map(|(h, e)| (*h, e.slot))
            .collect();
        for (hash, slot) in victims {
            ops.push(LogOp::Release { hash, slot });
        }
        for _ in 0..puts {
            self.block_counter += 1;
            let len = 1 + (self.block_counter * 37 % 4096) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (self.block_counter as usize * 31 + i) as u8)
                .collect();
            let slot = class0_slot(self.free.pop().expect("test capacity"));
            let at = slot.offset as usize;
            self.blocks.bytes[at..at + len].copy_from_slice(&bytes);
            ops.push(LogOp::Occupy {
                hash: BlockHash::of(&bytes),
                slot,
                len: len as u32,
                crc32c: crc32c::crc32c(&bytes),
            });
        }
        ops
    }

    /// Writes the batch's record; `Err` when the log is full.
    fn write_record(&mut self, ops: &[LogOp]) -> Result<Placement, LogFull> {
        let mut bytes = Vec::new();
        encode_batch(
            self.stamp,
            self.ring.next().seq,
            self.commit_seq + 1,
            ops,
            &mut bytes,
        );
        let placement = self.ring.place(sectors_for(bytes.len() as u64))?;
        if let Some(wrap_at) = placement.wrap_at {
            let mut wrap = Vec::new();
            encode_wrap(self.stamp, placement.at.seq, &mut wrap);
            self.put_sectors(wrap_at, &wrap);
        }
        self.put_sectors(placement.at.sector, &bytes);
        self.ring.appended(placement);
        self.commit_seq += 1;
        Ok(placement)
    }

    fn put_sectors(&mut self, sector: u64, bytes: &[u8]) {
        let at = (sector * SECTOR_BYTES) as usize;
        self.log.bytes[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// The batch is acknowledged (its record is durable): the model and the index take it.
    fn commit(&mut self, ops: &[LogOp]) {
        let mut txn = self.store.begin().unwrap();
        for op in ops {
            let hash = op.hash();
            if let Some(entry) = op.index_entry(self.commit_seq) {
                txn.put(&hash, &entry).unwrap();
                self.model.insert(hash, entry);
            } else {
                assert!(txn.delete(&hash).unwrap());
                self.model.remove(&hash);
                self.free.push(op.slot().offset);
            }
        }
        let mut header = txn.header().unwrap().unwrap();
        header.commit_seq = self.commit_seq;
        txn.set_header(&header).unwrap();
        let mut state = txn.log_state().unwrap().unwrap();
        state.next = self.ring.next();
        txn.set_log_state(&state).unwrap();
        txn.commit(false).unwrap();
        self.ring.commit_done();
    }

    /// One whole batch; false when the log was full (nothing written).
    fn batch(&mut self, puts: usize, deletes: usize) -> bool {
        let ops = self.ops(puts, deletes);
        if ops.is_empty() {
            return true; // Nothing a client was promised: no record.
        }
        if self.write_record(&ops).is_err() {
            for op in &ops {
                if let LogOp::Occupy { slot, .. } = op {
                    self.free.push(slot.offset);
                }
            }
            return false;
        }
        self.commit(&ops);
        true
    }

    /// `n` batches, each of which must find room.
    fn batches(&mut self, n: usize, puts: usize, deletes: usize) {
        for _ in 0..n {
            assert!(self.batch(puts, deletes), "room in the log");
        }
    }

    fn checkpoint(&mut self) {
        self.ring.begin_checkpoint();
        let image = self.store.image();
        let mut img = image.lock().unwrap();
        img.durable = crate::meta::MemState::clone(&img.committed);
        drop(img);
        self.ring.checkpoint_returned();
    }

    fn crash(&mut self, kind: CrashKind) {
        MemStore::crash(&self.store.image(), kind);
    }

    fn recover(&mut self, run_id: u64) -> Result<Recovered, RecoverError> {
        let blocks = &mut self.blocks;
        let out = recover(&mut self.store, &mut self.log, blocks, run_id, Bugs::NONE)?;
        self.stamp.run_id = run_id;
        self.ring = LogRing::new(self.ring.size_sectors(), out.next);
        Ok(out)
    }

    fn index(&self) -> BTreeMap<BlockHash, IndexEntry> {
        let mut out = BTreeMap::new();
        let read = self.store.read().unwrap();
        read.for_each_entry(&mut |h, e| {
            out.insert(*h, *e);
        })
        .unwrap();
        out
    }

    fn assert_index_is_model(&self) {
        assert_eq!(
            self.index(),
            self.model,
            "the index holds exactly what was acknowledged"
        );
    }
}

#[test]
fn records_round_trip_and_every_flipped_byte_is_caught() {
    let mut rig = Rig::new(64);
    let ops = rig.ops(5, 0);
    let mut bytes = Vec::new();
    encode_batch(rig.stamp, 3, 7, &ops, &mut bytes);
    assert_eq!(
        bytes.len() as u64 % SECTOR_BYTES,
        0,
        "padded to whole sectors"
    );
    let record = decode_record(&bytes).unwrap();
    assert_eq!(record.ops, ops);
    assert_eq!((record.header.log_seq, record.header.commit_seq), (3, 7));
    let len = record.header.len_bytes as usize;
    for i in 0..len {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert!(decode_record(&bad).is_err(), "a flip at byte {i} is caught");
    }
    assert!(
        decode_record(&bytes[..len - 1]).is_err(),
        "a short record is caught"
    );
    let mut wrap = Vec::new();
    encode_wrap(rig.stamp, 4, &mut wrap);
    let h = decode_header(&wrap).unwrap();
    assert_eq!((h.kind, h.log_seq, h.sectors()), (RecordKind::Wrap, 4, 1));
    assert!(decode_record(&[0u8; 4096]).is_err(), "zeros are no record");
}

#[test]
fn power_loss_without_a_checkpoint_replays_every_acknowledged_batch() {
    let mut rig = Rig::new(64);
    for i in 0..10 {
        assert!(rig.batch(3, i % 3));
    }
    rig.crash(CrashKind::PowerLoss);
    assert!(
        rig.index().is_empty(),
        "the index lost every non-durable commit"
    );
    let out = rig.recover(2).unwrap();
    assert_eq!(out.records, 10);
    assert_eq!(out.occupies_dropped, 0);
    rig.assert_index_is_model();
    assert_eq!(
        rig.store
            .read()
            .unwrap()
            .header()
            .unwrap()
            .unwrap()
            .commit_seq,
        10
    );
}

#[test]
fn replay_is_idempotent_across_crashes_mid_recovery() {
    let mut rig = Rig::new(64);
    rig.batches(6, 2, 1);
    rig.crash(CrashKind::PowerLoss);
    // The final durable commit fails: the replayed state is there, non-durable.
    rig.store.image().lock().unwrap().fail_commit_after = Some(1);
    let first = rig.recover(2);
    assert!(matches!(first, Err(RecoverError::Meta(_))), "{first:?}");
    rig.crash(CrashKind::Process);
    let again = rig.recover(3).unwrap();
    assert_eq!(
        again.records, 0,
        "the weak commit already holds every record"
    );
    rig.assert_index_is_model();
    // Power loss instead rolls back to before the replay: it runs again from the start.
    let mut rig2 = Rig::new(64);
    rig2.batches(6, 2, 1);
    rig2.crash(CrashKind::PowerLoss);
    rig2.store.image().lock().unwrap().fail_next_commit = true;
    assert!(rig2.recover(2).is_err());
    rig2.crash(CrashKind::PowerLoss);
    assert_eq!(rig2.recover(3).unwrap().records, 6);
    rig2.assert_index_is_model();
}

/// Four acknowledged batches, then a record of `puts` and `deletes` written, never flushed.
fn rig_with_an_unflushed_record(puts: usize, deletes: usize) -> (Rig, Placement) {
    let mut rig = Rig::new(64);
    rig.batches(4, 2, 0);
    let ops = rig.ops(puts, deletes);
    let placement = rig.write_record(&ops).unwrap();
    (rig, placement)
}

#[test]
fn a_torn_last_record_ends_replay_and_its_batch_is_not_applied() {
    let (mut rig, placement) = rig_with_an_unflushed_record(2, 1);
    // Power loss tore the record's last bytes (never flushed, never acknowledged).
    let end = ((placement.at.sector + placement.sectors) * SECTOR_BYTES) as usize;
    rig.log.bytes[end - 4096 + 100] ^= 1;
    rig.log.bytes[(placement.at.sector * SECTOR_BYTES) as usize + 70] ^= 1;
    rig.crash(CrashKind::PowerLoss);
    let out = rig.recover(2).unwrap();
    assert_eq!(out.records, 4);
    assert!(matches!(out.end, ScanEnd::Invalid { .. }), "{:?}", out.end);
    rig.assert_index_is_model();
}

/// The known bug `replay_torn_record` has teeth: a record whose body checksum fails is
/// applied (the ops that still decode), so the index holds a batch nobody acknowledged.
#[cfg(feature = "sim-bugs")]
#[test]
fn the_replay_torn_record_bug_applies_a_torn_batch() {
    let (mut rig, placement) = rig_with_an_unflushed_record(2, 0);
    // The last byte of the body (the second op's CRC32C field): the ops still decode.
    let start = (placement.at.sector * SECTOR_BYTES) as usize;
    rig.log.bytes[start + RECORD_HEADER_BYTES + 2 * OCCUPY_OP_BYTES - 1] ^= 1;
    rig.crash(CrashKind::PowerLoss);
    let bugs = Bugs {
        replay_torn_record: true,
        ..Bugs::NONE
    };
    let out = recover(&mut rig.store, &mut rig.log, &mut rig.blocks, 2, bugs).unwrap();
    assert_eq!(out.records, 5, "the torn record was replayed");
    assert_eq!(
        rig.index().len(),
        rig.model.len() + 2,
        "a batch nobody acknowledged"
    );
}

#[test]
fn the_last_record_keeps_only_blocks_that_reached_the_disk() {
    let mut rig = Rig::new(64);
    assert!(rig.batch(2, 0));
    let ops = rig.ops(3, 0);
    rig.write_record(&ops).unwrap();
    // The record reached the disk but one of its blocks did not.
    let LogOp::Occupy { slot, .. } = ops[1] else {
        unreachable!()
    };
    rig.blocks.bytes[slot.offset as usize] ^= 0xff;
    rig.crash(CrashKind::PowerLoss);
    let out = rig.recover(2).unwrap();
    assert_eq!((out.records, out.occupies_dropped), (2, 1));
    let index = rig.index();
    assert_eq!(index.len(), 4, "two of the first batch, two of the last");
    for op in [ops[0], ops[2]] {
        let LogOp::Occupy { hash, .. } = op else {
            unreachable!()
        };
        assert!(index.contains_key(&hash));
    }
}

#[test]
fn records_of_an_earlier_run_are_never_replayed() {
    let mut rig = Rig::new(64);
    rig.batches(5, 2, 0);
    rig.crash(CrashKind::PowerLoss);
    let out = rig.recover(2).unwrap();
    assert_eq!((out.records, out.next), (5, LogPos { seq: 6, sector: 5 }));
    // A well-formed record of run 1 with the very sequence number run 2 expects next.
    let ops = rig.ops(1, 0);
    let mut bytes = Vec::new();
    let old = RunStamp {
        run_id: 1,
        node_id: NODE_ID,
    };
    encode_batch(old, 6, 6, &ops, &mut bytes);
    rig.put_sectors(5, &bytes);
    rig.crash(CrashKind::PowerLoss);
    let out = rig.recover(3).unwrap();
    assert_eq!(out.records, 0);
    assert_eq!(
        out.end,
        ScanEnd::OtherRun {
            at: LogPos { seq: 6, sector: 5 }
        }
    );
    rig.assert_index_is_model();
}

#[test]
fn a_full_log_refuses_records_until_a_checkpoint_returns() {
    let mut rig = Rig::new(LOG_SECTORS_MIN);
    let mut written = 0;
    while rig.batch(1, 0) {
        written += 1;
    }
    assert_eq!(written, LOG_SECTORS_MIN - 1, "one sector always stays free");
    rig.ring.begin_checkpoint();
    assert!(!rig.batch(1, 0), "a checkpoint in flight frees nothing");
    rig.ring.checkpoint_failed();
    rig.checkpoint();
    assert!(rig.batch(1, 0), "a returned checkpoint frees the space");
    rig.crash(CrashKind::PowerLoss);
    assert_eq!(rig.recover(2).unwrap().records, 1);
    rig.assert_index_is_model();
}

#[test]
fn audit_finds_a_record_overwritten_before_its_checkpoint() {
    let mut rig = Rig::new(64);
    rig.batches(5, 2, 0);
    let clean = audit(&rig.store.read().unwrap(), &mut rig.log, &mut rig.blocks).unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(
        clean.pending_records, 0,
        "the committed index already holds them"
    );
    rig.crash(CrashKind::PowerLoss);
    let pending = audit(&rig.store.read().unwrap(), &mut rig.log, &mut rig.blocks).unwrap();
    assert!(pending.problems.is_empty(), "{:?}", pending.problems);
    assert_eq!((pending.pending_records, pending.pending_ops), (5, 10));
    // Log space reused too early: the second record is gone, later ones remain.
    rig.log.bytes[SECTOR_BYTES as usize..2 * SECTOR_BYTES as usize].fill(0);
    let report = audit(&rig.store.read().unwrap(), &mut rig.log, &mut rig.blocks).unwrap();
    assert_eq!(report.pending_records, 1);
    assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
    assert!(matches!(
        report.problems[0],
        AuditProblem::Gap {
            found_seq: 3,
            end_seq: 2,
            ..
        }
    ));
}

/// One step of a run: a batch (`puts`, `deletes`), a checkpoint, or a crash and recovery.
#[derive(Clone, Debug)]
enum Step {
    Batch(usize, usize),
    Checkpoint,
    Crash(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0usize..12, 0usize..4).prop_map(|(p, d)| Step::Batch(p, d)),
        2 => Just(Step::Checkpoint),
        1 => any::<bool>().prop_map(Step::Crash),
    ]
}

fn log_op() -> impl Strategy<Value = LogOp> {
    (
        any::<[u8; 32]>(),
        0u8..8,
        0u64..1024,
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(hash, class, index, len, crc32c, occupy)| {
            let class = SizeClass::new(class).unwrap();
            let slot = Slot {
                offset: index * class.bytes(),
                class,
            };
            let hash = BlockHash(hash);
            if occupy {
                let len = 1 + len % class.bytes() as u32;
                LogOp::Occupy {
                    hash,
                    slot,
                    len,
                    crc32c,
                }
            } else {
                LogOp::Release { hash, slot }
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any batch round-trips, and no prefix of a record, nor the record with one byte changed,
    /// decodes.
    #[test]
    fn any_batch_round_trips_and_no_damage_passes(
        ops in proptest::collection::vec(log_op(), 1..=RECORD_OPS_MAX as usize),
        seqs in (1u64..u64::MAX, 1u64..u64::MAX),
        cut in any::<prop::sample::Index>(),
        flip in (any::<prop::sample::Index>(), 1u8..=255),
    ) {
        let stamp = RunStamp { run_id: 77, node_id: NODE_ID };
        let mut bytes = Vec::new();
        encode_batch(stamp, seqs.0, seqs.1, &ops, &mut bytes);
        let record = decode_record(&bytes).unwrap();
        prop_assert_eq!(&record.ops, &ops);
        prop_assert_eq!((record.header.log_seq, record.header.commit_seq), seqs);
        let len = record.header.len_bytes as usize;
        prop_assert!(decode_record(&bytes[..cut.index(len)]).is_err());
        let mut bad = bytes.clone();
        bad[flip.0.index(len)] ^= flip.1;
        prop_assert!(decode_record(&bad).is_err());
    }

    /// Whatever the order of batches, wraps, checkpoints and crashes (process or power loss),
    /// recovery leaves the index holding exactly the acknowledged batches.
    #[test]
    fn recovery_keeps_every_acknowledged_batch(
        log_sectors in LOG_SECTORS_MIN..48,
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut rig = Rig::new(log_sectors);
        let mut run_id = 1;
        for s in steps {
            match s {
                Step::Batch(p, d) if p + d > 0 => {
                    if !rig.batch(p, d) {
                        rig.checkpoint();
                        prop_assert!(rig.batch(p, d), "room after a checkpoint");
                    }
                }
                Step::Batch(..) => {}
                Step::Checkpoint => rig.checkpoint(),
                Step::Crash(power) => {
                    rig.crash(if power { CrashKind::PowerLoss } else { CrashKind::Process });
                    run_id += 1;
                    rig.recover(run_id).unwrap();
                    rig.assert_index_is_model();
                }
            }
            rig.ring.check_invariants();
        }
        rig.crash(CrashKind::PowerLoss);
        rig.recover(run_id + 1).unwrap();
        rig.assert_index_is_model();
        let report = audit(&rig.store.read().unwrap(), &mut rig.log, &mut rig.blocks).unwrap();
        prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    /// A placed record never overlaps a live one, and live space is freed only by a returned
    /// checkpoint.
    #[test]
    fn ring_never_places_over_live_records(
        size in LOG_SECTORS_MIN..64,
        moves in proptest::collection::vec((0u8..4, 1u64..16), 1..200),
    ) {
        let mut ring = LogRing::new(size, LogPos { seq: 1, sector: 0 });
        // (seq, first sector, sectors) of every record written, wrap sectors included.
        let mut live: VecDeque<(u64, u64, u64)> = VecDeque::new();
        for (kind, n) in moves {
            match kind {
                0 | 1 => {
                    let n = n.min(ring.record_sectors_max());
                    let Ok(p) = ring.place(n) else { continue };
                    let mut new = vec![(p.at.sector, n)];
                    if let Some(w) = p.wrap_at {
                        new.push((w, size - w));
                    }
                    for &(seq, s, len) in &live {
                        if seq < ring.live_start().seq { continue; }
                        for &(ns, nl) in &new {
                            prop_assert!(ns + nl <= s || s + len <= ns, "over record {seq}");
                        }
                    }
                    ring.appended(p);
                    if let Some(w) = p.wrap_at {
                        live.push_back((p.at.seq, w, size - w));
                    }
                    live.push_back((p.at.seq, p.at.sector, n));
                }
                2 => ring.commit_done(),
                _ => match ring.checkpoint() {
                    CheckpointState::Idle => { ring.begin_checkpoint(); }
                    CheckpointState::InFlight { target } => {
                        ring.checkpoint_returned();
                        prop_assert_eq!(ring.live_start(), target);
                    }
                },
            }
            while live.front().is_some_and(|r| r.0 < ring.live_start().seq) {
                live.pop_front();
            }
            ring.check_invariants();
        }
    }
}

/// The on-disk format is fixed: the fuzz seeds (written by hand from the format table in
/// `record.rs`) decode to the values they spell, and re-encode to the same bytes.
#[test]
fn the_format_table_matches_the_golden_records() {
    let batch = include_bytes!("../../../fuzz/corpus/log_record_decode/batch");
    let record = decode_record(batch).unwrap();
    let stamp = RunStamp {
        run_id: 11,
        node_id: 9,
    };
    assert_eq!(record.header.stamp, stamp);
    assert_eq!((record.header.log_seq, record.header.commit_seq), (3, 7));
    let mut hash = [0u8; 32];
    hash.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    let occupy = LogOp::Occupy {
        hash: BlockHash(hash),
        slot: Slot {
            offset: 8192,
            class: SizeClass::new(1).unwrap(),
        },
        len: 5000,
        crc32c: 0x1234,
    };
    hash.iter_mut().for_each(|b| *b += 1);
    let release = LogOp::Release {
        hash: BlockHash(hash),
        slot: class0_slot(4096),
    };
    assert_eq!(record.ops, vec![occupy, release]);
    let mut again = Vec::new();
    encode_batch(stamp, 3, 7, &record.ops, &mut again);
    assert_eq!(&again[..batch.len()], &batch[..]);
    let wrap = include_bytes!("../../../fuzz/corpus/log_record_decode/wrap");
    let mut again = Vec::new();
    encode_wrap(stamp, 4, &mut again);
    assert_eq!(&again[..64], &wrap[..]);
}

/// Replay spanning several transactions (more than `RECOVER_RECORDS_PER_TXN` records) picks
/// each one up where the previous one left the index.
#[test]
fn replay_spans_many_transactions() {
    use crate::test_support::synthetic_log::{SyntheticBlocks, SyntheticLog};
    let records = 2 * RECOVER_RECORDS_PER_TXN as u64 + 7;
    let stamp = RunStamp {
        run_id: 5,
        node_id: NODE_ID,
    };
    let mut log = SyntheticLog::new(stamp, records, 2);
    let mut store = MemStore::new();
    let mut txn = store.begin().unwrap();
    txn.set_header(&Header {
        format_version: FORMAT_VERSION,
        capacity_bytes: log.capacity_bytes(),
        node_id: NODE_ID,
        commit_seq: 0,
    })
    .unwrap();
    let start = LogPos { seq: 1, sector: 0 };
    txn.set_log_state(&LogState {
        log_sectors: records + 1,
        next: start,
        run_id: 5,
    })
    .unwrap();
    txn.commit(true).unwrap();
    let commits_before = store.image().lock().unwrap().commits;
    let out = recover(&mut store, &mut log, &mut SyntheticBlocks, 6, Bugs::NONE).unwrap();
    assert_eq!((out.records, out.ops), (records, 2 * records));
    assert_eq!(
        store.image().lock().unwrap().commits - commits_before,
        3 + 1,
        "3 chunks, 1 final"
    );
    let read = store.read().unwrap();
    let mut entries = 0;
    read.for_each_entry(&mut |_, _| entries += 1).unwrap();
    assert_eq!(entries, 2 * records);
}
