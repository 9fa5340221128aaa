//! The fake data file: sectors with a live image and a durable image.
//!
//! Fault model:
//! - A write changes the *live* image (the page cache) at once; `sync` (the controller's
//!   `sync_data`, an fdatasync) makes every live sector durable.
//! - A failed fdatasync (`fail_sync`, "fsyncgate"): the kernel drops the dirty pages' writeback
//!   and marks them clean. Their bytes stay readable from the page cache until evicted (a power
//!   loss evicts them), but no later good sync persists them; a write to such a sector makes
//!   it dirty again (the whole sector, as a page is written back whole).
//! - A process crash loses nothing that was written: the page cache outlives the process.
//! - Power loss keeps the durable image plus a seeded subset of the sectors written since the
//!   last sync (each sector independently; a sector is the unit of atomicity, so a block that
//!   spans sectors can be torn). In the log region only, a dirty sector may also come back
//!   torn *inside* itself (`torn_sector_p`): a random prefix of its new bytes over its old
//!   ones, which a record's checksums must detect. Sectors never written read as zeros.
//! - Misdirected writes (injected by the ring) land at another sector-aligned offset of the
//!   slots (never in the log region).
//! - The disk remembers which sectors may hold bytes that belong to no committed block through
//!   no fault of the engine: sectors hit by a misdirected write and sectors a misdirected write
//!   should have reached. The oracle accepts corrupt stored bytes only inside such `damaged`
//!   sectors; a sector stops being damaged when a correct write covers it whole. Power loss
//!   damages nothing by this definition: whatever the index (as it survived) points at must have
//!   been durable, in either durability mode.
//! - Sticky read errors: a sector may turn bad (the ring decides when); every read that touches
//!   it fails with EIO until a write touches it (the drive remaps it; what the write did not
//!   cover stays damaged). Bad sectors count as damaged.
//! - Transient read faults (EIO, bit flips) are the ring's business: the stored bytes are fine.

use std::collections::{BTreeMap, BTreeSet};

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Unit of atomicity and of damage tracking.
pub const SECTOR_BYTES: u64 = 4096;
const SECTOR: usize = SECTOR_BYTES as usize;

const _: () = assert!(engine::size_class::SLOT_MIN_BYTES.is_multiple_of(SECTOR_BYTES));

type Sector = Box<[u8; SECTOR]>;

/// Which image a read sees.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Image {
    /// The page cache: what a process reads.
    Live,
    /// The device (a read that bypasses the cache).
    Device,
}

/// An fdatasync between its two halves: the dirty sectors as they were when it began.
type SyncSnapshot = BTreeMap<u64, Sector>;

/// What a power loss did to the sectors written since the last sync.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PowerLossOutcome {
    /// Sectors that reached the disk whole anyway.
    pub kept: u64,
    /// Log-region sectors that reached it as a prefix of their new bytes over the old ones.
    pub torn: u64,
}

/// Whether the index may come back holding a block over bytes a power loss took after a failed
/// sync had dropped their writeback.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LostBytes {
    /// Full durability: never (no commit is made before its flush, and the log's replay reads
    /// the device, not the cache the dropped pages linger in).
    NeverIndexed,
    /// Relaxed durability, by design (docs/architecture.md, "Data before index").
    MayBeIndexed,
}

#[derive(Debug)]
pub struct Disk {
    /// Where the slots end and the log region begins (`C`).
    capacity_bytes: u64,
    /// The log region's size (`L`): the disk ends at `C + L`.
    log_bytes: u64,
    durable: BTreeMap<u64, Sector>,
    /// Sectors written since the last sync (the live image is `live` over `unpersisted` over
    /// `durable`).
    live: BTreeMap<u64, Sector>,
    /// Sectors whose writeback a failed sync dropped: cached, never made durable by a sync.
    unpersisted: BTreeMap<u64, Sector>,
    /// Sectors a power loss took while a failed sync had dropped their writeback (until they
    /// are written again): what relaxed durability may come back indexed over (see
    /// `lost_after_failed_sync`).
    lost_after_failed_sync: BTreeSet<u64>,
    /// Whether those sectors excuse an index entry over them (the oracles' `may_differ`).
    lost_bytes: LostBytes,
    damaged: BTreeSet<u64>,
    bad: BTreeSet<u64>,
    /// The fdatasync in flight (between `begin_sync` and `finish_sync`/`fail_sync`).
    sync_in_flight: Option<SyncSnapshot>,
    pub syncs: u64,
    pub writes: u64,
}

