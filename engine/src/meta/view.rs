//! A worker's read-only view of the index (issue 17): GET, HEAD, `GET /blocks`,
//! `POST /blocks/missing` and the dedup checks of PUT look the index up here, on the worker's
//! own thread, with no hop through the controller.
//!
//! Owns: the [`IndexView`] trait the drivers implement (libmdbx read transaction in the server,
//! [`MemView`] here for tests and the simulator), the [`ViewStamp`] a renew returns, and the
//! view part of the store conformance suite.
//!
//! Visibility rules (both implementations): a renew takes a snapshot of the newest commit, whole
//! commits only; the snapshot does not change until the next renew; its version is the
//! `commit_seq` of the header it holds; the durable watermark is read at the renew. An entry is
//! shown only when the batch that wrote it is durable ([`ViewStamp::shows`]).
//!
//! Must never: write, or keep a snapshot across a wait in the server (it would pin old pages and
//! hold back slot reuse: the worker's horizon counts a view as in use until it is released).

use std::sync::Arc;

use super::{
    entry, hash_n, CrashKind, Header, IndexEntry, MemState, MetaError, MetaRead, MetaStore,
    MetaTxn, SharedImage, StoreHarness, FORMAT_VERSION,
};
use crate::hash::BlockHash;

/// What a renew saw.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ViewStamp {
    /// The `commit_seq` of the snapshot's header: the last batch it contains (0: none yet).
    pub version: u64,
    /// The durable watermark read at the renew: every batch `<= durable_through` is durable.
    pub durable_through: u64,
}

impl ViewStamp {
    /// Whether a read through this view may report `entry` as stored: only once the batch that
    /// wrote it is durable (durability `full`: no read reports a block before it is durable).
    pub fn shows(&self, entry: &IndexEntry) -> bool {
        debug_assert!(
            entry.commit_seq <= self.version,
            "{entry:?} newer than {self:?}"
        );
        entry.commit_seq <= self.durable_through
    }
}

/// A worker's read-only view of the index, made by [`MetaStore::view`], used by one thread.
///
/// Call [`IndexView::renew`], then any number of [`IndexView::get`], then
/// [`IndexView::release`] (the engine's `Worker::serve_reads` does this).
pub trait IndexView {
    /// Takes a snapshot of the newest commit and reads the durable watermark. Called only on a
    /// released view.
    fn renew(&mut self) -> Result<ViewStamp, MetaError>;
    /// The entry of `hash` in the snapshot of the last renew (unfiltered: see
    /// [`ViewStamp::shows`]). Panics on a released view.
    fn get(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, MetaError>;
    /// The snapshot's entries in ascending hash order, strictly after `after`, unfiltered,
    /// until `f` returns `false` (`GET /blocks`). Panics on a released view.
    fn walk(
        &self,
        after: Option<&BlockHash>,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry) -> bool,
    ) -> Result<(), MetaError>;
    /// Drops the snapshot, keeps the handle (libmdbx: `mdbx_txn_reset`).
    fn release(&mut self);
}

/// The in-memory store's view: an `Arc` of the committed state, shared with every view renewed
/// before the next commit.
#[derive(Debug)]
pub struct MemView {
    image: SharedImage,
    snapshot: Option<Arc<MemState>>,
}

impl MemView {
    pub(super) fn new(image: SharedImage) -> MemView {
        MemView {
            image,
            snapshot: None,
        }
    }
}

impl IndexView for MemView {
    fn renew(&mut self) -> Result<ViewStamp, MetaError> {
        assert!(self.snapshot.is_none(), "renew of a view in use");
        let img = self.image.lock().expect("image lock");
        let durable_through = img.durable_through;
        let snapshot = Arc::clone(&img.committed);
        drop(img);
        let version = snapshot.header.map_or(0, |h| h.commit_seq);
        self.snapshot = Some(snapshot);
        Ok(ViewStamp {
            version,
            durable_through,
        })
    }

