//! `buddy-blocks check` audits the write-ahead log (issue 18), against the real binary: records
//! pending replay are a note (an ordinary crash leaves them), a gap in the sequence is a
//! problem, `--read-only` replays nothing, and a read-write `check` replays the log first,
//! as `serve` would. The records are written by hand into the log region of a store the
//! binary made, with the store's own run and node ids.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use engine::hash::BlockHash;
use engine::meta::{LogState, MetaRead, MetaStore};
use engine::wal::{encode_batch, LogOp, RunStamp, SECTOR_BYTES};
use server::mdbx::MdbxStore;

const CAPACITY: u64 = 32 << 20;

/// The index's log record and header (node id, commit sequence) of a stopped store, and the
/// index entry of `block`.
fn read_index(dir: &Path, block: &[u8]) -> (LogState, u64, u64, engine::meta::IndexEntry) {
    let store = MdbxStore::open(dir, 256 << 20).unwrap();
    let read = store.read().unwrap();
    let header = read.header().unwrap().unwrap();
    let log = read.log_state().unwrap().unwrap();
    let entry = read.get(&BlockHash::of(block)).unwrap().expect("stored");
    (log, header.node_id, header.commit_seq, entry)
}

/// Writes a record releasing `block` with `log_seq` at `sector` of the log region.
fn write_release(dir: &Path, block: &[u8], log_seq: u64, sector: u64) {
    let (log, node_id, commit_seq, entry) = read_index(dir, block);
    let stamp = RunStamp {
        run_id: log.run_id,
        node_id,
    };
    let op = LogOp::Release {
        hash: BlockHash::of(block),
        slot: entry.slot,
    };
    let mut record = Vec::new();
    encode_batch(stamp, log_seq, commit_seq + 1, &[op], &mut record);
    let data = File::options()
        .write(true)
        .open(dir.join("blocks.data"))
        .unwrap();
    data.write_all_at(&record, CAPACITY + sector * SECTOR_BYTES)
        .unwrap();
}

#[test]
fn check_notes_pending_records_finds_a_gap_and_replays_when_read_write() {
    let mut s = Server::start(&["--capacity", "32MiB"]);
    let kept = body(1, 5000);
    let released = body(2, 7000);
    s.put_ok(&kept);
    s.put_ok(&released);
    s.stop_ok();
    let (log, ..) = read_index(&s.dir, &released);
    // One pending record: a note, not a problem; read-only replays nothing.
    write_release(&s.dir, &released, log.next.seq, log.next.sector);
    let out = run_check_read_only(&s.dir);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("log_pending_records (replayed at the next start): 1"),
        "{text}"
    );
    assert!(text.contains("not yet in the index"), "{text}");
    // A record two past the end (its predecessor missing): log space reused too early.
    let last = log.next.sector + 2;
    assert!(last < log.log_sectors, "the test's log has room");
    write_release(&s.dir, &kept, log.next.seq + 2, last);
    for out in [run_check_read_only(&s.dir), run_check(&s.dir, false)] {
        let text = output_text(&out);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("lies past the end of the replay"), "{text}");
    }
    // The read-write check above replayed the one valid record, as `serve` would: the
    // released block is gone, the other is stored, and the log is empty.
    let out = run_check(&s.dir, false);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("log_pending_records (replayed at the next start): 0"),
        "{text}"
    );
    s.restart();
    s.assert_stored(&kept);
    assert_eq!(s.get(&sha256_hex(&released)).status, 404);
    s.stop_ok();
}