impl Disk {
    /// A disk of `capacity_bytes` of slots followed by a log region of `log_sectors`.
    pub fn new(capacity_bytes: u64, log_sectors: u64) -> Disk {
        assert!(capacity_bytes > 0 && capacity_bytes.is_multiple_of(SECTOR_BYTES));
        Disk {
            capacity_bytes,
            log_bytes: log_sectors * SECTOR_BYTES,
            durable: BTreeMap::new(),
            live: BTreeMap::new(),
            unpersisted: BTreeMap::new(),
            lost_after_failed_sync: BTreeSet::new(),
            lost_bytes: LostBytes::NeverIndexed,
            damaged: BTreeSet::new(),
            bad: BTreeSet::new(),
            sync_in_flight: None,
            syncs: 0,
            writes: 0,
        }
    }

    /// Where the slots end (and the log region begins).
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// The log region's size in sectors.
    pub fn log_sectors(&self) -> u64 {
        self.log_bytes / SECTOR_BYTES
    }

    /// The whole disk: slots and log region.
    pub fn len_bytes(&self) -> u64 {
        self.capacity_bytes + self.log_bytes
    }

    fn in_log_region(&self, index: u64) -> bool {
        index * SECTOR_BYTES >= self.capacity_bytes
    }

    fn sector(&self, index: u64) -> Option<&Sector> {
        self.live
            .get(&index)
            .or_else(|| self.unpersisted.get(&index))
            .or_else(|| self.durable.get(&index))
    }

    /// Reads the live image at `offset` into `out`.
    pub fn read(&self, offset: u64, out: &mut [u8]) {
        self.read_from(offset, out, Image::Live);
    }

    /// Reads what the device holds at `offset` (the durable image with the dirty sectors a
    /// writeback may still take, but never the pages a failed sync dropped: those are in the
    /// page cache only): a read that bypasses the cache, as the server's log replay does.
    pub fn read_device(&self, offset: u64, out: &mut [u8]) {
        self.read_from(offset, out, Image::Device);
    }

    fn read_from(&self, offset: u64, out: &mut [u8], image: Image) {
        let end = offset + out.len() as u64;
        assert!(
            end <= self.len_bytes(),
            "read past the data file: {offset}+{}",
            out.len()
        );
        let mut pos = offset;
        while pos < end {
            let index = pos / SECTOR_BYTES;
            let within = (pos % SECTOR_BYTES) as usize;
            let n = (SECTOR - within).min((end - pos) as usize);
            let dst = &mut out[(pos - offset) as usize..(pos - offset) as usize + n];
            let sector = match image {
                Image::Live => self.sector(index),
                Image::Device => self.live.get(&index).or_else(|| self.durable.get(&index)),
            };
            match sector {
                Some(s) => dst.copy_from_slice(&s[within..within + n]),
                None => dst.fill(0),
            }
            pos += n as u64;
        }
    }

    /// Writes `data` at `offset` into the live image. `correct` is false for a misdirected write.
    pub fn write(&mut self, offset: u64, data: &[u8], correct: bool) {
        let end = offset + data.len() as u64;
        assert!(
            correct || end <= self.capacity_bytes,
            "a misdirected write hits the slots"
        );
        assert!(
            end <= self.len_bytes(),
            "write past the data file: {offset}+{}",
            data.len()
        );
        self.writes += 1;
        let mut pos = offset;
        while pos < end {
            let index = pos / SECTOR_BYTES;
            let within = (pos % SECTOR_BYTES) as usize;
            let n = (SECTOR - within).min((end - pos) as usize);
            if !self.live.contains_key(&index) {
                let cached = self.unpersisted.remove(&index);
                let base = match cached.or_else(|| self.durable.get(&index).cloned()) {
                    Some(s) => s,
                    None => Box::new([0u8; SECTOR]),
                };
                self.live.insert(index, base);
            }
            let sector = self.live.get_mut(&index).expect("inserted above");
            let src = &data[(pos - offset) as usize..(pos - offset) as usize + n];
            sector[within..within + n].copy_from_slice(src);
            if n == SECTOR {
                self.lost_after_failed_sync.remove(&index);
            }
            if !correct {
                self.damaged.insert(index);
            } else {
                // A write remaps a bad sector; what it did not cover is lost (stays damaged).
                self.bad.remove(&index);
                if n == SECTOR {
                    self.damaged.remove(&index);
                }
            }
            pos += n as u64;
        }
    }

