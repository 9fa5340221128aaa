//! The background scrub: re-reads and re-hashes one stored block per interval, walking the
//! index in hash order and starting over at the end, and counts the corrupt blocks.
//!
//! Sans-IO: [`Scrub::poll_read`] says which bytes to read (a [`ScrubRead`]) into the buffer it
//! owns ([`Scrub::buffer`]); the driver reads them and calls [`Scrub::handle_read`], which
//! re-hashes them. It never reads the data file or a clock itself (`now` is passed in). The
//! driver runs it on the controller's thread between cycles, so no slot it reads can be freed
//! and reused while it reads it.
//!
//! Invariants: at most one read in flight; a corrupt block is counted once while it stays
//! corrupt (up to `SCRUB_KNOWN_CORRUPT_MAX` remembered); `passes` counts completed walks.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::clock::Instant;
use crate::hash::BlockHash;
use crate::meta::{IndexEntry, MetaError, MetaRead};
use crate::size_class::BLOCK_LEN_MAX_BYTES;

/// Corrupt blocks remembered (so each is counted once); beyond it, counting goes on per pass.
pub const SCRUB_KNOWN_CORRUPT_MAX: usize = 100_000;

/// One read the driver performs for the scrub: `len` bytes at `offset` of the data file into
/// `Scrub::buffer()[..len]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ScrubRead {
    pub hash: BlockHash,
    pub offset: u64,
    pub len: u32,
}

/// What a checked block turned out to be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScrubOutcome {
    /// Its bytes hash to its address.
    Intact,
    /// Its bytes do not (or could not be read), and it was not known corrupt: the driver logs
    /// it.
    NewlyCorrupt,
    /// Still corrupt, counted before.
    KnownCorrupt,
}

/// See the module doc.
pub struct Scrub {
    interval: Duration,
    next: Instant,
    cursor: Option<BlockHash>,
    /// The block being read (between `poll_read` and `handle_read`).
    reading: Option<(BlockHash, IndexEntry)>,
    buf: Vec<u8>,
    blocks: u64,
    /// Distinct corrupt blocks found (each is counted and logged once).
    corrupt: u64,
    known_corrupt: BTreeSet<BlockHash>,
    passes: u64,
}

impl Scrub {
    pub fn new(interval: Duration) -> Scrub {
        assert!(!interval.is_zero(), "a scrub interval");
        Scrub {
            interval,
            next: Instant::ZERO,
            cursor: None,
            reading: None,
            buf: vec![0; BLOCK_LEN_MAX_BYTES as usize],
            blocks: 0,
            corrupt: 0,
            known_corrupt: BTreeSet::new(),
            passes: 0,
        }
    }

    /// When the next block is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// If a block is due at `now`: the next one in hash order after the last checked, looked up
    /// in `read` (the committed index). `None` when not due, or at the end of a pass (the next
    /// call starts over).
    pub fn poll_read(
        &mut self,
        now: Instant,
        read: &impl MetaRead,
    ) -> Result<Option<ScrubRead>, MetaError> {
        assert!(self.reading.is_none(), "handle_read was not called");
        if now < self.next {
            return Ok(None);
        }
        self.next = now + self.interval;
        let mut found = Vec::with_capacity(1);
        read.list(self.cursor.as_ref(), 1, &mut found)?;
        let Some((hash, entry)) = found.pop() else {
            if self.cursor.take().is_some() {
                self.passes += 1;
            }
            return Ok(None);
        };
        assert!(self.cursor.is_none_or(|c| c < hash), "the walk goes up");
        assert!(entry.len as usize <= self.buf.len());
        self.cursor = Some(hash);
        self.reading = Some((hash, entry));
        Ok(Some(ScrubRead {
            hash,
            offset: entry.slot.offset,
            len: entry.len,
        }))
    }

    /// The buffer the read in flight fills (its `len` bytes).
    pub fn buffer(&mut self) -> &mut [u8] {
        let (_, entry) = self.reading.expect("a read in flight");
        &mut self.buf[..entry.len as usize]
    }

