//! What `/health` says about storage the workers wait on (the flush stalls are in
//! `durability.rs`).

use std::time::Duration;

use engine::hash::BlockHash;
use sim::harness::{Harness, HarnessConfig};

use crate::common::{assert_books, content, get_req, put_req, status};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: sim\r\n\r\n";

/// A read of the data file the disk does not complete: the GET waiting on it cannot be
/// answered (the kernel owns its buffer), so `/health` must say so once the read has been in
/// flight for the stall limit, and heal when it completes.
#[test]
fn a_data_read_the_disk_holds_makes_health_say_disk_stalled() {
    let mut h = Harness::new(HarnessConfig::default());
    let x = content(5000, 1);
    h.world.model.add_content(x.clone());
    assert_eq!(status(&h.request(0, &put_req(&x))), 201);
    h.world.knobs.hold_reads = true;
    let getter = h.connect(0);
    h.send(getter, &get_req(&BlockHash::of(&x)));
    h.run_until_quiet();
    assert_eq!(h.world.held(), 1, "the GET's read is in flight");
    assert_eq!(h.request(0, HEALTH).status, 200, "not stalled yet");
    h.run_for(Duration::from_secs(4));
    let r = h.request(0, HEALTH);
    assert_eq!(r.status, 503);
    let reason = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        reason.starts_with("storage stalled: a read or write of the data file"),
        "{reason}"
    );
    h.world.knobs.hold_reads = false;
    h.world.release_held();
    h.run_until_quiet();
    let rs = h.responses(getter, false);
    assert_eq!((rs[0].status, &rs[0].body), (200, &x));
    assert_eq!(h.request(0, HEALTH).status, 200, "healthy again");
    assert_books(&h);
}
