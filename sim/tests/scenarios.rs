//! Engine scenarios on the scripted harness (N workers, one controller, in-memory queues,
//! `MemStore`, fake ring/disk/clock, no faults), regressions for engine bugs the simulator found,
//! and a few fixed seeds of the full simulator.

use engine::bugs::Bugs;
use engine::controller::Durability;
use engine::hash::BlockHash;
use engine::worker::VerifyReads;
use sim::harness::{Harness, HarnessConfig};
use sim::http_client::{self, Response, Style};
use sim::options::CrashKind;

fn put_req(body: &[u8]) -> Vec<u8> {
    http_client::put(body, None, &Style::default(), None)
}

fn get_req(hash: &BlockHash) -> Vec<u8> {
    http_client::bodyless(
        "GET",
        &format!("/block/{}", hash.to_hex()),
        &Style::default(),
        None,
        &[],
    )
}

fn delete_req(hash: &BlockHash) -> Vec<u8> {
    http_client::bodyless(
        "DELETE",
        &format!("/block/{}", hash.to_hex()),
        &Style::default(),
        None,
        &[],
    )
}

fn head_req(hash: &BlockHash) -> Vec<u8> {
    http_client::bodyless(
        "HEAD",
        &format!("/block/{}", hash.to_hex()),
        &Style::default(),
        None,
        &[],
    )
}

/// Seeded, distinct content of `len` bytes.
/// Power fails, the node recovers; `x` (written in relaxed mode) may be lost, never corrupt.
fn power_loss_keeps_the_block_or_loses_it(h: &mut Harness, x: &[u8]) {
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

fn content(len: usize, tag: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag) ^ (i >> 8) as u8)
        .collect()
}

fn status(r: &Response) -> u16 {
    r.status
}

/// The SPEC's accounting identity and "every reserved byte sits in a pool", at a quiet moment.
fn assert_books(h: &Harness) {
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

/// Regression (simulator seeds 8 and 9, first version): a failed fdatasync or commit left the
/// batch's allocations and unreservations in the controller's memory, so the accounting identity
/// check at the end of the cycle panicked — one fsync error took the whole server down instead
/// of latching it failed.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fails {
    /// The data file's fdatasync.
    DataSync,
    /// The index's commit.
    Commit,
    /// The index's background sync after a non-durable commit.
    IndexSync,
}

#[test]
fn regression_a_failed_sync_or_commit_latches_without_breaking_the_books() {
    use Fails::*;
    let cases = [
        (DataSync, false),
        (Commit, false),
        (DataSync, true),
        (Commit, true),
        (IndexSync, true),
    ];
    for (fails, background) in cases {
        let mut h = Harness::new(HarnessConfig {
            durable_in_background: background,
            ..HarnessConfig::default()
        });
        let x = content(2000, 1);
        let y = content(2000, 2);
        assert_eq!(status(&h.request(0, &put_req(&x))), 201);
        match fails {
            DataSync => h.world.opts.faults.sync_fail = 1.0,
            Commit => h.world.image.lock().unwrap().fail_next_commit = true,
            IndexSync => h.world.knobs.fail_next_durable = true,
        }
        // Also refill requests ride in the failing batch (targets of 2: the pool asks again).
        h.world.model.add_content(y.clone());
        let r = h.request(0, &put_req(&y));
        h.world.opts.faults.sync_fail = 0.0;
        assert_eq!(r.status, 500, "the failed batch answers an error");
        let node = h.world.node.as_ref().unwrap();
        assert!(node.controller.is_failed(), "latched after the failure");
        node.controller.check_invariants();
        // Stays latched, and says so: a storage error (500), not "no space" (507: the pools'
        // refills fail too, and space is not what is missing), and /health tells the truth.
        let again = h.request(0, &put_req(&content(10, 3)));
        assert_eq!(again.status, 500, "stays latched: {fails:?}");
        let health = h.request(0, b"GET /health HTTP/1.1\r\nHost: sim\r\n\r\n");
        assert_eq!(health.status, 503, "{fails:?}");
        let reason = String::from_utf8_lossy(&health.body).to_string();
        assert!(reason.starts_with("storage failed: "), "{reason}");
        assert_eq!(
            h.request(0, &get_req(&BlockHash::of(&x))).body,
            x,
            "reads still work"
        );
        // The operator restarts: the store holds x only, and nothing leaked.
        h.world.model.add_content(x.clone());
        let t = h.world.model.begin_write(BlockHash::of(&x));
        h.world.model.end_write(
            t,
            sim::model::WriteEnd::Effect(sim::model::Known::Present),
            None,
        );
        // y's 500 under a latch leaves its outcome open.
        let t = h.world.model.begin_write(BlockHash::of(&y));
        h.world
            .model
            .end_write(t, sim::model::WriteEnd::Unknown, None);
        h.world
            .crash(CrashKind::Process)
            .expect("restart after a latch");
        h.run_until_quiet();
        // A batch whose index failed to become durable in the background was committed over
        // durable data: it survives the restart (y was never acknowledged, so either outcome
        // keeps the contract). A failed data sync or commit committed nothing.
        let expected = if fails == IndexSync { 200 } else { 201 };
        assert_eq!(status(&h.request(0, &put_req(&y))), expected, "{fails:?}");
        assert_books(&h);
    }
}

