//! Upgrade of a store of format 1 (before the write-ahead log, issue 18) to format 2, against
//! the real binary: a format-1 directory is built by hand here (index header of format 1 with
//! no log record; a data file with a version-1 trailer at the capacity, with none at all, or
//! half-upgraded: the version-2 trailer placed but the index not yet committed); the new
//! binary upgrades it in place, every block is there byte-exact, `check` is clean, and the
//! next start opens it as format 2 without upgrading again.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use engine::buddy::Slot;
use engine::hash::BlockHash;
use engine::meta::{Header, IndexEntry, MetaRead, MetaStore, MetaTxn, FORMAT_VERSION};
use engine::size_class::SizeClass;
use server::identity::FORMAT_VERSION_BEFORE_LOG;
use server::mdbx::MdbxStore;
use server::trailer::{Layout, Trailer, TRAILER_VERSION, TRAILER_VERSION_BEFORE_LOG};

const CAPACITY: u64 = 32 << 20;
/// The tests' `--log-size` (common/server.rs).
const LOG_BYTES: u64 = 4 << 20;
const NODE_ID: u64 = 0x0123_4567_89ab_cdef;

/// How the format-1 data file ends.
#[derive(Clone, Copy, Debug)]
enum OldTail {
    /// The format before trailers: exactly the capacity long.
    NoTrailer,
    /// A version-1 trailer right after the slots.
    TrailerV1,
    /// An upgrade that stopped after placing the version-2 trailer, before the index commit.
    HalfUpgraded,
}

/// Writes a format-1 store of `blocks` (each in its own 4 KiB-class slot) into `dir`.
fn build_format_1(dir: &Path, blocks: &[Vec<u8>], tail: OldTail) {
    fs::create_dir_all(dir).unwrap();
    let mut store = MdbxStore::open(dir, 256 << 20).unwrap();
    let mut txn = store.begin().unwrap();
    txn.set_header(&Header {
        format_version: FORMAT_VERSION_BEFORE_LOG,
        capacity_bytes: CAPACITY,
        node_id: NODE_ID,
        commit_seq: 1,
    })
    .unwrap();
    let data = File::create(dir.join("blocks.data")).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        assert!(b.len() <= 4096);
        let slot = Slot {
            offset: i as u64 * 4096,
            class: SizeClass::MIN,
        };
        data.write_all_at(b, slot.offset).unwrap();
        let entry = IndexEntry {
            slot,
            len: b.len() as u32,
            crc32c: crc32c::crc32c(b),
            flags: 0,
            commit_seq: 1,
        };
        txn.put(&BlockHash::of(b), &entry).unwrap();
    }
    txn.commit(true).unwrap();
    drop(store);
    let trailer = |format_version| Trailer {
        format_version,
        capacity_bytes: CAPACITY,
        node_id: NODE_ID,
    };
    match tail {
        OldTail::NoTrailer => data.set_len(CAPACITY).unwrap(),
        OldTail::TrailerV1 => data
            .write_all_at(&trailer(TRAILER_VERSION_BEFORE_LOG).encode(), CAPACITY)
            .unwrap(),
        OldTail::HalfUpgraded => {
            data.write_all_at(&trailer(TRAILER_VERSION_BEFORE_LOG).encode(), CAPACITY)
                .unwrap();
            let end = Layout::new(CAPACITY, LOG_BYTES).trailer_offset();
            data.write_all_at(&trailer(TRAILER_VERSION).encode(), end)
                .unwrap();
        }
    }
    data.sync_all().unwrap();
}

#[test]
fn a_format_1_store_is_upgraded_in_place_and_serves_every_block_byte_exact() {
    for (k, tail) in [
        OldTail::NoTrailer,
        OldTail::TrailerV1,
        OldTail::HalfUpgraded,
    ]
    .into_iter()
    .enumerate()
    {
        let blocks: Vec<Vec<u8>> = (0..20u64)
            .map(|i| body(1000 * k as u64 + i, 1 + (i as usize * 997) % 4096))
            .collect();
        let tmp = tempfile::Builder::new()
            .prefix("buddy-blocks-upgrade")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("data");
        build_format_1(&dir, &blocks, tail);
        let mut s = Server::start_on(tmp, dir.clone(), &[]);
        assert!(
            s.log_text().contains("upgraded the store in place"),
            "{tail:?}: {}",
            s.log_text()
        );
        for b in &blocks {
            s.assert_stored(b);
        }
        assert_eq!(s.stats().blocks, blocks.len() as u64, "{tail:?}");
        let added = body(5000 + k as u64, 3000);
        s.put_ok(&added);
        s.stop_ok();
        assert_eq!(
            fs::metadata(dir.join("blocks.data")).unwrap().len(),
            Layout::new(CAPACITY, LOG_BYTES).len_bytes(),
            "{tail:?}"
        );
        {
            let store = MdbxStore::open(&dir, 256 << 20).unwrap();
            let read = store.read().unwrap();
            let header = read.header().unwrap().unwrap();
            assert_eq!(header.format_version, FORMAT_VERSION, "{tail:?}");
            let log = read.log_state().unwrap().expect("a log record");
            assert_eq!(log.log_sectors * 4096, LOG_BYTES, "{tail:?}");
        }
        let check = run_check(&dir, false);
        assert!(check.status.success(), "{tail:?}: {}", output_text(&check));
        s.restart();
        let log = s.log_text();
        assert_eq!(
            log.matches("upgraded the store in place").count(),
            1,
            "{tail:?}: upgraded once: {log}"
        );
        for b in blocks.iter().chain([&added]) {
            s.assert_stored(b);
        }
        s.stop_ok();
    }
}
