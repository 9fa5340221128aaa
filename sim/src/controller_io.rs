//! The simulated controller's driver (`ControllerIo`): the fake disk's fdatasync, its
//! injected failures, and the virtual time a cycle spends on them.
//!
//! Owns nothing but borrows: the disk, the world's random generator, and the world's latch flag.
//! It must never read a clock of its own (`now` is the cycle's start plus the time spent).

use engine::controller::{ControllerIo, IndexDurability, SyncError};
use engine::Instant;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::disk::Disk;
use crate::ring;

/// The controller's driver: the fake disk's fdatasync, and the time the cycle has spent.
pub(crate) struct CtlIo<'a> {
    pub(crate) disk: &'a mut Disk,
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) now: u64,
    /// Virtual time spent in this cycle so far (syncs take the disk's latency).
    pub(crate) spent_ns: u64,
    pub(crate) disk_latency_ns: (u64, u64),
    pub(crate) sync_fail: f64,
    pub(crate) failed: &'a mut bool,
    pub(crate) background: bool,
    /// `begin_durable` was called.
    pub(crate) durable_begun: bool,
}

impl ControllerIo for CtlIo<'_> {
    fn index_durability(&self) -> IndexDurability {
        if self.background {
            IndexDurability::InBackground
        } else {
            IndexDurability::InCycle
        }
    }

    fn begin_durable(&mut self) {
        assert!(!self.durable_begun, "one durable batch at a time");
        self.durable_begun = true;
    }

    fn sync_data(&mut self) -> Result<(), SyncError> {
        self.spent_ns += ring::latency(self.rng, self.disk_latency_ns, 0.0);
        if self.sync_fail > 0.0 && self.rng.random_bool(self.sync_fail) {
            *self.failed = true;
            return Err(SyncError::Io("injected EIO".into()));
        }
        self.disk.sync();
        Ok(())
    }

    fn now(&mut self) -> Instant {
        Instant(self.now + self.spent_ns)
    }
}