/// Regression (issue 15, finding 4): after a latch, a PUT that needed a slot from the
/// controller got `507` "no free slot" (its allocation came back empty) with plenty of space
/// free. It gets the storage error now.
#[test]
fn regression_a_latched_store_answers_500_not_507_to_puts_that_need_a_slot() {
    let mut h = Harness::new(HarnessConfig {
        pool_targets: [0; 8],
        ..HarnessConfig::default()
    });
    assert_eq!(status(&h.request(0, &put_req(&content(2000, 1)))), 201);
    h.world.image.lock().unwrap().fail_next_commit = true;
    let y = content(2000, 2);
    h.world.model.add_content(y.clone());
    assert_eq!(status(&h.request(0, &put_req(&y))), 500);
    assert!(h.world.node.as_ref().unwrap().controller.is_failed());
    for tag in 3..6 {
        let r = h.request(0, &put_req(&content(5000, tag)));
        assert_eq!(r.status, 500, "{:?}", String::from_utf8_lossy(&r.body));
    }
}

/// Full durability with the batch made durable in the background: the PUT's batch is
/// committed and its sync is in flight (held here by a long disk latency).
fn put_awaiting_durability() -> (Harness, u64, Vec<u8>, Vec<u8>) {
    let mut h = Harness::new(HarnessConfig::default());
    let x = content(3000, 1);
    let y = content(3000, 2);
    assert_eq!(status(&h.request(0, &put_req(&x))), 201);
    h.world.model.add_content(y.clone());
    h.world.knobs.hold_durable = true;
    let conn = h.connect(0);
    h.send(conn, &put_req(&y));
    h.run_until_quiet();
    let node = h.world.node.as_ref().unwrap();
    assert!(
        node.controller.awaits_durable(),
        "the batch's sync is in flight"
    );
    assert!(
        h.responses(conn, false).is_empty(),
        "not acknowledged before durable"
    );
    (h, conn, x, y)
}

#[test]
fn reads_are_answered_while_a_batch_is_made_durable() {
    let (mut h, conn, x, y) = put_awaiting_durability();
    // GETs are answered at once, while the PUT's sync runs. Its own block is committed but
    // not durable: reads do not see it yet (a client that saw it might skip its own upload,
    // and a power loss now would lose it).
    let reader = h.connect(0);
    h.send(reader, &get_req(&BlockHash::of(&x)));
    h.send(reader, &get_req(&BlockHash::of(&y)));
    h.send(reader, b"GET /blocks HTTP/1.1\r\nHost: sim\r\n\r\n");
    h.run_until_quiet();
    assert!(h.world.node.as_ref().unwrap().controller.awaits_durable());
    let got = h.responses(reader, false);
    assert_eq!(got.len(), 3, "every read answered during the sync");
    assert_eq!(got[0].body, x);
    assert_eq!(status(&got[1]), 404, "not visible before it is durable");
    let listing = String::from_utf8(got[2].body.clone()).unwrap();
    let listed: Vec<&str> = listing.lines().map(|l| &l[..64]).collect();
    assert_eq!(
        listed,
        [BlockHash::of(&x).to_hex()],
        "the listing hides it too"
    );
    // A write waits for the batch in flight.
    let writer = h.connect(0);
    h.send(writer, &delete_req(&BlockHash::of(&x)));
    h.run_until_quiet();
    assert!(
        h.responses(writer, false).is_empty(),
        "writes wait for the sync"
    );
    h.world.knobs.hold_durable = false;
    h.run_until_quiet();
    assert_eq!(status(&h.responses(conn, false)[0]), 201);
    assert_eq!(status(&h.responses(writer, false)[0]), 204);
    assert_eq!(h.request(0, &get_req(&BlockHash::of(&y))).body, y);
    assert_books(&h);
}

