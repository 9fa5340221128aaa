//! The libmdbx implementation of the engine's [`MetaStore`].
//!
//! # Layout
//!
//! One MDBX environment in `<dir>/index.mdbx/` (a directory holding `mdbx.dat` and `mdbx.lck`)
//! with three named tables:
//!
//! | table          | key                                | value                          |
//! |----------------|------------------------------------|--------------------------------|
//! | `index`        | the 32 hash bytes                  | [`IndexEntry::encode`] (26 B)  |
//! | `reservations` | slot offset, 8 bytes big-endian    | class, worker (2 B)            |
//! | `meta`         | `b"header"`                        | [`Header::encode`] (40 B)      |
//! | `meta`         | `b"log"`                           | [`LogState::encode`] (40 B)    |
//!
//! Every value read back goes through the engine's validating decoders: bad stored bytes are
//! [`MetaError::Corrupt`], never a panic. libmdbx errors are [`MetaError::Io`], except a full map,
//! which is [`MetaError::Full`] with a message telling the operator to raise the map size.
//!
//! Geometry: the data file grows in [`GROWTH_STEP`] (64 MiB) steps up to the caller's
//! `map_size_max_bytes` (the upper bound is re-applied at every open, so raising it and
//! restarting is how an operator recovers from `Full`); default page size.
//!
//! # Durability: `commit(false)` vs `commit(true)`
//!
//! The environment runs in `SyncMode::SafeNoSync` (`MDBX_SAFE_NOSYNC`, no write map): a commit
//! `pwrite`s its dirty pages and a *weak* meta page and returns without any fsync. A durable
//! commit then calls `Database::sync(force = true)` (`mdbx_env_sync_ex`), which `fdatasync`s the
//! data file and writes a *steady* meta page, so the commit is on stable storage when
//! `commit(true)` returns. (The `libmdbx` 0.9.0 crate has no per-transaction sync flag: its
//! `commit()` takes no arguments and the env-wide mode is fixed at open; commit-then-`sync(true)`
//! is the per-commit choice it offers.)
//!
//! Why a weak commit survives a process crash: its pages and meta are in the page cache, and on
//! the next open libmdbx keeps a weak head meta whose boot id matches the running kernel's
//! (`/proc/sys/kernel/random/boot_id`); after a reboot it rolls back to the last steady meta,
//! which is exactly the "survives process crash only" contract. (Were the boot id unavailable,
//! libmdbx would roll back to the last durable commit even after a mere process crash: still
//! consistent, never corrupt.) The test `nondurable_commit_survives_sigkill` checks this with a
//! child process killed by SIGKILL after a non-durable commit.
//!
//! Checked with `strace -f -e trace=fdatasync,fsync,msync,pwrite64,pwritev` (the ignored test
//! `strace_commits`): a non-durable commit is one `pwritev` of the dirty pages plus a `pwrite` of
//! the weak meta page, and no sync at all; a durable commit adds `fdatasync(mdbx.dat)`, a
//! `pwrite` of the steady meta page and a second `fdatasync`. A durable commit of a transaction
//! that wrote nothing, with no non-durable commit since the last sync, skips the sync (~20 us).
//!
//! Cost (ignored test `commit_cost`; 2-vCPU VM, one run, disk shared with other jobs): with
//! fdatasync at ~150-190 us, a 1-put commit costs ~35 us non-durable and ~0.5 ms durable; 100
//! random puts ~0.2 ms / ~2.5 ms; 1000 random puts ~3 ms / ~30 ms (commit p50s) (each random key dirties its
//! own page, and the sync writes them all). Side by side with libmdbx's own `Durable` mode (a
//! throwaway bench, same workload), `SafeNoSync` + `sync(true)` was within noise of it. Batch
//! many changes per commit. Caveat of `SafeNoSync`: pages freed since the last steady commit are
//! not reused, so a long run of non-durable commits grows the file and slows puts (~3x in that
//! bench) until libmdbx forces a steady sync itself (it does so before growing the file);
//! interleaving durable commits keeps this in check.
//!
//! A failed write poisons a libmdbx transaction (after `MDBX_MAP_FULL` and most other errors
//! libmdbx aborts it at commit, and the crate then reports `Ok(true)`, "nothing to commit"):
//! [`MdbxTxn`] remembers the first failure and `commit` returns it, so a batch is all or nothing
//! and never half-committed behind a success. If the sync of a durable commit fails, the commit
//! is visible but not known durable, and `commit` returns the error.
//!
//! # Exclusivity
//!
//! [`MdbxStore::open`] and [`MdbxStore::open_exclusive`] both open with `MDBX_EXCLUSIVE`: a
//! second process (another server, or `buddy-blocks check` while a server runs) gets a clean
//! [`MetaError::Io`] saying the store is in use (so does a second open within one process). The
//! lock is released when the [`MdbxStore`] is dropped or the process dies.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use engine::buddy::Slot;
use engine::meta::{
    decode_hash_key, decode_reservation, encode_reservation, Header, IndexEntry, LogState,
    MetaError, MetaRead, MetaStore, MetaTxn, RESERVATION_KEY_BYTES, RESERVATION_VALUE_BYTES,
};
use engine::BlockHash;

