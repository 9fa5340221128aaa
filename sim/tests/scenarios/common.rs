//! Helpers shared by the scenario modules: request bytes, seeded content, the books check.

use engine::hash::BlockHash;
use sim::harness::Harness;
use sim::http_client::{self, Response, Style};
use sim::options::CrashKind;

pub fn put_req(body: &[u8]) -> Vec<u8> {
    http_client::put(body, None, &Style::default(), None)
}

pub fn get_req(hash: &BlockHash) -> Vec<u8> {
    http_client::bodyless(
        "GET",
        &format!("/block/{}", hash.to_hex()),
        &Style::default(),
        None,
        &[],
    )
}

pub fn delete_req(hash: &BlockHash) -> Vec<u8> {
    http_client::bodyless(
        "DELETE",
        &format!("/block/{}", hash.to_hex()),
        &Style::default(),
        None,
        &[],
    )
}

pub fn head_req(hash: &BlockHash) -> Vec<u8> {
    http_client::bodyless(
        "HEAD",
        &format!("/block/{}", hash.to_hex()),
        &Style::default(),
        None,
        &[],
    )
}

/// Power fails, the node recovers; `x` (written in relaxed mode) may be lost, never corrupt.
pub fn power_loss_keeps_the_block_or_loses_it(h: &mut Harness, x: &[u8]) {
    if let Err(f) = h.world.crash(CrashKind::PowerLoss) {
        panic!("recovery after power loss: {f}");
    }
    h.run_until_quiet();
    let g = h.request(0, &get_req(&BlockHash::of(x)));
    assert!(
        g.status == 404 || (g.status == 200 && g.body == x),
        "{}",
        g.status
    );
}

/// Seeded, distinct content of `len` bytes.
pub fn content(len: usize, tag: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag) ^ (i >> 8) as u8)
        .collect()
}

pub fn status(r: &Response) -> u16 {
    r.status
}

/// The SPEC's accounting identity and "every reserved byte sits in a pool", at a quiet moment.
pub fn assert_books(h: &Harness) {
    let node = h.world.node.as_ref().expect("running");
    node.controller.check_invariants();
    let s = node.controller.stats();
    assert_eq!(
        s.free_bytes + s.reserved_bytes + s.used_bytes,
        s.capacity_bytes
    );
    let pooled: u64 = node.workers.iter().map(|w| w.worker.pooled_bytes()).sum();
    assert_eq!(
        s.reserved_bytes, pooled,
        "every reserved slot is in some worker's pool"
    );
}