/// A flush that never returns (a stalled disk): the PUT waiting for it is answered `503` by its
/// request timeout on a connection that stays usable, reads go on, and `/health` says storage
/// stalled until the flush returns; then the same PUT goes through (issue 15, finding 3).
#[test]
fn a_stalled_flush_gets_503_by_the_request_timeout_and_health_tells() {
    let (mut h, conn, x, y) = put_awaiting_durability();
    let health_req = b"GET /health HTTP/1.1\r\nHost: sim\r\n\r\n";
    assert_eq!(h.request(0, health_req).status, 200, "not stalled yet");
    h.run_for(std::time::Duration::from_secs(11));
    let rs = h.responses(conn, false);
    assert_eq!(rs.len(), 1, "answered by the request timeout");
    assert_eq!(rs[0].status, 503);
    assert!(rs[0].header("Retry-After").is_some());
    // The same connection asks /health: stalled, with the reason.
    h.send(conn, health_req);
    h.run_until_quiet();
    let rs = h.responses(conn, false);
    assert_eq!(rs.len(), 1, "the connection stays usable");
    assert_eq!(rs[0].status, 503);
    let reason = String::from_utf8_lossy(&rs[0].body).to_string();
    assert!(reason.starts_with("storage stalled: "), "{reason}");
    // Reads are answered meanwhile.
    assert_eq!(h.request(0, &get_req(&BlockHash::of(&x))).body, x);
    h.world.knobs.hold_durable = false;
    h.run_until_quiet();
    assert_eq!(h.request(0, health_req).status, 200, "healthy again");
    // The batch was committed and is durable now: the retry finds the block.
    assert_eq!(status(&h.request(0, &put_req(&y))), 200);
    assert_eq!(h.request(0, &get_req(&BlockHash::of(&y))).body, y);
    assert_books(&h);
}

/// Regression: a PUT whose body arrived just before its request timeout got `503` when its
/// batch took longer to become durable than what remained of the timeout. Storage's wait is
/// bounded from when the request asked the controller, not from its first byte.
#[test]
fn regression_a_slow_upload_leaves_storage_its_whole_wait() {
    let mut h = Harness::new(HarnessConfig::default());
    let y = content(3000, 2);
    h.world.model.add_content(y.clone());
    let req = put_req(&y);
    let conn = h.connect(0);
    let (most, last) = req.split_at(req.len() - 1);
    h.send(conn, most);
    h.run_for(std::time::Duration::from_millis(9_500));
    h.world.knobs.hold_durable = true;
    h.send(conn, last);
    h.run_for(std::time::Duration::from_secs(2));
    assert!(
        h.responses(conn, false).is_empty(),
        "11.5 s after its first byte, 2 s after it asked: still waiting for the flush"
    );
    h.world.knobs.hold_durable = false;
    h.run_until_quiet();
    let rs = h.responses(conn, false);
    assert_eq!(status(&rs[0]), 201);
    assert_books(&h);
}

#[test]
fn power_loss_while_a_batch_is_made_durable_loses_only_the_unacknowledged_block() {
    let (mut h, conn, x, y) = put_awaiting_durability();
    h.world.model.add_content(x.clone());
    let t = h.world.model.begin_write(BlockHash::of(&x));
    h.world.model.end_write(
        t,
        sim::model::WriteEnd::Effect(sim::model::Known::Present),
        None,
    );
    h.world
        .crash(CrashKind::PowerLoss)
        .expect("restart after power loss");
    h.run_until_quiet();
    assert!(
        h.responses(conn, false).is_empty(),
        "y was never acknowledged"
    );
    assert_eq!(h.request(0, &get_req(&BlockHash::of(&x))).body, x);
    assert_eq!(status(&h.request(0, &get_req(&BlockHash::of(&y)))), 404);
    assert_books(&h);
}

/// One seed of the full simulator must pass (and replay identically when `twice`).
fn seed_passes(seed: u64, requests: u64, twice: bool) {
    let a = sim::run_seed(seed, requests, None, false);
    if let Err(f) = &a.outcome {
        panic!("seed {seed}: {f}\nreproduce: {}", a.opts.reproduce_line());
    }
    if twice {
        let b = sim::run_seed(seed, requests, None, false);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} is deterministic");
    }
}

#[test]
fn fixed_seeds_of_the_full_simulator_pass_and_replay_identically() {
    for seed in [1u64, 2, 3] {
        seed_passes(seed, 400, true);
    }
}

