//! Black-box tests of the `/ipfs/{cid}` trustless gateway (SPEC.md's `/ipfs/` rows, the IPFS
//! Trustless Gateway specification) against the real `buddy-blocks` binary: every status path,
//! the headers the spec asks for, CAR bytes, and CIDs in every form.

mod common;

use std::time::Duration;

use cid::multibase::Base;
use cid::multihash::Multihash;
use cid::Cid;
use common::*;

const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const RAW_ACCEPT: (&str, &str) = ("Accept", "application/vnd.ipld.raw");

fn digest(data: &[u8]) -> Multihash<64> {
    use sha2::Digest;
    Multihash::wrap(0x12, &sha2::Sha256::digest(data)).unwrap()
}

fn cid_v1(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(codec, digest(data))
}

fn cid_v0(data: &[u8]) -> Cid {
    Cid::new_v0(digest(data)).unwrap()
}

fn raw_etag(cid: &Cid) -> String {
    format!("\"{cid}.raw\"")
}

/// One block section of a CAR: the CID's bytes and the block's.
type CarBlock = (Vec<u8>, Vec<u8>);

/// A CARv1 stream taken apart: the header's bytes (dag-cbor) and the block sections.
fn parse_car(bytes: &[u8]) -> (Vec<u8>, Vec<CarBlock>) {
    fn varint(bytes: &[u8], at: &mut usize) -> usize {
        let mut value = 0usize;
        for shift in (0..).step_by(7) {
            let b = bytes[*at];
            *at += 1;
            value |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return value;
            }
        }
        unreachable!()
    }
    let mut at = 0;
    let header_len = varint(bytes, &mut at);
    let header = bytes[at..at + header_len].to_vec();
    at += header_len;
    let mut blocks = Vec::new();
    while at < bytes.len() {
        let len = varint(bytes, &mut at);
        let section = &bytes[at..at + len];
        at += len;
        let cid = Cid::read_bytes(section).expect("a CID starts each section");
        let cid_len = cid.to_bytes().len();
        blocks.push((cid.to_bytes(), section[cid_len..].to_vec()));
    }
    (header, blocks)
}

#[test]
fn raw_blocks_by_every_cid_form_with_the_spec_headers() {
    let s = Server::start(&[]);
    let data = body(1, 5000);
    let hash = s.put_ok(&data);
    let v1 = cid_v1(RAW, &data);
    let forms = [
        v1.to_string(),
        v1.to_string().to_uppercase(),
        v1.to_string_of_base(Base::Base36Lower).unwrap(),
        v1.to_string_of_base(Base::Base36Upper).unwrap(),
        v1.to_string_of_base(Base::Base58Btc).unwrap(),
        cid_v0(&data).to_string(),
        cid_v1(DAG_PB, &data).to_string(),
        cid_v1(0x71, &data).to_string(),
    ];
    let mut c = s.conn();
    for form in &forms {
        let r = c.request("GET", &format!("/ipfs/{form}?format=raw"), &[], None);
        r.expect(200);
        assert!(r.body == data, "{form}: wrong bytes");
        assert_eq!(r.header("content-type"), Some("application/vnd.ipld.raw"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=29030400, immutable")
        );
        assert_eq!(r.header("content-length"), Some("5000"));
        assert_eq!(r.header("vary"), Some("Accept"));
        let canonical = Cid::try_from(form.as_str()).unwrap();
        assert_eq!(r.header("etag"), Some(raw_etag(&canonical).as_str()));
        assert_eq!(
            r.header("content-disposition"),
            Some(format!("attachment; filename=\"{canonical}.bin\"").as_str())
        );
        assert_eq!(
            r.header("content-location"),
            None,
            "{form}: format was in the URL"
        );
    }
    // By Accept alone: the same bytes, and Content-Location names the URL with the format.
    let path = format!("/ipfs/{v1}");
    let r = c.request("GET", &path, &[RAW_ACCEPT], None);
    r.expect(200);
    assert!(r.body == data);
    assert_eq!(
        r.header("content-location"),
        Some(format!("{path}?format=raw").as_str())
    );
    // HEAD: the headers, no body.
    let r = c.request("HEAD", &path, &[RAW_ACCEPT], None);
    r.expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("5000"));
    assert_eq!(r.header("etag"), Some(raw_etag(&v1).as_str()));
    assert!(
        c.is_quiet_for(Duration::from_millis(100)),
        "HEAD sent a body"
    );
    // The /block/ form of the same block is untouched by all of it.
    c.request("GET", &format!("/block/{hash}"), &[], None)
        .expect(200);
    s.assert_healthy();
}

