//! Opening a data directory for `serve` and `check`: looks at both files, asks
//! [`identity::plan`] what may be done, and does exactly that.
//!
//! Creation order (so that no crash leaves an ambiguous directory): the index header and its
//! empty log record are committed durably first; then the data file is created under a
//! temporary name, preallocated (log region included), its trailer written and synced, renamed
//! into place and the directory synced. Upgrade from format 1 (issue 18): the data file grows
//! by the log region and its version-2 trailer is placed (synced), then one durable commit of
//! the new header with an empty `LogState`; a crash between them is finished by the next start
//! (`identity::Plan::UpgradeLog`). Then the log is replayed (`engine::wal::recover`), and only
//! then does the store grow: the new trailer is written (and synced) at the new end of the
//! data file before the controller commits the new capacity to the index. `--log-size` applies
//! to new and upgraded stores; a different size on an existing store is refused.
//!
//! Must never: open (and so let libmdbx re-create) a missing or truncated index next to a data
//! file; write anything on a refusal, or anything at all for `check --read-only`.

use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use engine::meta::{Header, LogState, MetaRead, MetaStore, MetaTxn, FORMAT_VERSION};
use engine::wal::{self, LogPos, SECTOR_BYTES};

use crate::datafile;
use crate::identity::{
    self, IndexFacts, IndexFile, Plan, FORMAT_VERSION_BEFORE_LOG, INDEX_FILE_BYTES_MIN,
};
use crate::log_file::DiskReads;
use crate::mdbx::{MdbxStore, ENV_DIR_NAME};
use crate::trailer::{log_bytes_valid, Layout, Trailer, TRAILER_VERSION};

/// How `check` opens the index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Exclusive read-write (libmdbx may write its lock file and a steady meta page).
    ReadWrite,
    /// Read-only: nothing is opened for writing (a read-only copy of a directory).
    ReadOnly,
}

/// Whether this process may write the index (`access(2)` with `W_OK`, which reports a
/// read-only filesystem even to root).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Writable {
    Yes,
    No,
}

/// Whether the index of `dir` (its file, or its directory before it exists) is writable.
pub fn index_writable(dir: &Path) -> Writable {
    use std::os::unix::ffi::OsStrExt;
    let env = dir.join(ENV_DIR_NAME);
    let file = env.join(identity::INDEX_FILE_NAME);
    let path = if file.exists() { file } else { env };
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return Writable::No;
    };
    // SAFETY: access(2) on a NUL-terminated path that lives across the call.
    match unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } {
        0 => Writable::Yes,
        _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::NotFound => {
            Writable::Yes
        }
        _ => Writable::No,
    }
}

/// A data directory ready to serve: recovered (the log is empty), grown to the capacity
/// asked for.
pub struct Opened {
    pub store: MdbxStore,
    pub data: File,
    pub header: Header,
    /// Where the slots end and the log region lies, after any growth.
    pub layout: Layout,
    /// The run id recovery drew: the new run's records carry it.
    pub run_id: u64,
}

/// The index file, before libmdbx opens it.
pub fn index_file(dir: &Path) -> Result<IndexFile> {
    let path = dir.join(ENV_DIR_NAME).join(identity::INDEX_FILE_NAME);
    match std::fs::metadata(&path) {
        Ok(m) if m.len() < INDEX_FILE_BYTES_MIN => Ok(IndexFile::Truncated { len_bytes: m.len() }),
        Ok(_) => Ok(IndexFile::Present),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IndexFile::Absent),
        Err(e) => Err(e).with_context(|| format!("inspecting index file {}", path.display())),
    }
}

/// Opens the index of `dir` after refusing a lost one (see [`identity::refuse_lost_index`]).
pub fn open_index(dir: &Path, map_size_bytes: u64, access: Access) -> Result<MdbxStore> {
    identity::refuse_lost_index(dir, index_file(dir)?, datafile::exists(dir)?)?;
    let opened = match access {
        Access::ReadWrite => MdbxStore::open_exclusive(dir, map_size_bytes),
        Access::ReadOnly => MdbxStore::open_read_only(dir),
    };
    opened.map_err(|e| {
        anyhow!(
            "opening the index in {}: {e} (if the index is damaged, restore {ENV_DIR_NAME} from \
             a backup: it cannot be rebuilt from the data file)",
            dir.display()
        )
    })
}

