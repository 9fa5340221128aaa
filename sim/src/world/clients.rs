//! The clients' driver: steps a simulated client of the workload and wakes the ring ops its
//! actions made ready (bytes sent, a connection made or closed); the scripted tests' hooks for
//! held disk ops and scripted clients.
//!
//! Owns: the hand-over between the workload and the fake network's waiters. Never does: draw
//! or judge requests (the workload and the oracle do).

use engine::io::OpId;
use engine::worker::VerifyReads;

use crate::fake::ring;
use crate::oracle::explain::Explain;
use crate::workload::Ctx;

use super::World;

impl World {
    // -----------------------------------------------------------------------------------------
    // Clients.

    pub(super) fn client_step(&mut self, c: usize) {
        self.sched.wakes.clear();
        self.sched.accept_wakes.clear();
        let mut ctx = Ctx {
            now: self.clock.now(),
            opts: &self.opts,
            rng: &mut self.rng,
            net: &mut self.net,
            model: &mut self.model,
            trace: &mut self.trace,
            wakes: &mut self.sched.wakes,
            accept_wakes: &mut self.sched.accept_wakes,
            explain: Explain {
                log: &mut self.fault_log,
                latched: self.latched,
                durable_failed: self.durable_failed,
                store: self.node.as_ref().map(|n| n.controller.store()),
                disk: &self.disk,
                reads_unverified: self.opts.verify_reads == VerifyReads::Off,
            },
            healed: self.healed,
            failures: &mut self.failures,
        };
        self.workload.step(c, &mut ctx);
        self.apply_wakes();
    }

    /// Schedules the ring ops that client actions woke.
    pub(super) fn apply_wakes(&mut self) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        for &(w, op) in &self.sched.wakes {
            let due =
                self.clock.now() + ring::latency(&mut self.rng, self.opts.net_latency_ns, 0.0);
            node.workers[w].ring.schedule(op, due);
        }
        for &w in &self.sched.accept_wakes {
            let ring = &mut node.workers[w].ring;
            if let Some(op) = ring.accept_parked.take() {
                let due =
                    self.clock.now() + ring::latency(&mut self.rng, self.opts.net_latency_ns, 0.0);
                ring.schedule(op, due);
            }
        }
        self.sched.wakes.clear();
        self.sched.accept_wakes.clear();
    }

    /// Lets every held op complete (scripted tests).
    pub fn release_held(&mut self) {
        self.knobs.hold_reads = false;
        self.knobs.hold_writes = false;
        let node = self.node.as_mut().expect("a node is running");
        for (w, id) in self.held.drain(..) {
            node.workers[w].ring.schedule(id, self.clock.now() + 1_000);
        }
    }

    /// Ops held so far (scripted tests).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Wakes what a scripted client did on the network (a connect, bytes, a close).
    pub fn wake_scripted(&mut self, wakes: Vec<(usize, OpId)>, accept_worker: Option<usize>) {
        self.sched.wakes.extend(wakes);
        self.sched.accept_wakes.extend(accept_worker);
        self.apply_wakes();
    }
}