    /// Marks `[offset, offset + len)` damaged (a write that should have landed there did not).
    pub fn mark_damaged(&mut self, offset: u64, len: u64) {
        let first = offset / SECTOR_BYTES;
        let last = (offset + len.max(1) - 1) / SECTOR_BYTES;
        for index in first..=last {
            self.damaged.insert(index);
        }
    }

    /// The sector holding `offset` turns bad (a sticky read error).
    pub fn mark_bad(&mut self, offset: u64) {
        assert!(offset < self.capacity_bytes);
        self.bad.insert(offset / SECTOR_BYTES);
        self.damaged.insert(offset / SECTOR_BYTES);
    }

    /// Whether a read of `[offset, offset + len)` touches a bad sector.
    pub fn is_bad(&self, offset: u64, len: u64) -> bool {
        let first = offset / SECTOR_BYTES;
        let last = (offset + len.max(1) - 1) / SECTOR_BYTES;
        self.bad.range(first..=last).next().is_some()
    }

    /// Sets whether the index may hold blocks over bytes lost after a failed sync
    /// ([`LostBytes`]; `NeverIndexed` unless told).
    pub fn with_lost_bytes(mut self, lost_bytes: LostBytes) -> Disk {
        self.lost_bytes = lost_bytes;
        self
    }

    /// Whether a power loss took any sector of `[offset, offset + len)` whose writeback a
    /// failed sync had dropped (not written since), and the durability mode lets the index
    /// hold a block over it ([`LostBytes::MayBeIndexed`], relaxed: its commit was made before
    /// the data sync that failed, and the next run's durable commit keeps it;
    /// docs/architecture.md, "Data before index"). Full durability never does: a commit
    /// follows its flush, and the log's replay reads the device.
    pub fn lost_after_failed_sync(&self, offset: u64, len: u64) -> bool {
        if self.lost_bytes == LostBytes::NeverIndexed {
            return false;
        }
        let first = offset / SECTOR_BYTES;
        let last = (offset + len.max(1) - 1) / SECTOR_BYTES;
        self.lost_after_failed_sync
            .range(first..=last)
            .next()
            .is_some()
    }

    /// Whether the bytes at `[offset, offset + len)` may differ from what was last written
    /// there: a fault damaged them, or (relaxed durability) a power loss took bytes whose
    /// writeback a failed sync had dropped.
    pub fn may_differ(&self, offset: u64, len: u64) -> bool {
        self.is_damaged(offset, len) || self.lost_after_failed_sync(offset, len)
    }

    /// Whether any sector of `[offset, offset + len)` is damaged.
    pub fn is_damaged(&self, offset: u64, len: u64) -> bool {
        let first = offset / SECTOR_BYTES;
        let last = (offset + len.max(1) - 1) / SECTOR_BYTES;
        self.damaged.range(first..=last).next().is_some()
    }

    /// fdatasync, both halves at once: every live sector becomes durable.
    pub fn sync(&mut self) {
        self.begin_sync();
        self.finish_sync();
        assert!(self.live.is_empty(), "a whole sync leaves nothing dirty");
    }

    /// An fdatasync begins: it will make durable the dirty sectors as they are now.
    pub fn begin_sync(&mut self) {
        assert!(self.sync_in_flight.is_none(), "one fdatasync at a time");
        self.sync_in_flight = Some(self.live.clone());
    }

    /// Whether an fdatasync is between its halves.
    pub fn sync_in_flight(&self) -> bool {
        self.sync_in_flight.is_some()
    }