use crate::mdbx_raw::{self as raw, Rc, RwTxn, TxnRef};
use crate::mdbx_view::MdbxView;
use libmdbx::{
    Database, DatabaseOptions, Mode, NoWriteMap, ReadWriteOptions, SyncMode, Table, TableFlags,
    Transaction, TransactionKind, RO,
};
use mdbx_sys as ffi;

/// Name of the environment directory inside the store's directory.
pub const ENV_DIR_NAME: &str = "index.mdbx";
/// Growth step of the data file.
pub const GROWTH_STEP: u64 = 64 << 20;
/// Named tables.
pub const INDEX_TABLE: &str = "index";
pub const RESERVATIONS_TABLE: &str = "reservations";
pub const META_TABLE: &str = "meta";
/// Key of the header record in the `meta` table.
pub const HEADER_KEY: &[u8] = b"header";
/// Key of the write-ahead log's record in the `meta` table.
pub const LOG_STATE_KEY: &[u8] = b"log";
/// Headroom over the three tables used today.
const MAX_TABLES: u64 = 8;
/// Reader slots: one view per worker (up to `WORKERS_MAX`), the controller's reads, the scrub,
/// `check`, with room (libmdbx's default of 61 is too few for 64 workers).
const MAX_READERS: libc::c_uint = 128;
const _: () = assert!(engine::controller::WORKERS_MAX as libc::c_uint + 8 <= MAX_READERS);

/// Table handles and what error messages need, shared by reads and transactions.
struct Shared {
    index: Table<'static>,
    reservations: Table<'static>,
    meta: Table<'static>,
    env_path: PathBuf,
    map_size_max_bytes: u64,
    /// A non-durable commit with writes happened since the last sync (shared with
    /// [`IndexSync`]).
    unsynced: Arc<AtomicBool>,
}

impl Shared {
    fn err(&self, e: libmdbx::Error) -> MetaError {
        match e {
            libmdbx::Error::MapFull => MetaError::Full(format!(
                "{}: the metadata map reached its maximum size of {} bytes; raise the metadata \
                 map size limit and restart (the file grows in place, nothing is lost)",
                self.env_path.display(),
                self.map_size_max_bytes
            )),
            other => MetaError::Io(format!("{}: libmdbx: {other}", self.env_path.display())),
        }
    }

    /// [`Shared::err`] of a raw libmdbx return code.
    fn rc(&self, rc: Rc) -> MetaError {
        self.err(libmdbx::Error::from_err_code(rc))
    }
}

/// The libmdbx metadata store. `Send`: it is moved into the controller thread.
pub struct MdbxStore {
    // Declared before `db` only by taste: the handles are plain numbers without `Drop`.
    shared: Shared,
    db: Arc<Database<NoWriteMap>>,
    /// The durable watermark, shared with every worker's view (`MetaStore::publish_durable`).
    watermark: Arc<AtomicU64>,
}

impl std::fmt::Debug for MdbxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdbxStore")
            .field("env_path", &self.shared.env_path)
            .finish()
    }
}

