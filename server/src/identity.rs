//! What a data directory holds, and whether it may be served: the decision, without I/O.
//!
//! A data directory is two files that must belong together: the index (`index.mdbx`, whose
//! header records the format version, the capacity and the node id drawn at creation, and
//! whose `LogState` records the size of the write-ahead log's region) and the data file
//! (`blocks.data`, whose trailer, see [`crate::trailer`], records the same node id and its own
//! capacity, and whose log region lies between the slots and the trailer). [`refuse_lost_index`] runs before the index is opened (libmdbx
//! silently re-creates a missing or truncated environment); [`plan`] runs after, on what both
//! files say, and returns the one thing startup may do, or the one reason it must not.
//!
//! Invariants of a consistent directory: index header `format_version` = [`FORMAT_VERSION`]
//! with a `LogState`; the data file is `trailer.capacity + L + TRAILER_BYTES` long with a
//! version-[`TRAILER_VERSION`] trailer at its end, where `L = LogState.log_sectors * 4096`;
//! `trailer.node_id == header.node_id`; `header.capacity <= trailer.capacity` (equal, except
//! after a growth that stopped before the index recorded it). A store of format 1 (header
//! [`FORMAT_VERSION_BEFORE_LOG`] without a `LogState`, a version-1 trailer at the capacity, or
//! none) is upgraded in place ([`Plan::UpgradeLog`], [`Plan::WriteTrailer`]); an upgrade that
//! stopped between its two steps (version-2 trailer, format-1 index) is finished.
//!
//! Must never: let a store with stored blocks (or a data file) start from an empty index;
//! let a data file from another store, a short one, or a missing one serve an index that
//! records blocks; write anything (the caller does what the plan says).

use std::path::{Path, PathBuf};

use engine::meta::{Header, LogState, FORMAT_VERSION};
use engine::wal::SECTOR_BYTES;

use crate::datafile::DATA_FILE_NAME;
use crate::mdbx::ENV_DIR_NAME;
use crate::trailer::{
    log_bytes_valid, Trailer, TrailerError, TRAILER_BYTES, TRAILER_VERSION,
    TRAILER_VERSION_BEFORE_LOG,
};

/// The index format before the write-ahead log: a header without a `LogState`.
pub const FORMAT_VERSION_BEFORE_LOG: u32 = 1;

/// libmdbx's own file inside the environment directory.
pub const INDEX_FILE_NAME: &str = "mdbx.dat";
/// An index file shorter than libmdbx's three meta pages (4 KiB pages) is certainly truncated.
pub const INDEX_FILE_BYTES_MIN: u64 = 3 * 4096;

/// The index file before it is opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IndexFile {
    Absent,
    /// Shorter than [`INDEX_FILE_BYTES_MIN`] (0 after a truncation).
    Truncated {
        len_bytes: u64,
    },
    Present,
}

/// The last 4 KiB of a data file (or of the slots at some offset), decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tail {
    Trailer(Trailer),
    /// All zero: a trailer whose write a power loss lost (the file length was persisted).
    Zeros,
    Invalid(TrailerError),
}

/// The data file, as inspected after the index is open.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DataFile {
    Absent,
    Present {
        len_bytes: u64,
        /// The 4 KiB at `len_bytes - TRAILER_BYTES`; `None` when the file is shorter.
        tail: Option<Tail>,
        /// The 4 KiB where the index says the trailer lies (its capacity plus its log region),
        /// when the tail is [`Tail::Zeros`] and the file is longer than that: the previous
        /// trailer of a growth that did not finish.
        at_index_end: Option<Tail>,
    },
}

/// What the index holds, read after it is opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IndexFacts {
    pub header: Option<Header>,
    /// The write-ahead log's record (`None` before format 2).
    pub log: Option<LogState>,
    pub has_blocks: bool,
    pub has_reservations: bool,
}

