//! [`LogState`]: the index's record of the write-ahead log (issue 18), key `b"log"` of the
//! `meta` table. Every transaction that goes with a log record writes it next to the header,
//! so any state of the index (steady after power loss, weak after a process crash) says
//! exactly where replay starts: at `next`, the record after the last one this state includes.
//!
//! Fixed little-endian encoding, 40 bytes, with a validating decoder (fuzzed by
//! `meta_record_decode`): it never panics, and what decodes re-encodes to the same bytes.
//!
//! | bytes | field |
//! |---|---|
//! | 0..2 | log format version (`wal::LOG_FORMAT_VERSION`) |
//! | 2..8 | zero |
//! | 8..16 | region size in sectors (`>= wal::LOG_SECTORS_MIN`) |
//! | 16..24 | `next.seq` (`>= 1`) |
//! | 24..32 | `next.sector` (`< region size`) |
//! | 32..40 | run id of the records from `next` on |

use super::MetaError;
use crate::wal::{LogPos, LOG_FORMAT_VERSION, LOG_SECTORS_MIN};

pub const LOG_STATE_BYTES: usize = 40;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LogState {
    pub log_sectors: u64,
    /// Where replay starts: the first record this index state does not include.
    pub next: LogPos,
    pub run_id: u64,
}

impl LogState {
    pub fn encode(&self) -> [u8; LOG_STATE_BYTES] {
        assert!(self.log_sectors >= LOG_SECTORS_MIN, "{self:?}");
        assert!(
            self.next.seq >= 1 && self.next.sector < self.log_sectors,
            "{self:?}"
        );
        let mut out = [0u8; LOG_STATE_BYTES];
        out[0..2].copy_from_slice(&LOG_FORMAT_VERSION.to_le_bytes());
        out[8..16].copy_from_slice(&self.log_sectors.to_le_bytes());
        out[16..24].copy_from_slice(&self.next.seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.next.sector.to_le_bytes());
        out[32..40].copy_from_slice(&self.run_id.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LogState, MetaError> {
        let b: &[u8; LOG_STATE_BYTES] = bytes
            .try_into()
            .map_err(|_| MetaError::Corrupt("log state length"))?;
        if u16::from_le_bytes([b[0], b[1]]) != LOG_FORMAT_VERSION {
            return Err(MetaError::Corrupt("log state version"));
        }
        if b[2..8] != [0; 6] {
            return Err(MetaError::Corrupt("log state padding"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let state = LogState {
            log_sectors: u64_at(8),
            next: LogPos {
                seq: u64_at(16),
                sector: u64_at(24),
            },
            run_id: u64_at(32),
        };
        if state.log_sectors < LOG_SECTORS_MIN {
            return Err(MetaError::Corrupt("log state region size"));
        }
        if state.next.seq == 0 || state.next.sector >= state.log_sectors {
            return Err(MetaError::Corrupt("log state position"));
        }
        debug_assert_eq!(&state.encode(), b);
        Ok(state)
    }
}

/// The store keeps the log record like any other: a transaction sees its own write, a dropped
/// transaction changes nothing, a commit survives a process crash.
pub(super) fn conformance_log_state<H: super::StoreHarness>(harness: &mut H) {
    use super::{CrashKind, MetaRead, MetaStore, MetaTxn};
    let mut store = harness.create();
    assert_eq!(store.read().unwrap().log_state().unwrap(), None);
    let state = LogState {
        log_sectors: LOG_SECTORS_MIN,
        next: LogPos { seq: 5, sector: 3 },
        run_id: 42,
    };
    {
        let mut txn = store.begin().unwrap();
        txn.set_log_state(&state).unwrap();
        assert_eq!(txn.log_state().unwrap(), Some(state), "own write");
        drop(txn);
    }
    assert_eq!(store.read().unwrap().log_state().unwrap(), None, "dropped");
    {
        let mut txn = store.begin().unwrap();
        txn.set_log_state(&state).unwrap();
        txn.commit(false).unwrap();
    }
    let store = harness.crash_and_reopen(store, CrashKind::Process);
    assert_eq!(store.read().unwrap().log_state().unwrap(), Some(state));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_state_round_trips_and_rejects_corruption() {
        let s = LogState {
            log_sectors: 1024,
            next: LogPos {
                seq: 77,
                sector: 1023,
            },
            run_id: 0xfeed,
        };
        assert_eq!(LogState::decode(&s.encode()), Ok(s));
        let mut bad = s.encode();
        bad[24..32].copy_from_slice(&1024u64.to_le_bytes());
        assert!(LogState::decode(&bad).is_err(), "position past the region");
        let mut bad = s.encode();
        bad[0] = 9;
        assert!(LogState::decode(&bad).is_err(), "version");
        let mut bad = s.encode();
        bad[16..24].fill(0);
        assert!(LogState::decode(&bad).is_err(), "seq 0");
        assert!(LogState::decode(&[0u8; 39]).is_err());
    }
}