/// What the index holds, for [`identity::plan`].
pub fn facts(store: &MdbxStore) -> Result<IndexFacts> {
    let read = store.read().map_err(|e| anyhow!("{e}"))?;
    let header = read.header().map_err(|e| anyhow!("{e}"))?;
    let log = read.log_state().map_err(|e| anyhow!("{e}"))?;
    let mut first = Vec::with_capacity(1);
    read.list(None, 1, &mut first).map_err(|e| anyhow!("{e}"))?;
    let reservations = read.reservations().map_err(|e| anyhow!("{e}"))?;
    Ok(IndexFacts {
        header,
        log,
        has_blocks: !first.is_empty(),
        has_reservations: !reservations.is_empty(),
    })
}

/// What may be done with `dir` whose index is `store`: a [`identity::Refusal`] as the error.
pub fn plan(dir: &Path, store: &MdbxStore) -> Result<Plan> {
    let facts = facts(store)?;
    let index_end = facts
        .header
        .map(|h| h.capacity_bytes + facts.log.map_or(0, |l| l.log_sectors * SECTOR_BYTES));
    let data = datafile::inspect(dir, index_end)?;
    Ok(identity::plan(dir, &facts, &data)?)
}

/// Sizes asked for on the command line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Wanted {
    pub capacity_bytes: u64,
    /// The log region of a new (or upgraded) store; an existing store must already have it.
    pub log_bytes: u64,
    pub map_size_bytes: u64,
}

/// Opens (creating, completing, upgrading, recovering, growing) `dir` for `serve`; refuses
/// every inconsistent directory with one line. Order: the plan's step (the data file and its
/// trailer, then the index's log record), then the log's replay over the synced data file
/// (the caller ran `datafile::sync_before_open`), then growth (the log is empty: the region
/// moves to the new capacity).
pub fn open_for_serving(dir: &Path, wanted: Wanted) -> Result<Opened> {
    assert!(
        log_bytes_valid(wanted.log_bytes),
        "the config checks --log-size"
    );
    let mut store = open_index(dir, wanted.map_size_bytes, Access::ReadWrite)?;
    let plan = plan(dir, &store)?;
    refuse_shrink(&plan, wanted.capacity_bytes)?;
    let log_bytes = region_of(&plan).unwrap_or(wanted.log_bytes);
    if log_bytes != wanted.log_bytes {
        bail!(
            "--log-size {} bytes differs from this data directory's log region of {log_bytes} \
             bytes; changing the log size of an existing store is not supported: start with \
             --log-size {log_bytes}",
            wanted.log_bytes
        );
    }
    let (header, trailer, data) = prepare(dir, &mut store, plan, wanted.capacity_bytes, log_bytes)?;
    let header = commit_log_state(&mut store, header, log_bytes)?;
    let layout = Layout::new(trailer.capacity_bytes, log_bytes);
    let run_id = recover(&mut store, &data, layout)?.run_id;
    // Grow, or finish a growth that stopped half-way (the file is longer than its trailer).
    let target = Layout::new(wanted.capacity_bytes.max(trailer.capacity_bytes), log_bytes);
    if target != layout || data.metadata()?.len() != target.len_bytes() {
        datafile::place_trailer(
            &data,
            &trailer_of(&header, target.capacity_bytes),
            log_bytes,
        )
        .and_then(|()| datafile::zero_log_region(&data, &target))
        .context("growing the data file")?;
        tracing::info!(
            from_bytes = layout.capacity_bytes,
            to_bytes = target.capacity_bytes,
            "grew the data file"
        );
    }
    Ok(Opened {
        store,
        data,
        header,
        layout: target,
        run_id,
    })
}

