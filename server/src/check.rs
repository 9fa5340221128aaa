//! `buddy-blocks check`: an offline audit of a data directory.
//!
//! Refuses to run while a server holds the directory (the index is opened exclusively), and
//! refuses a directory whose index and data file do not belong together, as `serve` does
//! ([`crate::identity`]). With [`Access::ReadOnly`] it opens nothing for writing (an audit of a
//! read-only copy) and cannot repair. Checks
//! that every index entry's bytes hash (SHA-256) to its key, that no two slots overlap and all
//! lie inside the capacity, that reservations do not overlap stored blocks, and that the
//! allocator's accounting adds up to the capacity. With `repair`, entries whose bytes are
//! corrupt are dropped (and listed) so the node can serve again and re-fetch them elsewhere.
//!
//! The write-ahead log (issue 18) is audited first (`engine::wal::audit`): records pending
//! replay and a torn tail are notes (an ordinary crash leaves them), a gap (a record of this
//! run past the end with a higher sequence number), a pending block whose bytes are not its
//! hash outside the last record, or a region that does not match the index are problems. Then
//! a read-write `check` replays the log exactly as `serve` would (and says so), so the index
//! audit sees what the next start serves; `--read-only` replays nothing and notes that the
//! index audit does not include the pending records.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use engine::controller::{audit_index, IndexProblem};
use engine::hash::BlockHash;
use engine::meta::{Header, LogState, MetaStore, MetaTxn};
use engine::wal::{self, AuditProblem, SECTOR_BYTES};

use crate::datafile::DATA_FILE_NAME;
use crate::identity::{IndexFile, Plan};
use crate::log_file::DiskReads;
use crate::mdbx::MdbxStore;
use crate::store::{self, Access, Writable};
use crate::trailer::Layout;

#[derive(Debug, Default)]
pub struct Report {
    pub blocks: u64,
    pub data_bytes: u64,
    pub used_bytes: u64,
    pub reservations: u64,
    pub capacity_bytes: u64,
    pub corrupt: Vec<BlockHash>,
    pub problems: Vec<String>,
    /// Records in the write-ahead log not yet in the index (before any replay by `check`).
    pub log_pending_records: u64,
    /// Facts worth saying that are not problems.
    pub notes: Vec<String>,
    pub repaired: u64,
}

/// Whether `check` may change the index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Repair {
    /// Audit only.
    No,
    /// Drop the index entries of corrupt blocks.
    DropCorrupt,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.problems.is_empty()
    }
}

