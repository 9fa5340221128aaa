//! [`audit`]: the log's part of `buddy-blocks check`. It walks the records pending replay like
//! [`recover`](super::recover) does, without applying anything, and reports what would be
//! damage rather than an ordinary crash:
//! - a pending occupy whose bytes do not hash to its address, in any record but the last (the
//!   last may legitimately describe blocks that never reached the disk: its batch was never
//!   acknowledged);
//! - a well-formed record of this run, anywhere in the region, with a sequence number above
//!   where the walk ended: a later record exists although an earlier one is missing, so log
//!   space was reused too early (or the tail was lost after a flush);
//! - a log record in the index that does not match the region.
//!
//! Pending records and a torn tail are reported as figures, not problems. Never writes;
//! never panics on bytes on disk.

use crate::meta::MetaRead;

use super::record::{decode_header, LogOp, RunStamp};
use super::recover::RecoverError;
use super::scan::{verify_blocks, BlockReader, LogDisk, ScanEnd, Scanner};
use super::{LogPos, SECTOR_BYTES};

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AuditProblem {
    RegionMismatch {
        index: u64,
        disk: u64,
    },
    /// A pending occupy (not in the last record) whose bytes are not its block.
    BlockMismatch {
        log_seq: u64,
        op_index: usize,
    },
    /// A record of this run past the end of the walk with a higher sequence number.
    Gap {
        sector: u64,
        found_seq: u64,
        end_seq: u64,
    },
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuditReport {
    /// Where replay would start, and why it would stop.
    pub start: LogPos,
    pub end: ScanEnd,
    /// Records and ops the next start would replay.
    pub pending_records: u64,
    pub pending_ops: u64,
    /// Occupies of the last record whose bytes are not on disk (dropped by replay).
    pub unflushed_occupies: u64,
    pub problems: Vec<AuditProblem>,
}

/// Audits the log against the index state `read` (see the module doc). A store without a log
/// record is [`RecoverError::NoLogState`].
pub fn audit<R: MetaRead, D: LogDisk, B: BlockReader>(
    read: &R,
    disk: &mut D,
    blocks: &mut B,
) -> Result<AuditReport, RecoverError> {
    let header = read.header()?.ok_or(RecoverError::NoHeader)?;
    let state = read.log_state()?.ok_or(RecoverError::NoLogState)?;
    let mut report = AuditReport {
        start: state.next,
        end: ScanEnd::Open,
        pending_records: 0,
        pending_ops: 0,
        unflushed_occupies: 0,
        problems: Vec::new(),
    };
    if state.log_sectors != disk.log_sectors() {
        report.problems.push(AuditProblem::RegionMismatch {
            index: state.log_sectors,
            disk: disk.log_sectors(),
        });
        return Ok(report);
    }
    let stamp = RunStamp {
        run_id: state.run_id,
        node_id: header.node_id,
    };
    let mut scanner = Scanner::new(disk, stamp, state.next);
    let mut buf = Vec::new();
    let mut pending = scanner.next_record()?;
    while let Some(current) = pending {
        let following = scanner.next_record()?;
        let ok = verify_blocks(blocks, &current.record, &mut buf)?;
        report.pending_records += 1;
        report.pending_ops += current.record.ops.len() as u64;
        for (op_index, _) in ok.iter().enumerate().filter(|(_, ok)| !**ok) {
            debug_assert!(matches!(current.record.ops[op_index], LogOp::Occupy { .. }));
            if following.is_some() {
                let log_seq = current.record.header.log_seq;
                report
                    .problems
                    .push(AuditProblem::BlockMismatch { log_seq, op_index });
            } else {
                report.unflushed_occupies += 1;
            }
        }
        pending = following;
    }
    report.end = scanner.end();
    let end = report.end.at().expect("the walk ended");
    find_gaps(disk, stamp, end, &mut report.problems)?;
    Ok(report)
}

/// Every sector start holding a record header of `stamp` with a sequence number above `end`'s.
fn find_gaps<D: LogDisk>(
    disk: &mut D,
    stamp: RunStamp,
    end: LogPos,
    problems: &mut Vec<AuditProblem>,
) -> Result<(), RecoverError> {
    let mut sector_buf = vec![0u8; SECTOR_BYTES as usize];
    for sector in 0..disk.log_sectors() {
        disk.read_log(sector, &mut sector_buf)?;
        let Ok(h) = decode_header(&sector_buf) else {
            continue;
        };
        if h.stamp == stamp && h.log_seq > end.seq {
            problems.push(AuditProblem::Gap {
                sector,
                found_seq: h.log_seq,
                end_seq: end.seq,
            });
        }
    }
    Ok(())
}
