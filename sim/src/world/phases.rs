//! The phases of a run: the safety phase (faults and crashes until the requests are issued),
//! healing, the liveness phase (every outstanding request answered within a bound, then
//! quiescence), the graceful shutdown that must drain without leaking a reserved slot, the
//! clean restart and the verification sweep.
//!
//! Owns: the order of the phases and each phase's end condition and bound. Never does: step an
//! actor other than through [`World::step`].

use std::time::Duration;

use crate::failure::Failure;
use crate::options::CrashKind;
use crate::workload;

use super::{Summary, World};

/// Addresses the final sweep reads back.
const SWEEP_ADDRESSES_MAX: usize = 400;
/// Virtual time an idle node (no request in flight) may take to stop all activity.
const QUIESCENCE_BOUND_NS: u64 = 10_000_000_000;

impl World {
    // -----------------------------------------------------------------------------------------
    // Phases.

    pub(super) fn liveness_bound_ns(&self) -> u64 {
        let o = &self.opts;
        let bound =
            2 * o.request_timeout + o.slot_wait_limit + o.idle_timeout + Duration::from_secs(10);
        bound.as_nanos() as u64
    }

    /// The first few requests still waiting for an answer, for a liveness failure's message.
    pub(super) fn outstanding_list(&self) -> String {
        let stuck: Vec<String> = self
            .workload
            .outstanding()
            .iter()
            .take(5)
            .map(|(c, s, k, t)| format!("client {c} request {s} ({k}) since {t} ns"))
            .collect();
        stuck.join("; ")
    }

    /// Steps until `done` holds, failing with a liveness error after `bound_ns`.
    pub fn run_until(
        &mut self,
        what: &str,
        bound_ns: u64,
        mut done: impl FnMut(&World) -> bool,
    ) -> Result<(), Failure> {
        let deadline = self.clock.now() + bound_ns;
        self.sched.phases += 1;
        while !done(self) {
            let progressed = self.step()?;
            if self.clock.now() > deadline || !progressed {
                return Err(Failure::Liveness(format!(
                    "{what}: not done after {} ms of virtual time{}; outstanding: [{}]",
                    bound_ns / 1_000_000,
                    if progressed {
                        ""
                    } else {
                        " (nothing left to happen)"
                    },
                    self.outstanding_list()
                )));
            }
        }
        Ok(())
    }

    /// Nothing is happening or due: no controller work, no message, no I/O due.
    pub fn quiescent(&self) -> bool {
        let Some(node) = &self.node else { return true };
        let c = &node.controller;
        let controller_idle = c.inbox_len() == 0
            && c.outbox_len() == 0
            && c.poll_timeout().is_none()
            && node.checkpoint_job.is_none();
        controller_idle
            && node.workers.iter().all(|wb| {
                wb.to_controller.is_empty()
                    && wb.to_worker.is_empty()
                    && wb.worker.messages_waiting() == 0
                    && wb.ring.next_due().is_none()
            })
    }

    /// Faults off, crashes off, no new requests; a latched controller is restarted.
    pub fn heal(&mut self) -> Result<(), Failure> {
        // Every seed crashes at least once: a crash armed too late to strike strikes now.
        if let Some((plan, _)) = self.crash_plan.armed.take() {
            self.crash(plan.kind)?;
        }
        if self.crashes == 0 {
            let kind = self
                .crash_plan
                .pending
                .front()
                .map_or(CrashKind::Process, |p| p.kind);
            self.crash(kind)?;
        }
        self.trace.note(self.clock.now(), "heal");
        self.healed = true;
        self.crash_plan.pending.clear();
        self.crash_plan.after_recovery = None;
        self.crash_plan.mid_recovery = None;
        self.workload.issuing = false;
        self.workload.wake_all(self.clock.now());
        for wb in self.node.iter_mut().flat_map(|n| n.workers.iter_mut()) {
            wb.to_worker.stalled_until = 0;
            wb.to_controller.stalled_until = 0;
        }
        let failed = self.node.as_ref().is_some_and(|n| n.controller.is_failed());
        if failed || self.node.is_none() {
            self.trace
                .note(self.clock.now(), "restart a latched controller");
            return self.crash(CrashKind::Process);
        }
        Ok(())
    }

