//! Block writes that bypass the page cache: the workers write slots through the data file
//! opened again with `O_DIRECT`.
//!
//! Why: a buffered write copies the body into fresh page-cache pages, and the batch's
//! fdatasync then has to write them back; on this class of machine that path moves ~400 MB/s
//! where direct writes move 1.3-1.6 GB/s, and with many uploads the copies run in io_uring's
//! worker threads contending for the data file's inode lock. Direct writes are async in the
//! ring itself. Durability does not change: a direct write's data (and the conversion of the
//! preallocated extent it lands in) is durable only after the batch's one fdatasync, exactly as
//! a buffered write's is.
//!
//! Owns: the direct file descriptor, the aligned bounce buffers (engine buffers are plain
//! `Vec`s with no alignment), and the mapping of a padded write's result back to the bytes
//! asked. A write goes direct when its offset is aligned and it is at least
//! [`DIRECT_MIN_BYTES`] long (a 4 KiB block stays buffered); it is padded with zeros to whole
//! [`WRITE_PAD_BYTES`] units, which the engine allows up to the slot's end (`Op::WriteAt`'s
//! `slot_end`). Anything else (a resumed short write at an unaligned offset, a filesystem that
//! refuses `O_DIRECT`) goes through the page cache as before; reads always do (a block just
//! written is read from the disk once, then cached; the kernel drops cached pages a direct
//! write covers).
//!
//! Must never: write past `slot_end`, report more bytes than were asked, or free a bounce
//! buffer the kernel may still read (the in-flight table holds it until the CQE).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use engine::io::{Errno, WRITE_PAD_BYTES};
use io_uring::{opcode, squeue, types};

/// Alignment of a direct write's buffer, offset and length.
const ALIGN: usize = WRITE_PAD_BYTES as usize;
/// Bounce buffers are sized in these steps (one upload piece), so they are reused across sizes.
const BOUNCE_STEP: usize = 64 * 1024;
/// Writes shorter than this go through the page cache: copying 4 KiB is cheap, and direct
/// 4 KiB writes measured no faster for PUTs alone and 4-9% slower in the mixed 90/10 GET/PUT
/// workload (docs/benchmarks.md).
const DIRECT_MIN_BYTES: usize = 8 * 1024;
/// Idle bounce bytes one worker keeps for reuse; beyond, a finished write's buffer is freed.
const IDLE_BYTES_MAX: usize = 2 << 20;

/// Opens `data` again with `O_DIRECT` for the workers' writes. `None`, with one line, when the
/// filesystem refuses it (tmpfs): the workers then write through the page cache.
pub fn open(data: &File) -> std::io::Result<Option<Arc<File>>> {
    let path = format!("/proc/self/fd/{}", data.as_raw_fd());
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(file) => Ok(Some(Arc::new(file))),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(
                "the data file's filesystem refuses O_DIRECT: block writes go through the page \
                 cache (slower durable uploads, same guarantees)"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A heap buffer aligned to [`ALIGN`], of `cap` bytes (a multiple of [`BOUNCE_STEP`]).
pub struct Bounce {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
}

// SAFETY: `Bounce` owns its allocation exclusively (like a `Box<[u8]>`).
unsafe impl Send for Bounce {}

impl Bounce {
    fn layout(cap: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(cap, ALIGN).expect("bounce layout")
    }

    fn new(cap: usize) -> Bounce {
        assert!(cap > 0 && cap.is_multiple_of(BOUNCE_STEP));
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc(Bounce::layout(cap)) };
        let ptr = std::ptr::NonNull::new(raw)
            .unwrap_or_else(|| std::alloc::handle_alloc_error(Bounce::layout(cap)));
        Bounce { ptr, cap }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Bounce::layout(self.cap)) };
    }
}

/// A direct write in flight: its bounce buffer and how many bytes the engine asked for.
pub struct Pending {
    bounce: Bounce,
    asked: usize,
}

/// One worker's direct writes (see the module doc).
pub struct DirectWrites {
    /// `None`: every write goes through the page cache.
    file: Option<Arc<File>>,
    idle: Vec<Bounce>,
    idle_bytes: usize,
}

impl DirectWrites {
    pub fn new(file: Option<Arc<File>>) -> DirectWrites {
        DirectWrites {
            file,
            idle: Vec::new(),
            idle_bytes: 0,
        }
    }

