//! The event trace: every decision and observation of a run, folded into one hash.
//!
//! Each event is a kind name and up to four numbers (virtual time first). The hash (FNV-1a, 64
//! bits, over the kind's bytes and the numbers' little-endian bytes) is what `PASSED` prints:
//! two runs of one seed must produce the same hash, or something in the simulator or the engine
//! is not deterministic. With `--trace` the events are also kept as text lines. Formatting
//! happens only when text is wanted, so tracing costs a few multiplications per event.
//!
//! Also here: the numbers an event carries for a hash, a message, a reply and an op
//! ([`hash_prefix`], [`message_detail`], [`reply_detail`], [`op_code`]). Owns: the trace's
//! format and hash. Never does: decide anything; it sits at the bottom and depends on nothing
//! of the simulator.

use engine::io::Op;
use engine::message::{ToController, ToWorker};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Most text lines kept (the hash covers every event regardless).
pub const TRACE_LINES_MAX: usize = 5_000_000;

#[derive(Debug)]
pub struct Trace {
    hash: u64,
    events: u64,
    lines: Option<Vec<String>>,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            events: 0,
            lines: keep_lines.then(Vec::new),
        }
    }

    fn fold(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
    }

    /// Records one event.
    pub fn ev(&mut self, now: u64, kind: &'static str, args: [u64; 4]) {
        self.events += 1;
        self.fold(kind.as_bytes());
        self.fold(&now.to_le_bytes());
        for a in args {
            self.fold(&a.to_le_bytes());
        }
        if let Some(lines) = &mut self.lines {
            if lines.len() < TRACE_LINES_MAX {
                lines.push(format!(
                    "{:>14} {kind:<14} {} {} {} {}",
                    now, args[0], args[1], args[2], args[3]
                ));
            }
        }
    }

    /// Records a free-text note (failures, crash reasons); hashed like any event.
    pub fn note(&mut self, now: u64, text: &str) {
        self.events += 1;
        self.fold(text.as_bytes());
        self.fold(&now.to_le_bytes());
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{now:>14} note           {text}"));
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }
}

/// The first 8 bytes of a hash, for the trace.
pub fn hash_prefix(h: &engine::hash::BlockHash) -> u64 {
    u64::from_be_bytes(h.0[..8].try_into().expect("8 bytes"))
}

/// A message's request id and its most telling field (hash prefix, slot offset, address number).
pub fn message_detail(m: &ToController) -> (u64, u64) {
    match *m {
        ToController::Allocate {
            request,
            class,
            count,
            ..
        } => (request, u64::from(class.as_u8()) << 16 | u64::from(count)),
        ToController::Occupy { request, hash, .. } => (request, hash_prefix(&hash)),
        ToController::Release { request, hash, .. } => (request, hash_prefix(&hash)),
        ToController::ReturnSlot { request, slot, .. } => (request, slot.offset),
        ToController::ReaderHorizon { version, .. } => (0, version),
    }
}

/// A reply's slot offset (plus one) where it has one.
pub fn reply_detail(m: &ToWorker) -> u64 {
    match *m {
        ToWorker::Allocated { slot, .. } => slot.offset + 1,
        _ => 0,
    }
}

pub fn op_code(op: &Op) -> u64 {
    match op {
        Op::Accept => 1,
        Op::Recv { .. } => 2,
        Op::Send { .. } => 3,
        Op::ReadAt { .. } => 4,
        Op::WriteAt { .. } => 5,
        Op::Close { .. } => 6,
        Op::Cancel { .. } => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_events_same_hash_and_order_matters() {
        let mut a = Trace::new(false);
        let mut b = Trace::new(true);
        a.ev(1, "x", [1, 2, 3, 4]);
        b.ev(1, "x", [1, 2, 3, 4]);
        assert_eq!(a.hash(), b.hash());
        a.ev(2, "y", [0; 4]);
        a.ev(3, "z", [0; 4]);
        b.ev(3, "z", [0; 4]);
        b.ev(2, "y", [0; 4]);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(b.lines().unwrap().len(), 3);
    }
}
