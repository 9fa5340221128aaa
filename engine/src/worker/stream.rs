//! Streamed PUTs (Content-Length): the body goes into its pool slot piece by piece.
//!
//! Owns: `StreamPut`'s life: a slot first, then a lane (a 64 KiB piece and a receive buffer)
//! from the budget or small pieces after `LANE_WAIT_MAX`, piece writes, and the occupy.
//! Invariants: at most one piece in memory and one write in flight per upload; bytes are taken
//! only once the upload has a slot; every body byte is written before the occupy.
//! Must never: hold a lane while waiting for a slot, or drop a stage with a write in flight.

use super::*;

impl Worker {
    pub(super) fn start_stream(&mut self, now: Instant, r: ConnRef, len: u64) {
        assert!(
            (1..=BLOCK_LEN_MAX_BYTES).contains(&len),
            "length checked by the caller"
        );
        let stream = StreamPut {
            len,
            remaining: len,
            slot: None,
            deadline: now + self.config.slot_wait_limit,
            piece: Vec::new(),
            piece_max: 0,
            lane_deadline: None,
            writing: false,
            piece_written: 0,
            written: 0,
            hasher: sha2::Sha256::new(),
            crc: 0,
        };
        let active = self.active_mut(r);
        active.stage = Stage::Stream(stream);
        let class = SizeClass::for_len(len).expect("length checked");
        match self.slots.pools.take(class) {
            Some(slot) => self.stream_slot(now, r, slot),
            None => {
                self.slots.pools.note_miss(class);
                self.slots.waiters[class.index()].push_back(r);
                self.refill_pools();
            }
        }
        self.send_continue_if_expected(now, r);
    }

    /// The upload has its slot; now it needs a lane (a piece and a receive buffer) from the
    /// buffer budget, or waits for one. Not before: an upload waiting for space must not
    /// hold buffers others could use meanwhile.
    pub(super) fn stream_slot(&mut self, now: Instant, r: ConnRef, slot: Slot) {
        let wait_limit = self.config.slot_wait_limit.min(LANE_WAIT_MAX);
        let active = self.active_mut(r);
        let s = active.stage.stream_mut();
        assert!(s.slot.is_none() && s.len <= slot.bytes());
        s.slot = Some(slot);
        let lane = self.lane_bytes();
        if self.take_grant(r, lane, GrantKind::Lane, Turn::New) {
            self.give_lane(r);
            return;
        }
        let active = self.active_mut(r);
        let s = active.stage.stream_mut();
        let deadline = now + wait_limit;
        s.lane_deadline = Some(deadline);
        // Shorter than `min_timeout`: the lazy deadline scan must know (see `poll_timeout`).
        self.deadline_cache = self.deadline_cache.min(deadline);
        self.stats.buffer_waits += 1;
        self.budget.enqueue(GrantKind::Lane, r);
    }

    /// Moves buffered body bytes into the piece; writes a full (or the last) piece.
    pub(super) fn feed_stream(&mut self, _now: Instant, r: ConnRef) -> bool {
        let conn = self.conns.live_mut(r);
        let rbuf = conn.rbuf.as_mut().expect("buffer present");
        let active = conn.active.as_mut().expect("active");
        let s = active.stage.stream_mut();
        let Some(slot) = s.slot else { return false };
        if s.writing || s.piece_max == 0 {
            return false;
        }
        let take = (s.remaining as usize)
            .min(rbuf.len())
            .min(s.piece_max - s.piece.len());
        s.piece.extend_from_slice(&rbuf[..take]);
        rbuf.drain(..take);
        s.remaining -= take as u64;
        let new = &s.piece[s.piece.len() - take..];
        s.hasher.update(new);
        s.crc = crc32c::crc32c_append(s.crc, new);
        let full = s.piece.len() == s.piece_max || s.remaining == 0;
        if !full || s.piece.is_empty() {
            return take > 0;
        }
        s.writing = true;
        s.piece_written = 0;
        let buf = std::mem::take(&mut s.piece);
        let end = buf.len();
        let offset = slot.offset + s.written;
        debug_assert!(s.written + end as u64 <= s.len);
        self.submit_file(
            r,
            Op::WriteAt {
                offset,
                buf,
                start: 0,
                end,
                slot_end: slot.end(),
            },
        );
        true
    }