// Seeds that once found an engine bug (each has a scripted regression test above); what a seed
// does changes with the engine, so these are kept as extra coverage, not as the regression.

#[test]
fn seed_8_once_panicked_after_a_failed_fsync() {
    seed_passes(8, 2000, false);
}

#[test]
fn seed_35_once_waited_a_second_for_the_space_of_a_deleted_block() {
    seed_passes(35, 2000, false);
}

#[test]
fn seed_97_once_spun_the_controller_while_a_put_waited_for_space() {
    seed_passes(97, 2000, false);
}

#[test]
fn seed_179_once_resurrected_a_block_over_reused_bytes_after_power_loss() {
    seed_passes(179, 2000, false);
}

fn relaxed_harness() -> Harness {
    let mut h = Harness::new(HarnessConfig {
        pool_targets: [0; 8],
        verify_reads: VerifyReads::Off,
        durability: Durability::Relaxed,
        ..HarnessConfig::default()
    });
    h.world.opts.power_loss_keep_p = 0.0;
    h
}

/// Regression (simulator seeds 179 and 298): in relaxed durability a deleted block's slot was
/// reused before the deletion was durable, so a power loss brought the block back over another
/// block's bytes (foreign bytes with verification off). A released slot now waits for a
/// durable commit before it can be reused.
#[test]
fn regression_relaxed_power_loss_never_resurrects_a_block_over_reused_bytes() {
    let mut h = relaxed_harness();
    let x = content(3000, 1);
    let hx = BlockHash::of(&x);
    assert_eq!(h.put_known(0, &x).status, 201);
    // A write a second later makes the index durable (relaxed mode: once a second, data first).
    h.advance(std::time::Duration::from_millis(1500));
    assert_eq!(h.put_known(0, &content(3000, 9)).status, 201);
    assert_eq!(h.delete_known(0, &hx).status, 204);
    for i in 2..6 {
        assert_eq!(h.put_known(0, &content(3000, i)).status, 201);
    }
    // The page cache may reach the disk at any time: here, all of it, just before power fails.
    h.world.disk.sync();
    power_loss_keeps_the_block_or_loses_it(&mut h, &x);
}

/// Regression (same seeds): the relaxed mode's once-a-second durable commit made index entries
/// durable whose data had never been synced; after a power loss they pointed at lost bytes. That
/// commit now syncs the data file first.
#[test]
fn regression_relaxed_durable_commit_never_points_at_unsynced_data() {
    let mut h = relaxed_harness();
    let x = content(3000, 1);
    assert_eq!(h.put_known(0, &x).status, 201);
    h.advance(std::time::Duration::from_millis(1500));
    assert_eq!(h.put_known(0, &content(3000, 2)).status, 201);
    power_loss_keeps_the_block_or_loses_it(&mut h, &x);
}

/// Regression (simulator seed 35, after the fix above): in relaxed durability a PUT that needed
/// the space of a just-deleted block waited for the once-a-second durable commit (while worker
/// and controller spun on Allocate/Reclaim). Space running short now makes the commit durable.
#[test]
fn regression_relaxed_space_of_a_deleted_block_is_reusable_at_once() {
    let mut h = Harness::new(HarnessConfig {
        capacity_bytes: 512 * 1024,
        pool_targets: [0; 8],
        durability: Durability::Relaxed,
        ..HarnessConfig::default()
    });
    let x = content(524_288, 1);
    assert_eq!(h.put_known(0, &x).status, 201);
    assert_eq!(h.delete_known(0, &BlockHash::of(&x)).status, 204);
    let t0 = h.world.clock.now();
    assert_eq!(h.put_known(0, &content(524_288, 2)).status, 201);
    let waited_ms = (h.world.clock.now() - t0) / 1_000_000;
    assert!(
        waited_ms < 100,
        "the PUT waited {waited_ms} ms for the deleted block's space"
    );
}

/// 1 MiB with a 300,000-byte block stored and a small PUT whose data write is held in flight (its
/// slot stays reserved), no pools: the next large PUT has to wait for space.
fn full_with_a_held_write() -> Harness {
    let mut h = Harness::new(HarnessConfig {
        capacity_bytes: 1 << 20,
        pool_targets: [0; 8],
        ..HarnessConfig::default()
    });
    assert_eq!(h.put_known(0, &content(300_000, 1)).status, 201);
    h.world.knobs.hold_writes = true;
    let holder = h.connect(0);
    h.send(holder, &put_req(&content(100, 2)));
    h.run_until_quiet();
    h
}

