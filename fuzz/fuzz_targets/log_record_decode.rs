//! The write-ahead log's record decoder (`engine::wal`) over arbitrary bytes: it never panics,
//! and whatever decodes is canonical — re-encoding it gives exactly the record's bytes
//! (header, ops and zero padding), so a torn or altered record can never pass for another.
//! Each input is tried as it is and with its two checksums fixed up, so the fuzzer also
//! reaches the op decoder behind them.
#![no_main]

use engine::wal::{
    decode_header, decode_record, encode_batch, encode_wrap, RecordKind, SECTOR_BYTES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 64 {
        let mut fixed = data.to_vec();
        let len = u32::from_le_bytes(fixed[12..16].try_into().unwrap()) as usize;
        let body_end = len.clamp(64, fixed.len());
        let body_crc = crc32c::crc32c(&fixed[64..body_end]);
        fixed[56..60].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&fixed[0..60]);
        fixed[60..64].copy_from_slice(&header_crc.to_le_bytes());
        check(&fixed);
    }
});

fn check(data: &[u8]) {
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
}
