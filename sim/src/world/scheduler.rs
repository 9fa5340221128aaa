//! The scheduler: each step gathers every actor that can make progress at the current virtual
//! time, picks one with the seeded generator and runs it; when nothing is ready the clock
//! jumps to the earliest deadline. Planned crashes are armed here and strike at their point.
//!
//! Owns: the choice of what runs next, the livelock guards (steps at one instant, and the
//! progress [`Watchdog`]) and the crash plan's arming. Never
//! does: run an actor's logic itself (the drivers in [`super::workers`],
//! [`super::controller`] and [`super::clients`] do). Invariant: every decision draws from the
//! one seeded generator in a fixed order, so a seed replays.

use engine::io::OpId;
use rand::RngExt;

use crate::failure::Failure;
use crate::options::{CrashKind, CrashPlan, CrashPoint};

use super::watchdog::Watchdog;
use super::World;

/// An armed crash point that has not struck within this much virtual time strikes anyway.
const ARMED_CRASH_PATIENCE_NS: u64 = 50_000_000;
/// Steps at one virtual instant before the run counts as a livelock.
const STEPS_PER_INSTANT_MAX: u64 = 2_000_000;

#[derive(Clone, Copy, Debug)]
pub(super) enum Action {
    Ring(usize),
    Inbox(usize),
    Turn(usize),
    Controller,
    Client(usize),
}

/// The scheduler's own state: scratch buffers reused from step to step, the livelock guard,
/// and when the controller thread is free again.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    /// The actions ready at this step (reused).
    pub(super) ready: Vec<Action>,
    /// The clients due at this step (reused).
    pub(super) due_clients: Vec<usize>,
    /// Ring ops a client step woke: (worker, op).
    pub(super) wakes: Vec<(usize, OpId)>,
    /// Workers with a new connection in their backlog after a client step.
    pub(super) accept_wakes: Vec<usize>,
    /// Steps taken at the current virtual instant (the livelock guard).
    pub(super) instant_steps: u64,
    /// The virtual instant of the previous step.
    pub(super) last_now: u64,
    /// The controller thread is busy with its last cycle until then.
    pub(super) controller_busy_until: u64,
    /// Phases of the run begun so far (a new phase counts as progress for the watchdog).
    pub(super) phases: u64,
    /// Steps without progress: a livelock whose clock still moves ends here.
    pub(super) watchdog: Watchdog,
}

impl World {
    // -----------------------------------------------------------------------------------------
    // The scheduler.

    /// One step. `Ok(false)` when nothing at all can happen any more.
    pub fn step(&mut self) -> Result<bool, Failure> {
        self.steps += 1;
        self.watch_progress()?;
        if self.clock.now() == self.sched.last_now {
            self.sched.instant_steps += 1;
            if self.sched.instant_steps > STEPS_PER_INSTANT_MAX {
                let mut ready = Vec::new();
                self.gather(&mut ready);
                let timeouts: Vec<Option<u64>> = self
                    .node
                    .iter()
                    .flat_map(|n| n.workers.iter().map(|wb| wb.timeout))
                    .collect();
                return Err(Failure::Liveness(format!(
                    "livelock: {STEPS_PER_INSTANT_MAX} steps without time passing at {} ns; \
                     ready: {ready:?}; worker timeouts: {timeouts:?}",
                    self.clock.now()
                )));
            }
        } else {
            self.sched.last_now = self.clock.now();
            self.sched.instant_steps = 0;
        }
        // In the last step a read reported stored a block whose PUT is unanswered.
        let sighting = std::mem::take(&mut self.model.read_before_ack);
        // A checkpoint is about to return: the widest window of one in flight.
        let now = self.clock.now();
        let checkpointing = self.checkpoint_job().is_some_and(|job| job.due <= now);
        if let Some((plan, armed_at)) = self.crash_plan.armed {
            let overdue = self.clock.now() >= armed_at + ARMED_CRASH_PATIENCE_NS;
            let due = plan.point == CrashPoint::Anywhere
                || (plan.point == CrashPoint::AfterReadBeforeAck && sighting)
                || (plan.point == CrashPoint::DuringCheckpoint && checkpointing);
            if due || overdue || self.node.is_none() {
                self.crash_plan.armed = None;
                self.crash(plan.kind)?;
                return Ok(true);
            }
        }
        let mut ready = std::mem::take(&mut self.sched.ready);
        ready.clear();
        let next = self.gather(&mut ready);
        if ready.is_empty() {
            self.sched.ready = ready;
            return match next {
                Some(t) if self.knobs.time_limit.is_some_and(|limit| t > limit) => Ok(false),
                Some(t) => {
                    self.clock.advance_to(t);
                    Ok(true)
                }
                None => Ok(false),
            };
        }
        let action = ready[self.rng.random_range(0..ready.len())];
        self.sched.ready = ready;
        self.run(action)?;
        self.check_invariants();
        self.first_failure()?;
        self.arm_crashes();
        Ok(true)
    }

