//! The CID decoder and the `/ipfs/` gateway rules over untrusted request bytes: a CID text,
//! a query and an `Accept` value never panic. A CID that parses re-parses from its canonical
//! text to the same CID, names a 32-byte sha2-256 digest or at most 64 inline bytes, and its
//! CAR framing has the length the response announces.
#![no_main]

use engine::cid::{Address, ContentId, IDENTITY_BYTES_MAX};
use engine::gateway;
use engine::http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Three fields split at the first two NUL bytes: CID text, query, Accept.
    let mut parts = data.splitn(3, |&b| b == 0);
    let text = parts.next().unwrap_or(&[]);
    let query = parts.next().unwrap_or(&[]);
    let accept = parts.next();
    if let Ok(cid) = ContentId::parse(text) {
        let canonical = cid.canonical();
        assert_eq!(ContentId::parse(canonical.as_bytes()), Ok(cid), "{canonical}");
        let mut bytes = Vec::new();
        cid.write_bytes(&mut bytes);
        match cid.address() {
            Address::Stored(hash) => {
                assert!(bytes.ends_with(&hash.0));
                assert!(cid.inline_data().is_empty());
            }
            Address::Inline => assert!(cid.inline_data().len() <= IDENTITY_BYTES_MAX),
        }
        let data_len = match cid.address() {
            Address::Stored(_) => 1000,
            Address::Inline => 0,
        };
        let mut prefix = Vec::new();
        gateway::write_car_prefix(&mut prefix, &cid, data_len);
        assert_eq!(gateway::car_len(&cid, data_len), (prefix.len() + data_len) as u64);
    }
    for method in [Method::Get, Method::Head, Method::Put, Method::Delete, Method::Post] {
        let _ = gateway::route(method, text, query, accept);
    }
    let _ = gateway::dag_pb_has_links(data);
});