/// A PUT waits for a slot of a full class while another PUT's slot stays reserved (its write is
/// held). Returns the controller cycles per second while the PUT waits, then per second after
/// it has been answered (503 at its slot wait limit), and its status.
fn cycles_per_second_around_a_put_waiting_for_space() -> (u64, u64, u16) {
    let mut h = full_with_a_held_write();
    assert_eq!(
        h.world.held(),
        1,
        "the small PUT's write is in flight, its slot reserved"
    );
    let waiter = h.connect(0);
    h.send(waiter, &put_req(&content(300_000, 3)));
    let second = std::time::Duration::from_secs(1);
    let c0 = h.world.cycles;
    h.run_for(second);
    let waiting = h.world.cycles - c0;
    h.run_for(6 * second);
    let answered = h.responses(waiter, false);
    assert_eq!(
        answered.len(),
        1,
        "the waiting PUT is answered at its slot wait limit"
    );
    let c1 = h.world.cycles;
    h.run_for(second);
    let after = h.world.cycles - c1;
    h.world.release_held();
    h.run_until_quiet();
    (waiting, after, answered[0].status)
}

/// Regression (simulator seeds 35 and 97): a PUT waiting for space that a `Reclaim` may bring
/// back made its worker ask the controller again on every loop turn, so both spun at the full
/// cycle rate (100,000 cycles a second at a 10 us interval) while it waited; and once it was
/// answered it still counted as waiting, so the spin went on for as long as any slot stayed
/// reserved. The worker now asks again after a pause, and only for PUTs still waiting.
#[test]
fn regression_a_put_waiting_for_space_does_not_spin_the_controller() {
    let (waiting, after, status) = cycles_per_second_around_a_put_waiting_for_space();
    assert!(status == 503 || status == 507, "{status}");
    assert!(
        waiting < 2_000,
        "{waiting} controller cycles a second while one PUT waits"
    );
    assert!(
        after < 10,
        "{after} controller cycles a second after the PUT was answered"
    );
}

/// Regression (simulator, once the startup fdatasync it used to do was dropped to match the
/// server): in relaxed durability the recovery commit at start was durable, so index entries of
/// the last run whose data sat unsynced in the page cache became durable; a power loss then
/// left them pointing at lost bytes. The recovery commit is now durable only in full mode.
#[test]
fn regression_relaxed_restart_never_makes_unsynced_blocks_durable() {
    let mut h = relaxed_harness();
    let x = content(3000, 1);
    assert_eq!(h.put_known(0, &x).status, 201);
    h.world.crash(CrashKind::Process).expect("restart");
    h.run_until_quiet();
    power_loss_keeps_the_block_or_loses_it(&mut h, &x);
}

/// Regression (simulator seed 176): after an accept error (EMFILE) the worker asks to be woken
/// for the accept retry; once shutting down it never retries, but `poll_timeout` kept returning
/// that instant, so the driver's loop spun (in the simulator: time could not pass) until drained.
#[test]
fn regression_shutdown_after_an_accept_error_does_not_spin() {
    let mut h = Harness::new(HarnessConfig::default());
    // A request in progress keeps the drain going for a while.
    let busy = h.connect(0);
    h.send(
        busy,
        b"PUT /block HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
    );
    h.run_until_quiet();
    h.world.opts.faults.accept_error = 1.0;
    for _ in 0..4 {
        h.connect(0);
        h.run_for(std::time::Duration::from_millis(3));
    }
    if let Err(f) = h.world.shutdown() {
        panic!("shutdown: {f}");
    }
}

/// Regression (simulator seed 176, after the fix above): a worker shutting down with a slot
/// retry pending kept returning that instant from `poll_timeout` (it refills nothing in
/// shutdown, so nothing cleared it).
#[test]
fn regression_shutdown_with_a_slot_retry_pending_does_not_spin() {
    let mut h = full_with_a_held_write();
    let waiter = h.connect(0);
    h.send(waiter, &put_req(&content(300_000, 3)));
    h.run_for(std::time::Duration::from_micros(1500));
    h.world.release_held();
    if let Err(f) = h.world.shutdown() {
        panic!("shutdown: {f}");
    }
}

