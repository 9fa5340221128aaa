//! The metadata store: a transactional map holding the block index, the reserved slots and the
//! format header. The controller is its only user.
//!
//! Two implementations run the same [`conformance`] suite: [`MemStore`] here (tests and the
//! simulator; explicit crash semantics) and the libmdbx store in the server.
//!
//! What is persisted: the index (hash -> slot, length, CRC32C, flags, commit sequence), the set of
//! slots reserved by worker pools, and the header (format version, capacity, node id, last commit
//! sequence). The allocator itself is not persisted: at startup it is rebuilt from the index, and
//! every reservation goes back to free (a pool's slots hold no acknowledged data).
//!
//! Workers read the index through an [`IndexView`] (`view.rs`): a snapshot per loop turn, made
//! by the store, filtered by the durable watermark the controller publishes.
//!
//! Records have fixed little-endian encodings with validating decoders (fuzzed); a corrupt record
//! is an error, never a panic or a silently wrong value.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::buddy::Slot;
use crate::hash::BlockHash;
use crate::size_class::{SizeClass, SLOT_MAX_BYTES};

mod log_state;
mod view;
pub use log_state::{LogState, LOG_STATE_BYTES};
pub use view::{IndexView, MemView, ViewStamp};

/// Bumped on any incompatible change of a record layout. 2: every header comes with a
/// `LogState` (issue 18: the write-ahead log region of the data file).
pub const FORMAT_VERSION: u32 = 2;
/// Magic at the start of the header record.
pub const HEADER_MAGIC: [u8; 8] = *b"BUDDYBLK";

/// One stored block, as the index records it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IndexEntry {
    pub slot: Slot,
    /// Block length in bytes, 1..=slot size.
    pub len: u32,
    pub crc32c: u32,
    /// Reserved for the cluster layer (tombstones, replication state); 0 today.
    pub flags: u8,
    /// Sequence number of the batch that wrote this entry (a change feed's cursor).
    pub commit_seq: u64,
}

/// The format header: one record per store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    pub format_version: u32,
    pub capacity_bytes: u64,
    /// Persistent node identity for a later cluster layer (drawn once at creation).
    pub node_id: u64,
    /// Sequence number of the last committed batch.
    pub commit_seq: u64,
}

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store I/O error: {0}")]
    Io(String),
    #[error("corrupt metadata record: {0}")]
    Corrupt(&'static str),
    #[error("metadata store is full: {0}")]
    Full(String),
}

