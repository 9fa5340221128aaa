//! Raw libmdbx calls (through `mdbx-sys`, the version the `libmdbx` crate pins) for the paths
//! where the crate's wrappers cost too much: every transaction's reads, and the controller's
//! write transaction.
//!
//! Why: the `libmdbx` crate begins, commits and aborts every write transaction on a
//! transaction-manager thread of its own (two channel round trips per batch: ~90 us to begin
//! and ~40 us to commit on this 2-core machine, measured in the controller's cycle, against a
//! few microseconds for the calls themselves). [`RwTxn`] makes the same calls on the calling
//! thread. That is sound here because the controller is the only writer while the server runs
//! and every write transaction is begun and ended on one thread; libmdbx's own writer lock
//! still serializes it against the `checkpoint` thread's `mdbx_env_sync_ex` and against any
//! write transaction the crate begins (at open), which simply wait.
//!
//! Owns: [`RwTxn`] (a write transaction, aborted when dropped), [`get`] and [`Cursor`] (reads
//! through any live transaction: a crate read transaction, a worker's view, an [`RwTxn`]).
//! Errors are libmdbx's return codes ([`Rc`]); callers turn them into `MetaError`s.
//!
//! Invariants: a transaction pointer handed to these functions is live and used by one thread
//! at a time ([`TxnRef`]'s contract); bytes they return point into the memory map and borrow
//! the transaction's owner, so they cannot outlive it or a write through it. Must never: keep
//! a write transaction across threads, or be used where the crate's manager thread may hold a
//! write transaction at the same time on the same thread.

use std::marker::PhantomData;

use mdbx_sys as ffi;

/// A libmdbx return code other than success.
pub type Rc = libc::c_int;

/// The owner of a live libmdbx transaction that this thread may use now.
///
/// # Safety
/// `txn_ptr` returns a transaction that stays live, and is not used by another thread, for as
/// long as the implementor is borrowed.
pub unsafe trait TxnRef {
    fn txn_ptr(&self) -> *mut ffi::MDBX_txn;
}

fn val(bytes: &[u8]) -> ffi::MDBX_val {
    ffi::MDBX_val {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    }
}

fn empty() -> ffi::MDBX_val {
    ffi::MDBX_val {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn check(rc: Rc) -> Result<(), Rc> {
    if rc == ffi::MDBX_SUCCESS {
        Ok(())
    } else {
        Err(rc)
    }
}

/// # Safety
/// `v` was written by libmdbx on success of a call through a transaction `'t` borrows.
unsafe fn bytes<'t>(v: &ffi::MDBX_val) -> &'t [u8] {
    if v.iov_len == 0 {
        return &[];
    }
    std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
}

/// The value of `key` in table `dbi`, `None` if absent.
pub fn get<'t, T: TxnRef + ?Sized>(
    owner: &'t T,
    dbi: ffi::MDBX_dbi,
    key: &[u8],
) -> Result<Option<&'t [u8]>, Rc> {
    let key = val(key);
    let mut data = empty();
    // SAFETY: a live transaction of this thread (`TxnRef`); `key` points at live bytes; `data`
    // is written by libmdbx on success.
    let rc = unsafe { ffi::mdbx_get(owner.txn_ptr(), dbi, &key, &mut data) };
    if rc == ffi::MDBX_NOTFOUND {
        return Ok(None);
    }
    check(rc)?;
    // SAFETY: success; the bytes live in the map while `owner` stays borrowed.
    Ok(Some(unsafe { bytes(&data) }))
}

/// A key and its value, in the memory map.
pub type Pair<'t> = (&'t [u8], &'t [u8]);

/// A cursor over one table of a transaction, closed when dropped.
pub struct Cursor<'t> {
    ptr: *mut ffi::MDBX_cursor,
    _owner: PhantomData<&'t ()>,
}

impl<'t> Cursor<'t> {
    pub fn open<T: TxnRef + ?Sized>(owner: &'t T, dbi: ffi::MDBX_dbi) -> Result<Cursor<'t>, Rc> {
        let mut ptr: *mut ffi::MDBX_cursor = std::ptr::null_mut();
        // SAFETY: a live transaction of this thread (`TxnRef`); `ptr` receives a new cursor.
        check(unsafe { ffi::mdbx_cursor_open(owner.txn_ptr(), dbi, &mut ptr) })?;
        assert!(!ptr.is_null());
        Ok(Cursor {
            ptr,
            _owner: PhantomData,
        })
    }

    /// One cursor operation (`key` is the key to seek for `MDBX_SET_RANGE`); `None` at the
    /// end of the table.
    pub fn step(
        &self,
        key: Option<&[u8]>,
        op: ffi::MDBX_cursor_op,
    ) -> Result<Option<Pair<'t>>, Rc> {
        let mut k = key.map_or_else(empty, val);
        let mut v = empty();
        // SAFETY: an open cursor of a live transaction; `k` points at live bytes or is empty
        // for the ops that ignore it; libmdbx writes `k` and `v` on success.
        let rc = unsafe { ffi::mdbx_cursor_get(self.ptr, &mut k, &mut v, op) };
        if rc == ffi::MDBX_NOTFOUND {
            return Ok(None);
        }
        check(rc)?;
        // SAFETY: success; both live in the map while the owner stays borrowed for `'t`.
        Ok(Some(unsafe { (bytes(&k), bytes(&v)) }))
    }
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        // SAFETY: an open cursor, closed once here, while its transaction is live (`'t`).
        unsafe { ffi::mdbx_cursor_close(self.ptr) };
    }
}