/// Regression (simulator seed 149): in relaxed durability a process crash lost the list of
/// released slots still waiting for a durable commit; after the restart they were free at once,
/// a PUT reused one, and a later power loss brought the deleted block back over its bytes. The
/// first write batch after a relaxed-mode start is now durable (data synced first).
#[test]
fn regression_relaxed_restart_keeps_undurable_deletes_from_reuse() {
    let mut h = Harness::new(HarnessConfig {
        capacity_bytes: 512 * 1024,
        pool_targets: [0; 8],
        durability: Durability::Relaxed,
        ..HarnessConfig::default()
    });
    h.world.opts.power_loss_keep_p = 0.0;
    let x = content(3000, 1);
    let hx = BlockHash::of(&x);
    let d = content(3000, 2);
    assert_eq!(h.put_known(0, &x).status, 201);
    assert_eq!(h.put_known(0, &d).status, 201);
    assert_eq!(h.put_known(0, &content(200_000, 3)).status, 201);
    // Space runs short while a deletion waits for durability: that commit is durable, so from
    // here on the durable index holds x (all within the first second: no periodic commit).
    assert_eq!(h.delete_known(0, &BlockHash::of(&d)).status, 204);
    let big = h.put_known(0, &content(200_000, 4)).status;
    assert!(big == 507 || big == 503, "{big}");
    assert_eq!(h.delete_known(0, &hx).status, 204);
    h.world.crash(CrashKind::Process).expect("restart");
    h.run_until_quiet();
    for i in 5..9 {
        assert_eq!(h.put_known(0, &content(3000, i)).status, 201);
    }
    assert!(
        h.world.clock.now() < 1_000_000_000,
        "all before the periodic durable commit"
    );
    // The page cache reaches the disk, then power fails.
    h.world.disk.sync();
    power_loss_keeps_the_block_or_loses_it(&mut h, &x);
}

/// Sends each request on a connection of its own to worker 0 (does not step).
fn send_each(h: &mut Harness, requests: impl IntoIterator<Item = Vec<u8>>) -> Vec<u64> {
    requests
        .into_iter()
        .map(|bytes| {
            let c = h.connect(0);
            h.send(c, &bytes);
            c
        })
        .collect()
}

fn worker_stats(h: &Harness, worker: usize) -> engine::stats::WorkerStats {
    h.world.node.as_ref().expect("running").workers[worker]
        .worker
        .stats()
}

/// A worker with the smallest buffer budget (1 MiB: one large buffer at a time) and two
/// stored 512 KiB blocks plus a 4 KiB one.
fn small_budget_with_large_blocks() -> (Harness, Vec<Vec<u8>>) {
    let mut h = Harness::new(HarnessConfig {
        buffer_budget_bytes: 1 << 20,
        ..HarnessConfig::default()
    });
    let blocks = vec![
        content(512 * 1024, 1),
        content(512 * 1024, 2),
        content(4096, 3),
    ];
    for b in &blocks {
        assert_eq!(h.put_known(0, b).status, 201);
    }
    (h, blocks)
}

/// Memory under many large GETs is bounded by the buffer budget: beyond it GETs wait their
/// turn (first come, first served), small blocks do not wait at all, and every answer is the
/// stored bytes.
#[test]
fn large_gets_beyond_the_buffer_budget_wait_their_turn() {
    let (mut h, blocks) = small_budget_with_large_blocks();
    h.world.knobs.hold_reads = true;
    let getters = send_each(
        &mut h,
        (0..3).map(|i| get_req(&BlockHash::of(&blocks[i % 2]))),
    );
    h.run_until_quiet();
    assert_eq!(
        h.world.held(),
        1,
        "one large read at a time in a 1 MiB budget"
    );
    assert_eq!(worker_stats(&h, 0).buffer_waits, 2);
    // A 4 KiB block reads into a connection's small buffer: no budget, no wait.
    let small = h.connect(0);
    h.send(small, &get_req(&BlockHash::of(&blocks[2])));
    h.run_until_quiet();
    assert_eq!(h.world.held(), 2, "the small GET's read went out at once");
    assert_eq!(worker_stats(&h, 0).buffer_waits, 2);
    // Reads complete one after another as each response frees its buffer.
    for _ in 0..3 {
        h.world.release_held();
        h.run_until_quiet();
        h.world.knobs.hold_reads = true;
    }
    h.world.knobs.hold_reads = false;
    h.world.release_held();
    h.run_until_quiet();
    for (i, &c) in getters.iter().enumerate() {
        let rs = h.responses(c, false);
        assert_eq!(rs.len(), 1, "getter {i}");
        assert_eq!(rs[0].status, 200, "getter {i}");
        assert!(rs[0].body == blocks[i % 2], "getter {i}: the stored bytes");
    }
    let rs = h.responses(small, false);
    assert_eq!((rs[0].status, &rs[0].body), (200, &blocks[2]));
    assert_eq!(worker_stats(&h, 0).buffer_granted_bytes, 0);
    assert_books(&h);
}