/// The one thing startup may do with the directory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Plan {
    /// No header, no data file: a new store. Commit the header durably, then create the data
    /// file (under a temporary name, renamed into place).
    CreateStore,
    /// A header over an empty store and no data file: a crash between the two steps of
    /// creation. Create the data file (with the index's log region; `--log-size` when the
    /// index has no `LogState` yet, which is then committed).
    CreateDataFile {
        header: Header,
        log: Option<LogState>,
    },
    /// The data file is exactly the index's capacity long: the format before trailers. Append
    /// the trailer after a new log region (an in-place upgrade), or rewrite one whose write a
    /// power loss lost (after the index's log region).
    WriteTrailer {
        header: Header,
        log: Option<LogState>,
    },
    /// A format-1 index (no `LogState`) over a data file with a trailer: version 1, or version
    /// 2 from an upgrade that stopped before its index commit (`log_bytes` is then that
    /// file's region). Place the version-2 trailer after a `--log-size` region if it is not
    /// there, then commit the header of this format with a `LogState`.
    UpgradeLog {
        header: Header,
        trailer: Trailer,
        log_bytes: Option<u64>,
    },
    /// Both files agree. `trailer` is the data file's (its capacity may exceed the header's);
    /// the log region is `[trailer.capacity, + log.log_sectors * 4096)`.
    Open {
        header: Header,
        trailer: Trailer,
        log: LogState,
    },
}

/// Why a data directory is refused. Each message says what is wrong and what to do.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the index {index} is {what} but the data file {data} exists: refusing to serve an \
         empty store over stored blocks. Restore {ENV_DIR_NAME} from a backup, then run \
         `buddy-blocks check --data-dir {dir}`; the index cannot be rebuilt from the data file \
         (slots do not record their hash or length). To discard the store, remove {data}"
    )]
    IndexLost {
        dir: PathBuf,
        index: PathBuf,
        data: PathBuf,
        what: &'static str,
    },
    #[error(
        "the data file {data} is missing but the index records {what}: refusing to start \
         without it (the index would point at bytes that are gone). Restore {DATA_FILE_NAME} from the backup that matches \
         {ENV_DIR_NAME}, then run `buddy-blocks check --data-dir {dir}`; to discard the store, \
         remove the directory"
    )]
    DataMissing {
        dir: PathBuf,
        data: PathBuf,
        what: &'static str,
    },
    #[error(
        "the data file {data} is {len_bytes} bytes, shorter than the index's capacity \
         {capacity_bytes} plus its log region and {TRAILER_BYTES}-byte identity trailer: it \
         was truncated. \
         Restore {DATA_FILE_NAME} from the backup that matches {ENV_DIR_NAME}, then run \
         `buddy-blocks check --data-dir {dir}`"
    )]
    DataShort {
        dir: PathBuf,
        data: PathBuf,
        len_bytes: u64,
        capacity_bytes: u64,
    },
    #[error(
        "the data file {data} ({len_bytes} bytes) does not end in a valid identity trailer \
         ({cause}): it is damaged, or not this store's data file. Restore {DATA_FILE_NAME} \
         from the backup that matches {ENV_DIR_NAME}, then run \
         `buddy-blocks check --data-dir {dir}`"
    )]
    DataNoTrailer {
        dir: PathBuf,
        data: PathBuf,
        len_bytes: u64,
        cause: String,
    },
    #[error(
        "the data file {data} belongs to another store (node id {data_node_id:016x}) than the \
         index (node id {index_node_id:016x}): the two files were not created together. Put \
         back the {DATA_FILE_NAME} and {ENV_DIR_NAME} of one store (from the same backup)"
    )]
    Foreign {
        data: PathBuf,
        data_node_id: u64,
        index_node_id: u64,
    },
    #[error(
        "the data file {data} holds {data_capacity_bytes} bytes of slots but the index records \
         a capacity of {index_capacity_bytes}: the data file is older than the index (restored \
         from a backup taken before a growth?). Restore the {DATA_FILE_NAME} that matches \
         {ENV_DIR_NAME}, then run `buddy-blocks check --data-dir {dir}`"
    )]
    DataOlder {
        dir: PathBuf,
        data: PathBuf,
        data_capacity_bytes: u64,
        index_capacity_bytes: u64,
    },
    #[error(
        "{data}: {what}: the two files do not match (damaged, or not restored from the same \
         backup). Put back the {DATA_FILE_NAME} and {ENV_DIR_NAME} of one store, then run \
         `buddy-blocks check --data-dir {dir}`"
    )]
    LogRegion {
        dir: PathBuf,
        data: PathBuf,
        what: String,
    },
    #[error(
        "{file} has format version {found}; this build reads version {expected}: run the \
         buddy-blocks release that wrote it"
    )]
    Version {
        file: PathBuf,
        found: u32,
        expected: u32,
    },
}