#[test]
fn ranges_and_conditional_requests_on_raw_blocks() {
    let s = Server::start(&[]);
    let data = body(2, 1000);
    s.put_ok(&data);
    let cid = cid_v1(RAW, &data);
    let path = format!("/ipfs/{cid}?format=raw");
    let mut c = s.conn();
    let r = c.request("GET", &path, &[("Range", "bytes=10-19")], None);
    r.expect(206);
    assert!(r.body == data[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(r.header("content-type"), Some("application/vnd.ipld.raw"));
    let r = c.request("GET", &path, &[("Range", "bytes=-5")], None);
    r.expect(206);
    assert!(r.body == data[995..]);
    let r = c.request("GET", &path, &[("Range", "bytes=1000-")], None);
    r.expect(416);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));

    let etag = raw_etag(&cid);
    let r = c.request("GET", &path, &[("If-None-Match", &etag)], None);
    r.expect(304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    // The /block/ ETag is another representation's: no 304.
    let block_etag = format!("\"{}\"", sha256_hex(&data));
    c.request("GET", &path, &[("If-None-Match", &block_etag)], None)
        .expect(200);
    let r = c.request("HEAD", &path, &[("If-None-Match", &etag)], None);
    r.expect(304);
    c.request("GET", "/health", &[], None).expect(200);
}

#[test]
fn car_responses_hold_the_block_and_parse() {
    let s = Server::start(&[]);
    let data = body(3, 70_000);
    s.put_ok(&data);
    let cid = cid_v1(RAW, &data);
    let mut c = s.conn();
    let accept = (
        "Accept",
        "application/vnd.ipld.car; version=1; order=dfs; dups=y",
    );
    for (path, headers, dups) in [
        (format!("/ipfs/{cid}?format=car"), vec![], "n"),
        (
            format!("/ipfs/{cid}?format=car&dag-scope=block"),
            vec![],
            "n",
        ),
        (format!("/ipfs/{cid}"), vec![accept], "y"),
    ] {
        let r = c.request("GET", &path, &headers, None);
        r.expect(200);
        assert_eq!(
            r.header("content-type"),
            Some(format!("application/vnd.ipld.car; version=1; order=dfs; dups={dups}").as_str()),
            "{path}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            r.header("content-disposition"),
            Some(format!("attachment; filename=\"{cid}.car\"").as_str())
        );
        assert!(r
            .header("etag")
            .unwrap()
            .starts_with(&format!("\"{cid}.car")));
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let (header, blocks) = parse_car(&r.body);
        let mut cid_link = vec![0u8];
        cid_link.extend_from_slice(&cid.to_bytes());
        assert!(find(&header, &cid_link).is_some(), "the root is the CID");
        assert!(find(&header, b"version").is_some());
        assert_eq!(blocks.len(), 1, "{path}");
        assert_eq!(blocks[0].0, cid.to_bytes());
        assert!(blocks[0].1 == data, "{path}: the block's bytes");
    }
    // HEAD of a CAR: the length of the GET, no body.
    let get = c.request("GET", &format!("/ipfs/{cid}?format=car"), &[], None);
    let r = c.request("HEAD", &format!("/ipfs/{cid}?format=car"), &[], None);
    r.expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), get.header("content-length"));
    assert!(
        c.is_quiet_for(Duration::from_millis(100)),
        "HEAD sent a body"
    );
    // A Range is not applied to a CAR.
    let r = c.request(
        "GET",
        &format!("/ipfs/{cid}?format=car"),
        &[("Range", "bytes=0-9")],
        None,
    );
    r.expect(200);
    assert!(r.body == get.body);
}

