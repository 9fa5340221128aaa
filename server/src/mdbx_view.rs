//! A worker's read view of the libmdbx index (issue 17): one read-only transaction per worker
//! for its whole life, renewed when the worker has lookups and reset before it waits.
//!
//! Owns: [`MdbxView`] (with its index cursor for walks), the raw-FFI read transaction behind the engine's [`IndexView`]. The
//! `libmdbx` crate has no reset/renew, so this goes through `mdbx-sys` (the same version the
//! crate pins): `mdbx_txn_begin_ex(RDONLY)` once (takes a reader slot under the lock-table
//! mutex), then `mdbx_txn_renew` (no mutex, no allocation: it seizes the newest meta with
//! atomic stores) and `mdbx_txn_reset` (keeps the slot, pins no pages) per use.
//!
//! Visibility: a renew sees the newest commit, durable or not (the store runs `SafeNoSync`,
//! and the controller commits non-durably while a sync runs in the background), so what a view
//! may show is filtered by the durable watermark the controller publishes
//! (`MetaStore::publish_durable`), read at each renew.
//!
//! Invariants: the transaction is used by one thread at a time (the environment is opened with
//! `MDBX_NOSTICKYTHREADS`, so a read transaction may move between threads); it is reset
//! whenever it is not [`Renewed`](ViewState::Renewed); it is aborted before the environment it
//! belongs to can close (this holds an `Arc` of the database). Must never: write, or stay
//! renewed across a wait (the worker releases it each loop turn).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use engine::meta::{Header, IndexEntry, IndexView, MetaError, ViewStamp};
use engine::BlockHash;
use libmdbx::{Database, NoWriteMap};
use mdbx_sys as ffi;

use crate::mdbx::{walk_index, HEADER_KEY};
use crate::mdbx_raw::{self as raw, TxnRef};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ViewState {
    Reset,
    Renewed,
}

/// The index view of one worker. `Send` (moved into the worker's thread once), not `Sync`.
pub struct MdbxView {
    txn: *mut ffi::MDBX_txn,
    state: ViewState,
    index_dbi: ffi::MDBX_dbi,
    meta_dbi: ffi::MDBX_dbi,
    watermark: Arc<AtomicU64>,
    env_path: PathBuf,
    /// Held only to keep the environment open while the transaction exists (fields drop
    /// after `Drop::drop` has aborted it).
    _db: Arc<Database<NoWriteMap>>,
}

// SAFETY: the environment is opened with MDBX_NOSTICKYTHREADS (the crate always does), so a
// read transaction is not bound to the thread that began it; `MdbxView` is not `Sync` and every
// method takes `&self`/`&mut self` of its one owner, so it is never used by two threads at once.
unsafe impl Send for MdbxView {}

impl MdbxView {
    pub(crate) fn new(
        db: Arc<Database<NoWriteMap>>,
        index_dbi: ffi::MDBX_dbi,
        meta_dbi: ffi::MDBX_dbi,
        watermark: Arc<AtomicU64>,
        env_path: PathBuf,
    ) -> Result<MdbxView, MetaError> {
        let mut txn: *mut ffi::MDBX_txn = std::ptr::null_mut();
        // SAFETY: `db` is an open environment (kept alive by the Arc stored below); `txn`
        // receives a new read-only transaction, checked before use.
        let rc = unsafe {
            ffi::mdbx_txn_begin_ex(
                db.ptr().0,
                std::ptr::null_mut(),
                ffi::MDBX_TXN_RDONLY,
                &mut txn,
                std::ptr::null_mut(),
            )
        };
        let view = MdbxView {
            txn,
            state: ViewState::Renewed,
            index_dbi,
            meta_dbi,
            watermark,
            env_path,
            _db: db,
        };
        view.check(rc, "beginning a read transaction")?;
        assert!(!view.txn.is_null());
        let mut view = view;
        view.release();
        Ok(view)
    }

    fn check(&self, rc: i32, what: &str) -> Result<(), MetaError> {
        if rc == ffi::MDBX_SUCCESS {
            return Ok(());
        }
        Err(self.failed(rc, what))
    }

    /// A libmdbx error of `what`, with the environment's path.
    fn failed(&self, rc: i32, what: &str) -> MetaError {
        let e = libmdbx::Error::from_err_code(rc);
        MetaError::Io(format!("{}: {what}: libmdbx: {e}", self.env_path.display()))
    }

    /// The value of `key` in table `dbi` of the renewed snapshot; the bytes live in the map
    /// until the next reset.
    fn get_raw(&self, dbi: ffi::MDBX_dbi, key: &[u8]) -> Result<Option<&[u8]>, MetaError> {
        assert_eq!(self.state, ViewState::Renewed, "a get on a released view");
        raw::get(self, dbi, key).map_err(|rc| self.failed(rc, "get"))
    }
}

// SAFETY: the read transaction lives as long as the view; the view is not `Sync`, and the
// methods that read through the pointer assert that it is renewed (reset ends the borrow: it
// takes `&mut self`).
unsafe impl TxnRef for MdbxView {
    fn txn_ptr(&self) -> *mut ffi::MDBX_txn {
        self.txn
    }
}

