//! The dedup pre-check of `PUT /block/<hash>` (and `PUT /ipfs/<cid>`): when the worker's view
//! already shows the block (durable), the body is read and hashed into no slot, and the answer
//! is SPEC's for a stored block (`200`), or `422` if the body hashes to something else.
//!
//! Owns: `on_prechecked` (the view's answer), `start_verify`, `feed_verify`, `verify_complete`.
//! Invariants: a verified body holds no slot, no lane and no grant of the budget (it is hashed
//! as it arrives, in receive-buffer pieces); every body byte is hashed before the answer; the
//! framing errors of a body (a bad chunk, over 512 KiB decoded) are answered as for any PUT.
//! Must never: answer `200` before the whole body is read and hashed (SPEC: the server hashes
//! the body; a mismatch is a `422`), or ask the controller anything. Why it is safe is written
//! in docs/architecture.md ("The dedup pre-check").

use super::*;

impl Worker {
    /// The view's answer for a PUT to a named hash: stored (`found`) → verify its body only;
    /// absent → read it into a slot as any PUT.
    pub(super) fn on_prechecked(
        &mut self,
        now: Instant,
        r: ConnRef,
        hash: BlockHash,
        reader: BodyReader,
        found: bool,
    ) {
        if found {
            self.start_verify(now, r, hash, reader);
        } else {
            self.read_body(now, r, reader);
        }
        // Body bytes that arrived during the lookup are waiting in the receive buffer.
        self.process(now, r);
    }

    fn start_verify(&mut self, now: Instant, r: ConnRef, expected: BlockHash, reader: BodyReader) {
        let active = self.active_mut(r);
        assert!(
            matches!(active.route, Route::PutBlock { expected: Some(e) } if e == expected),
            "only a PUT to a named hash is verified"
        );
        active.stage = Stage::Verify(VerifyPut {
            reader,
            hasher: sha2::Sha256::new(),
            expected,
            taken: 0,
            scratch: Vec::new(),
        });
        self.send_continue_if_expected(now, r);
    }

    /// Hashes the buffered body bytes; returns whether anything happened.
    pub(super) fn feed_verify(&mut self, now: Instant, r: ConnRef) -> bool {
        let conn = self.conns.live_mut(r);
        let (Some(rbuf), Some(active)) = (conn.rbuf.as_mut(), conn.active.as_mut()) else {
            unreachable!("a verified body has its request and receive buffer")
        };
        let (method, Stage::Verify(v)) = (active.head.method, &mut active.stage) else {
            unreachable!("feed_verify outside the verify stage")
        };
        v.scratch.clear();
        let result = v.reader.take(rbuf, &mut v.scratch);
        v.hasher.update(&v.scratch);
        v.taken += v.scratch.len() as u64;
        self.fed(now, r, method, result, Worker::verify_complete)
    }

    fn verify_complete(&mut self, now: Instant, r: ConnRef) {
        let active = self.active_mut(r);
        let Stage::Verify(v) = active.stage.take() else {
            unreachable!("verify_complete outside the verify stage")
        };
        assert!(
            v.taken <= BLOCK_LEN_MAX_BYTES,
            "the framing bounds the body"
        );
        if v.taken == 0 {
            self.respond_error(now, r, Method::Put, Status::BAD_REQUEST, "empty body");
            return;
        }
        let hash = BlockHash(v.hasher.finalize().into());
        if hash != v.expected {
            let m = "body does not hash to the address in the path";
            self.respond_error(now, r, Method::Put, Status::UNPROCESSABLE_CONTENT, m);
            return;
        }
        self.respond_stored(now, r, hash, Status::OK);
    }
}