    /// Graceful shutdown: stop accepting, drain, then check that no reserved slot leaked.
    pub fn shutdown(&mut self) -> Result<(), Failure> {
        let node = self.node.as_mut().expect("a node is running");
        for wb in &mut node.workers {
            wb.worker.begin_shutdown();
        }
        for w in 0..self.opts.workers {
            self.worker_turn(w);
        }
        let bound = self.liveness_bound_ns();
        self.run_until("graceful shutdown", bound, |world| {
            let node = world.node.as_ref().expect("a node is running");
            node.workers.iter().all(|wb| {
                wb.worker.is_drained()
                    && wb.to_controller.is_empty()
                    && wb.to_worker.is_empty()
                    && wb.worker.messages_waiting() == 0
            }) && node.controller.inbox_len() == 0
                && node.controller.outbox_len() == 0
                && node.cycle_open.is_none()
                && node.checkpoint_job.is_none()
        })?;
        let node = self.node.take().expect("a node is running");
        // A data sync nobody waited for dies with the process (the next start syncs anyway).
        self.disk.abandon_sync();
        self.harvest_worker_counters(&node);
        for (w, wb) in node.workers.iter().enumerate() {
            let granted = wb.worker.stats().buffer_granted_bytes;
            if granted != 0 {
                return Err(Failure::Correctness(format!(
                    "worker {w} still grants {granted} buffer bytes after every request ended"
                )));
            }
        }
        let s = node.controller.stats();
        let pooled: u64 = node.workers.iter().map(|wb| wb.worker.pooled_bytes()).sum();
        if !node.controller.is_failed() && s.reserved_bytes != pooled {
            return Err(Failure::Correctness(format!(
                "leak at shutdown: the controller holds {} reserved bytes, the pools {pooled}",
                s.reserved_bytes
            )));
        }
        node.controller.check_invariants();
        node.controller.check_against_store();
        self.trace.ev(
            self.clock.now(),
            "shutdown",
            [s.used_bytes, s.reserved_bytes, s.free_bytes, 0],
        );
        self.net.crash();
        self.workload
            .on_crash(&mut self.model, &mut self.rng, self.clock.now());
        Ok(())
    }

    /// The whole run: safety, liveness, shutdown, restart, sweep.
    pub fn run_all(&mut self) -> Result<Summary, Failure> {
        self.trace.note(0, &format!("seed {}", self.opts.seed));
        self.start()?;
        while self.workload.issued < self.opts.requests {
            if !self.step()? {
                return Err(Failure::Liveness(
                    "the safety phase came to a standstill".into(),
                ));
            }
        }
        self.heal()?;
        let bound = self.liveness_bound_ns();
        self.run_until("liveness after healing", bound, |w| w.workload.all_idle())?;
        // With every request answered and no client active, the node must go quiet: no
        // controller cycle, no message, no I/O due (idle connections and timers may remain).
        let cycles = self.cycles;
        self.run_until(
            "quiescence with no request in flight",
            QUIESCENCE_BOUND_NS,
            |w| w.quiescent(),
        )
        .map_err(|f| match f {
            Failure::Liveness(m) => Failure::Liveness(format!(
                "{m}; {} controller cycles ran meanwhile",
                self.cycles - cycles
            )),
            other => other,
        })?;
        self.shutdown()?;
        self.start()?;
        self.workload.sweep = workload::sweep_requests(&self.model, SWEEP_ADDRESSES_MAX);
        self.workload.wake_all(self.clock.now());
        self.run_until("verification sweep", bound, |w| {
            w.workload.sweep.is_empty() && w.workload.all_idle()
        })?;
        self.first_failure()?;
        self.check_store("final")?;
        Ok(self.summary())
    }
}