#[test]
fn a_car_beyond_the_root_of_a_dag_with_links_is_refused_not_truncated() {
    let s = Server::start(&[]);
    // A dag-pb node with one link (PBNode.Links[0].Hash = a 34-byte multihash), and a leaf.
    let child = body(4, 100);
    let mut node = vec![0x12, 0x24, 0x0a, 0x22];
    node.extend_from_slice(&digest(&child).to_bytes());
    node.extend_from_slice(&[0x0a, 0x02, 0x08, 0x02]);
    let leaf = vec![0x0a, 0x04, 0x08, 0x02, 0x18, 0x00];
    s.put_ok(&node);
    s.put_ok(&leaf);
    let node_v0 = cid_v0(&node);
    let r = s.request("GET", &format!("/ipfs/{node_v0}?format=car"), &[], None);
    r.expect(400);
    assert!(r.text().contains("dag-scope=block"), "{}", r.text());
    let r = s.request(
        "GET",
        &format!("/ipfs/{node_v0}?format=car&dag-scope=block"),
        &[],
        None,
    );
    r.expect(200);
    assert_eq!(parse_car(&r.body).1.len(), 1);
    // A dag-pb node without links is a whole DAG: any scope.
    let leaf_v0 = cid_v0(&leaf);
    let r = s.request(
        "GET",
        &format!("/ipfs/{leaf_v0}?format=car&dag-scope=all"),
        &[],
        None,
    );
    r.expect(200);
    assert!(parse_car(&r.body).1[0].1 == leaf);
    // dag-cbor is not walked: only dag-scope=block.
    let cbor = cid_v1(0x71, &leaf);
    s.request("GET", &format!("/ipfs/{cbor}?format=car"), &[], None)
        .expect(400);
    s.request(
        "GET",
        &format!("/ipfs/{cbor}?format=car&dag-scope=block"),
        &[],
        None,
    )
    .expect(200);
}

#[test]
fn identity_cids_are_answered_from_the_cid() {
    let s = Server::start(&[]);
    let r = s.request("GET", "/ipfs/bafkqaaa?format=raw", &[RAW_ACCEPT], None);
    r.expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("0"));
    let r = s.request("HEAD", "/ipfs/bafkqaaa", &[RAW_ACCEPT], None);
    r.expect(200);
    let r = s.request("GET", "/ipfs/bafkqaatine?format=raw", &[], None);
    r.expect(200);
    assert_eq!(r.body, b"hi");
    let r = s.request("GET", "/ipfs/bafkqaaa?format=car", &[], None);
    r.expect(200);
    let (header, blocks) = parse_car(&r.body);
    assert!(
        find(&header, &[0x00, 0x01, 0x55, 0x00, 0x00]).is_some(),
        "root bafkqaaa"
    );
    assert!(blocks.is_empty(), "no identity block in a CAR");
    s.request("PUT", "/ipfs/bafkqaatine", &[], Some(b"hi"))
        .expect(400);
    s.request("DELETE", "/ipfs/bafkqaaa", &[], None).expect(400);
    assert_eq!(s.stats().blocks, 0);
}

