//! Opening a data directory for `serve` and `check`: looks at both files, asks
//! [`identity::plan`] what may be done, and does exactly that.
//!
//! Creation order (so that no crash leaves an ambiguous directory): the index header is
//! committed durably first; then the data file is created under a temporary name, preallocated,
//! its trailer written and synced, renamed into place and the directory synced. Growth: the
//! new trailer is written (and synced) at the new end of the data file before the controller
//! commits the new capacity to the index. Upgrade of a data file of the format before trailers
//! (exactly `capacity` long): its trailer is appended, with an info line.
//!
//! Must never: open (and so let libmdbx re-create) a missing or truncated index next to a data
//! file; write anything on a refusal, or anything at all for `check --read-only`.

use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use engine::meta::{Header, MetaRead, MetaStore, MetaTxn, FORMAT_VERSION};

use crate::datafile;
use crate::identity::{self, IndexFacts, IndexFile, Plan, INDEX_FILE_BYTES_MIN};
use crate::mdbx::{MdbxStore, ENV_DIR_NAME};
use crate::trailer::{Trailer, TRAILER_BYTES, TRAILER_VERSION};

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

/// A data directory ready to serve.
pub struct Opened {
    pub store: MdbxStore,
    pub data: File,
    pub header: Header,
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
    let mut first = Vec::with_capacity(1);
    read.list(None, 1, &mut first).map_err(|e| anyhow!("{e}"))?;
    let reservations = read.reservations().map_err(|e| anyhow!("{e}"))?;
    Ok(IndexFacts {
        header,
        has_blocks: !first.is_empty(),
        has_reservations: !reservations.is_empty(),
    })
}

/// What may be done with `dir` whose index is `store`: a [`identity::Refusal`] as the error.
pub fn plan(dir: &Path, store: &MdbxStore) -> Result<Plan> {
    let facts = facts(store)?;
    let data = datafile::inspect(dir, facts.header.map(|h| h.capacity_bytes))?;
    Ok(identity::plan(dir, &facts, &data)?)
}

/// Opens (creating, completing, upgrading or growing) `dir` for `serve` with
/// `capacity_bytes`; refuses every inconsistent directory with one line.
pub fn open_for_serving(dir: &Path, capacity_bytes: u64, map_size_bytes: u64) -> Result<Opened> {
    let mut store = open_index(dir, map_size_bytes, Access::ReadWrite)?;
    let plan = plan(dir, &store)?;
    if let Plan::CreateDataFile { header }
    | Plan::WriteTrailer { header }
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
    let (header, trailer, data) = match plan {
        Plan::CreateStore => {
            let header = create_header(&mut store, capacity_bytes)?;
            let trailer = trailer_of(&header, capacity_bytes);
            let data = datafile::create(dir, &trailer)?;
            tracing::info!(node_id = %format!("{:016x}", header.node_id), "created a new store");
            (header, trailer, data)
        }
        Plan::CreateDataFile { header } => {
            tracing::warn!(
                "the index has a header but no data file and records no blocks (a crash while \
                 the store was being created): creating the data file"
            );
            let trailer = trailer_of(&header, capacity_bytes);
            (header, trailer, datafile::create(dir, &trailer)?)
        }
        Plan::WriteTrailer { header } => {
            let data = datafile::open(dir)?;
            let trailer = trailer_of(&header, header.capacity_bytes);
            datafile::place_trailer(&data, &trailer)?;
            tracing::info!(
                "upgraded the data file in place: appended its identity trailer (node id and \
                 capacity) after the slots; nothing else changed"
            );
            (header, trailer, data)
        }
        Plan::Open { header, trailer } => (header, trailer, datafile::open(dir)?),
    };
    // Grow, or finish a growth that stopped half-way (the file is longer than its trailer).
    let target_bytes = capacity_bytes.max(trailer.capacity_bytes);
    let len_bytes = data.metadata()?.len();
    if target_bytes != trailer.capacity_bytes || len_bytes != target_bytes + TRAILER_BYTES {
        datafile::place_trailer(&data, &trailer_of(&header, target_bytes))
            .context("growing the data file")?;
        tracing::info!(
            from_bytes = trailer.capacity_bytes,
            to_bytes = target_bytes,
            "grew the data file"
        );
    }
    Ok(Opened {
        store,
        data,
        header,
    })
}

fn trailer_of(header: &Header, capacity_bytes: u64) -> Trailer {
    Trailer {
        format_version: TRAILER_VERSION,
        capacity_bytes,
        node_id: header.node_id,
    }
}

/// Commits a new store's header durably, before its data file exists.
fn create_header(store: &mut MdbxStore, capacity_bytes: u64) -> Result<Header> {
    let header = Header {
        format_version: FORMAT_VERSION,
        capacity_bytes,
        node_id: new_node_id()?,
        commit_seq: 0,
    };
    let mut txn = store.begin().map_err(|e| anyhow!("{e}"))?;
    txn.set_header(&header).map_err(|e| anyhow!("{e}"))?;
    txn.commit(true)
        .map_err(|e| anyhow!("committing the new store's header: {e}"))?;
    Ok(header)
}

/// A node id from the OS's randomness: never zero, never a constant.
fn new_node_id() -> Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("drawing a node id from /dev/urandom")?;
    Ok(u64::from_le_bytes(bytes) | 1)
}
