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