impl MdbxStore {
    /// Opens (creating if needed) the store in `dir`, exclusively: see [`MdbxStore::open_exclusive`].
    pub fn open(dir: &Path, map_size_max_bytes: u64) -> Result<MdbxStore, MetaError> {
        MdbxStore::open_exclusive(dir, map_size_max_bytes)
    }

    /// Opens (creating if needed) the store in `dir` with `MDBX_EXCLUSIVE`; fails with
    /// [`MetaError::Io`] ("... in use ...") when another process has it open.
    pub fn open_exclusive(dir: &Path, map_size_max_bytes: u64) -> Result<MdbxStore, MetaError> {
        let env_path = dir.join(ENV_DIR_NAME);
        let io = |what: &str, e: &dyn std::fmt::Display| {
            MetaError::Io(format!("{}: {what}: {e}", env_path.display()))
        };
        let max_size = isize::try_from(map_size_max_bytes)
            .map_err(|_| io("map size limit", &"does not fit the address space"))?;
        std::fs::create_dir_all(&env_path).map_err(|e| io("creating the directory", &e))?;
        let options = DatabaseOptions {
            max_tables: Some(MAX_TABLES),
            max_readers: Some(MAX_READERS),
            exclusive: true,
            mode: Mode::ReadWrite(ReadWriteOptions {
                sync_mode: SyncMode::SafeNoSync,
                max_size: Some(max_size),
                growth_step: Some(GROWTH_STEP.min(map_size_max_bytes) as isize),
                // No auto-shrink: pages never leave from under a worker's view (mdbx_view.rs).
                shrink_threshold: Some(0),
                ..ReadWriteOptions::default()
            }),
            ..DatabaseOptions::default()
        };
        let db =
            Database::<NoWriteMap>::open_with_options(&env_path, options).map_err(|e| match e {
                // Exclusive mode takes an fcntl write lock on the data file: held elsewhere, it
                // fails with EAGAIN (libmdbx passes the errno through) or MDBX_BUSY.
                e if is_in_use(&e) => in_use(&env_path),
                libmdbx::Error::MapFull | libmdbx::Error::TooLarge => MetaError::Full(format!(
                    "{}: the existing metadata file does not fit the map size limit of {} \
                     bytes; raise the limit",
                    env_path.display(),
                    map_size_max_bytes
                )),
                other => io("opening the libmdbx environment", &other),
            })?;

        let tables = {
            let txn = db.begin_rw_txn().map_err(|e| io("begin", &e))?;
            let tables = bind_tables(txn, "creating", |txn, name| {
                let table = txn.create_table(Some(name), TableFlags::empty())?;
                let dbi = table.dbi();
                txn.prime_for_permaopen(table);
                Ok(dbi)
            })
            .map_err(|e| io(&e.0, &e.1))?;
            db.sync(true).map_err(|e| io("sync", &e))?;
            tables
        };
        MdbxStore::assemble(db, tables, env_path, map_size_max_bytes)
    }

