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

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use engine::controller::{audit_index, IndexProblem};
use engine::hash::BlockHash;
use engine::meta::{Header, MetaStore, MetaTxn};

use crate::datafile::DATA_FILE_NAME;
use crate::identity::{IndexFile, Plan};
use crate::mdbx::MdbxStore;
use crate::store::{self, Access, Writable};

#[derive(Debug, Default)]
pub struct Report {
    pub blocks: u64,
    pub data_bytes: u64,
    pub used_bytes: u64,
    pub reservations: u64,
    pub capacity_bytes: u64,
    pub corrupt: Vec<BlockHash>,
    pub problems: Vec<String>,
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
    let Some(header) = header_to_audit(dir, &store, &mut report)? else {
        return Ok(report);
    };
    let data_path = dir.join(DATA_FILE_NAME);
    let data = File::open(&data_path)
        .with_context(|| format!("opening data file {}", data_path.display()))?;
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

/// The header of a directory `serve` would open (or a refusal as the error); `None` when
/// there is nothing to audit (no data file and no blocks yet), with a note.
fn header_to_audit(dir: &Path, store: &MdbxStore, report: &mut Report) -> Result<Option<Header>> {
    Ok(Some(match store::plan(dir, store)? {
        Plan::CreateStore => bail!(
            "{} has no index header and no data file: not a data directory",
            dir.display()
        ),
        Plan::CreateDataFile { header } => {
            report.notes.push(
                "no data file and no blocks: a store whose creation stopped half-way (the next \
                 `serve` creates the data file)"
                    .into(),
            );
            report.capacity_bytes = header.capacity_bytes;
            return Ok(None);
        }
        Plan::WriteTrailer { header } => {
            report.notes.push(
                "the data file has no identity trailer yet (written by an earlier version, or \
                 lost to a power loss): the next `serve` appends it"
                    .into(),
            );
            header
        }
        Plan::Open { header, .. } => header,
    }))
}
