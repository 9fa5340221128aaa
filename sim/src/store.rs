//! The metadata store a run's controller and workers use: the engine's [`MemStore`] (an image
//! with explicit crash semantics) or the server's production [`MdbxStore`] over libmdbx in a
//! fresh temporary directory (`Options::store`, [`StoreKind`]).
//!
//! Owns: [`StoreFiles`] (what outlives a node: the memory image, or the libmdbx directory and
//! its fault switch), [`SimStore`] (the store one node's `Controller` runs on) and its read,
//! transaction and view types, which dispatch to either store; the injected commit fault of
//! the libmdbx store (the image has its own).
//!
//! Never does: decide when a fault or a crash strikes (the world does), or change what either
//! store does beyond failing a whole commit on request. Invariants: both stores answer every
//! call the same way (the engine's conformance suite runs over both), so a seed's trace hash is
//! the same under either; a libmdbx store models no power loss (a real disk cannot drop its own
//! fsyncs), so only seeds whose crash plan holds process crashes alone may use it, and a process
//! crash closes the environment and opens it again (committed state survives, as libmdbx's
//! weak commits do a `kill -9`; the kill itself is `server/tests`' to test).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engine::buddy::Slot;
use engine::hash::BlockHash;
use engine::meta::{
    CrashKind, Header, IndexEntry, IndexView, LogState, MemRead, MemState, MemStore, MemTxn,
    MemView, MetaError, MetaRead, MetaStore, MetaTxn, SharedImage, ViewStamp,
};
use server::mdbx::{MdbxRead, MdbxStore, MdbxTxn};
use server::mdbx_view::MdbxView;

use crate::options::StoreKind;

/// Upper bound of the libmdbx map: far above any simulated index (at most 16,384 blocks of
/// 4 KiB in 64 MiB), small enough that two jobs reserve little address space.
pub const MDBX_MAP_BYTES_MAX: u64 = 256 << 20;

/// The libmdbx store's fault switch and commit count, kept across its reopenings as the
/// memory image keeps its own.
#[derive(Debug, Default)]
pub struct MdbxFaults {
    /// The next commit fails with an I/O error and changes nothing.
    pub fail_next_commit: bool,
    /// After this many more successful commits, the next one fails (as the image's).
    pub fail_commit_after: Option<u64>,
    /// Successful commits so far.
    pub commits: u64,
}

/// What outlives a node (a process of the server): the store's files.
#[derive(Debug)]
pub enum StoreFiles {
    Mem(SharedImage),
    Mdbx {
        /// Removed when the run ends.
        dir: tempfile::TempDir,
        faults: Arc<Mutex<MdbxFaults>>,
    },
}

impl StoreFiles {
    /// A new, empty store of `kind` (libmdbx: in a fresh directory under [`mdbx_parent`]).
    /// The directory's name is random; nothing a run does depends on it.
    pub fn create(kind: StoreKind) -> StoreFiles {
        match kind {
            StoreKind::Mem => StoreFiles::Mem(MemStore::new().image()),
            StoreKind::Mdbx => StoreFiles::Mdbx {
                dir: tempfile::Builder::new()
                    .prefix("buddy-sim-")
                    .tempdir_in(mdbx_parent())
                    .expect("a temporary directory for the libmdbx store"),
                faults: Arc::default(),
            },
        }
    }

    /// Opens the store for a new node. The libmdbx store syncs the index at open (the
    /// server's start); the image is made durable as that sync would.
    pub fn open(&self) -> Result<SimStore, MetaError> {
        match self {
            StoreFiles::Mem(image) => {
                {
                    let mut img = image.lock().expect("image lock");
                    img.fail_next_commit = false;
                    img.durable = MemState::clone(&img.committed);
                }
                Ok(SimStore::Mem(MemStore::open(image.clone())))
            }
            StoreFiles::Mdbx { dir, faults } => {
                faults.lock().expect("faults lock").fail_next_commit = false;
                let store = MdbxStore::open(dir.path(), MDBX_MAP_BYTES_MAX)?;
                Ok(SimStore::Mdbx(store, Arc::clone(faults)))
            }
        }
    }