    /// The store over an open environment and the handles of its three tables, whose dbi
    /// numbers are `dbis` in `[INDEX_TABLE, RESERVATIONS_TABLE, META_TABLE]` order.
    fn assemble(
        db: Database<NoWriteMap>,
        (dbis, tables): ([u32; 3], Vec<Table<'static>>),
        env_path: PathBuf,
        map_size_max_bytes: u64,
    ) -> Result<MdbxStore, MetaError> {
        let io = |e: &str| MetaError::Io(format!("{}: table handles: {e}", env_path.display()));
        if tables.len() != 3 {
            return Err(io("a table handle is missing"));
        }
        let mut out: [Option<Table<'static>>; 3] = [None, None, None];
        for table in tables {
            let i = dbis.iter().position(|&d| d == table.dbi());
            let i = i.ok_or_else(|| io("unexpected dbi"))?;
            out[i] = Some(table);
        }
        let [Some(index), Some(reservations), Some(meta)] = out else {
            return Err(io("a table handle is missing"));
        };
        Ok(MdbxStore {
            shared: Shared {
                index,
                reservations,
                meta,
                env_path,
                map_size_max_bytes,
                unsynced: Arc::new(AtomicBool::new(false)),
            },
            db: Arc::new(db),
            watermark: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Opens the existing store in `dir` read-only (`MDBX_RDONLY | MDBX_EXCLUSIVE`): for
    /// `check --read-only` on a copy. On a read-only filesystem (or files the process may not
    /// write) libmdbx opens no lock file and writes nothing; [`MetaStore::begin`] fails.
    pub fn open_read_only(dir: &Path) -> Result<MdbxStore, MetaError> {
        let env_path = dir.join(ENV_DIR_NAME);
        let io = |what: &str, e: &dyn std::fmt::Display| {
            MetaError::Io(format!("{}: {what}: {e}", env_path.display()))
        };
        let options = DatabaseOptions {
            max_tables: Some(MAX_TABLES),
            exclusive: true,
            mode: Mode::ReadOnly,
            ..DatabaseOptions::default()
        };
        let db = Database::<NoWriteMap>::open_with_options(&env_path, options).map_err(|e| {
            if is_in_use(&e) {
                in_use(&env_path)
            } else {
                io("opening the libmdbx environment read-only", &e)
            }
        })?;
        let tables = {
            let txn = db.begin_ro_txn().map_err(|e| io("begin", &e))?;
            bind_tables(txn, "opening (not an index?)", |txn, name| {
                let table = txn.open_table(Some(name))?;
                let dbi = table.dbi();
                txn.prime_for_permaopen(table);
                Ok(dbi)
            })
            .map_err(|e| io(&e.0, &e.1))?
        };
        MdbxStore::assemble(db, tables, env_path, 0)
    }

    /// The libmdbx environment directory (`<dir>/index.mdbx`).
    pub fn env_path(&self) -> PathBuf {
        self.shared.env_path.clone()
    }

    /// The upper bound of the map given at open.
    pub fn map_size_max_bytes(&self) -> u64 {
        self.shared.map_size_max_bytes
    }

    /// Current size of the data file in bytes (for /stats and /metrics).
    pub fn file_size_bytes(&self) -> Result<u64, MetaError> {
        let info = self.db.info().map_err(|e| self.shared.err(e))?;
        Ok(info.geometry().current_size())
    }

    /// A handle that makes the commits so far durable from another thread (the controller's
    /// checkpoints, [`crate::checkpoint`]).
    pub fn index_sync(&self) -> IndexSync {
        IndexSync {
            db: Arc::clone(&self.db),
            unsynced: Arc::clone(&self.shared.unsynced),
            env_path: self.shared.env_path.clone(),
        }
    }

    /// Forces everything committed so far onto stable storage.
    pub fn sync(&self) -> Result<(), MetaError> {
        sync_env(&self.db, &self.shared.unsynced).map_err(|e| self.shared.err(e))
    }
}

/// libmdbx's sync of everything committed (`sync(true)`: fdatasync, steady meta page,
/// fdatasync). `unsynced` is cleared first and set again if the sync fails.
fn sync_env(db: &Database<NoWriteMap>, unsynced: &AtomicBool) -> Result<(), libmdbx::Error> {
    unsynced.store(false, Ordering::Release);
    db.sync(true)
        .map(drop)
        .inspect_err(|_| unsynced.store(true, Ordering::Release))
}

/// Makes a store's non-durable commits durable from any thread: `mdbx_env_sync_ex` (libmdbx
/// allows it from any thread; it pre-flushes without the writer lock, then takes it for the
/// steady meta page and the second flush), as a durable commit does after its `commit()` (see
/// "Durability" above). Commits may go on while it runs: it makes durable at least every
/// commit made before it began (the newest head when it takes the lock). The caller must have
/// made the data of every commit durable first (full durability commits only after the
/// batch's flush). Never on the thread that waits for the data file's flush while a write
/// transaction is open (the lock: see `crate::checkpoint`).
#[derive(Clone)]
pub struct IndexSync {
    db: Arc<Database<NoWriteMap>>,
    unsynced: Arc<AtomicBool>,
    env_path: PathBuf,
}

impl IndexSync {
    pub fn sync(&self) -> Result<(), String> {
        if !self.unsynced.load(Ordering::Acquire) {
            return Ok(());
        }
        sync_env(&self.db, &self.unsynced)
            .map_err(|e| format!("{}: libmdbx sync: {e}", self.env_path.display()))
    }
}

/// Opens the three tables in `txn` with `open` (which primes each for `commit_and_rebind_open_dbs`
/// and returns its dbi), commits, and returns their dbis in `[INDEX_TABLE, RESERVATIONS_TABLE,
/// META_TABLE]` order with the rebound handles. An error names the step (`verb` a table).
fn bind_tables<'db, K: TransactionKind>(
    txn: Transaction<'db, K, NoWriteMap>,
    verb: &str,
    open: impl Fn(&Transaction<'db, K, NoWriteMap>, &str) -> Result<u32, libmdbx::Error>,
) -> Result<([u32; 3], Vec<Table<'static>>), (String, libmdbx::Error)> {
    let mut dbis = [0; 3];
    for (i, name) in [INDEX_TABLE, RESERVATIONS_TABLE, META_TABLE]
        .iter()
        .enumerate()
    {
        dbis[i] = open(&txn, name).map_err(|e| (format!("{verb} table {name}"), e))?;
    }
    let (_, tables) = txn
        .commit_and_rebind_open_dbs()
        .map_err(|e| (format!("{verb} tables"), e))?;
    Ok((dbis, detach(tables)))
}

/// Table handles rebound by `commit_and_rebind_open_dbs`, freed of their borrow of the
/// `Database` so that they can live next to it in [`MdbxStore`].
fn detach(tables: Vec<Table<'_>>) -> Vec<Table<'static>> {
    tables
        .into_iter()
        // SAFETY: a `Table` is a dbi number with a lifetime marker. A dbi rebound by
        // `commit_and_rebind_open_dbs` stays valid until the environment is closed (we never
        // call `close_table`/`drop_table`). The 'static handles live next to the `Database` in
        // `MdbxStore` and are only lent out together with a borrow of the store, so they are
        // never used after the environment is closed.
        .map(|table| unsafe { std::mem::transmute::<Table<'_>, Table<'static>>(table) })
        .collect()
}

fn in_use(env_path: &Path) -> MetaError {
    MetaError::Io(format!(
        "{}: metadata store in use (opened exclusively by another process, or already open in \
         this one): stop the server using this directory first",
        env_path.display()
    ))
}

fn is_in_use(e: &libmdbx::Error) -> bool {
    match e {
        libmdbx::Error::Busy => true,
        libmdbx::Error::Other(code) => {
            std::io::Error::from_raw_os_error(*code).kind() == std::io::ErrorKind::WouldBlock
        }
        _ => false,
    }
}

/// A consistent read view: one read-only MDBX transaction (an MVCC snapshot; cheap to open, and
/// its `get`s copy nothing but the 26 decoded bytes).
pub struct MdbxRead<'r> {
    txn: Transaction<'r, RO, NoWriteMap>,
    shared: &'r Shared,
    /// Not `Sync`: one thread reads through it at a time (`TxnRef`).
    _one_thread: std::marker::PhantomData<std::cell::Cell<()>>,
}

// SAFETY: the crate's read transaction is live while `MdbxRead` exists, and `MdbxRead` is not
// `Sync`, so only the thread that holds it reads through the pointer.
unsafe impl TxnRef for MdbxRead<'_> {
    fn txn_ptr(&self) -> *mut ffi::MDBX_txn {
        self.txn.txn().0
    }
}

/// A write transaction, begun and ended on the calling thread (`mdbx_raw`: no hop through the
/// crate's transaction-manager thread). Dropping it without [`MetaTxn::commit`] aborts it.
pub struct MdbxTxn<'t> {
    txn: RwTxn,
    store: &'t MdbxStore,
    /// Whether any write was attempted.
    wrote: bool,
    /// The first libmdbx error of a write: `commit` then fails.
    failed: Option<MetaError>,
}

impl MetaStore for MdbxStore {
    type Read<'r> = MdbxRead<'r>;
    type Txn<'t> = MdbxTxn<'t>;

    fn read(&self) -> Result<MdbxRead<'_>, MetaError> {
        let txn = self.db.begin_ro_txn().map_err(|e| self.shared.err(e))?;
        Ok(MdbxRead {
            _one_thread: std::marker::PhantomData,
            txn,
            shared: &self.shared,
        })
    }

    fn begin(&mut self) -> Result<MdbxTxn<'_>, MetaError> {
        let store: &MdbxStore = self;
        // SAFETY: the environment is open read-write (`begin` of a read-only store fails
        // here with libmdbx's EACCES) and outlives the transaction, which borrows the store.
        let txn = unsafe { RwTxn::begin(store.db.ptr().0) }.map_err(|rc| store.shared.rc(rc))?;
        Ok(MdbxTxn {
            txn,
            store,
            wrote: false,
            failed: None,
        })
    }

    type View = MdbxView;

    fn view(&self) -> Result<MdbxView, MetaError> {
        MdbxView::new(
            Arc::clone(&self.db),
            self.shared.index.dbi(),
            self.shared.meta.dbi(),
            Arc::clone(&self.watermark),
            self.shared.env_path.clone(),
        )
    }

    fn publish_durable(&self, seq: u64) {
        self.watermark.store(seq, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding straight from the mapped bytes (no allocation, in read-only and read-write
// transactions alike: every decoder copies into a plain value).

trait Record: Sized {
    fn decode_record(bytes: &[u8]) -> Result<Self, MetaError>;
}

impl Record for IndexEntry {
    fn decode_record(bytes: &[u8]) -> Result<Self, MetaError> {
        IndexEntry::decode(bytes)
    }
}

impl Record for Header {
    fn decode_record(bytes: &[u8]) -> Result<Self, MetaError> {
        Header::decode(bytes)
    }
}

impl Record for LogState {
    fn decode_record(bytes: &[u8]) -> Result<Self, MetaError> {
        LogState::decode(bytes)
    }
}

impl Record for BlockHash {
    fn decode_record(bytes: &[u8]) -> Result<Self, MetaError> {
        decode_hash_key(bytes)
    }
}

/// A reservation key, still to be validated together with its value.
struct ReservationKey([u8; RESERVATION_KEY_BYTES]);

impl Record for ReservationKey {
    fn decode_record(bytes: &[u8]) -> Result<Self, MetaError> {
        let key = bytes
            .try_into()
            .map_err(|_| MetaError::Corrupt("reservation key"))?;
        Ok(ReservationKey(key))
    }
}

struct ReservationValue([u8; RESERVATION_VALUE_BYTES]);

impl Record for ReservationValue {
    fn decode_record(bytes: &[u8]) -> Result<Self, MetaError> {
        let value = bytes
            .try_into()
            .map_err(|_| MetaError::Corrupt("reservation value length"))?;
        Ok(ReservationValue(value))
    }
}

// ---------------------------------------------------------------------------------------------
// Reads, shared by both transaction kinds (raw calls: `crate::mdbx_raw`).

/// A record of table `dbi` under `key`, decoded.
fn read_record<T: Record>(
    txn: &impl TxnRef,
    shared: &Shared,
    dbi: u32,
    key: &[u8],
) -> Result<Option<T>, MetaError> {
    match raw::get(txn, dbi, key).map_err(|rc| shared.rc(rc))? {
        None => Ok(None),
        Some(bytes) => T::decode_record(bytes).map(Some),
    }
}

/// A record of the `meta` table (the header, the log state), decoded.
fn read_meta<T: Record>(
    txn: &impl TxnRef,
    shared: &Shared,
    key: &[u8],
) -> Result<Option<T>, MetaError> {
    read_record(txn, shared, shared.meta.dbi(), key)
}

fn read_entry(
    txn: &impl TxnRef,
    shared: &Shared,
    hash: &BlockHash,
) -> Result<Option<IndexEntry>, MetaError> {
    read_record(txn, shared, shared.index.dbi(), &hash.0)
}

/// Ascending cursor walk over the index from the first hash strictly greater than `after` (or
/// from the start); `f` returns whether to go on. `err` words a libmdbx error.
pub(crate) fn walk_index(
    txn: &impl TxnRef,
    dbi: u32,
    after: Option<&BlockHash>,
    f: &mut dyn FnMut(&BlockHash, &IndexEntry) -> bool,
    err: &dyn Fn(Rc) -> MetaError,
) -> Result<(), MetaError> {
    let cursor = raw::Cursor::open(txn, dbi).map_err(err)?;
    let mut item = match after {
        None => cursor.step(None, ffi::MDBX_FIRST),
        Some(after) => cursor.step(Some(&after.0), ffi::MDBX_SET_RANGE),
    }
    .map_err(err)?;
    while let Some((key, value)) = item {
        let hash = decode_hash_key(key)?;
        if Some(&hash) != after && !f(&hash, &IndexEntry::decode(value)?) {
            return Ok(());
        }
        item = cursor.step(None, ffi::MDBX_NEXT).map_err(err)?;
    }
    Ok(())
}

fn list_index(
    txn: &impl TxnRef,
    shared: &Shared,
    after: Option<&BlockHash>,
    limit: usize,
    out: &mut Vec<(BlockHash, IndexEntry)>,
) -> Result<(), MetaError> {
    if limit == 0 {
        return Ok(());
    }
    let mut taken = 0;
    walk_index(
        txn,
        shared.index.dbi(),
        after,
        &mut |hash, entry| {
            out.push((*hash, *entry));
            taken += 1;
            taken < limit
        },
        &|rc| shared.rc(rc),
    )
}

fn read_reservations(txn: &impl TxnRef, shared: &Shared) -> Result<Vec<(Slot, u8)>, MetaError> {
    let err = |rc| shared.rc(rc);
    let cursor = raw::Cursor::open(txn, shared.reservations.dbi()).map_err(err)?;
    let mut out = Vec::new();
    let mut item = cursor.step(None, ffi::MDBX_FIRST).map_err(err)?;
    while let Some((key, value)) = item {
        let key = ReservationKey::decode_record(key)?;
        let value = ReservationValue::decode_record(value)?;
        out.push(decode_reservation(&key.0, &value.0)?);
        item = cursor.step(None, ffi::MDBX_NEXT).map_err(err)?;
    }
    Ok(out)
}

macro_rules! mdbx_read_impl {
    ($t:ty, $shared:ident) => {
        impl MetaRead for $t {
            fn header(&self) -> Result<Option<Header>, MetaError> {
                read_meta(self, self.$shared(), HEADER_KEY)
            }
            fn get(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, MetaError> {
                read_entry(self, self.$shared(), hash)
            }
            fn list(
                &self,
                after: Option<&BlockHash>,
                limit: usize,
                out: &mut Vec<(BlockHash, IndexEntry)>,
            ) -> Result<(), MetaError> {
                list_index(self, self.$shared(), after, limit, out)
            }
            fn for_each_entry(
                &self,
                f: &mut dyn FnMut(&BlockHash, &IndexEntry),
            ) -> Result<(), MetaError> {
                let shared = self.$shared();
                walk_index(
                    self,
                    shared.index.dbi(),
                    None,
                    &mut |hash, entry| {
                        f(hash, entry);
                        true
                    },
                    &|rc| shared.rc(rc),
                )
            }
            fn reservations(&self) -> Result<Vec<(Slot, u8)>, MetaError> {
                read_reservations(self, self.$shared())
            }
            fn log_state(&self) -> Result<Option<LogState>, MetaError> {
                read_meta(self, self.$shared(), LOG_STATE_KEY)
            }
        }
    };
}

impl MdbxRead<'_> {
    fn shared(&self) -> &Shared {
        self.shared
    }
}

impl MdbxTxn<'_> {
    fn shared(&self) -> &Shared {
        &self.store.shared
    }
}

mdbx_read_impl!(MdbxRead<'_>, shared);
mdbx_read_impl!(MdbxTxn<'_>, shared);

// SAFETY: delegates to the transaction this value owns (`RwTxn`: not `Send`).
unsafe impl TxnRef for MdbxTxn<'_> {
    fn txn_ptr(&self) -> *mut ffi::MDBX_txn {
        self.txn.txn_ptr()
    }
}

impl MdbxTxn<'_> {
    /// Writes a record of the `meta` table (the header, the log state).
    fn put_meta(&mut self, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        let meta = self.store.shared.meta.dbi();
        let result = self.txn.put(meta, key, value, ffi::MDBX_UPSERT);
        self.wrote(result)
    }

    /// Records the outcome of a libmdbx write call. Any libmdbx error (other than the expected
    /// "not found") may leave the transaction in libmdbx's error state, in which `commit` aborts
    /// instead: remember the first one so that `commit` reports it.
    fn wrote<T>(&mut self, result: Result<T, Rc>) -> Result<T, MetaError> {
        self.wrote = true;
        result.map_err(|rc| {
            let e = self.store.shared.rc(rc);
            self.failed.get_or_insert_with(|| e.clone());
            e
        })
    }
}

impl MetaTxn for MdbxTxn<'_> {
    fn put(&mut self, hash: &BlockHash, entry: &IndexEntry) -> Result<(), MetaError> {
        let index = self.store.shared.index.dbi();
        let result = self
            .txn
            .put(index, &hash.0, &entry.encode(), ffi::MDBX_UPSERT);
        self.wrote(result)
    }

    fn delete(&mut self, hash: &BlockHash) -> Result<bool, MetaError> {
        let result = self.txn.del(self.store.shared.index.dbi(), &hash.0);
        self.wrote(result)
    }

    /// Panics if the slot's offset is already reserved (a controller bug, as in `MemStore`).
    fn reserve(&mut self, slot: Slot, worker: u8) -> Result<(), MetaError> {
        let (key, value) = encode_reservation(slot, worker);
        let table = self.store.shared.reservations.dbi();
        let result = self.txn.put(table, &key, &value, ffi::MDBX_NOOVERWRITE);
        if result == Err(ffi::MDBX_KEYEXIST) {
            panic!("slot {slot:?} reserved twice");
        }
        self.wrote(result)
    }

    fn unreserve(&mut self, slot: Slot) -> Result<bool, MetaError> {
        let shared = &self.store.shared;
        let key = slot.offset.to_be_bytes();
        let Some(value) =
            read_record::<ReservationValue>(self, shared, shared.reservations.dbi(), &key)?
        else {
            return Ok(false);
        };
        let (stored_slot, _) = decode_reservation(&key, &value.0)?;
        if stored_slot != slot {
            return Ok(false);
        }
        let result = self.txn.del(shared.reservations.dbi(), &key);
        self.wrote(result)
    }

    fn clear_reservations(&mut self) -> Result<(), MetaError> {
        let result = self.txn.clear(self.store.shared.reservations.dbi());
        self.wrote(result)
    }

    fn set_header(&mut self, header: &Header) -> Result<(), MetaError> {
        self.put_meta(HEADER_KEY, &header.encode())
    }

    fn set_log_state(&mut self, state: &LogState) -> Result<(), MetaError> {
        self.put_meta(LOG_STATE_KEY, &state.encode())
    }

    /// Fails, committing nothing, if any earlier write of this transaction failed: libmdbx
    /// poisons a transaction after most errors (a full map above all), so a batch is all or
    /// nothing.
    fn commit(self, durable: bool) -> Result<(), MetaError> {
        let MdbxTxn {
            txn,
            store,
            wrote,
            failed,
        } = self;
        let shared = &store.shared;
        if let Some(e) = failed {
            drop(txn); // Aborts.
            return Err(e);
        }
        // `Ok(true)`: libmdbx did not commit, because the transaction was empty or because an
        // earlier error (e.g. in a read) poisoned it. Only the first is a success.
        let not_committed = txn.commit().map_err(|rc| shared.rc(rc))?;
        if not_committed && wrote {
            return Err(MetaError::Io(format!(
                "{}: libmdbx aborted the transaction after an earlier error; nothing was \
                 committed",
                shared.env_path.display()
            )));
        }
        if wrote && !durable {
            shared.unsynced.store(true, Ordering::Release);
        }
        // SafeNoSync: the commit above wrote a weak meta page; `sync(true)` fdatasyncs the data,
        // writes a steady meta page and fdatasyncs again. It is skipped only when there is
        // nothing to make durable: no write here and no non-durable commit since the last sync.
        if durable && (wrote || shared.unsynced.load(Ordering::Acquire)) {
            sync_env(&store.db, &shared.unsynced).map_err(|e| shared.err(e))?;
        }
        Ok(())
    }
}
