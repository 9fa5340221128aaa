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
//! Owns: the direct file descriptor, the worker's bounce arena (engine buffers are plain `Vec`s
//! with no alignment: a direct write's bytes are copied into an aligned piece of the arena),
//! and the mapping of a padded write's result back to the bytes asked. A write goes direct when its offset is aligned and it is at least
//! [`DIRECT_MIN_BYTES`] long (a 4 KiB block stays buffered); it is padded with zeros to whole
//! [`WRITE_PAD_BYTES`] units, which the engine allows up to the slot's end (`Op::WriteAt`'s
//! `slot_end`). Anything else (a resumed short write at an unaligned offset, a filesystem that
//! refuses `O_DIRECT`) goes through the page cache as before; reads always do (a block just
//! written is read from the disk once, then cached; the kernel drops cached pages a direct
//! write covers).
//!
//! The arena is [`ARENA_BYTES`] mapped once per worker and carved into power-of-two pieces by
//! the engine's buddy allocator (the same 4 KiB..512 KiB classes as the data file's slots); a
//! write that finds no free piece goes through the page cache. So direct writes cost a worker
//! at most that much memory, whatever the load: bounce buffers from malloc, one per write in
//! flight, held ~2x the bytes of 1,000 concurrent uploads (99 MB peak RSS against 32 MB
//! buffered), and mapping each from the kernel halved the PUT rate.
//!
//! Must never: write past `slot_end`, report more bytes than were asked, or hand out a piece of
//! the arena the kernel may still read (a piece returns to the allocator only at its CQE).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::ptr::NonNull;
use std::sync::Arc;

use engine::buddy::{BuddyAllocator, Slot};
use engine::io::{Errno, WRITE_PAD_BYTES};
use engine::SizeClass;
use io_uring::{opcode, squeue, types};

/// Alignment of a direct write's buffer, offset and length.
const ALIGN: usize = WRITE_PAD_BYTES as usize;
/// Writes shorter than this go through the page cache: copying 4 KiB is cheap, and direct
/// 4 KiB writes measured no faster for PUTs alone and 4-9% slower in the mixed 90/10 GET/PUT
/// workload (docs/benchmarks.md).
const DIRECT_MIN_BYTES: usize = 8 * 1024;
/// One worker's bounce arena: eight 512 KiB pieces, or up to 1,024 of 4 KiB.
pub const ARENA_BYTES: usize = 4 << 20;

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

/// [`ARENA_BYTES`] of anonymous memory, page-aligned, and which pieces of it are in use.
struct Arena {
    base: NonNull<u8>,
    pieces: BuddyAllocator,
}

// SAFETY: the arena owns its mapping exclusively; it moves with the worker's driver.
unsafe impl Send for Arena {}

impl Arena {
    fn map() -> std::io::Result<Arena> {
        // SAFETY: an anonymous private mapping; no pointer is passed in.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ARENA_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arena {
            base: NonNull::new(raw.cast::<u8>()).expect("mmap never returns null"),
            pieces: BuddyAllocator::new(ARENA_BYTES as u64),
        })
    }

    /// A free piece of at least `bytes` (a multiple of [`ALIGN`], at most 512 KiB), if any.
    fn take(&mut self, bytes: usize) -> Option<Slot> {
        let class = SizeClass::for_len(bytes as u64)?;
        self.pieces.allocate(class)
    }

    fn give_back(&mut self, piece: Slot) {
        self.pieces
            .free(piece)
            .expect("a bounce piece returns to the arena once");
    }

    /// Where `piece` starts in memory.
    fn at(&self, piece: Slot) -> *mut u8 {
        assert!(piece.end() <= ARENA_BYTES as u64);
        // SAFETY: in bounds of the mapping (asserted).
        unsafe { self.base.as_ptr().add(piece.offset as usize) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // The driver drops its ring (first field) before this: a write still in flight in the
        // kernel then holds its own references to the pages it reads.
        // SAFETY: mapped in `map` with this length, unmapped once.
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), ARENA_BYTES) };
        debug_assert_eq!(rc, 0, "unmapping the bounce arena");
    }
}

/// A direct write in flight: its piece of the arena and how many bytes the engine asked for.
pub struct Pending {
    piece: Slot,
    asked: usize,
}

/// One worker's direct writes (see the module doc).
pub struct DirectWrites {
    /// The direct descriptor; `None`: every write goes through the page cache.
    file: Option<Arc<File>>,
    /// Mapped when direct writes start on; kept when they are turned off (pieces may be in
    /// flight).
    arena: Option<Arena>,
}

impl DirectWrites {
    pub fn new(file: Option<Arc<File>>) -> std::io::Result<DirectWrites> {
        let arena = file.as_ref().map(|_| Arena::map()).transpose()?;
        Ok(DirectWrites { file, arena })
    }

