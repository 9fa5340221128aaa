//! The workers' driver: completions from the fake ring, frames from the controller, and the
//! worker's loop turn (watchdog verdict, tick, its I/O handed to the ring, its messages pushed
//! to the controller's queue), as the server's worker thread does over io_uring and rtrb.
//!
//! Owns: the hand-over between an engine `Worker` and its fakes, [`submit`] and [`cancel`].
//! Never does: decide what a fault is (the ring does) or schedule (the scheduler does).
//! Invariant: `Worker::check_invariants` holds after every turn; every frame survives its
//! encode/decode round trip.

use engine::health::{self, Observations};
use engine::io::{Op, OpId};
use engine::message::{ToController, ToWorker};
use engine::worker::AfterServing;
use engine::Instant;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::fake::disk::Disk;
use crate::fake::net::Net;
use crate::fake::ring::{self, FaultCounters, FaultLog, IoEnv};
use crate::options::{Faults, Options};
use crate::probe;
use crate::trace::{message_detail, op_code, reply_detail, Trace};

use super::{WorkerBox, World};

impl World {
    // -----------------------------------------------------------------------------------------
    // Workers.

    pub(super) fn complete_one(&mut self, w: usize) {
        let faults = self.faults();
        let node = self.node.as_mut().expect("a node is running");
        let wb = &mut node.workers[w];
        let id = wb
            .ring
            .pop_due(self.clock.now())
            .expect("the ring had a due op");
        let entry = wb.ring.remove(id);
        let damage = self.counters.misdirected + self.counters.sticky;
        let mut env = IoEnv {
            now: self.clock.now(),
            worker: w,
            net: &mut self.net,
            disk: &mut self.disk,
            rng: &mut self.rng,
            faults,
            counters: &mut self.counters,
            log: &mut self.fault_log,
        };
        match ring::complete(id, entry, &mut env) {
            Err(parked) => {
                let accept = matches!(parked.op, Op::Accept);
                wb.ring.insert(id, parked.op, None);
                if parked.canceled {
                    wb.ring.get_mut(id).expect("just inserted").canceled = true;
                }
                if accept {
                    wb.ring.accept_parked = Some(id);
                }
            }
            Ok((c, wake)) => {
                let result = match c.result {
                    Ok(n) => n,
                    Err(e) => (1 << 32) | e.0 as u64,
                };
                self.trace
                    .ev(self.clock.now(), "complete", [w as u64, id.0, result, 0]);
                let now = Instant(self.clock.now());
                probe::worker(|| wb.worker.handle_completion(now, c));
                if let Some(h) = wake.conn {
                    self.workload.wake_conn(&self.net, h, self.clock.now());
                }
                self.worker_turn(w);
            }
        }
        if self.counters.misdirected + self.counters.sticky != damage {
            self.mark_damaged_blocks();
        }
    }

    pub(super) fn worker_inbox(&mut self, w: usize) {
        let node = self.node.as_mut().expect("a node is running");
        let wb = &mut node.workers[w];
        let n = self.rng.random_range(1..=wb.to_worker.len());
        for _ in 0..n {
            let frame = wb.to_worker.pop().expect("counted");
            let m = ToWorker::decode(&frame).expect("a frame the controller encoded decodes");
            self.trace.ev(
                self.clock.now(),
                "to-worker",
                [
                    w as u64,
                    frame[0] as u64,
                    m.request().unwrap_or(0),
                    reply_detail(&m),
                ],
            );
            let now = Instant(self.clock.now());
            probe::worker(|| wb.worker.handle_message(now, m));
        }
        node.outbox_blocked = false;
        self.worker_turn(w);
    }