    pub(super) fn on_stream_write_done(
        &mut self,
        now: Instant,
        r: ConnRef,
        mut buf: Vec<u8>,
        outcome: FileOutcome,
    ) {
        let active = self.active_mut(r);
        let s = active.stage.stream_mut();
        let slot = s.slot.expect("a write has a slot");
        match outcome {
            FileOutcome::Moved(n) => s.piece_written += n,
            FileOutcome::Again => {}
            FileOutcome::Failed | FileOutcome::Abandoned => {
                // Failed or abandoned: nothing in the slot was acknowledged; back to the pool.
                active.stage = Stage::Responded;
                self.slots.pools.put_back(slot);
                self.recycle_piece(buf);
                if outcome == FileOutcome::Failed {
                    let m = "write to the data file failed";
                    self.respond_error_closing(
                        now,
                        r,
                        Method::Put,
                        Status::INTERNAL_SERVER_ERROR,
                        m,
                    );
                }
                return;
            }
        }
        if s.piece_written < buf.len() {
            let start = s.piece_written;
            let end = buf.len();
            let offset = slot.offset + s.written + start as u64;
            self.submit_file(
                r,
                Op::WriteAt {
                    offset,
                    buf,
                    start,
                    end,
                    slot_end: slot.end(),
                },
            );
            return;
        }
        s.written += buf.len() as u64;
        s.writing = false;
        buf.clear();
        s.piece = buf;
        if s.remaining > 0 {
            if s.piece_max < STREAM_PIECE_BYTES {
                self.upgrade_stream(r);
            }
            if !self.config.bugs.stall_stream_after_write() {
                self.process(now, r);
            }
            return;
        }
        assert_eq!(s.written, s.len, "every body byte was written");
        let stage = active.stage.take();
        let Stage::Stream(s) = stage else {
            unreachable!()
        };
        let Route::PutBlock { expected } = active.route else {
            unreachable!()
        };
        self.recycle_piece(s.piece);
        // The body is in its slot: the upload's buffers go back to the budget now, not after
        // the commit the answer waits for.
        self.shrink_rbuf(r);
        self.release_grant(now, r);
        let hash = BlockHash(s.hasher.finalize().into());
        if expected.is_some_and(|e| e != hash) {
            self.slots.pools.put_back(slot);
            let m = "body does not hash to the address in the path";
            self.respond_error(now, r, Method::Put, Status::UNPROCESSABLE_CONTENT, m);
            return;
        }
        let (len, crc32c) = (s.len as u32, s.crc);
        self.ask(r, Stage::Occupy { hash }, |worker, request| {
            ToController::Occupy {
                worker,
                request,
                hash,
                slot,
                len,
                crc32c,
            }
        });
    }

    /// An upload going in small pieces takes full ones once the budget has room again.
    pub(super) fn upgrade_stream(&mut self, r: ConnRef) {
        let lane = self.lane_bytes();
        if self.take_grant(r, lane, GrantKind::Lane, Turn::New) {
            self.give_lane(r);
        }
    }

    /// The upload of `r`, granted its lane, takes full pieces.
    pub(super) fn give_lane(&mut self, r: ConnRef) {
        let piece = match self.bufs.piece.pop() {
            Some(b) => b,
            None => Vec::with_capacity(STREAM_PIECE_BYTES),
        };
        let old = self.set_piece(r, piece, STREAM_PIECE_BYTES);
        self.recycle(old);
    }

    /// The upload of `r` waited for a lane in vain: it goes on in small pieces.
    pub(super) fn degrade_stream(&mut self, r: ConnRef) {
        self.stats.small_piece_uploads += 1;
        let small = self.small_buf();
        let old = self.set_piece(r, small, IDLE_RECV_BYTES);
        debug_assert_eq!(old.capacity(), 0, "no piece while waiting for a lane");
    }

    /// Swaps the (empty) piece buffer of `r`'s upload; returns the old one.
    pub(super) fn set_piece(&mut self, r: ConnRef, piece: Vec<u8>, piece_max: usize) -> Vec<u8> {
        let active = self.active_mut(r);
        let s = active.stage.stream_mut();
        assert!(s.piece.is_empty() && !s.writing);
        s.piece_max = piece_max;
        s.lane_deadline = None;
        std::mem::replace(&mut s.piece, piece)
    }
}
