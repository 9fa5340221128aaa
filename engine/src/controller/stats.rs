//! The controller's figures for /stats and /metrics (`ControllerStats`).
//!
//! Invariant: `free_bytes + reserved_bytes + used_bytes == capacity_bytes` (quarantined
//! bytes count as free). Reads state; never changes it.

use crate::meta::MetaStore;
use crate::size_class::{SizeClass, CLASS_COUNT};

use super::Controller;

/// Figures for /stats and /metrics. All byte figures satisfy
/// `free_bytes + reserved_bytes + used_bytes == capacity_bytes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerStats {
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    pub reserved_bytes: u64,
    pub used_bytes: u64,
    pub quarantined_bytes: u64,
    pub blocks: u64,
    pub data_bytes: u64,
    pub free_slots: [u64; CLASS_COUNT],
    pub reserved_slots: [u64; CLASS_COUNT],
    pub cycles: u64,
    pub commits: u64,
    pub commit_seq: u64,
    pub last_batch_messages: u64,
    pub max_batch_messages: u64,
    pub messages_total: u64,
    pub allocations: u64,
    pub last_commit_ns: u64,
    pub max_commit_ns: u64,
    pub total_commit_ns: u64,
    pub last_sync_ns: u64,
    pub total_sync_ns: u64,
    pub pauses: u64,
    pub outbox_waiting: u64,
    /// Log space (bytes) and records a checkpoint has not yet covered.
    pub log_bytes_used: u64,
    pub log_records: u64,
    pub log_records_written: u64,
    pub checkpoints: u64,
    pub last_checkpoint_ns: u64,
    pub total_checkpoint_ns: u64,
    pub log_full_waits: u64,
    pub failed: bool,
}

impl<M: MetaStore> Controller<M> {
    pub fn stats(&self) -> ControllerStats {
        let mut s = self.stats.clone();
        let quarantined: u64 = (self.quarantine.iter().chain(self.undurable.iter()))
            .map(|(_, slot)| slot.bytes())
            .sum();
        s.capacity_bytes = self.allocator.capacity_bytes();
        s.quarantined_bytes = quarantined;
        s.free_bytes = self.allocator.free_bytes() + quarantined;
        let classes = if self.config.bugs.miscount_free_slots() {
            &SizeClass::ALL[..CLASS_COUNT - 1]
        } else {
            &SizeClass::ALL[..]
        };
        for class in classes {
            s.free_slots[class.index()] = self.allocator.free_slots(*class) as u64;
        }
        s.reserved_slots = self.reserved.slots;
        s.reserved_bytes = self.reserved.bytes;
        s.commit_seq = self.header.commit_seq;
        s.outbox_waiting = self.outbox_len() as u64;
        (s.log_bytes_used, s.log_records) = self.log_figures();
        if self.config.bugs.miscount_data_bytes() {
            s.data_bytes = s.used_bytes;
        }
        s
    }
}
