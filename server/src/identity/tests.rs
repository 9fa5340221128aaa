//! The decision table of [`super::plan`]: every combination of index and data file.

use super::*;

const CAP: u64 = 32 << 20;
const NODE: u64 = 0xabcd_0001;
const LOG_BYTES: u64 = 64 * 4096;

fn log() -> LogState {
    LogState {
        log_sectors: LOG_BYTES / SECTOR_BYTES,
        next: engine::wal::LogPos { seq: 3, sector: 1 },
        run_id: 77,
    }
}

/// An index of format 1 (before the log).
fn old_header() -> Header {
    Header {
        format_version: FORMAT_VERSION_BEFORE_LOG,
        ..header()
    }
}

fn old_facts(has_blocks: bool) -> IndexFacts {
    IndexFacts {
        log: None,
        ..facts(Some(old_header()), has_blocks)
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/d")
}

fn header() -> Header {
    Header {
        format_version: FORMAT_VERSION,
        capacity_bytes: CAP,
        node_id: NODE,
        commit_seq: 7,
    }
}

fn facts(header: Option<Header>, has_blocks: bool) -> IndexFacts {
    IndexFacts {
        header,
        log: header.map(|_| log()),
        has_blocks,
        has_reservations: false,
    }
}

fn trailer(capacity_bytes: u64, node_id: u64) -> Trailer {
    Trailer {
        format_version: TRAILER_VERSION,
        capacity_bytes,
        node_id,
    }
}

fn data(len_bytes: u64, tail: Tail) -> DataFile {
    DataFile::Present {
        len_bytes,
        tail: Some(tail),
        at_index_end: None,
    }
}

fn with_trailer(t: Trailer) -> DataFile {
    data(
        t.capacity_bytes + LOG_BYTES + TRAILER_BYTES,
        Tail::Trailer(t),
    )
}

fn open(trailer: Trailer) -> Result<Plan, Refusal> {
    Ok(Plan::Open {
        header: header(),
        trailer,
        log: log(),
    })
}

#[test]
fn a_fresh_directory_is_created_and_a_half_created_one_completed() {
    let fresh = plan(&dir(), &facts(None, false), &DataFile::Absent);
    assert_eq!(fresh, Ok(Plan::CreateStore));
    let half = plan(&dir(), &facts(Some(header()), false), &DataFile::Absent);
    assert_eq!(
        half,
        Ok(Plan::CreateDataFile {
            header: header(),
            log: Some(log())
        })
    );
}

#[test]
fn a_lost_index_is_refused_before_and_after_opening() {
    for index in [
        IndexFile::Absent,
        IndexFile::Truncated { len_bytes: 0 },
        IndexFile::Truncated { len_bytes: 8192 },
    ] {
        let err = refuse_lost_index(&dir(), index, true).unwrap_err();
        assert!(matches!(err, Refusal::IndexLost { .. }), "{err}");
        assert!(err.to_string().contains("backup"), "{err}");
        assert_eq!(refuse_lost_index(&dir(), index, false), Ok(()));
    }
    assert_eq!(refuse_lost_index(&dir(), IndexFile::Present, true), Ok(()));
    let reinitialised = plan(
        &dir(),
        &facts(None, false),
        &with_trailer(trailer(CAP, NODE)),
    );
    assert!(matches!(reinitialised, Err(Refusal::IndexLost { .. })));
}

#[test]
fn a_missing_data_file_is_refused_when_the_index_records_anything() {
    let blocks = plan(&dir(), &facts(Some(header()), true), &DataFile::Absent);
    assert!(
        matches!(blocks, Err(Refusal::DataMissing { .. })),
        "{blocks:?}"
    );
    let mut reserved = facts(Some(header()), false);
    reserved.has_reservations = true;
    let r = plan(&dir(), &reserved, &DataFile::Absent);
    assert!(matches!(r, Err(Refusal::DataMissing { .. })), "{r:?}");
}

#[test]
fn short_foreign_older_and_unknown_data_files_are_refused() {
    let f = facts(Some(header()), true);
    let short = plan(&dir(), &f, &data(0, Tail::Zeros));
    assert!(matches!(short, Err(Refusal::DataShort { .. })), "{short:?}");
    let short = plan(&dir(), &f, &data(CAP - 4096, Tail::Zeros));
    assert!(matches!(short, Err(Refusal::DataShort { .. })), "{short:?}");
    let foreign = plan(&dir(), &f, &with_trailer(trailer(CAP, NODE + 1)));
    assert!(
        matches!(foreign, Err(Refusal::Foreign { .. })),
        "{foreign:?}"
    );
    let mut h = header();
    h.capacity_bytes = 2 * CAP;
    let older = plan(
        &dir(),
        &facts(Some(h), true),
        &with_trailer(trailer(CAP, NODE)),
    );
    assert!(matches!(older, Err(Refusal::DataOlder { .. })), "{older:?}");
    let mut newer = trailer(CAP, NODE);
    newer.format_version = TRAILER_VERSION + 1;
    let v = plan(&dir(), &f, &with_trailer(newer));
    assert!(matches!(v, Err(Refusal::Version { .. })), "{v:?}");
    let garbage = plan(
        &dir(),
        &f,
        &data(
            CAP + LOG_BYTES + TRAILER_BYTES,
            Tail::Invalid(TrailerError::Magic),
        ),
    );
    assert!(
        matches!(garbage, Err(Refusal::DataNoTrailer { .. })),
        "{garbage:?}"
    );
    let misplaced = plan(
        &dir(),
        &f,
        &data(
            CAP + LOG_BYTES + TRAILER_BYTES + 100,
            Tail::Trailer(trailer(CAP, NODE)),
        ),
    );
    assert!(
        matches!(misplaced, Err(Refusal::DataNoTrailer { .. })),
        "{misplaced:?}"
    );
    // A valid region, but not the index's: the files do not match.
    let other_log = plan(
        &dir(),
        &f,
        &data(
            CAP + 2 * LOG_BYTES + TRAILER_BYTES,
            Tail::Trailer(trailer(CAP, NODE)),
        ),
    );
    assert!(
        matches!(other_log, Err(Refusal::LogRegion { .. })),
        "{other_log:?}"
    );
    // A version-1 trailer under an index that has its log record.
    let mut v1 = trailer(CAP, NODE);
    v1.format_version = TRAILER_VERSION_BEFORE_LOG;
    let v1_file = data(CAP + LOG_BYTES + TRAILER_BYTES, Tail::Trailer(v1));
    let v = plan(&dir(), &f, &v1_file);
    assert!(matches!(v, Err(Refusal::Version { .. })), "{v:?}");
    let mut h = header();
    h.format_version = FORMAT_VERSION + 1;
    let v = plan(
        &dir(),
        &facts(Some(h), true),
        &with_trailer(trailer(CAP, NODE)),
    );
    assert!(matches!(v, Err(Refusal::Version { .. })), "{v:?}");
}

#[test]
fn matching_files_open_and_a_data_file_without_a_trailer_gets_one() {
    let f = facts(Some(header()), true);
    let t = trailer(CAP, NODE);
    assert_eq!(plan(&dir(), &f, &with_trailer(t)), open(t));
    // The data file of the format before trailers: exactly the capacity, whatever its end.
    let old = data(CAP, Tail::Invalid(TrailerError::Magic));
    assert_eq!(
        plan(&dir(), &old_facts(true), &old),
        Ok(Plan::WriteTrailer {
            header: old_header(),
            log: None
        })
    );
    // A grown data file whose index did not record the growth yet opens at the index's size.
    let grown = trailer(2 * CAP, NODE);
    assert_eq!(plan(&dir(), &f, &with_trailer(grown)), open(grown));
}

#[test]
fn a_format_1_store_is_upgraded_and_a_half_upgraded_one_finished() {
    let mut v1 = trailer(CAP, NODE);
    v1.format_version = TRAILER_VERSION_BEFORE_LOG;
    let old = data(CAP + TRAILER_BYTES, Tail::Trailer(v1));
    assert_eq!(
        plan(&dir(), &old_facts(true), &old),
        Ok(Plan::UpgradeLog {
            header: old_header(),
            trailer: v1,
            log_bytes: None
        })
    );
    // The version-2 trailer was placed, the index commit did not happen.
    let t = trailer(CAP, NODE);
    assert_eq!(
        plan(&dir(), &old_facts(true), &with_trailer(t)),
        Ok(Plan::UpgradeLog {
            header: old_header(),
            trailer: t,
            log_bytes: Some(LOG_BYTES)
        })
    );
    // An index of this format without its log record is damaged.
    if FORMAT_VERSION != FORMAT_VERSION_BEFORE_LOG {
        let mut f = facts(Some(header()), true);
        f.log = None;
        let r = plan(&dir(), &f, &with_trailer(t));
        assert!(matches!(r, Err(Refusal::LogRegion { .. })), "{r:?}");
    }
}

#[test]
fn a_trailer_lost_to_a_power_loss_is_rewritten_or_found_where_it_was() {
    let f = facts(Some(header()), true);
    let lost = data(CAP + LOG_BYTES + TRAILER_BYTES, Tail::Zeros);
    assert_eq!(
        plan(&dir(), &f, &lost),
        Ok(Plan::WriteTrailer {
            header: header(),
            log: Some(log())
        })
    );
    let upgrade_lost = data(CAP + TRAILER_BYTES, Tail::Zeros);
    assert_eq!(
        plan(&dir(), &old_facts(true), &upgrade_lost),
        Ok(Plan::WriteTrailer {
            header: old_header(),
            log: None
        })
    );
    let old = trailer(CAP, NODE);
    let growth_lost = DataFile::Present {
        len_bytes: 2 * CAP + LOG_BYTES + TRAILER_BYTES,
        tail: Some(Tail::Zeros),
        at_index_end: Some(Tail::Trailer(old)),
    };
    assert_eq!(plan(&dir(), &f, &growth_lost), open(old));
    let nothing = DataFile::Present {
        len_bytes: 2 * CAP + LOG_BYTES + TRAILER_BYTES,
        tail: Some(Tail::Zeros),
        at_index_end: Some(Tail::Zeros),
    };
    assert!(matches!(
        plan(&dir(), &f, &nothing),
        Err(Refusal::DataNoTrailer { .. })
    ));
}
