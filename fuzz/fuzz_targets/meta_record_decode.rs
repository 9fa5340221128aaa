//! Every record the metadata store decodes from disk: corrupt bytes are an error, never a panic
//! or a silently wrong value. A record that decodes re-encodes to exactly its bytes (so no two
//! byte strings decode to the same value and nothing is silently normalised).
#![no_main]

use engine::meta::{
    decode_hash_key, decode_reservation, encode_reservation, Header, IndexEntry, LogState,
    HEADER_BYTES, INDEX_ENTRY_BYTES, LOG_STATE_BYTES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = IndexEntry::decode(data) {
        assert_eq!(data.len(), INDEX_ENTRY_BYTES);
        assert_eq!(&entry.encode()[..], data, "index entry is canonical");
        assert!(entry.len >= 1 && u64::from(entry.len) <= entry.slot.bytes());
        assert_eq!(entry.slot.offset % entry.slot.bytes(), 0);
    }
    if let Ok(header) = Header::decode(data) {
        assert_eq!(data.len(), HEADER_BYTES);
        assert_eq!(&header.encode()[..], data, "header is canonical");
    }
    if let Ok(state) = LogState::decode(data) {
        assert_eq!(data.len(), LOG_STATE_BYTES);
        assert_eq!(&state.encode()[..], data, "log state is canonical");
        assert!(state.next.sector < state.log_sectors);
    }
    if data.len() >= 8 {
        let (key, value) = data.split_at(8);
        if let Ok((slot, worker)) = decode_reservation(key, value) {
            let (k, v) = encode_reservation(slot, worker);
            assert_eq!(&k[..], key);
            assert_eq!(&v[..], value);
        }
    }
    if let Ok(hash) = decode_hash_key(data) {
        assert_eq!(&hash.0[..], data);
    }
});
