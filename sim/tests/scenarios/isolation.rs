//! Queues and isolation: one-frame queues are back-pressure, never a lost reply; a GET racing
//! DELETE and slot reuse never serves foreign bytes (and the known bugs that break both are caught).

use engine::bugs::Bugs;
use engine::hash::BlockHash;
use engine::worker::VerifyReads;
use sim::harness::{Harness, HarnessConfig};
use sim::http_client::Response;

use crate::common::{assert_books, content, delete_req, get_req, head_req, put_req, status};

/// Many concurrent requests through queues of one frame each.
fn many_requests_through_one_frame_queues(bugs: Bugs) -> (Harness, Vec<u64>, usize) {
    let mut h = Harness::new(HarnessConfig {
        workers: 2,
        queue_frames: 1,
        bugs,
        ..HarnessConfig::default()
    });
    let mut conns = Vec::new();
    for i in 0..24u8 {
        let c = h.connect(usize::from(i) % 2);
        let body = content(50 + usize::from(i), i);
        let mut bytes = put_req(&body);
        bytes.extend_from_slice(&get_req(&BlockHash::of(&body)));
        bytes.extend_from_slice(&head_req(&BlockHash::of(&content(50, 0))));
        h.send(c, &bytes);
        conns.push(c);
    }
    h.run_until_quiet();
    let mut answered = 0;
    for (i, &c) in conns.iter().enumerate() {
        let rs = h.responses_to(c, &[false, false, true]);
        answered += rs.len();
        if rs.len() == 3 {
            assert_eq!((rs[0].status, rs[1].status), (201, 200), "connection {i}");
        }
    }
    (h, conns, answered)
}

#[test]
fn a_full_queue_is_back_pressure_never_a_lost_reply() {
    let (h, conns, answered) = many_requests_through_one_frame_queues(Bugs::NONE);
    assert_eq!(answered, conns.len() * 3, "every request answered");
    let refused: u64 = h
        .world
        .node
        .as_ref()
        .unwrap()
        .workers
        .iter()
        .map(|w| w.to_controller.refused + w.to_worker.refused)
        .sum();
    assert!(refused > 0, "the queues were full at some point");
    assert_books(&h);
}

#[test]
fn the_drop_reply_when_full_bug_loses_answers_through_one_frame_queues() {
    let bugs = Bugs {
        drop_reply_when_full: true,
        ..Bugs::NONE
    };
    let (_, conns, answered) = many_requests_through_one_frame_queues(bugs);
    assert!(
        answered < conns.len() * 3,
        "with the bug some request never gets an answer"
    );
}

/// GET gets its address; while its read is held, DELETE runs and PUTs of other bytes of the
/// same class take slots (with `reuse_while_reading`, one of them lands in the GET's slot).
/// Returns the GET's answer and the other blocks' bytes.
fn get_racing_delete_and_reuse(bugs: Bugs, verify: VerifyReads) -> (Response, Vec<Vec<u8>>) {
    let mut h = Harness::new(HarnessConfig {
        pool_targets: [0; 8],
        verify_reads: verify,
        bugs,
        ..HarnessConfig::default()
    });
    let a = content(3000, 1);
    let ha = BlockHash::of(&a);
    assert_eq!(status(&h.request(0, &put_req(&a))), 201);
    h.world.knobs.hold_reads = true;
    let getter = h.connect(0);
    h.send(getter, &get_req(&ha));
    h.run_until_quiet();
    assert_eq!(h.world.held(), 1, "the GET's read is in flight");
    assert_eq!(status(&h.request(0, &delete_req(&ha))), 204);
    let others: Vec<Vec<u8>> = (2..6).map(|i| content(3000, i)).collect();
    for b in &others {
        assert_eq!(status(&h.request(0, &put_req(b))), 201);
    }
    h.world.release_held();
    h.run_until_quiet();
    let mut rs = h.responses(getter, false);
    assert_eq!(rs.len(), 1);
    (rs.pop().unwrap(), others)
}

#[test]
fn a_get_racing_delete_and_slot_reuse_never_serves_foreign_bytes() {
    for verify in [VerifyReads::Off, VerifyReads::Crc32c] {
        let (r, _) = get_racing_delete_and_reuse(Bugs::NONE, verify);
        assert_eq!(
            r.status, 200,
            "the slot was not reused while read ({verify:?})"
        );
        assert_eq!(r.body, content(3000, 1), "the original bytes");
    }
}

#[test]
fn the_reuse_while_reading_bug_serves_foreign_bytes_or_fails_the_read() {
    let bugs = Bugs {
        reuse_while_reading: true,
        ..Bugs::NONE
    };
    let (r, others) = get_racing_delete_and_reuse(bugs, VerifyReads::Off);
    assert_eq!(r.status, 200);
    assert!(
        others.contains(&r.body),
        "another block's bytes, served without verification"
    );
    let (r, _) = get_racing_delete_and_reuse(bugs, VerifyReads::Crc32c);
    assert_eq!(
        r.status, 500,
        "verification turns the foreign bytes into a clean 500"
    );
}