    /// The fdatasync returns: the snapshot it began with is durable; a sector written again
    /// since stays dirty with its newer bytes.
    pub fn finish_sync(&mut self) {
        let snapshot = self.sync_in_flight.take().expect("an fdatasync in flight");
        self.syncs += 1;
        for (index, sector) in snapshot {
            if self.live.get(&index) == Some(&sector) {
                self.live.remove(&index);
            }
            self.durable.insert(index, sector);
        }
    }

    /// The fdatasync fails ("fsyncgate"): the dirty sectors of its snapshot stay readable but
    /// will never be made durable by a later sync (until written again); a sector written
    /// since it began is dirty again. Returns how many sectors it dropped.
    pub fn fail_sync(&mut self) -> usize {
        let snapshot = self.sync_in_flight.take().expect("an fdatasync in flight");
        let mut dropped = 0;
        for (index, sector) in snapshot {
            if self.live.get(&index) == Some(&sector) {
                let cached = self.live.remove(&index).expect("checked above");
                self.unpersisted.insert(index, cached);
                dropped += 1;
            }
        }
        dropped
    }

    /// The process that waited for the fdatasync in flight is gone (a crash): nothing of it is
    /// known to be durable (its sectors stay dirty).
    pub fn abandon_sync(&mut self) {
        self.sync_in_flight = None;
    }

    pub fn unsynced_sectors(&self) -> usize {
        self.live.len()
    }

    /// Sectors a failed sync dropped that are still cached.
    pub fn unpersisted_sectors(&self) -> usize {
        self.unpersisted.len()
    }

