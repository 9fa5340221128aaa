//! Buffered PUTs: the body complete in memory goes into a pool slot in one write, then the
//! controller occupies it; and the answers of every PUT (201, 200, 507 after a dedup check).
//!
//! Owns: `try_take_slot`, `start_write`, `on_write_done`, `on_occupied`, `on_dedup_checked`,
//! `respond_stored`.
//! Invariants: a slot taken from the pool is written, then occupied or put back.
//! Must never: answer 201/200 before the controller's `Occupied` reply.

use super::*;

impl Worker {
    pub(super) fn body_class(stage: &Stage) -> SizeClass {
        let Stage::WaitSlot { body, .. } = stage else {
            unreachable!()
        };
        SizeClass::for_len(body.len() as u64).expect("body length was checked")
    }

    pub(super) fn try_take_slot(&mut self, now: Instant, r: ConnRef) {
        let conn = self.conns.live_mut(r);
        let active = conn.active.as_mut().expect("active");
        let class = Self::body_class(&active.stage);
        let Some(slot) = self.slots.pools.take(class) else {
            // The pool asks the controller for target + waiting slots (even after a short
            // refill); a refill that comes back short while PUTs wait answers them 507,
            // unless the controller is reclaiming parked slots (then they wait and ask again).
            self.slots.pools.note_miss(class);
            self.slots.waiters[class.index()].push_back(r);
            self.refill_pools();
            return;
        };
        self.start_write(now, r, slot);
    }

    pub(super) fn start_write(&mut self, _now: Instant, r: ConnRef, slot: Slot) {
        let conn = self.conns.live_mut(r);
        let active = conn.active.as_mut().expect("active");
        let stage = active.stage.take();
        let Stage::WaitSlot {
            body, hash, crc, ..
        } = stage
        else {
            unreachable!()
        };
        assert!(body.len() as u64 <= slot.bytes());
        let end = body.len();
        active.stage = Stage::Write {
            hash,
            crc,
            slot,
            written: 0,
        };
        let op = Op::WriteAt {
            offset: slot.offset,
            buf: body,
            start: 0,
            end,
            slot_end: slot.end(),
        };
        self.submit_file(r, op);
    }

    pub(super) fn on_write_done(
        &mut self,
        now: Instant,
        r: ConnRef,
        buf: Vec<u8>,
        outcome: FileOutcome,
    ) {
        let conn = self.conns.live_mut(r);
        let active = conn.active.as_mut().expect("active");
        let Stage::Write {
            hash,
            crc,
            slot,
            written,
        } = &mut active.stage
        else {
            unreachable!()
        };
        let (hash, crc, slot) = (*hash, *crc, *slot);
        let end = buf.len();
        match outcome {
            FileOutcome::Moved(n) => *written += n,
            FileOutcome::Again => {}
            FileOutcome::Failed | FileOutcome::Abandoned => {
                // Failed or abandoned: the slot holds nothing acknowledged; back to the pool.
                active.stage = Stage::Responded;
                self.slots.pools.put_back(slot);
                self.recycle(buf);
                if outcome == FileOutcome::Failed {
                    self.respond_error(
                        now,
                        r,
                        Method::Put,
                        Status::INTERNAL_SERVER_ERROR,
                        "write to the data file \
                        failed",
                    );
                }
                return;
            }
        }
        if *written < end {
            let start = *written;
            let op = Op::WriteAt {
                offset: slot.offset + start as u64,
                buf,
                start,
                end,
                slot_end: slot.end(),
            };
            self.submit_file(r, op);
            return;
        }
        let len = end as u32;
        self.recycle(buf);
        self.ask(r, Stage::Occupy { hash }, |worker, request| {
            ToController::Occupy {
                worker,
                request,
                hash,
                slot,
                len,
                crc32c: crc,
            }
        });
    }

    pub(super) fn on_occupied(&mut self, now: Instant, r: ConnRef, outcome: OccupyOutcome) {
        let Some(Stage::Occupy { hash }) = conn_at(&mut self.conns.entries, r)
            .and_then(|c| c.active.as_ref())
            .map(|a| &a.stage)
        else {
            return;
        };
        let hash = *hash;
        let status = match outcome {
            OccupyOutcome::Stored => Status::CREATED,
            OccupyOutcome::Duplicate => Status::OK,
        };
        self.respond_stored(now, r, hash, status);
    }

    /// Out of space for a PUT: a stored duplicate is still a 200 (it needs no slot).
    /// Called from the worker's view with the request's `Lookup::Dedup` taken.
    pub(super) fn on_dedup_checked(
        &mut self,
        now: Instant,
        r: ConnRef,
        hash: BlockHash,
        found: bool,
    ) {
        if found {
            self.respond_stored(now, r, hash, Status::OK);
        } else {
            self.respond_error(
                now,
                r,
                Method::Put,
                Status::INSUFFICIENT_STORAGE,
                "no free slot of the needed size",
            );
        }
    }

    pub(super) fn respond_stored(
        &mut self,
        now: Instant,
        r: ConnRef,
        hash: BlockHash,
        status: Status,
    ) {
        let hex = hash.hex();
        let location = location_of(&hex);
        let etag = etag_of(&hex);
        let headers: [(&str, &[u8]); 3] = [
            ("Content-Type", b"text/plain"),
            ("Location", &location),
            ("ETag", &etag),
        ];
        let body: [&[u8]; 1] = [hex.as_bytes()];
        self.respond_full(now, r, Method::Put, status, &headers, &body, After::AsAsked);
    }
}
