//! Pool slots for PUTs: refills from the controller, PUTs waiting for a slot, and what
//! a short or failed allocation does to them.
//!
//! Owns: `refill_pools`, `slot_waiters` service (`serve_slot_waiters`, `fail_slot_waiters`),
//! `on_allocate_failed`, `waits_for_slot`.
//! Invariants: a waiter is served in order; a short allocation answers 507 only when no
//! `Reclaim` is under way; a storage error answers 500, never 507.
//! Must never: ask the controller while shutting down, or before a class's retry delay.

use super::*;

/// The block pools, and the PUTs waiting for a slot.
pub(super) struct SlotSupply {
    pub(super) pools: Pools,
    /// Per class: the PUTs waiting for a slot, in order.
    pub(super) waiters: Vec<VecDeque<ConnRef>>,
    /// Per class: a `Reclaim` arrived since the last `AllocateDone`: space may come back,
    /// keep PUTs waiting.
    pub(super) reclaim_seen: [bool; CLASS_COUNT],
    /// Per class: no allocate request before this (see `SLOT_RETRY_DELAY`).
    pub(super) retry_at: [Option<Instant>; CLASS_COUNT],
    /// When the pools' adaptive targets next decay.
    pub(super) next_decay: Instant,
}

/// Whether connection `r` still has a PUT waiting for a pool slot.
pub(super) fn waits_for_slot(conns: &[Option<Conn>], r: ConnRef) -> bool {
    match stage_of(conns, r) {
        Some(Stage::WaitSlot { .. }) => true,
        Some(Stage::Stream(s)) => s.slot.is_none(),
        _ => false,
    }
}

impl Worker {
    pub(super) fn refill_pools(&mut self) {
        if self.shutting_down {
            return;
        }
        for class in SizeClass::ALL {
            // A waiter answered meanwhile (503 at its deadline, closed) no longer counts.
            let conns = &self.conns.entries;
            self.slots.waiters[class.index()].retain(|&r| waits_for_slot(conns, r));
            let retry = &mut self.slots.retry_at[class.index()];
            if retry.is_some_and(|t| self.now_seen < t) {
                continue;
            }
            *retry = None;
            let waiting = self.slots.waiters[class.index()].len();
            if let Some(count) = self.slots.pools.refill_due(class, waiting) {
                let request = self.next_request();
                self.slots.pools.requested(class, request);
                let worker = self.config.id;
                self.link.out.push_back(ToController::Allocate {
                    worker,
                    request,
                    class,
                    count,
                });
            }
        }
    }

    pub(super) fn serve_slot_waiters(&mut self, now: Instant, class: SizeClass) {
        while self.slots.pools.free_count(class) > 0 {
            let Some(r) = self.slots.waiters[class.index()].pop_front() else {
                break;
            };
            let stage = self
                .conn_mut(r)
                .and_then(|c| c.active.as_ref())
                .map(|a| &a.stage);
            match stage {
                Some(Stage::WaitSlot { .. }) => {
                    let slot = self.slots.pools.take(class).expect("checked above");
                    self.start_write(now, r, slot);
                }
                Some(Stage::Stream(s)) if s.slot.is_none() => {
                    let slot = self.slots.pools.take(class).expect("checked above");
                    self.stream_slot(now, r, slot);
                    self.process(now, r);
                }
                _ => {}
            }
        }
    }

    /// The controller has no space for this class: every waiting PUT gets 507.
    pub(super) fn fail_slot_waiters(&mut self, now: Instant, class: SizeClass) {
        while let Some(r) = self.slots.waiters[class.index()].pop_front() {
            let Some(active) = conn_at(&mut self.conns.entries, r).and_then(|c| c.active.as_mut())
            else {
                continue;
            };
            // A duplicate needs no slot: before a 507, read the body (a streamed PUT has not
            // yet) and ask whether its hash is stored.
            match active.stage.take() {
                Stage::WaitSlot { body, hash, .. } => {
                    self.recycle(body);
                    self.queue_lookup(r, Lookup::Dedup { hash });
                }
                Stage::Stream(st) if st.slot.is_none() => {
                    // Nothing of the body was taken yet (a stream takes bytes once it has
                    // its slot), so it is read from the start into one buffer.
                    assert_eq!(
                        st.remaining, st.len,
                        "a stream without a slot took no bytes"
                    );
                    self.recycle_piece(st.piece);
                    let reader = BodyReader::Length {
                        remaining: st.remaining,
                    };
                    self.begin_body(now, r, reader, SendContinue::No);
                    self.process(now, r);
                }
                other => active.stage = other,
            }
        }
    }

    /// The controller could not allocate at all (its storage failed): the PUTs waiting for
    /// a slot of `class` get the storage error, not a `507` (space is not what is missing).
    pub(super) fn on_allocate_failed(
        &mut self,
        now: Instant,
        request: RequestId,
        class: SizeClass,
        code: ErrorCode,
    ) {
        assert_eq!(
            code,
            ErrorCode::Io,
            "allocations fail only with a storage error"
        );
        self.slots.pools.done(class, request, 1, 0);
        while let Some(r) = self.slots.waiters[class.index()].pop_front() {
            if !waits_for_slot(&self.conns.entries, r) {
                continue;
            }
            self.abandon_request(r);
            let method = stage_method(&self.conns.entries, r);
            self.respond_error_closing(
                now,
                r,
                method,
                Status::INTERNAL_SERVER_ERROR,
                "storage error: the server cannot store blocks until it is restarted",
            );
        }
    }
}