/// A GET that waits for the buffer budget past the wait limit is answered 503 with
/// `Retry-After`, and its address leaves the reader horizon: the slot it would have read is
/// reusable afterwards.
#[test]
fn a_get_waiting_for_the_buffer_budget_past_the_wait_limit_is_503() {
    let (mut h, blocks) = small_budget_with_large_blocks();
    h.world.knobs.hold_reads = true;
    let first = h.connect(0);
    h.send(first, &get_req(&BlockHash::of(&blocks[0])));
    h.run_until_quiet();
    let second = h.connect(0);
    h.send(second, &get_req(&BlockHash::of(&blocks[1])));
    h.run_until_quiet();
    assert_eq!(h.world.held(), 1);
    h.run_for(std::time::Duration::from_secs(6));
    let rs = h.responses(second, false);
    assert_eq!(rs.len(), 1, "answered at the wait limit");
    assert_eq!(rs[0].status, 503);
    assert!(rs[0]
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("retry-after")));
    h.world.release_held();
    h.run_until_quiet();
    let rs = h.responses(first, false);
    assert_eq!((rs[0].status, rs[0].body == blocks[0]), (200, true));
    // The abandoned GET's block can be deleted and its space reused at once.
    assert_eq!(h.delete_known(0, &BlockHash::of(&blocks[1])).status, 204);
    let c = content(512 * 1024, 9);
    assert_eq!(h.put_known(0, &c).status, 201);
    let g = h.request(0, &get_req(&BlockHash::of(&c)));
    assert_eq!((g.status, g.body == c), (200, true));
    assert_books(&h);
}

/// Runs PUTs of `bodies` on connections of their own with every write held, releasing the
/// held writes one at a time; `wait` of virtual time passes first. Returns the statuses.
fn uploads_with_held_writes(
    h: &mut Harness,
    bodies: &[Vec<u8>],
    wait: std::time::Duration,
) -> Vec<u16> {
    h.world.knobs.hold_writes = true;
    let uploaders = send_each(h, bodies.iter().map(|b| put_req(b)));
    h.run_until_quiet();
    assert!(worker_stats(h, 0).buffer_granted_bytes <= 1 << 20);
    h.run_for(wait);
    while h.world.held() > 0 {
        h.world.release_held();
        h.run_until_quiet();
        h.world.knobs.hold_writes = true;
    }
    h.world.knobs.hold_writes = false;
    h.run_until_quiet();
    uploaders
        .iter()
        .map(|&c| {
            let rs = h.responses(c, false);
            assert_eq!(rs.len(), 1);
            rs[0].status
        })
        .collect()
}

/// Uploads beyond the buffer budget wait for a lane (a piece and a receive buffer) while
/// others' pieces are written, but only briefly (20 ms): then they go on in small pieces
/// rather than queue behind uploads that may be slow (issue 15: 40 clients sending a byte
/// every 100 ms held normal PUTs for 5 s). Every block is stored byte-exact.
#[test]
fn uploads_beyond_the_buffer_budget_wait_for_a_lane_then_go_in_small_pieces() {
    let mut h = Harness::new(HarnessConfig {
        buffer_budget_bytes: 1 << 20,
        ..HarnessConfig::default()
    });
    // Lanes may hold half of 1 MiB less room for one buffered body: 2 lanes of 144 KiB.
    let first: Vec<Vec<u8>> = (0..10).map(|i| content(100_000, 20 + i)).collect();
    let statuses = uploads_with_held_writes(&mut h, &first, std::time::Duration::ZERO);
    assert_eq!(statuses, vec![201; 10]);
    let s = worker_stats(&h, 0);
    assert_eq!((s.buffer_waits, s.small_piece_uploads), (8, 8));
    let second: Vec<Vec<u8>> = (0..10).map(|i| content(100_000, 40 + i)).collect();
    let statuses = uploads_with_held_writes(&mut h, &second, std::time::Duration::from_secs(6));
    assert_eq!(statuses, vec![201; 10]);
    let s = worker_stats(&h, 0);
    assert_eq!((s.buffer_waits, s.small_piece_uploads), (16, 16));
    for b in first.iter().chain(&second) {
        let g = h.request(0, &get_req(&BlockHash::of(b)));
        assert_eq!((g.status, g.body == *b), (200, true));
    }
    assert_eq!(worker_stats(&h, 0).buffer_granted_bytes, 0);
    assert_books(&h);
}