    /// What a crash of `kind` leaves of the store, once its node is gone (dropped: the libmdbx
    /// environment is closed). Panics on a power loss of a libmdbx store (not modelled).
    pub fn crash(&self, kind: CrashKind) {
        match self {
            StoreFiles::Mem(image) => MemStore::crash(image, kind),
            StoreFiles::Mdbx { dir, .. } => {
                assert_eq!(
                    kind,
                    CrashKind::Process,
                    "a libmdbx store has no power loss"
                );
                assert!(
                    exists(dir.path()),
                    "the store's directory outlives its node"
                );
            }
        }
    }

    /// The next commit fails (and changes nothing).
    pub fn fail_next_commit(&self) {
        match self {
            StoreFiles::Mem(image) => image.lock().expect("image lock").fail_next_commit = true,
            StoreFiles::Mdbx { faults, .. } => {
                faults.lock().expect("faults lock").fail_next_commit = true;
            }
        }
    }

    /// After `commits` more successful commits, the next one fails (and changes nothing): a
    /// crash in the middle of a run of commits (the log's replay).
    pub fn fail_commit_after(&self, commits: u64) {
        match self {
            StoreFiles::Mem(image) => {
                image.lock().expect("image lock").fail_commit_after = Some(commits);
            }
            StoreFiles::Mdbx { faults, .. } => {
                faults.lock().expect("faults lock").fail_commit_after = Some(commits);
            }
        }
    }

    /// Every injected commit fault not yet struck is withdrawn.
    pub fn clear_commit_faults(&self) {
        match self {
            StoreFiles::Mem(image) => {
                let mut img = image.lock().expect("image lock");
                img.fail_next_commit = false;
                img.fail_commit_after = None;
            }
            StoreFiles::Mdbx { faults, .. } => {
                let mut faults = faults.lock().expect("faults lock");
                faults.fail_next_commit = false;
                faults.fail_commit_after = None;
            }
        }
    }

    /// Successful commits so far, over every node.
    pub fn commits(&self) -> u64 {
        match self {
            StoreFiles::Mem(image) => image.lock().expect("image lock").commits,
            StoreFiles::Mdbx { faults, .. } => faults.lock().expect("faults lock").commits,
        }
    }
}

/// Where the libmdbx stores go: `TMPDIR` when set, else `/dev/shm` when there is one (a durable
/// commit's two fdatasyncs cost nothing on tmpfs; on a disk a seed takes ten times as long in
/// wall time), else the system's temporary directory.
pub fn mdbx_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    match std::env::var_os("TMPDIR") {
        Some(dir) => PathBuf::from(dir),
        None if shm.is_dir() => shm.to_path_buf(),
        None => std::env::temp_dir(),
    }
}

fn exists(path: &Path) -> bool {
    path.try_exists().unwrap_or(false)
}

/// The store one node's controller runs on.
#[derive(Debug)]
pub enum SimStore {
    Mem(MemStore),
    Mdbx(MdbxStore, Arc<Mutex<MdbxFaults>>),
}

impl SimStore {
    /// A checkpoint succeeded (`ControllerIo::begin_checkpoint`'s job):
    /// libmdbx's own sync (`MdbxStore::sync`, what the server's `IndexSync` runs), or the
    /// image's committed state made durable.
    pub fn make_durable(&self) -> Result<(), MetaError> {
        match self {
            SimStore::Mem(store) => {
                let image = store.image();
                let mut img = image.lock().expect("image lock");
                img.durable = MemState::clone(&img.committed);
                Ok(())
            }
            SimStore::Mdbx(store, _) => store.sync(),
        }
    }