pub fn run(dir: &Path, map_size: u64, repair: Repair, access: Access) -> Result<Report> {
    assert!(
        !(repair == Repair::DropCorrupt && access == Access::ReadOnly),
        "the command line refuses --repair with --read-only"
    );
    crate::sigbus::install(dir);
    if store::index_file(dir)? == IndexFile::Absent && !crate::datafile::exists(dir)? {
        bail!(
            "{} holds no index and no data file: not a data directory (nothing to check)",
            dir.display()
        );
    }
    let mut report = Report::default();
    let access = choose_access(dir, access, repair, &mut report)?;
    if access == Access::ReadWrite {
        // The audit goes on after a failed sync: it is how the blocks lost to it are found
        // (and, with --repair, dropped).
        if let Err(e) = crate::datafile::sync_before_open(dir) {
            report.problems.push(format!("{e:#}"));
        }
    }
    let mut store = store::open_index(dir, map_size, access)?;
    let Some((header, layout)) = header_to_audit(dir, &store, &mut report)? else {
        return Ok(report);
    };
    let data_path = dir.join(DATA_FILE_NAME);
    let data = File::open(&data_path)
        .with_context(|| format!("opening data file {}", data_path.display()))?;
    if let Some(layout) = layout {
        check_log(&mut store, &data, layout, access, &mut report)?;
    }
    {
        let read = store.read().map_err(|e| anyhow!("{e}"))?;
        report.capacity_bytes = header.capacity_bytes;
        let mut buf = vec![0u8; 512 * 1024];
        let mut io_error = None;
        let mut corrupt = Vec::new();
        // The engine's one index audit (startup's and the simulator's), re-hashing each block's
        // bytes on the way.
        let audit = audit_index(&read, header.capacity_bytes, |hash, entry| {
            let bytes = &mut buf[..entry.len as usize];
            if let Err(e) = data.read_exact_at(bytes, entry.slot.offset) {
                io_error.get_or_insert(format!("{hash}: reading: {e}"));
                corrupt.push(*hash);
                return;
            }
            if BlockHash::of(bytes) != *hash {
                corrupt.push(*hash);
            }
        })
        .map_err(|e| anyhow!("{e}"))?;
        report.blocks = audit.blocks;
        report.data_bytes = audit.data_bytes;
        report.used_bytes = audit.used_bytes;
        report.reservations = audit.reservations.len() as u64;
        report.corrupt = corrupt;
        let (blocks, rest): (Vec<_>, Vec<_>) = audit.problems.iter().partition(|p| {
            !matches!(
                p,
                IndexProblem::Reservation { .. } | IndexProblem::Accounting
            )
        });
        report
            .problems
            .extend(blocks.iter().map(ToString::to_string));
        if let Some(e) = io_error {
            report.problems.push(e);
        }
        report.problems.extend(rest.iter().map(ToString::to_string));
    }
    if repair == Repair::DropCorrupt && !report.corrupt.is_empty() {
        let mut txn = store.begin().map_err(|e| anyhow!("{e}"))?;
        for hash in &report.corrupt {
            if txn.delete(hash).map_err(|e| anyhow!("{e}"))? {
                report.repaired += 1;
            }
        }
        txn.commit(true).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(report)
}

/// The access the audit uses: read-only when asked, or when the index is not writable (then
/// with a note; `--repair` is refused).
fn choose_access(dir: &Path, asked: Access, repair: Repair, report: &mut Report) -> Result<Access> {
    Ok(match (asked, store::index_writable(dir), repair) {
        (Access::ReadWrite, Writable::No, Repair::No) => {
            report.notes.push(
                "the index is not writable (a read-only copy or mount): audited read-only".into(),
            );
            Access::ReadOnly
        }
        (Access::ReadWrite, Writable::No, Repair::DropCorrupt) => bail!(
            "{}: the index is not writable, so --repair cannot drop entries; audit it with \
             `buddy-blocks check --read-only`, or repair a writable copy",
            dir.display()
        ),
        (asked, _, _) => asked,
    })
}

/// The log's part: audit it, then (read-write) replay it as `serve` would.
fn check_log(
    store: &mut MdbxStore,
    data: &File,
    layout: Layout,
    access: Access,
    report: &mut Report,
) -> Result<()> {
    let reads = DiskReads::open(data).context("opening the data file for the log's audit")?;
    let mut log = reads.log(layout.capacity_bytes, layout.log_sectors());
    let mut blocks = reads.blocks(layout.capacity_bytes);
    let read = store.read().map_err(|e| anyhow!("{e}"))?;
    let audit = match wal::audit(&read, &mut log, &mut blocks) {
        Ok(audit) => audit,
        Err(e) => {
            report.problems.push(format!("the write-ahead log: {e}"));
            return Ok(());
        }
    };
    drop(read);
    report.log_pending_records = audit.pending_records;
    if audit.pending_records > 0 {
        report.notes.push(format!(
            "the write-ahead log holds {} records ({} ops) not yet in the index (a crash or \
             kill before a checkpoint; the next start replays them); {} occupies of the last \
             record have no bytes on disk (never acknowledged; dropped by the replay)",
            audit.pending_records, audit.pending_ops, audit.unflushed_occupies
        ));
    }
    report
        .problems
        .extend(audit.problems.iter().map(|p| match p {
            AuditProblem::RegionMismatch { index, disk } => format!(
            "the write-ahead log: the index records a region of {index} sectors, the data file \
             has {disk}"
        ),
            AuditProblem::BlockMismatch { log_seq, op_index } => format!(
            "the write-ahead log: record {log_seq}, op {op_index}: a block acknowledged before \
             a later record does not hash to its address (its bytes were lost or damaged)"
        ),
            AuditProblem::Gap {
                sector,
                found_seq,
                end_seq,
            } => format!(
                "the write-ahead log: record {found_seq} at sector {sector} lies past the end of \
             the replay (record {end_seq} is missing): log space was reused too early, or \
             records were lost after their flush"
            ),
        }));
    if access == Access::ReadOnly {
        if audit.pending_records > 0 {
            report.notes.push(
                "read-only: the log was not replayed, so the index audit below does not \
                 include its pending records"
                    .into(),
            );
        }
        return Ok(());
    }
    match store::recover(store, data, layout) {
        Ok(out) => report.notes.push(format!(
            "replayed the write-ahead log into the index first, as `serve` would: {} records, \
             {} ops, {} occupies dropped",
            out.records, out.ops, out.occupies_dropped
        )),
        Err(e) => report.problems.push(format!("{e:#}")),
    }
    Ok(())
}

/// The header of a directory `serve` would open (or a refusal as the error), with the data
/// file's layout when its log can be audited; `None` when there is nothing to audit (no data
/// file and no blocks yet), with a note.
fn header_to_audit(
    dir: &Path,
    store: &MdbxStore,
    report: &mut Report,
) -> Result<Option<(Header, Option<Layout>)>> {
    Ok(Some(match store::plan(dir, store)? {
        Plan::CreateStore => bail!(
            "{} has no index header and no data file: not a data directory",
            dir.display()
        ),
        Plan::CreateDataFile { header, .. } => {
            report.notes.push(
                "no data file and no blocks: a store whose creation stopped half-way (the next \
                 `serve` creates the data file)"
                    .into(),
            );
            report.capacity_bytes = header.capacity_bytes;
            return Ok(None);
        }
        Plan::WriteTrailer { header, .. } => {
            report.notes.push(
                "the data file has no identity trailer yet (written by an earlier version, or \
                 lost to a power loss): the next `serve` appends it; the log is not audited"
                    .into(),
            );
            (header, None)
        }
        Plan::UpgradeLog { header, .. } => {
            report.notes.push(
                "a store of format 1 (before the write-ahead log): the next `serve` upgrades it \
                 in place (adds the log region); `check` does not"
                    .into(),
            );
            (header, None)
        }
        Plan::Open {
            header,
            trailer,
            log,
        } => (header, Some(layout_of(trailer.capacity_bytes, &log))),
    }))
}

fn layout_of(capacity_bytes: u64, log: &LogState) -> Layout {
    Layout::new(capacity_bytes, log.log_sectors * SECTOR_BYTES)
}