/// Reading committed (or, inside a transaction, own) state.
pub trait MetaRead {
    fn header(&self) -> Result<Option<Header>, MetaError>;
    fn get(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, MetaError>;
    /// Up to `limit` entries with hash strictly greater than `after` (all when `None`), ascending.
    fn list(
        &self,
        after: Option<&BlockHash>,
        limit: usize,
        out: &mut Vec<(BlockHash, IndexEntry)>,
    ) -> Result<(), MetaError>;
    /// Every index entry, ascending by hash.
    fn for_each_entry(&self, f: &mut dyn FnMut(&BlockHash, &IndexEntry)) -> Result<(), MetaError>;
    /// Every reserved slot with the worker that holds it, ascending by offset.
    fn reservations(&self) -> Result<Vec<(Slot, u8)>, MetaError>;
    /// The write-ahead log's record (`None` before the log was set up).
    fn log_state(&self) -> Result<Option<LogState>, MetaError>;
}

/// A write transaction. Dropping it without `commit` discards every change.
pub trait MetaTxn: MetaRead {
    fn put(&mut self, hash: &BlockHash, entry: &IndexEntry) -> Result<(), MetaError>;
    /// Returns whether the hash was present.
    fn delete(&mut self, hash: &BlockHash) -> Result<bool, MetaError>;
    fn reserve(&mut self, slot: Slot, worker: u8) -> Result<(), MetaError>;
    /// Returns whether the slot was reserved.
    fn unreserve(&mut self, slot: Slot) -> Result<bool, MetaError>;
    fn clear_reservations(&mut self) -> Result<(), MetaError>;
    fn set_header(&mut self, header: &Header) -> Result<(), MetaError>;
    fn set_log_state(&mut self, state: &LogState) -> Result<(), MetaError>;
    /// Makes every change visible. With `durable`, the changes are on stable storage when this
    /// returns (they survive power loss); without, they survive a process crash only.
    fn commit(self, durable: bool) -> Result<(), MetaError>;
}

pub trait MetaStore {
    type Read<'r>: MetaRead
    where
        Self: 'r;
    type Txn<'t>: MetaTxn
    where
        Self: 't;
    /// A worker's own read view (one per worker, made at startup, moved to its thread).
    type View: IndexView + Send + 'static;
    /// A consistent view of the committed state.
    fn read(&self) -> Result<Self::Read<'_>, MetaError>;
    fn begin(&mut self) -> Result<Self::Txn<'_>, MetaError>;
    /// A new worker view; it shares the durable watermark with this store.
    fn view(&self) -> Result<Self::View, MetaError>;
    /// The durable watermark: every batch numbered `<= seq` is durable. Views show only the
    /// entries of such batches. The controller publishes it after each sync and before the
    /// batch's replies; it only grows while the store is open ([`Controller::open`] sets it).
    ///
    /// [`Controller::open`]: crate::controller::Controller::open
    fn publish_durable(&self, seq: u64);
}

// ---------------------------------------------------------------------------------------------
// Record encodings (used by every store that writes bytes).

pub const INDEX_ENTRY_BYTES: usize = 26;
pub const HEADER_BYTES: usize = 40;
pub const RESERVATION_KEY_BYTES: usize = 8;
pub const RESERVATION_VALUE_BYTES: usize = 2;

impl IndexEntry {
    pub fn encode(&self) -> [u8; INDEX_ENTRY_BYTES] {
        assert!(
            self.len >= 1 && u64::from(self.len) <= self.slot.bytes(),
            "{self:?}"
        );
        assert!(
            self.slot.offset.is_multiple_of(self.slot.bytes()),
            "{self:?}"
        );
        let mut out = [0u8; INDEX_ENTRY_BYTES];
        out[0..8].copy_from_slice(&self.slot.offset.to_le_bytes());
        out[8] = self.slot.class.as_u8();
        out[9..13].copy_from_slice(&self.len.to_le_bytes());
        out[13..17].copy_from_slice(&self.crc32c.to_le_bytes());
        out[17] = self.flags;
        out[18..26].copy_from_slice(&self.commit_seq.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<IndexEntry, MetaError> {
        let bytes: &[u8; INDEX_ENTRY_BYTES] = bytes
            .try_into()
            .map_err(|_| MetaError::Corrupt("index entry length"))?;
        let offset = u64::from_le_bytes(le8(&bytes[0..8]));
        let class = SizeClass::new(bytes[8]).ok_or(MetaError::Corrupt("index entry class"))?;
        if !offset.is_multiple_of(class.bytes()) {
            return Err(MetaError::Corrupt("index entry slot misaligned"));
        }
        let len = u32::from_le_bytes(le4(&bytes[9..13]));
        if len == 0 || u64::from(len) > class.bytes() {
            return Err(MetaError::Corrupt("index entry length out of range"));
        }
        let entry = IndexEntry {
            slot: Slot { offset, class },
            len,
            crc32c: u32::from_le_bytes(le4(&bytes[13..17])),
            flags: bytes[17],
            commit_seq: u64::from_le_bytes(le8(&bytes[18..26])),
        };
        debug_assert_eq!(&entry.encode(), bytes);
        Ok(entry)
    }
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        assert!(self.capacity_bytes > 0 && self.capacity_bytes.is_multiple_of(SLOT_MAX_BYTES));
        let mut out = [0u8; HEADER_BYTES];
        out[0..8].copy_from_slice(&HEADER_MAGIC);
        out[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        out[16..24].copy_from_slice(&self.capacity_bytes.to_le_bytes());
        out[24..32].copy_from_slice(&self.node_id.to_le_bytes());
        out[32..40].copy_from_slice(&self.commit_seq.to_le_bytes());
        out
    }

    /// Decodes a header of any format version (the caller refuses versions it cannot read).
    pub fn decode(bytes: &[u8]) -> Result<Header, MetaError> {
        if bytes.len() != HEADER_BYTES {
            return Err(MetaError::Corrupt("header length"));
        }
        if bytes[0..8] != HEADER_MAGIC {
            return Err(MetaError::Corrupt("header magic"));
        }
        if bytes[12..16] != [0; 4] {
            return Err(MetaError::Corrupt("header padding"));
        }
        let capacity_bytes = u64::from_le_bytes(le8(&bytes[16..24]));
        if capacity_bytes == 0 || !capacity_bytes.is_multiple_of(SLOT_MAX_BYTES) {
            return Err(MetaError::Corrupt("header capacity"));
        }
        Ok(Header {
            format_version: u32::from_le_bytes(le4(&bytes[8..12])),
            capacity_bytes,
            node_id: u64::from_le_bytes(le8(&bytes[24..32])),
            commit_seq: u64::from_le_bytes(le8(&bytes[32..40])),
        })
    }
}

/// Reservation records: key = slot offset (big-endian, so keys sort by offset), value = class and
/// worker.
pub fn encode_reservation(slot: Slot, worker: u8) -> ([u8; 8], [u8; 2]) {
    assert!(slot.offset.is_multiple_of(slot.bytes()));
    (slot.offset.to_be_bytes(), [slot.class.as_u8(), worker])
}

pub fn decode_reservation(key: &[u8], value: &[u8]) -> Result<(Slot, u8), MetaError> {
    let key: [u8; 8] = key
        .try_into()
        .map_err(|_| MetaError::Corrupt("reservation key"))?;
    if value.len() != RESERVATION_VALUE_BYTES {
        return Err(MetaError::Corrupt("reservation value length"));
    }
    let offset = u64::from_be_bytes(key);
    let class = SizeClass::new(value[0]).ok_or(MetaError::Corrupt("reservation class"))?;
    if !offset.is_multiple_of(class.bytes()) {
        return Err(MetaError::Corrupt("reservation slot misaligned"));
    }
    Ok((Slot { offset, class }, value[1]))
}

/// Index keys are the 32 hash bytes.
pub fn decode_hash_key(key: &[u8]) -> Result<BlockHash, MetaError> {
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| MetaError::Corrupt("index key length"))?;
    Ok(BlockHash(key))
}

fn le8(b: &[u8]) -> [u8; 8] {
    b.try_into().expect("caller passes 8 bytes")
}

fn le4(b: &[u8]) -> [u8; 4] {
    b.try_into().expect("caller passes 4 bytes")
}

// ---------------------------------------------------------------------------------------------
// In-memory store with explicit crash semantics.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState {
    pub header: Option<Header>,
    pub index: BTreeMap<BlockHash, IndexEntry>,
    pub reservations: BTreeMap<u64, (Slot, u8)>,
    pub log_state: Option<LogState>,
}

/// What a [`MemStore`] has made visible (`committed`, survives a process crash) and what it has
/// made durable (`durable`, survives power loss too). Shared so a test or the simulator can keep
/// it across a crash and reopen a store on it.
#[derive(Debug, Default)]
pub struct MemImage {
    /// Shared with the views renewed since the commit that made it (a renew is an `Arc` clone).
    pub committed: Arc<MemState>,
    pub durable: MemState,
    /// Fault injection: the next commit fails with an I/O error (and changes nothing).
    pub fail_next_commit: bool,
    /// Fault injection: after this many more successful commits, the next one fails (a crash
    /// in the middle of a run of commits, e.g. mid-recovery).
    pub fail_commit_after: Option<u64>,
    pub commits: u64,
    /// The durable watermark ([`MetaStore::publish_durable`]).
    pub durable_through: u64,
}

/// Which crash to model when reopening.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrashKind {
    /// The process died: committed changes survive.
    Process,
    /// The machine lost power: only durable changes survive.
    PowerLoss,
}