/// `--capacity` below the store's is refused (no shrinking).
fn refuse_shrink(plan: &Plan, capacity_bytes: u64) -> Result<()> {
    if let Plan::CreateDataFile { header, .. }
    | Plan::WriteTrailer { header, .. }
    | Plan::UpgradeLog { header, .. }
    | Plan::Open { header, .. } = plan
    {
        if header.capacity_bytes > capacity_bytes {
            bail!(
                "--capacity {capacity_bytes} bytes is smaller than this data directory's \
                 capacity {} bytes; shrinking is not supported (use --capacity {} or more)",
                header.capacity_bytes,
                header.capacity_bytes
            );
        }
    }
    Ok(())
}

/// The log region a store already has (in its index, or in its data file half-way through an
/// upgrade); `None` for a new store or one of format 1.
fn region_of(plan: &Plan) -> Option<u64> {
    let of = |log: &LogState| log.log_sectors * SECTOR_BYTES;
    match plan {
        Plan::CreateStore => None,
        Plan::CreateDataFile { log, .. } | Plan::WriteTrailer { log, .. } => log.as_ref().map(of),
        Plan::UpgradeLog { log_bytes, .. } => *log_bytes,
        Plan::Open { log, .. } => Some(of(log)),
    }
}

/// Does the plan's step on the data file, with a log region of `log_bytes`: returns the
/// header, the trailer in place and the open data file.
fn prepare(
    dir: &Path,
    store: &mut MdbxStore,
    plan: Plan,
    capacity_bytes: u64,
    log_bytes: u64,
) -> Result<(Header, Trailer, File)> {
    Ok(match plan {
        Plan::CreateStore => {
            let header = create_header(store, capacity_bytes, log_bytes)?;
            let trailer = trailer_of(&header, capacity_bytes);
            let data = datafile::create(dir, &trailer, log_bytes)?;
            tracing::info!(node_id = %format!("{:016x}", header.node_id), "created a new store");
            (header, trailer, data)
        }
        Plan::CreateDataFile { header, .. } => {
            tracing::warn!(
                "the index has a header but no data file and records no blocks (a crash while \
                 the store was being created): creating the data file"
            );
            let trailer = trailer_of(&header, capacity_bytes);
            let data = datafile::create(dir, &trailer, log_bytes)?;
            (header, trailer, data)
        }
        Plan::WriteTrailer { header, .. } => {
            let data = datafile::open(dir)?;
            let trailer = trailer_of(&header, header.capacity_bytes);
            datafile::place_trailer(&data, &trailer, log_bytes)?;
            tracing::info!(
                "wrote the data file's identity trailer (node id and capacity) after its log \
                 region; the slots did not move"
            );
            (header, trailer, data)
        }
        Plan::UpgradeLog {
            header,
            trailer,
            log_bytes: placed,
        } => {
            let data = datafile::open(dir)?;
            let trailer = Trailer {
                format_version: TRAILER_VERSION,
                ..trailer
            };
            if placed.is_none() {
                datafile::place_trailer(&data, &trailer, log_bytes)
                    .and_then(|()| {
                        datafile::zero_log_region(
                            &data,
                            &Layout::new(trailer.capacity_bytes, log_bytes),
                        )
                    })
                    .context("upgrading the data file: adding the log region")?;
            }
            (header, trailer, data)
        }
        Plan::Open {
            header, trailer, ..
        } => (header, trailer, datafile::open(dir)?),
    })
}

