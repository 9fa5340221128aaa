//! Steps of the IPFS trustless gateway: raw and CAR reads of a stored block by CIDv1 (raw and
//! dag-pb codecs, base32 and base16) and CIDv0, negotiation by `?format=` and `Accept`, an
//! identity CID (inline data), HEAD, an absent block, bad CIDs, another hash function, a path
//! below a CID, and `PUT` / `DELETE` by CID (a matching body, a mismatch, no token).

use cid::multibase::Base;
use cid::multihash::Multihash;
use cid::Cid;
use engine::hash::BlockHash;

use super::{content, Script};

const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const SHA2_256: u64 = 0x12;
const SHA1: u64 = 0x11;
const IDENTITY: u64 = 0x00;

fn sha256(hash: &BlockHash) -> Multihash<64> {
    Multihash::wrap(SHA2_256, &hash.0).expect("32 bytes fit")
}

pub(super) fn add(s: &mut Script) {
    let block = content(5000, 40);
    let hash = BlockHash::of(&block);
    let v1 = Cid::new_v1(RAW, sha256(&hash));
    let cid = v1.to_string();
    s.one("ipfs: put by CID", put(s, &cid, &block, true));
    s.one(
        "ipfs: put by CID, a mismatch",
        put(s, &cid, &content(5000, 41), true),
    );
    s.one(
        "ipfs: put by CID without a token",
        put(s, &cid, &block, false),
    );
    let base16 = v1.to_string_of_base(Base::Base16Lower).expect("base16");
    let v0 = Cid::new_v0(sha256(&hash)).expect("v0").to_string();
    let pb = Cid::new_v1(DAG_PB, sha256(&hash)).to_string();
    let raw_accept = "Accept: application/vnd.ipld.raw";
    let car_accept = "Accept: application/vnd.ipld.car";
    let reads: [(&str, String, &str); 10] = [
        ("raw by format", format!("/ipfs/{cid}?format=raw"), ""),
        ("raw by accept", format!("/ipfs/{cid}"), raw_accept),
        ("car by format", format!("/ipfs/{cid}?format=car"), ""),
        ("car by accept", format!("/ipfs/{cid}"), car_accept),
        ("no format asked", format!("/ipfs/{cid}"), ""),
        ("accept html", format!("/ipfs/{cid}"), "Accept: text/html"),
        ("base16 CID", format!("/ipfs/{base16}?format=raw"), ""),
        ("CIDv0", format!("/ipfs/{v0}?format=raw"), ""),
        ("dag-pb CID", format!("/ipfs/{pb}?format=car"), ""),
        ("unknown format", format!("/ipfs/{cid}?format=tar"), ""),
    ];
    for (label, path, accept) in reads {
        let extra: Vec<&str> = [accept].into_iter().filter(|a| !a.is_empty()).collect();
        s.one(&format!("ipfs: {label}"), s.get("GET", &path, &extra));
    }
    s.one(
        "ipfs: head",
        s.get("HEAD", &format!("/ipfs/{cid}?format=raw"), &[]),
    );
    let absent = Cid::new_v1(RAW, sha256(&BlockHash::of(b"nope"))).to_string();
    s.one(
        "ipfs: absent",
        s.get("GET", &format!("/ipfs/{absent}?format=raw"), &[]),
    );
    oddities(s, &cid);
    let del = format!(
        "DELETE /ipfs/{cid} HTTP/1.1\r\nHost: d\r\n{}\r\n",
        auth_line(s)
    );
    s.one("ipfs: delete by CID", del.into_bytes());
}

fn oddities(s: &mut Script, cid: &str) {
    let inline = Multihash::<64>::wrap(IDENTITY, b"inline bytes").expect("fits");
    let inline = Cid::new_v1(RAW, inline).to_string();
    let sha1 = Multihash::<64>::wrap(SHA1, &[7u8; 20]).expect("fits");
    let sha1 = Cid::new_v1(RAW, sha1).to_string();
    let paths = [
        ("identity CID", format!("/ipfs/{inline}?format=raw")),
        ("sha1 CID", format!("/ipfs/{sha1}?format=raw")),
        ("not a CID", "/ipfs/not-a-cid?format=raw".to_string()),
        ("empty CID", "/ipfs/?format=raw".to_string()),
        ("a path below a CID", format!("/ipfs/{cid}/file?format=raw")),
    ];
    for (label, path) in paths {
        s.one(&format!("ipfs: {label}"), s.get("GET", &path, &[]));
    }
    let post = format!("POST /ipfs/{cid} HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n");
    s.one("ipfs: POST", post.into_bytes());
    let inline_put = put(s, &inline, b"inline bytes", true);
    s.one("ipfs: put of an identity CID", inline_put);
}

fn auth_line(s: &Script) -> String {
    format!(
        "Authorization: Bearer {}\r\n",
        String::from_utf8(s.token.clone()).expect("ASCII")
    )
}

fn put(s: &Script, cid: &str, body: &[u8], with_token: bool) -> Vec<u8> {
    let auth = if with_token {
        auth_line(s)
    } else {
        String::new()
    };
    let head = format!(
        "PUT /ipfs/{cid} HTTP/1.1\r\nHost: d\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}
