//! What a data directory holds, and whether it may be served: the decision, without I/O.
//!
//! A data directory is two files that must belong together: the index (`index.mdbx`, whose
//! header records the format version, the capacity and the node id drawn at creation) and the
//! data file (`blocks.data`, whose trailer, see [`crate::trailer`], records the same node id
//! and its own capacity). [`refuse_lost_index`] runs before the index is opened (libmdbx
//! silently re-creates a missing or truncated environment); [`plan`] runs after, on what both
//! files say, and returns the one thing startup may do, or the one reason it must not.
//!
//! Invariants of a consistent directory: index header `format_version` = [`FORMAT_VERSION`];
//! the data file is `trailer.capacity + TRAILER_BYTES` long with the trailer at its end;
//! `trailer.node_id == header.node_id`; `header.capacity <= trailer.capacity` (equal, except
//! after a growth that stopped before the index recorded it).
//!
//! Must never: let a store with stored blocks (or a data file) start from an empty index;
//! let a data file from another store, a short one, or a missing one serve an index that
//! records blocks; write anything (the caller does what the plan says).

use std::path::{Path, PathBuf};

use engine::meta::{Header, FORMAT_VERSION};

use crate::datafile::DATA_FILE_NAME;
use crate::mdbx::ENV_DIR_NAME;
use crate::trailer::{Trailer, TrailerError, TRAILER_BYTES, TRAILER_VERSION};

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
        /// The 4 KiB at the index's capacity, when the tail is [`Tail::Zeros`] and the file
        /// is longer than that: the previous trailer of a growth that did not finish.
        at_index_capacity: Option<Tail>,
    },
}

/// What the index holds, read after it is opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IndexFacts {
    pub header: Option<Header>,
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
    /// creation. Create the data file.
    CreateDataFile { header: Header },
    /// The data file is exactly the index's capacity long: the format before trailers. Append
    /// the trailer (an in-place upgrade), or rewrite one whose write a power loss lost.
    WriteTrailer { header: Header },
    /// Both files agree. `trailer` is the data file's (its capacity may exceed the header's).
    Open { header: Header, trailer: Trailer },
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
         {capacity_bytes} plus its {TRAILER_BYTES}-byte identity trailer: it was truncated. \
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
    if header.format_version != FORMAT_VERSION {
        return Err(Refusal::Version {
            file: p.index,
            found: header.format_version,
            expected: FORMAT_VERSION,
        });
    }
    let (len_bytes, tail, at_index_capacity) = match *data {
        DataFile::Absent => return plan_without_data(p, header, index),
        DataFile::Present {
            len_bytes,
            tail,
            at_index_capacity,
        } => (len_bytes, tail, at_index_capacity),
    };
    plan_with_data(p, header, len_bytes, tail, at_index_capacity)
}

/// The data file exists and the index has a header of this format.
fn plan_with_data(
    p: Paths,
    header: Header,
    len_bytes: u64,
    tail: Option<Tail>,
    at_index_capacity: Option<Tail>,
) -> Result<Plan, Refusal> {
    if len_bytes == header.capacity_bytes {
        return Ok(Plan::WriteTrailer { header });
    }
    if len_bytes < header.capacity_bytes + TRAILER_BYTES {
        // A whole data file of this store, but from before a growth: say so.
        if let Some(Tail::Trailer(t)) = tail {
            if t.capacity_bytes + TRAILER_BYTES == len_bytes {
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
    let trailer = match (tail, at_index_capacity) {
        (Tail::Trailer(t), _) if t.format_version != TRAILER_VERSION => {
            return Err(Refusal::Version {
                file: p.data,
                found: t.format_version,
                expected: TRAILER_VERSION,
            })
        }
        (Tail::Trailer(t), _) if t.capacity_bytes + TRAILER_BYTES == len_bytes => t,
        // A power loss lost the trailer's bytes but kept the length.
        (Tail::Zeros, _) if len_bytes == header.capacity_bytes + TRAILER_BYTES => {
            return Ok(Plan::WriteTrailer { header })
        }
        // A growth that stopped before its new trailer was durable: the old one still holds.
        (Tail::Zeros, Some(Tail::Trailer(t))) if t.capacity_bytes == header.capacity_bytes => t,
        (tail, _) => {
            let cause = match tail {
                Tail::Invalid(e) => e.to_string(),
                Tail::Trailer(t) => format!("its trailer says {} bytes of slots", t.capacity_bytes),
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
    check_trailer(p, header, trailer)?;
    Ok(Plan::Open { header, trailer })
}

fn plan_without_data(p: Paths, header: Header, index: &IndexFacts) -> Result<Plan, Refusal> {
    let what = match (index.has_blocks, index.has_reservations) {
        (false, false) => return Ok(Plan::CreateDataFile { header }),
        (true, _) => "stored blocks",
        (false, true) => "slots reserved by a server that ran on it",
    };
    Err(Refusal::DataMissing {
        dir: p.dir,
        data: p.data,
        what,
    })
}

/// A trailer found where it belongs, against the index header.
fn check_trailer(p: Paths, header: Header, t: Trailer) -> Result<(), Refusal> {
    if t.format_version != TRAILER_VERSION {
        return Err(Refusal::Version {
            file: p.data,
            found: t.format_version,
            expected: TRAILER_VERSION,
        });
    }
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