pub type SharedImage = Arc<Mutex<MemImage>>;

/// The in-memory store. Uncommitted changes live only in the transaction object, so dropping it
/// (or the store) loses them; `crash` makes the image forget what a crash of that kind loses.
#[derive(Debug)]
pub struct MemStore {
    image: SharedImage,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore {
            image: Arc::new(Mutex::new(MemImage::default())),
        }
    }

    /// Opens a store on an existing image (after a crash, call [`MemStore::crash`] first).
    pub fn open(image: SharedImage) -> MemStore {
        MemStore { image }
    }

    pub fn image(&self) -> SharedImage {
        Arc::clone(&self.image)
    }

    /// Applies a crash to an image: power loss rolls committed state back to durable state.
    pub fn crash(image: &SharedImage, kind: CrashKind) {
        let mut img = image.lock().expect("image lock");
        if kind == CrashKind::PowerLoss {
            img.committed = Arc::new(img.durable.clone());
        }
        img.fail_next_commit = false;
        img.fail_commit_after = None;
    }
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

/// A read view: a snapshot of the committed state (an `Arc` of it, shared with the store and
/// the views renewed since the last commit, so a read copies nothing).
pub struct MemRead {
    state: Arc<MemState>,
}

pub struct MemTxn<'t> {
    store: &'t mut MemStore,
    state: MemState,
}