    /// The worker's loop turn: tick, hand its ops to the ring, push its messages.
    pub(super) fn worker_turn(&mut self, w: usize) {
        let now = self.clock.now();
        let faults = self.faults();
        let node = self.node.as_mut().expect("a node is running");
        // The server's watchdog, over what this world can see: the checkpoint in flight
        // (held or slow), the workers' oldest waits, a latched controller.
        let observations = Observations {
            now: Instant(now),
            controller_beat: None,
            sync_since: node
                .checkpoint_job
                .map(|j| Instant(j.due.saturating_sub(j.took))),
            oldest_wait_since: node
                .workers
                .iter()
                .filter_map(|wb| wb.worker.oldest_wait_since())
                .min(),
            oldest_file_op_since: node
                .workers
                .iter()
                .filter_map(|wb| wb.worker.oldest_file_op_since())
                .min(),
            storage_failure: node.controller.failure().map(str::to_string),
            shutting_down: false,
        };
        let verdict = health::verdict(&observations, health::STALL_LIMIT_DEFAULT);
        let wb = &mut node.workers[w];
        wb.worker.set_health(verdict);
        probe::worker(|| wb.worker.tick(Instant(now)));
        // The worker's view: renewed for the lookups waiting, and sometimes held open into
        // later turns (old views across steps); released on a turn without lookups.
        let after = if wb.worker.reads_waiting() && self.rng.random_bool(self.opts.view_hold_p) {
            AfterServing::Hold
        } else {
            AfterServing::Release
        };
        probe::worker(|| wb.worker.serve_reads(Instant(now), &mut wb.view, after));
        while let Some((id, op)) = probe::worker(|| wb.worker.poll_io()) {
            let hold = match op {
                Op::ReadAt { .. } => self.knobs.hold_reads,
                Op::WriteAt { .. } => self.knobs.hold_writes,
                _ => false,
            };
            if hold {
                self.trace.ev(now, "held", [w as u64, id.0, 0, 0]);
                wb.ring.insert(id, op, None);
                self.held.push((w, id));
                continue;
            }
            let to = RingSide {
                net: &mut self.net,
                disk: &mut self.disk,
                rng: &mut self.rng,
                counters: &mut self.counters,
                log: &mut self.fault_log,
                opts: &self.opts,
                trace: &mut self.trace,
                now,
                healed: self.healed,
            };
            submit(wb, w, id, op, to);
        }
        let trace = &mut self.trace;
        let queue = &mut wb.to_controller;
        let rng = &mut self.rng;
        let occupies = &mut node.occupies_waiting;
        wb.worker.drain_messages(|m| {
            let frame = m.encode();
            assert_eq!(
                ToController::decode(&frame).as_ref(),
                Ok(m),
                "frame round trip"
            );
            if !queue.push(frame) {
                return false;
            }
            if matches!(m, ToController::Occupy { .. }) {
                *occupies += 1;
            }
            let (request, detail) = message_detail(m);
            trace.ev(
                now,
                "to-controller",
                [w as u64, frame[0] as u64, request, detail],
            );
            if faults.queue_stall > 0.0 && rng.random_bool(faults.queue_stall) {
                queue.stalled_until = now + rng.random_range(10_000..=5_000_000);
            }
            true
        });
        // A deadline at or before `now` after a tick is not handled by the tick: the scheduler
        // keeps running the worker at this instant, and the livelock guard reports it.
        wb.timeout = wb.worker.poll_timeout().map(|t| t.0);
        wb.worker.check_invariants();
    }
}

/// What handing an op to a worker's ring may touch besides the worker's own box: the fakes
/// the op reaches, the seeded generator, the fault counters, the trace, and the moment.
struct RingSide<'a> {
    net: &'a mut Net,
    disk: &'a mut Disk,
    rng: &'a mut ChaCha8Rng,
    counters: &'a mut FaultCounters,
    log: &'a mut FaultLog,
    opts: &'a Options,
    trace: &'a mut Trace,
    now: u64,
    /// Faults are healed: a new op is scheduled without them.
    healed: bool,
}

/// Hands one op from a worker to its ring (and handles Cancel's effect on its target).
fn submit(wb: &mut WorkerBox, w: usize, id: OpId, op: Op, to: RingSide<'_>) {
    let RingSide {
        net,
        disk,
        rng,
        counters,
        log,
        opts,
        trace,
        now,
        healed,
    } = to;
    trace.ev(now, "submit", [w as u64, id.0, op_code(&op), 0]);
    if let Op::Cancel { target } = op {
        cancel(wb, target, net, rng, now);
    }
    let mut env = IoEnv {
        now,
        worker: w,
        net,
        disk,
        rng,
        faults: Faults::default(),
        counters,
        log,
    };
    let due = ring::first_due(&op, &mut env, opts, healed);
    let parked_recv = match (&op, due) {
        (Op::Recv { conn, .. }, None) => Some(conn.0),
        _ => None,
    };
    let accept = matches!(op, Op::Accept);
    wb.ring.insert(id, op, due);
    if due.is_none() {
        if accept {
            wb.ring.accept_parked = Some(id);
        }
        if let Some(h) = parked_recv {
            net.get_mut(h)
                .expect("parked only on a live connection")
                .recv_waiter = Some(id);
        }
    }
}

fn cancel(wb: &mut WorkerBox, target: OpId, net: &mut Net, rng: &mut ChaCha8Rng, now: u64) {
    let Some(entry) = wb.ring.get_mut(target) else {
        return;
    };
    let parked = entry.due.is_none();
    if parked || rng.random_bool(0.5) {
        entry.canceled = true;
    }
    if !parked {
        return;
    }
    let conn = match &entry.op {
        Op::Recv { conn, .. } | Op::Send { conn, .. } => Some(conn.0),
        _ => None,
    };
    if wb.ring.accept_parked == Some(target) {
        wb.ring.accept_parked = None;
    }
    if let Some(c) = conn.and_then(|h| net.get_mut(h)) {
        if c.recv_waiter == Some(target) {
            c.recv_waiter = None;
        }
        if c.send_waiter == Some(target) {
            c.send_waiter = None;
        }
    }
    wb.ring.schedule(target, now + 1_000);
}