    /// The read finished: `read_ok` is whether the driver read all the bytes into `buffer()`.
    pub fn handle_read(&mut self, read_ok: bool) -> ScrubOutcome {
        let (hash, entry) = self.reading.take().expect("a read in flight");
        self.blocks += 1;
        let ok = read_ok && BlockHash::of(&self.buf[..entry.len as usize]) == hash;
        let known = self.known_corrupt.contains(&hash);
        if ok {
            if known {
                self.known_corrupt.remove(&hash);
            }
            return ScrubOutcome::Intact;
        }
        if known {
            return ScrubOutcome::KnownCorrupt;
        }
        if self.known_corrupt.len() < SCRUB_KNOWN_CORRUPT_MAX {
            self.known_corrupt.insert(hash);
        }
        self.corrupt += 1;
        ScrubOutcome::NewlyCorrupt
    }

    /// Blocks checked.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Distinct corrupt blocks found.
    pub fn corrupt(&self) -> u64 {
        self.corrupt
    }

    /// Completed walks over the index.
    pub fn passes(&self) -> u64 {
        self.passes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buddy::Slot;
    use crate::meta::{MemStore, MetaStore, MetaTxn};
    use crate::size_class::SizeClass;

    fn store_with(blocks: &[&[u8]]) -> (MemStore, Vec<(BlockHash, u64)>) {
        let mut store = MemStore::new();
        let mut txn = store.begin().unwrap();
        let mut placed = Vec::new();
        for (i, bytes) in blocks.iter().enumerate() {
            let hash = BlockHash::of(bytes);
            let slot = Slot {
                offset: i as u64 * 4096,
                class: SizeClass::ALL[0],
            };
            let entry = IndexEntry {
                slot,
                len: bytes.len() as u32,
                crc32c: 0,
                flags: 0,
                commit_seq: 1,
            };
            txn.put(&hash, &entry).unwrap();
            placed.push((hash, slot.offset));
        }
        txn.commit(true).unwrap();
        (store, placed)
    }

    #[test]
    fn a_pass_checks_every_block_once_and_counts_a_corrupt_one_once() {
        let blocks: [&[u8]; 3] = [b"one", b"two", b"three"];
        let (store, _) = store_with(&blocks);
        let disk = |hash: BlockHash| -> &[u8] {
            let b = blocks.iter().find(|b| BlockHash::of(b) == hash).unwrap();
            if *b == b"two" {
                b"twx" // corrupt on disk
            } else {
                b
            }
        };
        let mut scrub = Scrub::new(Duration::from_millis(1));
        let mut now = Instant::ZERO;
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            let read = store.read().unwrap();
            if let Some(r) = scrub.poll_read(now, &read).unwrap() {
                scrub.buffer().copy_from_slice(disk(r.hash));
                outcomes.push(scrub.handle_read(true));
            }
            assert_eq!(scrub.poll_read(now, &read).unwrap(), None, "not due yet");
            now = now + Duration::from_millis(1);
        }
        let newly = outcomes
            .iter()
            .filter(|o| **o == ScrubOutcome::NewlyCorrupt)
            .count();
        assert_eq!(newly, 1);
        assert_eq!(scrub.corrupt(), 1);
        assert_eq!(scrub.passes(), 2, "8 steps: 3 blocks and an end, twice");
        assert_eq!(scrub.blocks(), 6);
        assert!(outcomes.contains(&ScrubOutcome::KnownCorrupt));
    }

    #[test]
    fn a_failed_read_counts_as_corrupt() {
        let (store, _) = store_with(&[b"block"]);
        let mut scrub = Scrub::new(Duration::from_millis(1));
        let read = store.read().unwrap();
        assert!(scrub.poll_read(Instant::ZERO, &read).unwrap().is_some());
        assert_eq!(scrub.handle_read(false), ScrubOutcome::NewlyCorrupt);
    }
}