    /// The committed entry of `hash` (for the oracles; `None` also when the read fails).
    pub fn committed_entry(&self, hash: &BlockHash) -> Option<IndexEntry> {
        self.read().ok()?.get(hash).ok()?
    }
}

/// A read of either store.
pub enum SimRead<'r> {
    Mem(MemRead),
    Mdbx(MdbxRead<'r>),
}

/// A write transaction of either store; the libmdbx one carries its store's fault switch.
pub enum SimTxn<'t> {
    Mem(MemTxn<'t>),
    Mdbx(MdbxTxn<'t>, &'t Mutex<MdbxFaults>),
}

/// A worker's view of either store.
pub enum SimView {
    Mem(MemView),
    Mdbx(MdbxView),
}

/// Calls the same method on whichever store's value `$on` holds.
macro_rules! either {
    ($on:expr, $x:ident => $call:expr) => {
        match $on {
            Self::Mem($x) => $call,
            Self::Mdbx($x, ..) => $call,
        }
    };
}

macro_rules! read_either {
    ($t:ty) => {
        impl MetaRead for $t {
            fn header(&self) -> Result<Option<Header>, MetaError> {
                either!(self, r => r.header())
            }
            fn get(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, MetaError> {
                either!(self, r => r.get(hash))
            }
            fn list(
                &self,
                after: Option<&BlockHash>,
                limit: usize,
                out: &mut Vec<(BlockHash, IndexEntry)>,
            ) -> Result<(), MetaError> {
                either!(self, r => r.list(after, limit, out))
            }
            fn for_each_entry(
                &self,
                f: &mut dyn FnMut(&BlockHash, &IndexEntry),
            ) -> Result<(), MetaError> {
                either!(self, r => r.for_each_entry(f))
            }
            fn reservations(&self) -> Result<Vec<(Slot, u8)>, MetaError> {
                either!(self, r => r.reservations())
            }
            fn log_state(&self) -> Result<Option<LogState>, MetaError> {
                either!(self, r => r.log_state())
            }
        }
    };
}

read_either!(SimRead<'_>);
read_either!(SimTxn<'_>);

impl MetaTxn for SimTxn<'_> {
    fn put(&mut self, hash: &BlockHash, entry: &IndexEntry) -> Result<(), MetaError> {
        either!(self, t => t.put(hash, entry))
    }
    fn delete(&mut self, hash: &BlockHash) -> Result<bool, MetaError> {
        either!(self, t => t.delete(hash))
    }
    fn reserve(&mut self, slot: Slot, worker: u8) -> Result<(), MetaError> {
        either!(self, t => t.reserve(slot, worker))
    }
    fn unreserve(&mut self, slot: Slot) -> Result<bool, MetaError> {
        either!(self, t => t.unreserve(slot))
    }
    fn clear_reservations(&mut self) -> Result<(), MetaError> {
        either!(self, t => t.clear_reservations())
    }
    fn set_header(&mut self, header: &Header) -> Result<(), MetaError> {
        either!(self, t => t.set_header(header))
    }
    fn set_log_state(&mut self, state: &LogState) -> Result<(), MetaError> {
        either!(self, t => t.set_log_state(state))
    }

    /// The libmdbx transaction fails whole when its fault switch is set (dropped: aborted),
    /// as the image's commit does.
    fn commit(self, durable: bool) -> Result<(), MetaError> {
        match self {
            SimTxn::Mem(txn) => txn.commit(durable),
            SimTxn::Mdbx(txn, faults) => {
                let fail = {
                    let mut faults = faults.lock().expect("faults lock");
                    let countdown = faults.fail_commit_after.take();
                    faults.fail_commit_after = countdown.and_then(|n| n.checked_sub(1));
                    std::mem::take(&mut faults.fail_next_commit) || countdown == Some(0)
                };
                if fail {
                    drop(txn);
                    return Err(MetaError::Io("injected commit failure".into()));
                }
                txn.commit(durable)?;
                faults.lock().expect("faults lock").commits += 1;
                Ok(())
            }
        }
    }
}

impl MetaStore for SimStore {
    type Read<'r> = SimRead<'r>;
    type Txn<'t> = SimTxn<'t>;
    type View = SimView;

    fn read(&self) -> Result<SimRead<'_>, MetaError> {
        Ok(match self {
            SimStore::Mem(store) => SimRead::Mem(store.read()?),
            SimStore::Mdbx(store, _) => SimRead::Mdbx(store.read()?),
        })
    }

    fn begin(&mut self) -> Result<SimTxn<'_>, MetaError> {
        Ok(match self {
            SimStore::Mem(store) => SimTxn::Mem(store.begin()?),
            SimStore::Mdbx(store, faults) => SimTxn::Mdbx(store.begin()?, faults),
        })
    }

    fn view(&self) -> Result<SimView, MetaError> {
        Ok(match self {
            SimStore::Mem(store) => SimView::Mem(store.view()?),
            SimStore::Mdbx(store, _) => SimView::Mdbx(store.view()?),
        })
    }

    fn publish_durable(&self, seq: u64) {
        either!(self, s => s.publish_durable(seq))
    }
}

