//! The worker's I/O boundary: operations as data, completions as input.
//!
//! The worker emits [`Op`]s with an [`OpId`]; the driver performs them (io_uring SQEs in the
//! server, fakes in the simulator) and hands back a [`Completion`] with the same id. An operation
//! that carries a buffer moves it to the driver, whose in-flight table owns it until the
//! completion returns it — also when the connection is gone by then. Short transfers, EAGAIN,
//! ECANCELED and EIO are ordinary results.

/// The unit a driver may pad a [`Op::WriteAt`] to (its `slot_end` permitting): whole 4 KiB
/// sectors, the alignment `O_DIRECT` needs. Slots are whole multiples of it.
pub const WRITE_PAD_BYTES: u64 = 4096;
const _: () = assert!(crate::size_class::SLOT_MIN_BYTES.is_multiple_of(WRITE_PAD_BYTES));

/// Identifies one in-flight operation: slot index in the worker's table and a generation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct OpId(pub u64);

impl OpId {
    pub fn new(index: u32, generation: u32) -> OpId {
        OpId((u64::from(generation) << 32) | u64::from(index))
    }
    pub fn index(self) -> u32 {
        self.0 as u32
    }
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// The driver's handle for an accepted connection (a file descriptor in the server).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnHandle(pub u64);

/// A Linux errno value, as data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Errno(pub i32);

impl Errno {
    pub const EIO: Errno = Errno(5);
    pub const EAGAIN: Errno = Errno(11);
    pub const ENOMEM: Errno = Errno(12);
    pub const EMFILE: Errno = Errno(24);
    pub const EPIPE: Errno = Errno(32);
    pub const ECONNABORTED: Errno = Errno(103);
    pub const ECONNRESET: Errno = Errno(104);
    pub const ENOBUFS: Errno = Errno(105);
    pub const ETIMEDOUT: Errno = Errno(110);
    pub const ECANCELED: Errno = Errno(125);

    /// Worth trying again (the operation did nothing).
    pub fn is_transient(self) -> bool {
        matches!(self, Errno::EAGAIN | Errno::ENOBUFS | Errno::ENOMEM)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    /// Accept one connection on the worker's listener; result: the new handle's value.
    Accept,
    /// Receive up to `max` bytes, appended to `buf` (the driver grows `buf.len()` by the count).
    /// Result 0 means the peer closed its side.
    Recv {
        conn: ConnHandle,
        buf: Vec<u8>,
        max: usize,
    },
    /// Send `buf[start..end]`; result: bytes sent (may be fewer).
    Send {
        conn: ConnHandle,
        buf: Vec<u8>,
        start: usize,
        end: usize,
    },
    /// Read the data file at `offset` into `buf[start..end]`; result: bytes read (may be fewer).
    ReadAt {
        offset: u64,
        buf: Vec<u8>,
        start: usize,
        end: usize,
    },
    /// Write `buf[start..end]` to the data file at `offset`; result: bytes written (of those).
    ///
    /// `slot_end` is where the slot being written ends: the bytes from the write's end up to
    /// there belong to the same slot and hold nothing the store reads, so a driver may fill
    /// them to write whole sectors (the server pads with zeros to [`WRITE_PAD_BYTES`] for its
    /// `O_DIRECT` writes; the simulator does the same). Never past `slot_end`.
    WriteAt {
        offset: u64,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        slot_end: u64,
    },
    /// Close the connection (every other operation on it has completed).
    Close { conn: ConnHandle },
    /// Ask the driver to cancel `target`; the target then completes (often with ECANCELED).
    Cancel { target: OpId },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
    pub op: OpId,
    pub result: Result<u64, Errno>,
    /// The buffer the operation carried, returned.
    pub buf: Option<Vec<u8>>,
}
