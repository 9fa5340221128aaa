//! Requests answered from the controller's index alone: DELETE, `POST /blocks/missing`
//! and `GET /blocks`.
//!
//! Owns: `on_released`, the missing-lookup pump (at most `MISSING_IN_FLIGHT_MAX` lookups in
//! flight) and the list (`start_list`, `on_list_item`, `on_list_done`).
//! Invariants: a missing request is answered once every lookup is back, 500 if any failed.
//! Must never: answer a DELETE before the controller's `Released` reply.

use super::*;

impl Worker {
    pub(super) fn on_released(&mut self, now: Instant, r: ConnRef, outcome: ReleaseOutcome) {
        let Some(Stage::Release) = conn_at(&mut self.conns.entries, r)
            .and_then(|c| c.active.as_ref())
            .map(|a| &a.stage)
        else {
            return;
        };
        match outcome {
            ReleaseOutcome::Deleted => {
                self.respond_head_only(now, r, Method::Delete, Status::NO_CONTENT, &[], None);
            }
            ReleaseOutcome::NotFound => {
                self.respond_error(now, r, Method::Delete, Status::NOT_FOUND, "no such block")
            }
        }
    }

    pub(super) fn start_missing(&mut self, now: Instant, r: ConnRef, body: Vec<u8>) {
        let mut hashes = Vec::new();
        let mut problem = None;
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line).trim_ascii();
            if line.is_empty() {
                continue;
            }
            match BlockHash::from_hex(line) {
                Some(h) if hashes.len() < MISSING_HASHES_MAX => hashes.push(h),
                Some(_) => {
                    problem = Some(format!("more than {MISSING_HASHES_MAX} hashes"));
                    break;
                }
                None => {
                    problem = Some(format!("line {}: not a 64-hex block address", i + 1));
                    break;
                }
            }
        }
        self.recycle(body);
        if let Some(p) = problem {
            let body = format!("{p}\n").into_bytes();
            self.respond_full(
                now,
                r,
                Method::Post,
                Status::BAD_REQUEST,
                &[],
                &[&body],
                After::AsAsked,
            );
            return;
        }
        let n = hashes.len();
        let active = self.active_mut(r);
        active.stage = Stage::Missing {
            hashes,
            state: vec![0; n],
            next: 0,
            outstanding: 0,
        };
        self.pump_missing(now, r);
    }

    /// Keeps up to MISSING_IN_FLIGHT_MAX lookups going; answers when all are back.
    pub(super) fn pump_missing(&mut self, now: Instant, r: ConnRef) {
        loop {
            let now_seen = self.now_seen;
            let active = self.active_mut(r);
            let Stage::Missing {
                hashes,
                state,
                next,
                outstanding,
            } = &mut active.stage
            else {
                return;
            };
            if *next < hashes.len() && *outstanding < MISSING_IN_FLIGHT_MAX {
                let (tag, hash) = (*next, hashes[*next]);
                *next += 1;
                *outstanding += 1;
                active.asked = now_seen;
                self.send_request(r, tag, |worker, request| ToController::GetAddress {
                    worker,
                    request,
                    hash,
                });
                continue;
            }
            if *outstanding > 0 {
                return;
            }
            let mut body = Vec::with_capacity(state.iter().filter(|&&s| s == 2).count() * 65);
            for (h, s) in hashes.iter().zip(state.iter()) {
                if *s == 2 {
                    body.extend_from_slice(h.to_hex().as_bytes());
                    body.push(b'\n');
                }
            }
            self.respond_text(now, r, Status::OK, &body, "text/plain");
            return;
        }
    }

    pub(super) fn on_missing_reply(
        &mut self,
        now: Instant,
        r: ConnRef,
        tag: usize,
        found: Option<bool>,
    ) {
        let Some(active) = conn_at(&mut self.conns.entries, r).and_then(|c| c.active.as_mut())
        else {
            return;
        };
        let Stage::Missing {
            state, outstanding, ..
        } = &mut active.stage
        else {
            return;
        };
        *outstanding -= 1;
        match found {
            Some(present) => state[tag] = if present { 1 } else { 2 },
            None => {
                // A lookup failed: fail the whole request once the rest are back.
                state[tag] = 3;
            }
        }
        if *outstanding == 0 && state.contains(&3) {
            let stage = active.stage.take();
            let Stage::Missing {
                hashes,
                state,
                next,
                ..
            } = stage
            else {
                unreachable!()
            };
            if next >= hashes.len() {
                let _ = state;
                self.respond_error(
                    now,
                    r,
                    Method::Post,
                    Status::INTERNAL_SERVER_ERROR,
                    "index lookup failed",
                );
                return;
            }
            active.stage = Stage::Missing {
                hashes,
                state,
                next,
                outstanding: 0,
            };
        }
        self.pump_missing(now, r);
    }

    pub(super) fn start_list(&mut self, now: Instant, r: ConnRef) {
        let active = conn_at(&mut self.conns.entries, r)
            .and_then(|c| c.active.as_ref())
            .expect("active");
        let query = active.head.query.clone();
        let mut after = None;
        let mut limit: u16 = 1000;
        for (k, v) in http::query_pairs(&query) {
            match k {
                b"after" if v.is_empty() => {}
                b"after" => match BlockHash::from_hex(v) {
                    Some(h) => after = Some(h),
                    None => {
                        let m = "after must be a 64-hex block address";
                        self.respond_error(now, r, Method::Get, Status::BAD_REQUEST, m);
                        return;
                    }
                },
                b"limit" => match std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    Some(n) if n >= 1 => limit = n.min(u64::from(LIST_LIMIT_MAX)) as u16,
                    _ => {
                        let m = "limit must be a positive integer";
                        self.respond_error(now, r, Method::Get, Status::BAD_REQUEST, m);
                        return;
                    }
                },
                _ => {}
            }
        }
        let body = Vec::new();
        self.ask(r, 0, Stage::List { body }, |worker, request| {
            ToController::List {
                worker,
                request,
                after,
                limit,
            }
        });
    }

    pub(super) fn on_list_item(&mut self, r: ConnRef, hash: BlockHash, len: u32) {
        let Some(active) = conn_at(&mut self.conns.entries, r).and_then(|c| c.active.as_mut())
        else {
            return;
        };
        if let Stage::List { body } = &mut active.stage {
            let mut hex = [0u8; HASH_HEX_LEN];
            hash.write_hex(&mut hex);
            body.extend_from_slice(&hex);
            body.extend_from_slice(format!(" {len}\n").as_bytes());
        }
    }

    pub(super) fn on_list_done(&mut self, now: Instant, r: ConnRef) {
        let Some(active) = conn_at(&mut self.conns.entries, r).and_then(|c| c.active.as_mut())
        else {
            return;
        };
        let stage = active.stage.take();
        let Stage::List { body } = stage else {
            active.stage = stage;
            return;
        };
        let head_only = active.head.method == Method::Head;
        if head_only {
            let n = body.len() as u64;
            let headers: [(&str, &[u8]); 1] = [("Content-Type", b"text/plain")];
            self.respond_head_only(now, r, Method::Head, Status::OK, &headers, Some(n));
            return;
        }
        self.respond_text(now, r, Status::OK, &body, "text/plain");
    }
}
