//! Plain requests: byte-exact PUT/GET at the size edges, dedup, DELETE of the unknown, pools
//! refilling, pipelining and one-byte fragments.

use engine::hash::BlockHash;
use sim::harness::{Harness, HarnessConfig};
use sim::http_client::{self, Style};

use crate::common::{assert_books, content, delete_req, get_req, put_req, status};

#[test]
fn put_then_get_is_byte_exact_for_the_edge_sizes() {
    let mut h = Harness::new(HarnessConfig {
        workers: 2,
        ..HarnessConfig::default()
    });
    for (i, len) in [1usize, 4095, 4096, 4097, 524_288].into_iter().enumerate() {
        let body = content(len, i as u8);
        let hash = BlockHash::of(&body);
        let r = h.request(i % 2, &put_req(&body));
        assert_eq!(status(&r), 201, "PUT of {len} bytes");
        assert_eq!(r.body, hash.to_hex().as_bytes());
        let g = h.request((i + 1) % 2, &get_req(&hash));
        assert_eq!(status(&g), 200, "GET of {len} bytes");
        assert!(g.body == body, "GET of {len} bytes is byte-exact");
    }
    assert_books(&h);
}

#[test]
fn a_second_put_of_the_same_bytes_is_200_and_stores_nothing() {
    let mut h = Harness::new(HarnessConfig::default());
    let body = content(10_000, 7);
    assert_eq!(status(&h.request(0, &put_req(&body))), 201);
    let used = h.world.node.as_ref().unwrap().controller.stats().used_bytes;
    assert_eq!(status(&h.request(0, &put_req(&body))), 200);
    let s = h.world.node.as_ref().unwrap().controller.stats();
    assert_eq!(
        (s.used_bytes, s.blocks),
        (used, 1),
        "dedup: no new slot is used"
    );
    assert_books(&h);
}

#[test]
fn delete_of_an_unknown_block_is_404() {
    let mut h = Harness::new(HarnessConfig::default());
    let r = h.request(0, &delete_req(&BlockHash::of(b"never stored")));
    assert_eq!(status(&r), 404);
    let body = content(100, 1);
    let hash = BlockHash::of(&body);
    assert_eq!(status(&h.request(0, &put_req(&body))), 201);
    assert_eq!(status(&h.request(0, &delete_req(&hash))), 204);
    assert_eq!(status(&h.request(0, &delete_req(&hash))), 404);
    assert_eq!(status(&h.request(0, &get_req(&hash))), 404);
    assert_books(&h);
}

#[test]
fn pools_fill_to_their_targets_and_refill_after_puts() {
    let targets = [3, 2, 1, 1, 0, 0, 0, 1];
    let mut h = Harness::new(HarnessConfig {
        workers: 3,
        pool_targets: targets,
        ..HarnessConfig::default()
    });
    let want: u64 = targets
        .iter()
        .enumerate()
        .map(|(i, t)| u64::from(*t) * (4096 << i))
        .sum();
    for wb in &h.world.node.as_ref().unwrap().workers {
        assert_eq!(wb.worker.pooled_bytes(), want, "pool filled at start");
    }
    for i in 0..5u8 {
        assert_eq!(status(&h.request(1, &put_req(&content(100, i)))), 201);
    }
    for wb in &h.world.node.as_ref().unwrap().workers {
        assert_eq!(wb.worker.pooled_bytes(), want, "pool refilled after PUTs");
    }
    assert_books(&h);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = Harness::new(HarnessConfig::default());
    let a = content(5000, 3);
    let ha = BlockHash::of(&a);
    let mut bytes = put_req(&a);
    bytes.extend_from_slice(&get_req(&ha));
    bytes.extend_from_slice(&delete_req(&ha));
    bytes.extend_from_slice(&get_req(&ha));
    bytes.extend_from_slice(&put_req(&a));
    let c = h.connect(0);
    h.send(c, &bytes);
    h.run_until_quiet();
    let rs = h.responses(c, false);
    let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![201, 200, 204, 404, 201]);
    assert_eq!(rs[1].body, a);
}

