//! [`LogRing`]: the space accounting of the log region (pure; the controller owns one).
//!
//! Three positions, in log order: `live_start` (the oldest record a crash may still need:
//! replay starts at or after it), `committed` (after the last record whose batch is committed
//! to the index) and `next` (where the next record goes). The live records are
//! `[live_start, next)`, in sectors modulo the region size; one sector always stays free so
//! that `next == live_start` means the log is empty.
//!
//! Rules it enforces (asserted):
//! - (R1) a record is placed only in free sectors, never over a live one;
//! - (R2) `live_start` moves only when a checkpoint has *returned*, and then only to the
//!   `committed` position recorded when that checkpoint began (every index commit made before
//!   the checkpoint began is durable once it returns; later ones may not be);
//! - (R3) a record never wraps inside itself: when it does not fit before the end of the
//!   region, a one-sector wrap record goes at `next` and the record at sector 0.
//!
//! It never does I/O and never decides *when* to checkpoint (the controller does).

use super::{LogPos, LOG_SECTORS_MIN};

/// Where a record of a given size goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Placement {
    /// The sector of the wrap record to write first, when the record does not fit before the
    /// end of the region.
    pub wrap_at: Option<u64>,
    /// Where the record itself starts, with its sequence number.
    pub at: LogPos,
    pub sectors: u64,
}

/// The log has no room for a record this size until a checkpoint returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("log full: {needed_sectors} sectors needed, {free_sectors} free")]
pub struct LogFull {
    pub needed_sectors: u64,
    pub free_sectors: u64,
}

/// Whether a checkpoint is running, and what it will free when it returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CheckpointState {
    Idle,
    /// Began when everything before `target` was committed to the index.
    InFlight {
        target: LogPos,
    },
}

#[derive(Clone, Debug)]
pub struct LogRing {
    size_sectors: u64,
    live_start: LogPos,
    committed: LogPos,
    next: LogPos,
    checkpoint: CheckpointState,
}

impl LogRing {
    /// An empty log whose next record is `start` (recovery leaves the log empty).
    pub fn new(size_sectors: u64, start: LogPos) -> LogRing {
        assert!(size_sectors >= LOG_SECTORS_MIN, "{size_sectors}");
        assert!(start.sector < size_sectors && start.seq >= 1, "{start:?}");
        let ring = LogRing {
            size_sectors,
            live_start: start,
            committed: start,
            next: start,
            checkpoint: CheckpointState::Idle,
        };
        ring.check_invariants();
        ring
    }

    pub fn size_sectors(&self) -> u64 {
        self.size_sectors
    }
    pub fn live_start(&self) -> LogPos {
        self.live_start
    }
    pub fn committed(&self) -> LogPos {
        self.committed
    }
    pub fn next(&self) -> LogPos {
        self.next
    }
    pub fn checkpoint(&self) -> CheckpointState {
        self.checkpoint
    }

    /// The largest record, in sectors, the controller may ask to place (a quarter of the
    /// region, so a batch never waits for more than a fraction of the log).
    pub fn record_sectors_max(&self) -> u64 {
        self.size_sectors / 4
    }

    /// Sectors in `[live_start, next)`.
    pub fn used_sectors(&self) -> u64 {
        self.distance(self.live_start.sector, self.next.sector)
    }

    /// Sectors a record may still use (one always stays free).
    pub fn free_sectors(&self) -> u64 {
        self.size_sectors - 1 - self.used_sectors()
    }

    /// Records live in the log (between `live_start` and `next`).
    pub fn live_records(&self) -> u64 {
        self.next.seq - self.live_start.seq
    }

    fn distance(&self, from: u64, to: u64) -> u64 {
        (to + self.size_sectors - from) % self.size_sectors
    }

    /// Where a record of `sectors` sectors would go; `LogFull` when it would overwrite a live
    /// record. Does not change anything: call [`LogRing::appended`] once it is written.
    pub fn place(&self, sectors: u64) -> Result<Placement, LogFull> {
        assert!(
            sectors >= 1 && sectors <= self.record_sectors_max(),
            "{sectors}"
        );
        let to_end = self.size_sectors - self.next.sector;
        let (wrap_at, start, needed) = if sectors <= to_end {
            (None, self.next.sector, sectors)
        } else {
            // The wrap record and the unused tail are spent until live_start passes them.
            (Some(self.next.sector), 0, to_end + sectors)
        };
        let free = self.free_sectors();
        if needed > free {
            return Err(LogFull {
                needed_sectors: needed,
                free_sectors: free,
            });
        }
        let at = LogPos {
            seq: self.next.seq,
            sector: start,
        };
        Ok(Placement {
            wrap_at,
            at,
            sectors,
        })
    }

    /// The record of `placement` (and its wrap record) is written: `next` moves past it.
    pub fn appended(&mut self, placement: Placement) {
        let fresh = self.place(placement.sectors).expect("placed before");
        assert_eq!(fresh, placement, "the ring changed since `place`");
        self.next = LogPos {
            seq: placement.at.seq + 1,
            sector: (placement.at.sector + placement.sectors) % self.size_sectors,
        };
        self.check_invariants();
    }

    /// The index commit of every record written so far succeeded.
    pub fn commit_done(&mut self) {
        assert!(self.committed.seq <= self.next.seq);
        self.committed = self.next;
        self.check_invariants();
    }

    /// A checkpoint begins now: everything committed so far will be durable when it returns.
    /// Returns the position it will free up to.
    pub fn begin_checkpoint(&mut self) -> LogPos {
        assert_eq!(
            self.checkpoint,
            CheckpointState::Idle,
            "one checkpoint at a time"
        );
        let target = self.committed;
        self.checkpoint = CheckpointState::InFlight { target };
        self.check_invariants();
        target
    }

    /// The checkpoint returned successfully: the space before its target is free again (R2).
    /// A failed checkpoint frees nothing; call [`LogRing::checkpoint_failed`].
    pub fn checkpoint_returned(&mut self) {
        let CheckpointState::InFlight { target } = self.checkpoint else {
            panic!("no checkpoint in flight");
        };
        assert!(target.seq >= self.live_start.seq && target.seq <= self.committed.seq);
        self.live_start = target;
        self.checkpoint = CheckpointState::Idle;
        self.check_invariants();
    }

    pub fn checkpoint_failed(&mut self) {
        assert!(matches!(self.checkpoint, CheckpointState::InFlight { .. }));
        self.checkpoint = CheckpointState::Idle;
    }

    pub fn check_invariants(&self) {
        let (l, c, n) = (self.live_start, self.committed, self.next);
        assert!(l.seq <= c.seq && c.seq <= n.seq, "{l:?} {c:?} {n:?}");
        for p in [l, c, n] {
            assert!(p.sector < self.size_sectors, "{p:?}");
        }
        // Positions are in log order: committed lies within [live_start, next].
        let used = self.used_sectors();
        assert!(used < self.size_sectors, "one sector always free");
        assert!(
            self.distance(l.sector, c.sector) <= used,
            "{l:?} {c:?} {n:?}"
        );
        assert_eq!(used == 0, l.seq == n.seq, "used sectors hold records");
        if let CheckpointState::InFlight { target } = self.checkpoint {
            assert!(target.seq >= l.seq && target.seq <= c.seq, "{target:?}");
        }
    }
}