    /// Power loss: durable sectors stay; each unsynced sector survives whole with `keep_p`,
    /// and a log-region sector that does not may survive torn with `torn_p` (a random prefix
    /// of its new bytes over its old ones); sectors a failed sync dropped are gone, and so is
    /// a sync in flight.
    pub fn power_loss(
        &mut self,
        rng: &mut ChaCha8Rng,
        keep_p: f64,
        torn_p: f64,
    ) -> PowerLossOutcome {
        assert!((0.0..=1.0).contains(&keep_p) && (0.0..=1.0).contains(&torn_p));
        self.abandon_sync();
        let dropped = std::mem::take(&mut self.unpersisted);
        self.lost_after_failed_sync.extend(dropped.into_keys());
        let live = std::mem::take(&mut self.live);
        let mut outcome = PowerLossOutcome::default();
        for (index, sector) in live {
            if rng.random_bool(keep_p) {
                self.durable.insert(index, sector);
                outcome.kept += 1;
            } else if self.in_log_region(index) && torn_p > 0.0 && rng.random_bool(torn_p) {
                let prefix = rng.random_range(1..SECTOR);
                let old = self
                    .durable
                    .entry(index)
                    .or_insert_with(|| Box::new([0u8; SECTOR]));
                old[..prefix].copy_from_slice(&sector[..prefix]);
                outcome.torn += 1;
            }
        }
        assert!(self.live.is_empty() && self.sync_in_flight.is_none());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn power_loss_keeps_synced_bytes_and_only_some_unsynced_sectors() {
        let mut d = Disk::new(1 << 20, 16);
        d.write(100, &[7u8; 5000], true);
        d.sync();
        d.write(8192, &[9u8; 8192], true);
        let mut out = [0u8; 4];
        d.read(8192, &mut out);
        assert_eq!(out, [9; 4], "live bytes are readable before sync");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        d.power_loss(&mut rng, 0.0, 0.0);
        d.read(8192, &mut out);
        assert_eq!(out, [0; 4], "unsynced sector lost");
        let mut back = vec![0u8; 5000];
        d.read(100, &mut back);
        assert!(back.iter().all(|&b| b == 7), "synced bytes survive");
        assert!(!d.is_damaged(0, 1 << 20));
    }

    /// fsyncgate: after a failed sync the bytes read back from the cache, a later good sync
    /// does not persist them, and a power loss loses them; a sector written again is dirty.
    #[test]
    fn a_failed_sync_drops_the_dirty_pages_for_good() {
        let mut d = Disk::new(1 << 20, 16).with_lost_bytes(LostBytes::MayBeIndexed);
        d.write(0, &[5u8; 4096], true);
        d.sync();
        d.write(0, &[6u8; 4096], true);
        d.write(8192, &[7u8; 4096], true);
        d.begin_sync();
        assert_eq!(d.fail_sync(), 2);
        let mut out = [0u8; 4];
        d.read(8192, &mut out);
        assert_eq!(out, [7; 4], "readable from the cache until evicted");
        d.write(16384, &[8u8; 4096], true);
        d.sync();
        assert_eq!(
            d.unpersisted_sectors(),
            2,
            "a good sync does not persist dropped pages"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        d.power_loss(&mut rng, 1.0, 0.0);
        d.read(8192, &mut out);
        assert_eq!(out, [0; 4], "never persisted");
        d.read(0, &mut out);
        assert_eq!(
            out, [5; 4],
            "the durable bytes under a dropped page come back"
        );
        d.read(16384, &mut out);
        assert_eq!(out, [8; 4], "the good sync persisted its own writes");
        assert!(
            d.lost_after_failed_sync(8192, 4096),
            "the power loss took a dropped page"
        );
        assert!(d.may_differ(8192, 4096) && !d.may_differ(16384, 4096));
        assert!(!d.lost_after_failed_sync(16384, 4096), "synced");
        d.write(8192, &[1u8; 4096], true);
        assert!(!d.lost_after_failed_sync(8192, 4096), "written whole again");
    }

    #[test]
    fn misdirected_damage_clears_when_a_whole_sector_is_rewritten() {
        let mut d = Disk::new(1 << 20, 16);
        d.write(4096, &[1u8; 10], false);
        assert!(d.is_damaged(4096, 1));
        d.write(4096, &[2u8; 4096], true);
        assert!(!d.is_damaged(4096, 4096));
    }

    /// The fdatasync guarantee: a sync makes durable what was written before it began, and
    /// nothing of it is durable before it returns.
    #[test]
    fn a_sync_makes_durable_exactly_what_was_written_before_it_began() {
        let mut d = Disk::new(1 << 20, 16);
        let sector = |byte: u8| [byte; SECTOR];
        d.write(0, &sector(1), true);
        d.begin_sync();
        for (offset, byte) in [(0, 2), (4096, 3)] {
            d.write(offset, &sector(byte), true);
        }
        d.finish_sync();
        assert_eq!(d.unsynced_sectors(), 2, "both written after the sync began");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        d.power_loss(&mut rng, 0.0, 0.0);
        let mut out = [0u8; 2];
        d.read(0, &mut out);
        assert_eq!(out, [1; 2], "the bytes the sync began with");
        d.read(4096, &mut out);
        assert_eq!(out, [0; 2], "written after the sync began: lost");

        d.write(8192, &[4u8; 4096], true);
        d.begin_sync();
        d.power_loss(&mut rng, 0.0, 0.0);
        d.read(8192, &mut out);
        assert_eq!(
            out, [0; 2],
            "a sync that never returned made nothing durable"
        );
        assert!(!d.sync_in_flight());
    }

    /// Tears inside a sector happen only in the log region, as a prefix of the new bytes.
    #[test]
    fn power_loss_tears_log_sectors_only_as_a_prefix_over_the_old_bytes() {
        let capacity = 1 << 20;
        let mut d = Disk::new(capacity, 16);
        assert_eq!(d.len_bytes(), capacity + 16 * SECTOR_BYTES);
        assert_eq!(d.log_sectors(), 16);
        d.write(capacity, &[1u8; 4096], true);
        d.sync();
        d.write(capacity, &[2u8; 4096], true);
        d.write(0, &[2u8; 4096], true);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let outcome = d.power_loss(&mut rng, 0.0, 1.0);
        assert_eq!(outcome, PowerLossOutcome { kept: 0, torn: 1 });
        let mut slot = [9u8; 4096];
        d.read(0, &mut slot);
        assert!(slot.iter().all(|&b| b == 0), "a slot sector is never torn");
        let mut log = [0u8; 4096];
        d.read(capacity, &mut log);
        let prefix = log.iter().take_while(|&&b| b == 2).count();
        assert!((1..4096).contains(&prefix), "a strict prefix: {prefix}");
        assert!(
            log[prefix..].iter().all(|&b| b == 1),
            "the old bytes after it"
        );
    }
}