    /// Feeds the watchdog one step; a liveness failure once the workload stopped progressing.
    fn watch_progress(&mut self) -> Result<(), Failure> {
        let w = &self.workload;
        let mark = (w.issued, w.answered, w.unanswered, self.sched.phases);
        let Err(steps) = self.sched.watchdog.observe(mark, self.knobs.watchdog_steps) else {
            return Ok(());
        };
        let mut ready = Vec::new();
        self.gather(&mut ready);
        Err(Failure::Liveness(format!(
            "livelock: {steps} steps without progress (no request issued, answered or given \
             up) by {} ns; ready: {ready:?}; outstanding: [{}]",
            self.clock.now(),
            self.outstanding_list()
        )))
    }

    /// The latch oracle after a controller turn (see `controller_io`).
    fn check_latch(&self) -> Result<(), Failure> {
        let Some(node) = &self.node else {
            return Ok(());
        };
        let failed = node.controller.is_failed();
        node.sync.check_latch(failed).map_err(Failure::Correctness)
    }

    pub(super) fn arm_crashes(&mut self) {
        if self.crash_plan.armed.is_some() || self.healed {
            return;
        }
        if let Some(p) = self.crash_plan.pending.front() {
            if self.workload.issued >= p.after_requests {
                let plan = self.crash_plan.pending.pop_front().expect("front exists");
                self.trace.ev(
                    self.clock.now(),
                    "crash-armed",
                    [plan.point as u64, plan.kind as u64, 0, 0],
                );
                let around_recovery = match plan.point {
                    CrashPoint::AfterRecovery => {
                        self.crash_plan.after_recovery = Some(CrashKind::Process);
                        true
                    }
                    CrashPoint::MidRecovery => {
                        self.crash_plan.mid_recovery = Some(plan.kind);
                        true
                    }
                    _ => false,
                };
                if around_recovery {
                    // A crash now causes the recovery that the planned one strikes in or after.
                    self.crash_plan.armed = Some((
                        CrashPlan {
                            point: CrashPoint::Anywhere,
                            ..plan
                        },
                        self.clock.now(),
                    ));
                } else {
                    self.crash_plan.armed = Some((plan, self.clock.now()));
                }
            }
        }
    }

    /// Collects the ready actions; returns the earliest future deadline.
    pub(super) fn gather(&mut self, ready: &mut Vec<Action>) -> Option<u64> {
        let now = self.clock.now();
        let mut next: Option<u64> = None;
        let mut later = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        if let Some((_, at)) = self.crash_plan.armed {
            later(at + ARMED_CRASH_PATIENCE_NS);
        }
        if let Some(node) = &self.node {
            let mut controller_ready = false;
            for (w, wb) in node.workers.iter().enumerate() {
                if let Some(t) = wb.ring.next_due() {
                    if t <= now {
                        ready.push(Action::Ring(w));
                    } else {
                        later(t);
                    }
                }
                if !wb.to_worker.is_empty() {
                    if wb.to_worker.stalled_until <= now {
                        ready.push(Action::Inbox(w));
                    } else {
                        later(wb.to_worker.stalled_until);
                    }
                }
                let due = wb.timeout.is_some_and(|t| t <= now);
                let can_push = wb.worker.messages_waiting() > 0 && !wb.to_controller.is_full();
                if due || can_push {
                    ready.push(Action::Turn(w));
                } else if let Some(t) = wb.timeout {
                    later(t);
                }
                if !wb.to_controller.is_empty() {
                    if wb.to_controller.stalled_until <= now {
                        controller_ready = true;
                    } else {
                        later(wb.to_controller.stalled_until);
                    }
                }
            }
            if let Some(t) = node.controller.poll_timeout() {
                if t.0 <= now {
                    controller_ready = true;
                } else {
                    later(t.0);
                }
            }
            if node.controller.outbox_len() > 0 && !node.outbox_blocked {
                controller_ready = true;
            }
            if node.cycle_open.is_some() {
                controller_ready = true;
            }
            if let Some(job) = self.checkpoint_job() {
                if job.due <= now {
                    controller_ready = true;
                } else {
                    later(job.due);
                }
            }
            if controller_ready {
                if self.sched.controller_busy_until <= now {
                    ready.push(Action::Controller);
                } else {
                    later(self.sched.controller_busy_until);
                }
            }
        }
        self.sched.due_clients.clear();
        self.workload.due(now, &mut self.sched.due_clients);
        ready.extend(self.sched.due_clients.iter().map(|&c| Action::Client(c)));
        if let Some(t) = self.workload.next_wake() {
            if t > now {
                later(t);
            }
        }
        next
    }

    pub(super) fn run(&mut self, action: Action) -> Result<(), Failure> {
        let workers = self.node.as_ref().map_or(0, |n| n.workers.len());
        match action {
            Action::Ring(w) | Action::Inbox(w) | Action::Turn(w) => {
                assert!(w < workers, "worker {w} of {workers} ready")
            }
            Action::Client(c) => assert!(c < self.workload.clients.len(), "client {c} ready"),
            Action::Controller => assert!(self.node.is_some(), "the controller of no node"),
        }
        match action {
            Action::Ring(w) => self.complete_one(w),
            Action::Inbox(w) => self.worker_inbox(w),
            Action::Turn(w) => self.worker_turn(w),
            Action::Controller => {
                self.controller_turn()?;
                return self.check_latch();
            }
            Action::Client(c) => self.client_step(c),
        }
        Ok(())
    }
}