/// A write transaction begun on this thread; aborted when dropped without [`RwTxn::commit`].
/// Not `Send`: it is ended on the thread that began it.
pub struct RwTxn {
    ptr: *mut ffi::MDBX_txn,
}

// SAFETY: the pointer is live from `begin` until `commit` or `Drop`, and `RwTxn` is neither
// `Send` nor `Sync` (raw pointer), so only the beginning thread uses it.
unsafe impl TxnRef for RwTxn {
    fn txn_ptr(&self) -> *mut ffi::MDBX_txn {
        self.ptr
    }
}

impl RwTxn {
    /// Begins a write transaction (waits while another holds libmdbx's writer lock).
    ///
    /// # Safety
    /// `env` is an open read-write environment that outlives the transaction.
    pub unsafe fn begin(env: *mut ffi::MDBX_env) -> Result<RwTxn, Rc> {
        let mut ptr: *mut ffi::MDBX_txn = std::ptr::null_mut();
        check(ffi::mdbx_txn_begin_ex(
            env,
            std::ptr::null_mut(),
            ffi::MDBX_TXN_READWRITE,
            &mut ptr,
            std::ptr::null_mut(),
        ))?;
        assert!(!ptr.is_null());
        Ok(RwTxn { ptr })
    }

    /// Stores `value` under `key` (`flags`: `MDBX_UPSERT`, `MDBX_NOOVERWRITE`).
    pub fn put(
        &mut self,
        dbi: ffi::MDBX_dbi,
        key: &[u8],
        value: &[u8],
        flags: ffi::MDBX_put_flags_t,
    ) -> Result<(), Rc> {
        let key = val(key);
        let mut data = val(value);
        // SAFETY: this thread's live write transaction; both point at live bytes, which
        // libmdbx copies.
        check(unsafe { ffi::mdbx_put(self.ptr, dbi, &key, &mut data, flags) })
    }

    /// Deletes `key`; whether it was there.
    pub fn del(&mut self, dbi: ffi::MDBX_dbi, key: &[u8]) -> Result<bool, Rc> {
        let key = val(key);
        // SAFETY: this thread's live write transaction; `key` points at live bytes.
        let rc = unsafe { ffi::mdbx_del(self.ptr, dbi, &key, std::ptr::null()) };
        if rc == ffi::MDBX_NOTFOUND {
            return Ok(false);
        }
        check(rc).map(|()| true)
    }

    /// Empties table `dbi` (keeps the table).
    pub fn clear(&mut self, dbi: ffi::MDBX_dbi) -> Result<(), Rc> {
        // SAFETY: this thread's live write transaction.
        check(unsafe { ffi::mdbx_drop(self.ptr, dbi, false) })
    }

    /// Commits. `Ok(true)`: libmdbx did not commit, because the transaction was empty or an
    /// earlier error poisoned it (`MDBX_RESULT_TRUE`), as the crate reports it.
    pub fn commit(self) -> Result<bool, Rc> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: this thread's live write transaction, ended here: libmdbx frees it whatever
        // the outcome except `MDBX_THREAD_MISMATCH`, which cannot happen on the beginning
        // thread (and is aborted below if it ever did).
        let rc = unsafe { ffi::mdbx_txn_commit_ex(this.ptr, std::ptr::null_mut()) };
        match rc {
            ffi::MDBX_SUCCESS => Ok(false),
            ffi::MDBX_RESULT_TRUE => Ok(true),
            ffi::MDBX_THREAD_MISMATCH => {
                drop(std::mem::ManuallyDrop::into_inner(this));
                Err(rc)
            }
            rc => Err(rc),
        }
    }
}

impl Drop for RwTxn {
    fn drop(&mut self) {
        // SAFETY: this thread's live write transaction, ended once here.
        unsafe { ffi::mdbx_txn_abort_ex(self.ptr, std::ptr::null_mut()) };
    }
}