/// Regression (found by `server/tests/limits.rs` on a full store): an upload took its lane of
/// the buffer budget before it had a slot, so uploads waiting for space (up to the 5 s wait
/// limit) held the budget and large GETs behind them timed out with 503. An upload now asks
/// for a lane once it has its slot.
#[test]
fn regression_uploads_waiting_for_space_hold_no_buffers() {
    let mut h = Harness::new(HarnessConfig {
        capacity_bytes: 1 << 20,
        pool_targets: [0; 8],
        buffer_budget_bytes: 1 << 20,
        ..HarnessConfig::default()
    });
    let a = content(512 * 1024, 1);
    assert_eq!(h.put_known(0, &a).status, 201);
    // The last 512 KiB goes to an upload whose write is held: the store is full meanwhile.
    h.world.knobs.hold_writes = true;
    let holder = h.connect(0);
    h.send(holder, &put_req(&content(512 * 1024, 2)));
    h.run_until_quiet();
    assert_eq!(h.world.held(), 1);
    let waiting = send_each(&mut h, (0..8).map(|i| put_req(&content(300_000, 10 + i))));
    h.run_until_quiet();
    let granted = worker_stats(&h, 0).buffer_granted_bytes;
    assert!(
        granted <= 200 * 1024,
        "{granted} bytes granted: only the held upload's lane"
    );
    let g = h.request(0, &get_req(&BlockHash::of(&a)));
    assert_eq!((g.status, g.body == a), (200, true));
    h.world.release_held();
    h.run_for(std::time::Duration::from_secs(6));
    for c in waiting {
        let rs = h.responses(c, false);
        assert_eq!(rs.len(), 1);
        assert!(matches!(rs[0].status, 503 | 507), "{}", rs[0].status);
    }
    assert_books(&h);
}

/// Uploads hold at most their share of the buffer budget: with every lane taken by uploads
/// that do not progress (their writes held: slow clients would do the same), a large GET is
/// still served at once. (Review finding: before the lanes' cap, slow uploads could hold the
/// whole budget for the request timeout and every large GET behind them got 503.)
#[test]
fn uploads_holding_every_lane_do_not_starve_large_gets() {
    let (mut h, blocks) = small_budget_with_large_blocks();
    h.world.knobs.hold_writes = true;
    send_each(&mut h, (0..8).map(|i| put_req(&content(200_000, 60 + i))));
    h.run_until_quiet();
    assert!(
        worker_stats(&h, 0).buffer_waits >= 1,
        "the uploads beyond the lanes wait"
    );
    let g = h.request(0, &get_req(&BlockHash::of(&blocks[0])));
    assert_eq!((g.status, g.body == blocks[0]), (200, true));
    h.world.release_held();
    h.run_until_quiet();
}

/// Regression (review finding): a waiter that left the queue (its 503 at the wait limit) stayed
/// at its front until some grant was given back, so a GET behind it that fitted waited for
/// nothing, until its own 503. Waiters behind one that leaves are served at once now.
#[test]
fn regression_a_waiter_leaving_the_queue_lets_the_next_one_in() {
    let (mut h, blocks) = small_budget_with_large_blocks();
    let mid = content(60 * 1024, 7);
    assert_eq!(h.put_known(0, &mid).status, 201);
    h.world.knobs.hold_reads = true;
    let first = h.connect(0);
    h.send(first, &get_req(&BlockHash::of(&blocks[0])));
    h.run_until_quiet();
    assert_eq!(
        h.world.held(),
        1,
        "the first large GET holds the budget's large buffer"
    );
    let second = h.connect(0);
    h.send(second, &get_req(&BlockHash::of(&blocks[1])));
    h.run_for(std::time::Duration::from_secs(1));
    // A 60 KiB block needs an 80 KiB buffer: it fits beside the first GET's, but waits behind
    // the second, first come first served.
    let third = h.connect(0);
    h.send(third, &get_req(&BlockHash::of(&mid)));
    h.run_for(std::time::Duration::from_millis(4_500));
    assert_eq!(h.responses(second, false)[0].status, 503);
    assert_eq!(
        h.world.held(),
        2,
        "the 60 KiB GET's read went out when the 503 left"
    );
    h.world.release_held();
    h.run_until_quiet();
    let rs = h.responses(third, false);
    assert_eq!((rs[0].status, rs[0].body == mid), (200, true));
    let rs = h.responses(first, false);
    assert_eq!((rs[0].status, rs[0].body == blocks[0]), (200, true));
}