impl IndexView for SimView {
    fn renew(&mut self) -> Result<ViewStamp, MetaError> {
        either!(self, v => v.renew())
    }
    fn get(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, MetaError> {
        either!(self, v => v.get(hash))
    }
    fn walk(
        &self,
        after: Option<&BlockHash>,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry) -> bool,
    ) -> Result<(), MetaError> {
        either!(self, v => v.walk(after, f))
    }
    fn release(&mut self) {
        either!(self, v => v.release())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's conformance suite over the dispatching store, both ways. Without power
    /// loss: `StoreFiles::open` makes the image durable as the server's start does (libmdbx's
    /// open syncs), so a reopened store has no non-durable state left to lose; the engine's own
    /// test runs the suite's power-loss half over `MemStore`.
    struct Harness(StoreKind, Vec<StoreFiles>);

    impl engine::meta::StoreHarness for Harness {
        type Store = SimStore;
        fn create(&mut self) -> SimStore {
            self.1.push(StoreFiles::create(self.0));
            self.1.last().expect("just pushed").open().expect("open")
        }
        fn crash_and_reopen(&mut self, store: SimStore, kind: CrashKind) -> SimStore {
            drop(store);
            let files = self.1.last().expect("a store was created");
            files.crash(kind);
            files.open().expect("reopen")
        }
        fn models_power_loss(&self) -> bool {
            false
        }
    }

    #[test]
    fn both_stores_pass_the_engine_conformance_suite_through_the_dispatch() {
        for kind in [StoreKind::Mem, StoreKind::Mdbx] {
            engine::meta::conformance(&mut Harness(kind, Vec::new()));
        }
    }

    #[test]
    fn an_injected_commit_failure_changes_nothing_in_the_libmdbx_store() {
        let files = StoreFiles::create(StoreKind::Mdbx);
        let mut store = files.open().expect("open");
        let hash = BlockHash([7; 32]);
        let entry = IndexEntry {
            slot: Slot {
                offset: 0,
                class: engine::size_class::SizeClass::new(0).expect("class 0"),
            },
            len: 10,
            crc32c: 1,
            flags: 0,
            commit_seq: 1,
        };
        files.fail_next_commit();
        let mut txn = store.begin().expect("begin");
        txn.put(&hash, &entry).expect("put");
        assert!(txn.commit(true).is_err());
        assert_eq!(store.committed_entry(&hash), None);
        assert_eq!(files.commits(), 0);
        let mut txn = store.begin().expect("begin");
        txn.put(&hash, &entry).expect("put");
        txn.commit(true).expect("the switch fails one commit only");
        assert_eq!(store.committed_entry(&hash), Some(entry));
        assert_eq!(files.commits(), 1);
    }
}