/// Paths named in refusals.
#[derive(Clone)]
struct Paths {
    dir: PathBuf,
    index: PathBuf,
    data: PathBuf,
}

impl Paths {
    fn of(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            index: dir.join(ENV_DIR_NAME),
            data: dir.join(DATA_FILE_NAME),
        }
    }
}

/// Before the index is opened: a data file next to a missing or truncated index is refused
/// (opening would make libmdbx re-create an empty environment in its place).
pub fn refuse_lost_index(dir: &Path, index: IndexFile, data_exists: bool) -> Result<(), Refusal> {
    let what = match index {
        IndexFile::Present => return Ok(()),
        _ if !data_exists => return Ok(()),
        IndexFile::Absent => "missing",
        IndexFile::Truncated { len_bytes: 0 } => "empty (truncated to 0 bytes)",
        IndexFile::Truncated { .. } => "truncated (shorter than its own header pages)",
    };
    let p = Paths::of(dir);
    Err(Refusal::IndexLost {
        dir: p.dir,
        index: p.index,
        data: p.data,
        what,
    })
}

/// After the index is opened: what startup may do with the directory in `dir`.
pub fn plan(dir: &Path, index: &IndexFacts, data: &DataFile) -> Result<Plan, Refusal> {
    let p = Paths::of(dir);
    let header = match (index.header, data) {
        (None, DataFile::Absent) => return Ok(Plan::CreateStore),
        (None, DataFile::Present { .. }) => {
            return Err(Refusal::IndexLost {
                dir: p.dir,
                index: p.index,
                data: p.data,
                what: "empty (no header: re-created or damaged)",
            })
        }
        (Some(h), _) => h,
    };
    let log = index_log(&p, header, index.log)?;
    let (len_bytes, tail, at_index_end) = match *data {
        DataFile::Absent => return plan_without_data(p, header, index),
        DataFile::Present {
            len_bytes,
            tail,
            at_index_end,
        } => (len_bytes, tail, at_index_end),
    };
    plan_with_data(p, header, log, len_bytes, tail, at_index_end)
}

/// The index's log record if its format has one; `None` for a format-1 index.
fn index_log(
    p: &Paths,
    header: Header,
    log: Option<LogState>,
) -> Result<Option<LogState>, Refusal> {
    match (header.format_version, log) {
        (FORMAT_VERSION, Some(log)) => Ok(Some(log)),
        (FORMAT_VERSION_BEFORE_LOG, None) => Ok(None),
        (v, log) if v == FORMAT_VERSION || v == FORMAT_VERSION_BEFORE_LOG => {
            Err(Refusal::LogRegion {
                dir: p.dir.clone(),
                data: p.index.clone(),
                what: match log {
                    Some(_) => format!("the index of format {v} has a log record"),
                    None => format!("the index of format {v} has no log record"),
                },
            })
        }
        (found, _) => Err(Refusal::Version {
            file: p.index.clone(),
            found,
            expected: FORMAT_VERSION,
        }),
    }
}

/// Whether `t`, read at the end of a `len_bytes` file, is a trailer this index may use there:
/// its log region (`Some`; 0 for version 1).
fn region_of(t: &Trailer, len_bytes: u64, log: Option<LogState>) -> Option<u64> {
    let region = len_bytes.checked_sub(t.capacity_bytes + TRAILER_BYTES)?;
    match t.format_version {
        TRAILER_VERSION if log_bytes_valid(region) => Some(region),
        TRAILER_VERSION_BEFORE_LOG if region == 0 && log.is_none() => Some(0),
        _ => None,
    }
}