#[test]
fn a_request_split_into_one_byte_fragments_is_answered() {
    let mut h = Harness::new(HarnessConfig {
        recv_chunk_bytes: 1024,
        ..HarnessConfig::default()
    });
    let body = content(3000, 9);
    let bytes = http_client::put(
        &body,
        Some(&BlockHash::of(&body)),
        &Style {
            chunked: true,
            chunk_bytes: 700,
            ..Style::default()
        },
        None,
    );
    let c = h.connect(0);
    for b in &bytes {
        h.send(c, std::slice::from_ref(b));
        h.run_until_quiet();
    }
    let rs = h.responses(c, false);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 201);
    let g = h.request(0, &get_req(&BlockHash::of(&body)));
    assert_eq!(g.body, body);
}

fn messages_to_controller(h: &Harness) -> u64 {
    let node = h.world.node.as_ref().expect("running");
    node.controller.stats().messages_total
}

#[test]
fn a_put_to_a_stored_hash_is_verified_from_the_view_without_the_controller() {
    let mut h = Harness::new(HarnessConfig::default());
    let body = content(10_000, 3);
    let hash = BlockHash::of(&body);
    assert_eq!(status(&h.request(0, &put_req(&body))), 201);
    h.run_until_quiet();
    let before = messages_to_controller(&h);
    for chunked in [false, true] {
        let style = Style {
            chunked,
            chunk_bytes: 3000,
            ..Style::default()
        };
        let again = h.request(0, &http_client::put(&body, Some(&hash), &style, None));
        assert_eq!(
            status(&again),
            200,
            "a re-upload (chunked: {chunked}) is a 200"
        );
        assert_eq!(again.body, hash.to_hex().as_bytes());
        let mut wrong = body.clone();
        wrong[9_999] ^= 1;
        let bad = h.request(0, &http_client::put(&wrong, Some(&hash), &style, None));
        assert_eq!(
            status(&bad),
            422,
            "the body is still hashed (chunked: {chunked})"
        );
    }
    h.run_until_quiet();
    assert_eq!(
        messages_to_controller(&h),
        before,
        "no slot, no occupy: the controller heard nothing"
    );
    let other = content(500, 4);
    let absent = BlockHash::of(&other);
    let r = h.request(
        0,
        &http_client::put(&other, Some(&absent), &Style::default(), None),
    );
    assert_eq!(
        status(&r),
        201,
        "a hash the view does not show is stored as usual"
    );
    assert_books(&h);
}

#[test]
fn listing_and_missing_answer_from_the_view_after_put_and_delete() {
    let mut h = Harness::new(HarnessConfig {
        workers: 2,
        ..HarnessConfig::default()
    });
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| content(100 + i, i as u8)).collect();
    let mut hashes: Vec<BlockHash> = bodies.iter().map(|b| BlockHash::of(b)).collect();
    for b in &bodies {
        assert_eq!(status(&h.request(0, &put_req(b))), 201);
    }
    assert_eq!(status(&h.request(1, &delete_req(&hashes[1]))), 204);
    let gone = hashes.remove(1);
    hashes.sort();
    let list = h.request(
        1,
        &http_client::bodyless("GET", "/blocks", &Style::default(), None, &[]),
    );
    assert_eq!(status(&list), 200);
    let listed: Vec<&[u8]> = list
        .body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let want: Vec<String> = hashes
        .iter()
        .map(|h| {
            let len = bodies
                .iter()
                .find(|b| BlockHash::of(b) == *h)
                .unwrap()
                .len();
            format!("{} {len}", h.to_hex())
        })
        .collect();
    assert_eq!(
        listed,
        want.iter().map(|s| s.as_bytes()).collect::<Vec<_>>()
    );
    let after = format!("/blocks?after={}&limit=5", hashes[0].to_hex());
    let rest = h.request(
        0,
        &http_client::bodyless("GET", &after, &Style::default(), None, &[]),
    );
    assert_eq!(
        rest.body,
        format!("{}\n", want[1]).into_bytes(),
        "after is exclusive"
    );
    let mut ask = Vec::new();
    for hash in [hashes[0], gone, hashes[1]] {
        ask.extend_from_slice(format!("{}\n", hash.to_hex()).as_bytes());
    }
    let post = format!(
        "POST /blocks/missing HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        ask.len()
    );
    let mut req = post.into_bytes();
    req.extend_from_slice(&ask);
    let missing = h.request(0, &req);
    assert_eq!(status(&missing), 200);
    assert_eq!(missing.body, format!("{}\n", gone.to_hex()).into_bytes());
    assert_books(&h);
}