    fn get(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, MetaError> {
        let snapshot = self.snapshot.as_ref().expect("get on a released view");
        Ok(snapshot.index.get(hash).copied())
    }

    fn walk(
        &self,
        after: Option<&BlockHash>,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry) -> bool,
    ) -> Result<(), MetaError> {
        use std::ops::Bound;
        let snapshot = self.snapshot.as_ref().expect("walk on a released view");
        let lower = after.map_or(Bound::Unbounded, |h| Bound::Excluded(*h));
        for (hash, entry) in snapshot.index.range((lower, Bound::Unbounded)) {
            if !f(hash, entry) {
                break;
            }
        }
        Ok(())
    }

    fn release(&mut self) {
        self.snapshot = None;
    }
}

/// Views: a renew sees the newest commit, a renewed view keeps its snapshot, the version is the
/// header's sequence, the watermark is what was published last.
pub(super) fn conformance_view<H: StoreHarness>(harness: &mut H) {
    let mut store = harness.create();
    let mut view = store.view().unwrap();
    let header = |seq| Header {
        format_version: FORMAT_VERSION,
        capacity_bytes: 1 << 20,
        node_id: 7,
        commit_seq: seq,
    };
    let commit = |store: &mut H::Store, seq: u64, put: Option<u8>, delete: Option<u8>| {
        let mut txn = store.begin().unwrap();
        txn.set_header(&header(seq)).unwrap();
        if let Some(n) = put {
            txn.put(&hash_n(n), &entry(4096 * u64::from(n), 0, 10, seq))
                .unwrap();
        }
        if let Some(n) = delete {
            assert!(txn.delete(&hash_n(n)).unwrap());
        }
        txn.commit(false).unwrap();
    };
    commit(&mut store, 1, Some(1), None);
    store.publish_durable(1);
    let stamp = view.renew().unwrap();
    assert_eq!(
        stamp,
        ViewStamp {
            version: 1,
            durable_through: 1
        }
    );
    let one = view
        .get(&hash_n(1))
        .unwrap()
        .expect("committed before the renew");
    assert!(stamp.shows(&one));
    // A commit after the renew: the view keeps its snapshot.
    commit(&mut store, 2, Some(2), Some(1));
    assert_eq!(
        view.get(&hash_n(1)).unwrap(),
        Some(one),
        "a renewed view keeps its snapshot"
    );
    assert_eq!(view.get(&hash_n(2)).unwrap(), None);
    assert_eq!(
        walked(&view, None),
        vec![hash_n(1)],
        "a walk keeps the snapshot too"
    );
    view.release();
    // The next renew sees it, the watermark not yet.
    let stamp = view.renew().unwrap();
    assert_eq!(
        stamp,
        ViewStamp {
            version: 2,
            durable_through: 1
        }
    );
    assert_eq!(view.get(&hash_n(1)).unwrap(), None);
    let two = view.get(&hash_n(2)).unwrap().expect("committed");
    assert!(!stamp.shows(&two), "not durable yet");
    assert_eq!(walked(&view, None), vec![hash_n(2)]);
    assert!(
        walked(&view, Some(&hash_n(2))).is_empty(),
        "a walk starts after `after`"
    );
    view.release();
    store.publish_durable(2);
    let stamp = view.renew().unwrap();
    assert!(stamp.shows(&two));
    view.release();
    // A second view of the same store, after a process crash and reopen.
    drop(view);
    let store = harness.crash_and_reopen(store, CrashKind::Process);
    let mut again = store.view().unwrap();
    assert_eq!(
        again.renew().unwrap().version,
        2,
        "a reopened store's views see its commits"
    );
    assert_eq!(store.read().unwrap().header().unwrap(), Some(header(2)));
    again.release();
}

/// The hashes a walk of `view` visits after `after` (at most 100).
fn walked(view: &impl IndexView, after: Option<&BlockHash>) -> Vec<BlockHash> {
    let mut seen = Vec::new();
    view.walk(after, &mut |hash, _| {
        seen.push(*hash);
        seen.len() < 100
    })
    .unwrap();
    seen
}