impl IndexView for MdbxView {
    fn renew(&mut self) -> Result<ViewStamp, MetaError> {
        assert_eq!(self.state, ViewState::Reset, "renew of a view in use");
        // The watermark first: it only grows, and whatever it says is durable stays durable.
        let durable_through = self.watermark.load(Ordering::Acquire);
        // SAFETY: `txn` is a reset read transaction of this view.
        let rc = unsafe { ffi::mdbx_txn_renew(self.txn) };
        self.check(rc, "renewing the read transaction")?;
        self.state = ViewState::Renewed;
        let header = match self.get_raw(self.meta_dbi, HEADER_KEY) {
            Ok(Some(bytes)) => Header::decode(bytes).map(|h| h.commit_seq),
            Ok(None) => Ok(0),
            Err(e) => Err(e),
        };
        match header {
            Ok(version) => Ok(ViewStamp {
                version,
                durable_through,
            }),
            Err(e) => {
                self.release();
                Err(e)
            }
        }
    }

    fn get(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, MetaError> {
        match self.get_raw(self.index_dbi, &hash.0)? {
            None => Ok(None),
            Some(bytes) => IndexEntry::decode(bytes).map(Some),
        }
    }

    fn walk(
        &self,
        after: Option<&BlockHash>,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry) -> bool,
    ) -> Result<(), MetaError> {
        assert_eq!(self.state, ViewState::Renewed, "a walk on a released view");
        walk_index(self, self.index_dbi, after, f, &|rc| {
            self.failed(rc, "walking the index")
        })
    }

    fn release(&mut self) {
        if self.state == ViewState::Reset {
            return;
        }
        // SAFETY: `txn` is a renewed read transaction of this view; no borrow of its bytes
        // outlives this `&mut self`.
        let rc = unsafe { ffi::mdbx_txn_reset(self.txn) };
        assert_eq!(
            rc,
            ffi::MDBX_SUCCESS,
            "mdbx_txn_reset of a live read transaction"
        );
        self.state = ViewState::Reset;
    }
}

impl Drop for MdbxView {
    fn drop(&mut self) {
        // SAFETY: `txn` is this view's read transaction (reset or renewed: abort takes both),
        // and `self.db` keeps its environment open until after this.
        unsafe {
            ffi::mdbx_txn_abort_ex(self.txn, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Views across the growth of `mdbx.dat`, and the geometry that keeps pages under them.

    use super::*;
    use crate::mdbx::MdbxStore;
    use engine::buddy::Slot;
    use engine::meta::{MetaStore, MetaTxn, FORMAT_VERSION};
    use engine::SizeClass;

    fn hash(n: u64) -> BlockHash {
        BlockHash::of(&n.to_le_bytes())
    }

    fn commit(store: &mut MdbxStore, seq: u64, range: std::ops::Range<u64>) {
        let mut txn = store.begin().unwrap();
        let header = Header {
            format_version: FORMAT_VERSION,
            capacity_bytes: 1 << 40,
            node_id: 1,
            commit_seq: seq,
        };
        txn.set_header(&header).unwrap();
        for n in range {
            let slot = Slot {
                offset: n * 4096,
                class: SizeClass::MIN,
            };
            let entry = IndexEntry {
                slot,
                len: 100,
                crc32c: n as u32,
                flags: 0,
                commit_seq: seq,
            };
            txn.put(&hash(n), &entry).unwrap();
        }
        txn.commit(false).unwrap();
        store.publish_durable(seq);
    }

    fn count(view: &MdbxView) -> usize {
        let mut n = 0;
        view.walk(None, &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
        n
    }

    #[test]
    fn the_index_never_shrinks_under_a_view() {
        let dir = tempfile::tempdir().unwrap();
        let store = MdbxStore::open(dir.path(), 1 << 30).unwrap();
        let view = store.view().unwrap();
        let geometry = view._db.info().unwrap().geometry();
        assert_eq!(geometry.shrink_threshold(), 0, "auto-shrink is off");
    }

    /// Eight views renew and reset around every commit while the file grows past its first
    /// size; a ninth stays renewed on the first commit throughout and keeps its snapshot.
    #[test]
    fn views_see_each_commit_and_keep_their_snapshot_while_the_file_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MdbxStore::open(dir.path(), 1 << 30).unwrap();
        let mut views: Vec<MdbxView> = (0..8).map(|_| store.view().unwrap()).collect();
        let mut held = store.view().unwrap();
        let size_before = store.file_size_bytes().unwrap();
        commit(&mut store, 1, 0..100);
        assert_eq!(held.renew().unwrap().version, 1);
        const PER_BATCH: u64 = 500;
        for seq in 2..=40u64 {
            let first = 100 + (seq - 2) * PER_BATCH;
            commit(&mut store, seq, first..first + PER_BATCH);
            for view in &mut views {
                let stamp = view.renew().unwrap();
                assert_eq!(stamp.version, seq, "a renew sees the newest commit");
                for n in [0, first, first + PER_BATCH - 1] {
                    let entry = view.get(&hash(n)).unwrap().expect("committed");
                    assert!(stamp.shows(&entry) && entry.crc32c == n as u32);
                }
                view.release();
            }
            assert!(
                held.get(&hash(first)).unwrap().is_none(),
                "held: its snapshot"
            );
            assert!(held.get(&hash(99)).unwrap().is_some());
        }
        let size_after = store.file_size_bytes().unwrap();
        assert!(
            size_after > size_before,
            "the file grew ({size_before} -> {size_after} bytes)"
        );
        assert_eq!(
            count(&held),
            100,
            "a view renewed before the growth reads it whole"
        );
        held.release();
        let last = &mut views[0];
        last.renew().unwrap();
        assert_eq!(count(last), 100 + 39 * PER_BATCH as usize);
        last.release();
    }
}
