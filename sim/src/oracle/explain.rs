//! The evidence that may explain an error answer: the faults the fake ring injected and not
//! yet used up, whether the controller latched, and the stored bytes themselves.
//!
//! Owns: the accounting of injected faults against the `500`s they explain. Attribution is per
//! request: a fault explains a `500` only if it was injected on the ring of the worker that
//! answered, during the request's life (after it was sent), and each fault explains at most
//! one answer. Never does: inject a fault, or change the model.

use engine::hash::BlockHash;
use engine::meta::IndexEntry;

use crate::fake::disk::Disk;
use crate::fake::ring::{FaultLog, Injected};
use crate::store::SimStore;

/// Where and since when a request's own I/O ran: the worker that answered it, and the moment it
/// was sent.
#[derive(Clone, Copy, Debug)]
pub struct OwnIo {
    pub worker: usize,
    pub since_ns: u64,
}

/// Injected faults that may explain an error answer (those not used up yet).
pub struct Explain<'a> {
    pub log: &'a mut FaultLog,
    /// The controller may have latched failed (sync or commit failure) since the last start.
    pub latched: bool,
    /// A batch failed to become durable in the background since the last start.
    pub durable_failed: bool,
    /// The running node's store (none between a crash and the restart).
    pub store: Option<&'a SimStore>,
    pub disk: &'a Disk,
    /// The node serves reads unchecked (`--verify-reads off`).
    pub reads_unverified: bool,
}

impl Explain<'_> {
    /// The stored bytes of `hash` (at its committed slot) do not hash to it.
    pub fn stored_corrupt(&self, hash: &BlockHash) -> bool {
        let Some(e) = self.indexed(hash) else {
            return false;
        };
        let mut bytes = vec![0u8; e.len as usize];
        self.disk.read(e.slot.offset, &mut bytes);
        BlockHash::of(&bytes) != *hash
    }

    /// Whether a `200`/`206` body that is not bytes `[from, from + body.len())` of block `hash`
    /// is explained: the node does not verify reads (SPEC guarantee 2 with `--verify-reads
    /// off`: what is read is served), the model says the stored copy may be damaged through
    /// no fault of the engine (`damaged`: `Disk::may_differ` at a recovery or after a
    /// misdirected write; with relaxed durability, a power loss that took bytes a failed sync
    /// had dropped), and the body is exactly what the block's own committed slot holds there
    /// now, so no other block's slot was read.
    pub fn unverified_damage(
        &self,
        hash: &BlockHash,
        damaged: bool,
        from: u64,
        body: &[u8],
    ) -> bool {
        if !self.reads_unverified || !damaged {
            return false;
        }
        let Some(e) = self.indexed(hash) else {
            return false;
        };
        if from + body.len() as u64 > u64::from(e.len) {
            return false;
        }
        let mut bytes = vec![0u8; body.len()];
        self.disk.read(e.slot.offset + from, &mut bytes);
        bytes == body
    }

    /// The committed index entry of `hash`, if a node runs.
    pub fn indexed(&self, hash: &BlockHash) -> Option<IndexEntry> {
        self.store.and_then(|s| s.committed_entry(hash))
    }

    /// A read fault injected on the request's own I/O: taken (it explains nothing else).
    pub fn read_fault(&mut self, own: OwnIo) -> bool {
        take_own(&mut self.log.reads, own)
    }

    /// A write fault injected on the request's own I/O: taken.
    pub fn write_fault(&mut self, own: OwnIo) -> bool {
        take_own(&mut self.log.writes, own)
    }
}

/// Takes the oldest fault of `own.worker` injected since `own.since_ns`, if any.
fn take_own(faults: &mut Vec<Injected>, own: OwnIo) -> bool {
    let found = faults
        .iter()
        .position(|f| f.worker == own.worker && f.at_ns >= own.since_ns);
    if let Some(i) = found {
        let taken = faults.remove(i);
        debug_assert!(taken.at_ns >= own.since_ns);
    }
    found.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_explains_only_a_request_of_its_worker_sent_before_it_and_only_once() {
        let fault = Injected {
            worker: 1,
            at_ns: 100,
        };
        let mut faults = vec![fault];
        let own = |worker, since_ns| OwnIo { worker, since_ns };
        assert!(!take_own(&mut faults, own(0, 50)), "another worker's fault");
        assert!(
            !take_own(&mut faults, own(1, 150)),
            "a fault before the request"
        );
        assert!(take_own(&mut faults, own(1, 50)));
        assert!(!take_own(&mut faults, own(1, 50)), "used up");
    }
}