    /// The SQE writing `bytes` at `offset` directly, padded with zeros to whole units (never
    /// past `slot_end`), and what to keep until its CQE; `None` when it goes through the page
    /// cache instead (unaligned, short, direct writes off, or no free piece of the arena).
    pub fn prepare(
        &mut self,
        offset: u64,
        bytes: &[u8],
        slot_end: u64,
    ) -> Option<(squeue::Entry, Pending)> {
        let fd = self.file.as_ref()?.as_raw_fd();
        let arena = self.arena.as_mut().expect("direct writes have their arena");
        if !offset.is_multiple_of(WRITE_PAD_BYTES) || bytes.len() < DIRECT_MIN_BYTES {
            return None;
        }
        let padded = bytes.len().div_ceil(ALIGN) * ALIGN;
        assert!(
            offset + padded as u64 <= slot_end,
            "a padded write stays inside its slot ({offset} + {padded} > {slot_end})"
        );
        let piece = arena.take(padded)?;
        let to = arena.at(piece);
        // SAFETY: the piece holds at least `padded >= bytes.len()` bytes, is in no other
        // write's use (the allocator hands it out once until `finish`), and does not overlap
        // `bytes` (the arena is our own mapping).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), to, bytes.len());
            std::ptr::write_bytes(to.add(bytes.len()), 0, padded - bytes.len());
        }
        let entry = opcode::Write::new(types::Fd(fd), to, padded as u32)
            .offset(offset)
            .build();
        Some((
            entry,
            Pending {
                piece,
                asked: bytes.len(),
            },
        ))
    }

    /// The result to report for a finished direct write: at most the bytes asked (the padding
    /// is not the engine's). A filesystem that refuses a direct write after accepting the open
    /// (`EINVAL`) turns direct writes off for this worker and reports `EAGAIN`, so the engine
    /// writes the same bytes again, through the page cache.
    pub fn finish(&mut self, pending: Pending, result: Result<u64, Errno>) -> Result<u64, Errno> {
        let Pending { piece, asked } = pending;
        self.arena
            .as_mut()
            .expect("a direct write had the arena")
            .give_back(piece);
        match result {
            Ok(n) => Ok(n.min(asked as u64)),
            Err(Errno(libc::EINVAL)) => {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn data_file(dir: &tempfile::TempDir) -> File {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("data"))
            .unwrap();
        file.set_len(8 << 20).unwrap();
        file
    }

    fn run(entry: squeue::Entry) -> Result<u64, Errno> {
        let mut ring = io_uring::IoUring::new(4).unwrap();
        // SAFETY: the caller keeps the write's piece of the arena until this returns.
        unsafe { ring.submission().push(&entry.user_data(7)).unwrap() };
        ring.submit_and_wait(1).unwrap();
        let res = ring.completion().next().unwrap().result();
        if res < 0 {
            Err(Errno(-res))
        } else {
            Ok(res as u64)
        }
    }

    /// A direct write through a real io_uring: the bytes land, the padding up to the next
    /// 4 KiB is zeros and nothing past it is touched, the result counts only the bytes asked;
    /// short and unaligned writes are left to the page cache.
    #[test]
    fn a_direct_write_lands_padded_and_reports_the_bytes_asked() {
        let dir = tempfile::tempdir().unwrap();
        let file = data_file(&dir);
        file.write_all_at(&[0xEE; 1 << 16], 1 << 16).unwrap();
        let Some(direct) = open(&file).unwrap() else {
            eprintln!("this filesystem refuses O_DIRECT: nothing to test");
            return;
        };
        let mut d = DirectWrites::new(Some(direct)).unwrap();
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        let slot = (1u64 << 16, 1u64 << 17);
        assert!(
            d.prepare(slot.0 + 512, &body, slot.1).is_none(),
            "unaligned"
        );
        assert!(
            d.prepare(slot.0, &body[..4096], slot.1).is_none(),
            "under 8 KiB"
        );
        let (entry, pending) = d.prepare(slot.0, &body, slot.1).expect("direct");
        assert_eq!(pending.piece.bytes(), 16384);
        assert_eq!(d.finish(pending, run(entry)), Ok(body.len() as u64));

        let mut back = vec![0u8; 1 << 16];
        file.read_exact_at(&mut back, slot.0).unwrap();
        assert_eq!(&back[..body.len()], &body[..]);
        assert!(
            back[body.len()..12288].iter().all(|&b| b == 0),
            "zero padding"
        );
        assert!(
            back[12288..].iter().all(|&b| b == 0xEE),
            "nothing past the padding"
        );
    }

    /// Pieces are aligned, never shared while in flight, bounded by the arena, and come back
    /// at their CQE; a write that finds the arena full goes through the page cache.
    #[test]
    fn the_arena_bounds_the_writes_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let file = data_file(&dir);
        let Some(direct) = open(&file).unwrap() else {
            return;
        };
        let mut d = DirectWrites::new(Some(direct)).unwrap();
        let body = vec![1u8; 300_000];
        let mut held = Vec::new();
        while let Some((_, p)) = d.prepare(0, &body, 512 << 10) {
            let at = d.arena.as_ref().unwrap().at(p.piece) as usize;
            assert!(at.is_multiple_of(ALIGN));
            held.push(p);
        }
        assert_eq!(held.len(), ARENA_BYTES / (512 << 10));
        let mut offsets: Vec<u64> = held.iter().map(|p| p.piece.offset).collect();
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets.len(), held.len(), "no piece handed out twice");
        for p in held {
            assert_eq!(d.finish(p, Err(Errno::EIO)), Err(Errno::EIO));
        }
        assert!(
            d.prepare(0, &body, 512 << 10).is_some(),
            "the pieces came back"
        );
    }
}