#[test]
fn refusals_get_the_spec_statuses_and_a_reason() {
    let s = Server::start(&[]);
    let data = body(5, 300);
    s.put_ok(&data);
    let cid = cid_v1(RAW, &data);
    let missing = cid_v1(RAW, b"never stored");
    let sha512 = format!("f01551340{}", "ab".repeat(64));
    let long = format!("b{}", "a".repeat(5000));
    let mut c = s.conn();
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        (format!("/ipfs/{missing}?format=raw"), vec![], 404),
        (format!("/ipfs/{missing}?format=car"), vec![], 404),
        (format!("/ipfs/{cid}"), vec![], 400),
        (format!("/ipfs/{cid}"), vec![("Accept", "*/*")], 406),
        (format!("/ipfs/{cid}"), vec![("Accept", "text/html")], 406),
        (
            format!("/ipfs/{cid}"),
            vec![("Accept", "application/vnd.ipld.car; version=2")],
            406,
        ),
        (format!("/ipfs/{cid}?format=tar"), vec![], 400),
        (format!("/ipfs/{cid}?format=car&car-version=2"), vec![], 400),
        (format!("/ipfs/{cid}?format=car&dag-scope=x"), vec![], 400),
        (format!("/ipfs/{cid}/sub/path?format=car"), vec![], 400),
        ("/ipfs/?format=raw".to_owned(), vec![], 400),
        ("/ipfs/not-a-cid?format=raw".to_owned(), vec![], 400),
        ("/ipfs/Qm123?format=raw".to_owned(), vec![], 400),
        ("/ipfs/%ff%fe?format=raw".to_owned(), vec![], 400),
        (format!("/ipfs/{long}?format=raw"), vec![], 400),
        (format!("/ipfs/{sha512}?format=raw"), vec![], 400),
    ];
    for (path, headers, status) in &cases {
        let r = c.request("GET", path, headers, None);
        assert_eq!(r.status, *status, "{path} {headers:?}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("text/plain"), "{path}");
        assert!(!r.text().trim().is_empty(), "{path}: a reason");
    }
    let r = c.request("GET", &format!("/ipfs/{sha512}?format=raw"), &[], None);
    assert!(r.text().contains("multihash"), "{}", r.text());
    let r = c.request("POST", &format!("/ipfs/{cid}"), &[], Some(b"x"));
    r.expect(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, DELETE"));
    let r = c.request("HEAD", &format!("/ipfs/{missing}?format=raw"), &[], None);
    r.expect(404);
    assert!(
        c.is_quiet_for(Duration::from_millis(100)),
        "HEAD 404 sent a body"
    );
    // Random CID-like garbage never takes the server down.
    let mut rng = Rng::new(6);
    let alphabet = b"bBkKzfmQ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for _ in 0..300 {
        let len = rng.below(80) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize] as char)
            .collect();
        let r = c.request("GET", &format!("/ipfs/{text}?format=raw"), &[], None);
        assert!(matches!(r.status, 400 | 404), "{text}: {}", r.status);
    }
    c.request("GET", &format!("/ipfs/{cid}?format=raw"), &[], None)
        .expect(200);
    s.assert_healthy();
    assert_eq!(s.stats().blocks, 1);
}

#[test]
fn put_and_delete_through_ipfs_paths() {
    let s = Server::start(&["--auth-token", "t0k"]);
    let auth = ("Authorization", "Bearer t0k");
    let data = body(7, 20_000);
    let hash = sha256_hex(&data);
    let v0 = cid_v0(&data);
    let v1 = cid_v1(RAW, &data);
    s.request("PUT", &format!("/ipfs/{v1}"), &[], Some(&data))
        .expect(401);
    let r = s.request("PUT", &format!("/ipfs/{v1}"), &[auth], Some(&data[1..]));
    r.expect(422);
    assert_eq!(s.stats().blocks, 0, "a mismatch stores nothing");
    let r = s.request("PUT", &format!("/ipfs/{v1}"), &[auth], Some(&data));
    r.expect(201);
    assert_eq!(r.body, hash.as_bytes());
    assert_eq!(
        r.header("location"),
        Some(format!("/block/{hash}").as_str())
    );
    // Another CID of the same digest is the same block: 200, stored once.
    s.request("PUT", &format!("/ipfs/{v0}"), &[auth], Some(&data))
        .expect(200);
    assert_eq!(s.stats().blocks, 1);
    s.assert_stored(&data);
    s.request("DELETE", &format!("/ipfs/{v0}"), &[], None)
        .expect(401);
    s.request("DELETE", &format!("/ipfs/{v0}"), &[auth], None)
        .expect(204);
    s.request("DELETE", &format!("/ipfs/{v1}"), &[auth], None)
        .expect(404);
    s.get(&hash).expect(404);
    s.request("GET", &format!("/ipfs/{v1}?format=raw"), &[], None)
        .expect(404);
    let end = s.wait_stats("the slot to come back", |st| st.used == 0);
    end.assert_identity();
}