fn mem_list(
    state: &MemState,
    after: Option<&BlockHash>,
    limit: usize,
    out: &mut Vec<(BlockHash, IndexEntry)>,
) {
    use std::ops::Bound;
    let lower = match after {
        Some(h) => Bound::Excluded(*h),
        None => Bound::Unbounded,
    };
    for (h, e) in state.index.range((lower, Bound::Unbounded)).take(limit) {
        out.push((*h, *e));
    }
}

macro_rules! mem_read_impl {
    ($t:ty) => {
        impl MetaRead for $t {
            fn header(&self) -> Result<Option<Header>, MetaError> {
                Ok(self.state.header)
            }
            fn get(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, MetaError> {
                Ok(self.state.index.get(hash).copied())
            }
            fn list(
                &self,
                after: Option<&BlockHash>,
                limit: usize,
                out: &mut Vec<(BlockHash, IndexEntry)>,
            ) -> Result<(), MetaError> {
                mem_list(&self.state, after, limit, out);
                Ok(())
            }
            fn for_each_entry(
                &self,
                f: &mut dyn FnMut(&BlockHash, &IndexEntry),
            ) -> Result<(), MetaError> {
                self.state.index.iter().for_each(|(h, e)| f(h, e));
                Ok(())
            }
            fn reservations(&self) -> Result<Vec<(Slot, u8)>, MetaError> {
                Ok(self.state.reservations.values().copied().collect())
            }
            fn log_state(&self) -> Result<Option<LogState>, MetaError> {
                Ok(self.state.log_state)
            }
        }
    };
}

mem_read_impl!(MemRead);
mem_read_impl!(MemTxn<'_>);

impl MetaTxn for MemTxn<'_> {
    fn put(&mut self, hash: &BlockHash, entry: &IndexEntry) -> Result<(), MetaError> {
        // Exercise the real encoding so the store keeps only what a disk store could.
        let decoded = IndexEntry::decode(&entry.encode())?;
        self.state.index.insert(*hash, decoded);
        Ok(())
    }
    fn delete(&mut self, hash: &BlockHash) -> Result<bool, MetaError> {
        Ok(self.state.index.remove(hash).is_some())
    }
    fn reserve(&mut self, slot: Slot, worker: u8) -> Result<(), MetaError> {
        let previous = self.state.reservations.insert(slot.offset, (slot, worker));
        assert!(previous.is_none(), "slot {slot:?} reserved twice");
        Ok(())
    }
    fn unreserve(&mut self, slot: Slot) -> Result<bool, MetaError> {
        match self.state.reservations.get(&slot.offset) {
            Some((s, _)) if *s == slot => {
                self.state.reservations.remove(&slot.offset);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    fn clear_reservations(&mut self) -> Result<(), MetaError> {
        self.state.reservations.clear();
        Ok(())
    }
    fn set_header(&mut self, header: &Header) -> Result<(), MetaError> {
        self.state.header = Some(Header::decode(&header.encode())?);
        Ok(())
    }
    fn set_log_state(&mut self, state: &LogState) -> Result<(), MetaError> {
        self.state.log_state = Some(LogState::decode(&state.encode())?);
        Ok(())
    }
    fn commit(self, durable: bool) -> Result<(), MetaError> {
        let mut img = self.store.image.lock().expect("image lock");
        let countdown = img.fail_commit_after.take();
        img.fail_commit_after = countdown.and_then(|n| n.checked_sub(1));
        if img.fail_next_commit || countdown == Some(0) {
            img.fail_next_commit = false;
            return Err(MetaError::Io("injected commit failure".into()));
        }
        img.committed = Arc::new(self.state);
        if durable {
            img.durable = MemState::clone(&img.committed);
        }
        img.commits += 1;
        Ok(())
    }
}

impl MetaStore for MemStore {
    type Read<'r> = MemRead;
    type Txn<'t> = MemTxn<'t>;

    fn read(&self) -> Result<MemRead, MetaError> {
        let img = self.image.lock().expect("image lock");
        Ok(MemRead {
            state: Arc::clone(&img.committed),
        })
    }

    fn begin(&mut self) -> Result<MemTxn<'_>, MetaError> {
        let state = MemState::clone(&self.image.lock().expect("image lock").committed);
        Ok(MemTxn { store: self, state })
    }

    type View = MemView;

    fn view(&self) -> Result<MemView, MetaError> {
        Ok(MemView::new(Arc::clone(&self.image)))
    }

    fn publish_durable(&self, seq: u64) {
        self.image.lock().expect("image lock").durable_through = seq;
    }
}

// ---------------------------------------------------------------------------------------------
// Conformance suite.

/// How the conformance suite opens, crashes and reopens an implementation.
pub trait StoreHarness {
    type Store: MetaStore;
    /// A new, empty store.
    fn create(&mut self) -> Self::Store;
    /// Ends `store` as a crash of `kind` would, and opens it again.
    fn crash_and_reopen(&mut self, store: Self::Store, kind: CrashKind) -> Self::Store;
    /// Whether power loss can be modelled (a real disk store cannot drop its own fsyncs).
    fn models_power_loss(&self) -> bool;
}

pub(crate) fn entry(offset: u64, class: u8, len: u32, seq: u64) -> IndexEntry {
    let class = SizeClass::new(class).expect("test class");
    IndexEntry {
        slot: Slot { offset, class },
        len,
        crc32c: len ^ 0xabcd,
        flags: 0,
        commit_seq: seq,
    }
}

pub(crate) fn hash_n(n: u8) -> BlockHash {
    let mut h = [0u8; 32];
    h[0] = n;
    h[31] = n.wrapping_mul(7);
    BlockHash(h)
}

/// Runs every behaviour the controller relies on against a store implementation.
pub fn conformance<H: StoreHarness>(harness: &mut H) {
    conformance_basic(harness);
    conformance_crash(harness);
    log_state::conformance_log_state(harness);
    view::conformance_view(harness);
}

fn conformance_basic<H: StoreHarness>(harness: &mut H) {
    let mut store = harness.create();
    assert_eq!(
        store.read().unwrap().header().unwrap(),
        None,
        "new store has no header"
    );
    let header = Header {
        format_version: FORMAT_VERSION,
        capacity_bytes: 1 << 20,
        node_id: 7,
        commit_seq: 1,
    };
    {
        let mut txn = store.begin().unwrap();
        txn.set_header(&header).unwrap();
        txn.put(&hash_n(2), &entry(0, 0, 1, 1)).unwrap();
        txn.put(&hash_n(1), &entry(524_288, 7, 524_288, 1)).unwrap();
        txn.put(&hash_n(3), &entry(8192, 1, 4097, 1)).unwrap();
        // A transaction sees its own writes.
        assert_eq!(txn.get(&hash_n(2)).unwrap(), Some(entry(0, 0, 1, 1)));
        txn.reserve(
            Slot {
                offset: 16384,
                class: SizeClass::new(2).unwrap(),
            },
            3,
        )
        .unwrap();
        txn.commit(true).unwrap();
    }
    let read = store.read().unwrap();
    assert_eq!(read.header().unwrap(), Some(header));
    assert_eq!(
        read.get(&hash_n(1)).unwrap(),
        Some(entry(524_288, 7, 524_288, 1))
    );
    assert_eq!(read.get(&hash_n(9)).unwrap(), None);
    let mut out = Vec::new();
    read.list(None, 10, &mut out).unwrap();
    let hashes: Vec<_> = out.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        hashes,
        vec![hash_n(1), hash_n(2), hash_n(3)],
        "list is ascending"
    );
    out.clear();
    read.list(Some(&hash_n(1)), 1, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0,
        hash_n(2),
        "list is strictly after `after` and honours limit"
    );
    let mut seen = 0;
    read.for_each_entry(&mut |_, _| seen += 1).unwrap();
    assert_eq!(seen, 3);
    assert_eq!(
        read.reservations().unwrap(),
        vec![(
            Slot {
                offset: 16384,
                class: SizeClass::new(2).unwrap()
            },
            3
        )]
    );
    drop(read);

    // Delete, unreserve, abort by drop.
    {
        let mut txn = store.begin().unwrap();
        assert!(txn.delete(&hash_n(2)).unwrap());
        assert!(!txn.delete(&hash_n(9)).unwrap());
        assert!(txn
            .unreserve(Slot {
                offset: 16384,
                class: SizeClass::new(2).unwrap()
            })
            .unwrap());
        assert!(!txn
            .unreserve(Slot {
                offset: 0,
                class: SizeClass::new(0).unwrap()
            })
            .unwrap());
        drop(txn);
    }
    let read = store.read().unwrap();
    assert!(
        read.get(&hash_n(2)).unwrap().is_some(),
        "a dropped transaction changes nothing"
    );
    assert_eq!(read.reservations().unwrap().len(), 1);
    drop(read);
    {
        let mut txn = store.begin().unwrap();
        assert!(txn.delete(&hash_n(2)).unwrap());
        txn.clear_reservations().unwrap();
        txn.commit(true).unwrap();
    }
    let read = store.read().unwrap();
    assert_eq!(read.get(&hash_n(2)).unwrap(), None);
    assert!(read.reservations().unwrap().is_empty());
}

fn conformance_crash<H: StoreHarness>(harness: &mut H) {
    let mut store = harness.create();
    let header = Header {
        format_version: FORMAT_VERSION,
        capacity_bytes: 4 << 20,
        node_id: 1,
        commit_seq: 1,
    };
    {
        let mut txn = store.begin().unwrap();
        txn.set_header(&header).unwrap();
        txn.put(&hash_n(1), &entry(0, 0, 10, 1)).unwrap();
        txn.commit(true).unwrap();
    }
    // Crash before commit: the uncommitted change vanishes.
    {
        let mut txn = store.begin().unwrap();
        txn.put(&hash_n(2), &entry(4096, 0, 10, 2)).unwrap();
        txn.reserve(
            Slot {
                offset: 8192,
                class: SizeClass::new(0).unwrap(),
            },
            0,
        )
        .unwrap();
        drop(txn);
    }
    let mut store = harness.crash_and_reopen(store, CrashKind::Process);
    {
        let read = store.read().unwrap();
        assert_eq!(read.header().unwrap(), Some(header));
        assert!(
            read.get(&hash_n(1)).unwrap().is_some(),
            "durable commit survives"
        );
        assert_eq!(
            read.get(&hash_n(2)).unwrap(),
            None,
            "uncommitted put vanishes"
        );
        assert!(read.reservations().unwrap().is_empty());
    }
    // Crash after a durable commit: everything survives, even power loss.
    {
        let mut txn = store.begin().unwrap();
        txn.put(&hash_n(3), &entry(8192, 1, 5000, 3)).unwrap();
        txn.reserve(
            Slot {
                offset: 16384,
                class: SizeClass::new(0).unwrap(),
            },
            1,
        )
        .unwrap();
        txn.commit(true).unwrap();
    }
    let kind = if harness.models_power_loss() {
        CrashKind::PowerLoss
    } else {
        CrashKind::Process
    };
    let mut store = harness.crash_and_reopen(store, kind);
    {
        let read = store.read().unwrap();
        assert_eq!(read.get(&hash_n(3)).unwrap(), Some(entry(8192, 1, 5000, 3)));
        assert_eq!(
            read.reservations().unwrap().len(),
            1,
            "reservations are persisted"
        );
    }
    // Crash after a non-durable commit: survives a process crash.
    {
        let mut txn = store.begin().unwrap();
        txn.delete(&hash_n(3)).unwrap();
        txn.commit(false).unwrap();
    }
    let mut store = harness.crash_and_reopen(store, CrashKind::Process);
    assert_eq!(store.read().unwrap().get(&hash_n(3)).unwrap(), None);
    if harness.models_power_loss() {
        let mut txn = store.begin().unwrap();
        txn.put(&hash_n(4), &entry(32768, 0, 1, 4)).unwrap();
        txn.commit(false).unwrap();
        let store = harness.crash_and_reopen(store, CrashKind::PowerLoss);
        let read = store.read().unwrap();
        assert_eq!(
            read.get(&hash_n(4)).unwrap(),
            None,
            "non-durable commit lost on power loss"
        );
        assert!(
            read.get(&hash_n(3)).unwrap().is_some(),
            "the non-durable delete is lost as well: back to the last durable state"
        );
    }
}

/// The harness of [`MemStore`].
#[derive(Default)]
pub struct MemHarness;

impl StoreHarness for MemHarness {
    type Store = MemStore;
    fn create(&mut self) -> MemStore {
        MemStore::new()
    }
    fn crash_and_reopen(&mut self, store: MemStore, kind: CrashKind) -> MemStore {
        let image = store.image();
        drop(store);
        MemStore::crash(&image, kind);
        MemStore::open(image)
    }
    fn models_power_loss(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_passes_conformance() {
        conformance(&mut MemHarness);
    }

    #[test]
    fn records_round_trip_and_reject_corruption() {
        let e = entry(1 << 30, 7, 524_288, 99);
        assert_eq!(IndexEntry::decode(&e.encode()), Ok(e));
        let mut bad = e.encode();
        bad[8] = 8;
        assert!(IndexEntry::decode(&bad).is_err(), "class out of range");
        let mut bad = e.encode();
        bad[0] = 1;
        assert!(IndexEntry::decode(&bad).is_err(), "misaligned");
        let mut bad = e.encode();
        bad[9..13].copy_from_slice(&0u32.to_le_bytes());
        assert!(IndexEntry::decode(&bad).is_err(), "zero length");
        assert!(IndexEntry::decode(&[0u8; 5]).is_err());
        let h = Header {
            format_version: 1,
            capacity_bytes: 1 << 20,
            node_id: 5,
            commit_seq: 9,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(Header::decode(&bad).is_err());
        let (k, v) = encode_reservation(
            Slot {
                offset: 8192,
                class: SizeClass::new(1).unwrap(),
            },
            4,
        );
        assert_eq!(
            decode_reservation(&k, &v),
            Ok((
                Slot {
                    offset: 8192,
                    class: SizeClass::new(1).unwrap()
                },
                4
            ))
        );
        assert!(decode_reservation(&k, &[9, 0]).is_err());
    }
}