/// The data file exists and the index has a header of this format (or of format 1).
fn plan_with_data(
    p: Paths,
    header: Header,
    log: Option<LogState>,
    len_bytes: u64,
    tail: Option<Tail>,
    at_index_end: Option<Tail>,
) -> Result<Plan, Refusal> {
    let index_log_bytes = log.map_or(0, |l| l.log_sectors * SECTOR_BYTES);
    let index_end = header.capacity_bytes + index_log_bytes;
    if log.is_none() && len_bytes == header.capacity_bytes {
        return Ok(Plan::WriteTrailer { header, log });
    }
    if len_bytes < index_end + TRAILER_BYTES {
        // A whole data file of this store, but from before a growth: say so.
        if let Some(Tail::Trailer(t)) = tail {
            if region_of(&t, len_bytes, log).is_some() {
                check_trailer(p, header, t)?;
                unreachable!("a trailer below the index's capacity is refused as older");
            }
        }
        return Err(Refusal::DataShort {
            dir: p.dir,
            data: p.data,
            len_bytes,
            capacity_bytes: header.capacity_bytes,
        });
    }
    let tail = tail.expect("a file longer than a trailer has a tail");
    let (trailer, region) = match (tail, at_index_end) {
        (Tail::Trailer(t), _)
            if t.format_version == TRAILER_VERSION_BEFORE_LOG && log.is_some() =>
        {
            return Err(Refusal::Version {
                file: p.data,
                found: t.format_version,
                expected: TRAILER_VERSION,
            })
        }
        (Tail::Trailer(t), _)
            if t.format_version != TRAILER_VERSION
                && t.format_version != TRAILER_VERSION_BEFORE_LOG =>
        {
            return Err(Refusal::Version {
                file: p.data,
                found: t.format_version,
                expected: TRAILER_VERSION,
            })
        }
        (Tail::Trailer(t), _) if region_of(&t, len_bytes, log).is_some() => {
            (t, region_of(&t, len_bytes, log).expect("checked"))
        }
        // A power loss lost the trailer's bytes but kept the length.
        (Tail::Zeros, _) if len_bytes == index_end + TRAILER_BYTES => {
            return Ok(Plan::WriteTrailer { header, log })
        }
        // A growth that stopped before its new trailer was durable: the old one still holds.
        (Tail::Zeros, Some(Tail::Trailer(t)))
            if t.capacity_bytes == header.capacity_bytes
                && region_of(&t, index_end + TRAILER_BYTES, log).is_some() =>
        {
            (t, index_log_bytes)
        }
        (tail, _) => {
            let cause = match tail {
                Tail::Invalid(e) => e.to_string(),
                Tail::Trailer(t) => format!(
                    "its trailer says {} bytes of slots, which leaves no valid log region",
                    t.capacity_bytes
                ),
                Tail::Zeros => "the last 4 KiB are zero".to_string(),
            };
            return Err(Refusal::DataNoTrailer {
                dir: p.dir,
                data: p.data,
                len_bytes,
                cause,
            });
        }
    };
    check_trailer(p.clone(), header, trailer)?;
    match log {
        None => Ok(Plan::UpgradeLog {
            header,
            trailer,
            log_bytes: (trailer.format_version == TRAILER_VERSION).then_some(region),
        }),
        Some(log) if region == index_log_bytes => Ok(Plan::Open {
            header,
            trailer,
            log,
        }),
        Some(_) => Err(Refusal::LogRegion {
            dir: p.dir,
            data: p.data,
            what: format!(
                "the data file's log region is {region} bytes but the index records \
                 {index_log_bytes}"
            ),
        }),
    }
}

fn plan_without_data(p: Paths, header: Header, index: &IndexFacts) -> Result<Plan, Refusal> {
    let what = match (index.has_blocks, index.has_reservations) {
        (false, false) => {
            return Ok(Plan::CreateDataFile {
                header,
                log: index.log,
            })
        }
        (true, _) => "stored blocks",
        (false, true) => "slots reserved by a server that ran on it",
    };
    Err(Refusal::DataMissing {
        dir: p.dir,
        data: p.data,
        what,
    })
}

/// A trailer found where it belongs (of a version this index may use), against the header.
fn check_trailer(p: Paths, header: Header, t: Trailer) -> Result<(), Refusal> {
    if t.node_id != header.node_id {
        return Err(Refusal::Foreign {
            data: p.data,
            data_node_id: t.node_id,
            index_node_id: header.node_id,
        });
    }
    if t.capacity_bytes < header.capacity_bytes {
        return Err(Refusal::DataOlder {
            dir: p.dir,
            data: p.data,
            data_capacity_bytes: t.capacity_bytes,
            index_capacity_bytes: header.capacity_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
