//! Requests answered from the index alone: DELETE (by the controller), `POST /blocks/missing`
//! and `GET /blocks` (from the worker's own view, see `view.rs`).
//!
//! Owns: `on_released`; parsing and answering `missing` (`start_missing`, `answer_missing`)
//! and the listing (`start_list`, `answer_list`).
//! Invariants: `missing` and the listing answer from one snapshot each, and show only what the
//! view shows (durable entries); a view error is a `500`, never a partial answer.
//! Must never: answer a DELETE before the controller's `Released` reply.

use super::*;
use crate::meta::{IndexView, ViewStamp};

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
        self.queue_lookup(r, Lookup::Missing { hashes });
    }

    /// `POST /blocks/missing` from the worker's view: the hashes it does not show, in the
    /// request's order; `500` if the view fails.
    pub(super) fn answer_missing(
        &mut self,
        now: Instant,
        r: ConnRef,
        view: &impl IndexView,
        stamp: ViewStamp,
        hashes: Vec<BlockHash>,
    ) {
        assert!(hashes.len() <= MISSING_HASHES_MAX);
        let mut body = Vec::new();
        for hash in &hashes {
            match view::shown(view, stamp, hash) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let mut hex = [0u8; HASH_HEX_LEN];
                    hash.write_hex(&mut hex);
                    body.extend_from_slice(&hex);
                    body.push(b'\n');
                }
                Err(e) => return self.respond_view_error(now, r, &e),
            }
        }
        debug_assert_eq!(body.len() % (HASH_HEX_LEN + 1), 0);
        self.respond_text(now, r, Status::OK, &body, "text/plain");
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
        self.queue_lookup(r, Lookup::List { after, limit });
    }

    /// `GET /blocks` (or HEAD) from the worker's view: up to `limit` blocks it shows, after
    /// `after`, ascending; entries not yet durable are skipped; `500` if the view fails.
    pub(super) fn answer_list(
        &mut self,
        now: Instant,
        r: ConnRef,
        view: &impl IndexView,
        stamp: ViewStamp,
        after: Option<&BlockHash>,
        limit: u16,
    ) {
        assert!((1..=LIST_LIMIT_MAX).contains(&limit));
        let mut body = Vec::new();
        let mut listed: u16 = 0;
        let walked = view.walk(after, &mut |hash, entry| {
            debug_assert!(after.is_none_or(|a| hash > a), "a walk goes after `after`");
            if stamp.shows(entry) {
                let mut hex = [0u8; HASH_HEX_LEN];
                hash.write_hex(&mut hex);
                body.extend_from_slice(&hex);
                body.extend_from_slice(format!(" {}\n", entry.len).as_bytes());
                listed += 1;
            }
            listed < limit
        });
        if let Err(e) = walked {
            return self.respond_view_error(now, r, &e);
        }
        if self.config.bugs.truncate_listing() && listed == limit {
            // Known bug (simulator only): a full page loses its last entry.
            body.pop();
            let cut = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            body.truncate(cut);
        }
        let head_only = self.active_mut(r).head.method == Method::Head;
        if head_only {
            let n = body.len() as u64;
            let headers: [(&str, &[u8]); 1] = [("Content-Type", b"text/plain")];
            self.respond_head_only(now, r, Method::Head, Status::OK, &headers, Some(n));
            return;
        }
        self.respond_text(now, r, Status::OK, &body, "text/plain");
    }
}