/// The second step of an upgrade from format 1 (and of a creation by a release before the
/// log): one durable commit of the header of this format with a `LogState` for a region of
/// `log_bytes` (empty: the next record is `(1, 0)`). Nothing when the index has it already.
fn commit_log_state(store: &mut MdbxStore, header: Header, log_bytes: u64) -> Result<Header> {
    let read = store.read().map_err(|e| anyhow!("{e}"))?;
    if read.log_state().map_err(|e| anyhow!("{e}"))?.is_some() {
        assert_eq!(
            header.format_version, FORMAT_VERSION,
            "identity::plan checks it"
        );
        return Ok(header);
    }
    drop(read);
    assert_eq!(header.format_version, FORMAT_VERSION_BEFORE_LOG);
    let header = Header {
        format_version: FORMAT_VERSION,
        ..header
    };
    commit_with_empty_log(store, &header, log_bytes)
        .context("committing the upgraded index header")?;
    tracing::info!(
        log_bytes,
        format_version = FORMAT_VERSION,
        "upgraded the store in place to the write-ahead log's format (a log region between \
         the slots and the trailer); older releases refuse it from now on"
    );
    Ok(header)
}

/// One durable commit of `header` with the log record of an empty region of `log_bytes`.
fn commit_with_empty_log(store: &mut MdbxStore, header: &Header, log_bytes: u64) -> Result<()> {
    let log = LogState {
        log_sectors: log_bytes / SECTOR_BYTES,
        next: LogPos { seq: 1, sector: 0 },
        run_id: random_u64().context("drawing a run id")?,
    };
    let mut txn = store.begin().map_err(|e| anyhow!("{e}"))?;
    txn.set_header(header).map_err(|e| anyhow!("{e}"))?;
    txn.set_log_state(&log).map_err(|e| anyhow!("{e}"))?;
    txn.commit(true).map_err(|e| anyhow!("{e}"))
}

/// Replays the log of the data file laid out as `layout` (see `engine::wal::recover`) and
/// logs one line (`serve`'s, and read-write `check`'s). A replay that fails is a refusal.
pub fn recover(store: &mut MdbxStore, data: &File, layout: Layout) -> Result<wal::Recovered> {
    let started = std::time::Instant::now();
    let old_run_id = store
        .read()
        .and_then(|r| r.log_state())
        .map_err(|e| anyhow!("{e}"))?
        .map(|l| l.run_id);
    let mut run_id = random_u64().context("drawing a run id")?;
    if Some(run_id) == old_run_id {
        run_id = run_id.wrapping_add(2);
    }
    // What the disk holds, not the page cache (see `log_file`'s module doc).
    let reads = DiskReads::open(data).context("opening the data file for the log's replay")?;
    let mut log = reads.log(layout.capacity_bytes, layout.log_sectors());
    let mut blocks = reads.blocks(layout.capacity_bytes);
    let out = wal::recover(
        store,
        &mut log,
        &mut blocks,
        run_id,
        engine::bugs::Bugs::NONE,
    )
    .map_err(|e| {
        anyhow!(
            "replaying the write-ahead log: {e}; nothing was served. Run `buddy-blocks check \
             --read-only --data-dir <dir>` to see what the log and the index hold, and restore \
             the directory from a backup if they are damaged"
        )
    })?;
    tracing::info!(
        records = out.records,
        ops = out.ops,
        bytes_verified = out.bytes_verified,
        occupies_dropped = out.occupies_dropped,
        ms = started.elapsed().as_millis() as u64,
        "replayed the write-ahead log"
    );
    Ok(out)
}

fn trailer_of(header: &Header, capacity_bytes: u64) -> Trailer {
    Trailer {
        format_version: TRAILER_VERSION,
        capacity_bytes,
        node_id: header.node_id,
    }
}

/// Commits a new store's header and its empty log record durably, before its data file
/// exists.
fn create_header(store: &mut MdbxStore, capacity_bytes: u64, log_bytes: u64) -> Result<Header> {
    let header = Header {
        format_version: FORMAT_VERSION,
        capacity_bytes,
        node_id: random_u64().context("drawing a node id")? | 1,
        commit_seq: 0,
    };
    commit_with_empty_log(store, &header, log_bytes)
        .context("committing the new store's header")?;
    Ok(header)
}

/// 64 bits from the OS's randomness (node ids, run ids): never a constant.
fn random_u64() -> Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(u64::from_le_bytes(bytes))
}
