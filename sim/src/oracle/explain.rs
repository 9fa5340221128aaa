//! The evidence that may explain an error answer: the faults the fake ring injected (and how
//! many of them answers have already used up), whether the controller latched, and the stored
//! bytes themselves.
//!
//! Owns: the accounting of injected faults against the `500`s they explain; each injected read
//! or write fault explains at most one answer. Never does: inject a fault, or change the model.

use engine::hash::BlockHash;
use engine::meta::SharedImage;

use crate::fake::disk::Disk;
use crate::fake::ring::FaultCounters;

/// Injected faults that may explain an error answer, and how many were used up.
pub struct Explain<'a> {
    pub counters: &'a FaultCounters,
    pub read_used: &'a mut u64,
    pub write_used: &'a mut u64,
    /// The controller may have latched failed (sync or commit failure) since the last start.
    pub latched: bool,
    /// A batch failed to become durable in the background since the last start.
    pub durable_failed: bool,
    pub image: &'a SharedImage,
    pub disk: &'a Disk,
}

impl Explain<'_> {
    /// The stored bytes of `hash` (at its committed slot) do not hash to it.
    pub fn stored_corrupt(&self, hash: &BlockHash) -> bool {
        let entry = {
            let img = self.image.lock().expect("image lock");
            img.committed.index.get(hash).copied()
        };
        let Some(e) = entry else { return false };
        let mut bytes = vec![0u8; e.len as usize];
        self.disk.read(e.slot.offset, &mut bytes);
        BlockHash::of(&bytes) != *hash
    }

    pub fn read_fault(&mut self) -> bool {
        if self.counters.read_faults > *self.read_used {
            *self.read_used += 1;
            return true;
        }
        false
    }

    pub fn write_fault(&mut self) -> bool {
        if self.counters.write_faults > *self.write_used {
            *self.write_used += 1;
            return true;
        }
        false
    }
}