    /// The SQE writing `bytes` at `offset` directly, padded with zeros to whole units (never
    /// past `slot_end`), and what to keep until its CQE; `None` when it must go through the
    /// page cache instead.
    pub fn prepare(
        &mut self,
        offset: u64,
        bytes: &[u8],
        slot_end: u64,
    ) -> Option<(squeue::Entry, Pending)> {
        let fd = self.file.as_ref()?.as_raw_fd();
        if !offset.is_multiple_of(WRITE_PAD_BYTES) || bytes.len() < DIRECT_MIN_BYTES {
            return None;
        }
        let padded = bytes.len().div_ceil(ALIGN) * ALIGN;
        assert!(
            offset + padded as u64 <= slot_end,
            "a padded write stays inside its slot ({offset} + {padded} > {slot_end})"
        );
        let bounce = self.take(padded);
        // SAFETY: the bounce holds at least `padded >= bytes.len()` bytes and does not overlap
        // `bytes` (it is our own allocation).
        unsafe {
            let to = bounce.ptr.as_ptr();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), to, bytes.len());
            std::ptr::write_bytes(to.add(bytes.len()), 0, padded - bytes.len());
        }
        let entry = opcode::Write::new(types::Fd(fd), bounce.ptr.as_ptr(), padded as u32)
            .offset(offset)
            .build();
        Some((
            entry,
            Pending {
                bounce,
                asked: bytes.len(),
            },
        ))
    }

    /// The result to report for a finished direct write: at most the bytes asked (the padding
    /// is not the engine's). A filesystem that refuses a direct write after accepting the open
    /// (`EINVAL`) turns direct writes off for this worker and reports `EAGAIN`, so the engine
    /// writes the same bytes again, through the page cache.
    pub fn finish(&mut self, pending: Pending, result: Result<u64, Errno>) -> Result<u64, Errno> {
        let Pending { bounce, asked } = pending;
        self.recycle(bounce);
        match result {
            Ok(n) => Ok(n.min(asked as u64)),
            Err(Errno(libc::EINVAL)) if self.file.is_some() => {
                tracing::warn!(
                    "the data file refused a direct write (EINVAL): this worker's block writes \
                     go through the page cache from now on"
                );
                self.file = None;
                Err(Errno::EAGAIN)
            }
            Err(e) => Err(e),
        }
    }

    fn take(&mut self, bytes: usize) -> Bounce {
        let cap = bytes.div_ceil(BOUNCE_STEP).max(1) * BOUNCE_STEP;
        match self.idle.iter().position(|b| b.cap == cap) {
            Some(i) => {
                let b = self.idle.swap_remove(i);
                self.idle_bytes -= b.cap;
                b
            }
            None => Bounce::new(cap),
        }
    }

    fn recycle(&mut self, bounce: Bounce) {
        if self.idle_bytes + bounce.cap <= IDLE_BYTES_MAX {
            self.idle_bytes += bounce.cap;
            self.idle.push(bounce);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounces_are_aligned_reused_and_bounded() {
        let mut d = DirectWrites::new(None);
        let b = d.take(4096);
        assert_eq!(b.cap, BOUNCE_STEP);
        assert!((b.ptr.as_ptr() as usize).is_multiple_of(ALIGN));
        let at = b.ptr;
        d.recycle(b);
        assert_eq!(
            d.take(100).ptr,
            at,
            "a freed bounce of the same size is reused"
        );
        for _ in 0..(IDLE_BYTES_MAX / (512 << 10)) + 2 {
            let b = d.take(512 << 10);
            assert!((b.ptr.as_ptr() as usize).is_multiple_of(ALIGN));
            d.recycle(Bounce::new(512 << 10));
            d.recycle(b);
        }
        assert!(d.idle_bytes <= IDLE_BYTES_MAX);
    }

    #[test]
    fn a_direct_result_never_counts_the_padding() {
        let mut d = DirectWrites::new(None);
        let pending = Pending {
            bounce: d.take(4096),
            asked: 100,
        };
        assert_eq!(d.finish(pending, Ok(4096)), Ok(100));
        let pending = Pending {
            bounce: d.take(4096),
            asked: 100,
        };
        assert_eq!(d.finish(pending, Ok(40)), Ok(40));
    }
}
