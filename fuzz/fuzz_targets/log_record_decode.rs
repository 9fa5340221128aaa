//! The write-ahead log's record decoder (`engine::wal`) over arbitrary bytes: it never panics,
//! and whatever decodes is canonical — re-encoding it gives exactly the record's bytes
//! (header, ops and zero padding), so a torn or altered record can never pass for another.
#![no_main]

use engine::wal::{
    decode_header, decode_record, encode_batch, encode_wrap, RecordKind, SECTOR_BYTES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = decode_header(data);
    let Ok(record) = decode_record(data) else {
        return;
    };
    assert_eq!(header, Ok(record.header), "the record's header decodes alone");
    let len = record.header.len_bytes as usize;
    assert!(len <= data.len());
    assert_eq!(record.ops.len(), record.header.op_count as usize);
    let mut again = Vec::new();
    match record.header.kind {
        RecordKind::Batch => encode_batch(
            record.header.stamp,
            record.header.log_seq,
            record.header.commit_seq,
            &record.ops,
            &mut again,
        ),
        RecordKind::Wrap => encode_wrap(record.header.stamp, record.header.log_seq, &mut again),
    }
    assert_eq!(again.len() as u64 % SECTOR_BYTES, 0);
    assert_eq!(&again[..len], &data[..len], "the record is canonical");
});
