//! The worker's side of the IPFS trustless gateway: `/ipfs/{cid}` requests are block requests
//! (the router makes a sha2-256 CID the `GetBlock`/`PutBlock`/`DeleteBlock` of its digest, with
//! [`Flavour::Ipfs`]), so they share the lookup, the read, the verification before the status
//! line and the stats of `/block/`; only their answers differ, and this file writes them.
//!
//! Owns: turning a verified block (or an identity CID's inline data) into the gateway's
//! response on the connection. The rules — negotiation, headers, CAR bytes — are
//! `crate::gateway`'s; this file only applies them.
//!
//! Invariants: the CID is parsed again from the request path, which the router already
//! accepted, so it always parses; a stored block is answered only after `send_block` verified
//! it.
//!
//! Must never: send a CAR that stops short of the DAG it promises (a root with links and a
//! scope beyond the block is refused before the status line), or a body with a HEAD.

use super::*;
use crate::cid::{Address, ContentId};
use crate::gateway::{Answer, Format};
use router::Refusal;

/// The route of `/ipfs/<rest>`, or the refusal (status, reason, `Allow`).
pub(super) fn ipfs_route(
    method: Method,
    rest: &[u8],
    head: &RequestHead,
) -> Result<Route, Refusal> {
    let request =
        gateway::route(method, rest, &head.query, head.accept.as_deref()).map_err(|refusal| {
            Refusal {
                status: Status::new(refusal.status),
                reason: refusal.reason,
                allow: refusal.allow,
            }
        })?;
    let route = match request {
        IpfsRequest::Read {
            hash,
            head_only,
            negotiated,
        } => Route::GetBlock {
            hash,
            head_only,
            flavour: Flavour::Ipfs(negotiated),
        },
        IpfsRequest::ReadInline {
            head_only,
            negotiated,
        } => Route::IpfsInline {
            head_only,
            negotiated,
        },
        IpfsRequest::Put { hash } => Route::PutBlock {
            expected: Some(hash),
        },
        IpfsRequest::Delete { hash } => Route::DeleteBlock { hash },
    };
    Ok(route)
}

/// The CID of a request the router sent here.
fn routed_cid(head: &RequestHead) -> ContentId {
    let text = head
        .path
        .strip_prefix(b"/ipfs/")
        .expect("routed under /ipfs/");
    ContentId::parse(text).expect("a routed CID parses again")
}

fn answer_of<'a>(head: &'a RequestHead, cid: &'a ContentId, negotiated: Negotiated) -> Answer<'a> {
    Answer {
        cid,
        negotiated,
        path: &head.path,
        query: &head.query,
    }
}

impl Worker {
    /// What the response says about the connection.
    fn persistence(&mut self, r: ConnRef) -> http::Persistence {
        persistence_of(self.conns.live_mut(r))
    }

    /// Queues a complete response (head and any body) built by the gateway rules.
    fn queue_ipfs(&mut self, now: Instant, r: ConnRef, status: Status, out: Vec<u8>) {
        let method = stage_head(&self.conns.entries, r).map_or(Method::Get, |h| h.method);
        let end = out.len();
        self.queue_response(now, r, method, status, out, 0, end);
    }

    /// A 304, or the HEAD of a raw block, needs no read. True when answered.
    pub(super) fn answer_ipfs_without_body(
        &mut self,
        now: Instant,
        r: ConnRef,
        negotiated: Negotiated,
        head_only: bool,
        location: Location,
    ) -> bool {
        assert!(location.len > 0, "a stored block has bytes");
        let persistence = self.persistence(r);
        let head = stage_head(&self.conns.entries, r).expect("active");
        let cid = routed_cid(head);
        assert!(
            matches!(cid.address(), Address::Stored(_)),
            "looked up by its digest"
        );
        let answer = answer_of(head, &cid, negotiated);
        let mut out = Vec::new();
        let status = if answer.not_modified(head.if_none_match.as_deref()) {
            answer.write_not_modified(&mut out, persistence);
            Status::NOT_MODIFIED
        } else if head_only && negotiated.format == Format::Raw {
            answer.write_head(
                &mut out,
                Status::OK.code(),
                None,
                Some(u64::from(location.len)),
                persistence,
            );
            Status::OK
        } else {
            // A CAR's HEAD reads the block too: whether it can be answered depends on its links.
            return false;
        };
        self.queue_ipfs(now, r, status, out);
        true
    }

    /// Answers a GET or HEAD of a stored block that `send_block` read and verified.
    pub(super) fn send_ipfs_block(
        &mut self,
        now: Instant,
        r: ConnRef,
        buf: Vec<u8>,
        location: Location,
        negotiated: Negotiated,
    ) {
        let len = location.len as usize;
        let data = HEAD_ROOM_BYTES..HEAD_ROOM_BYTES + len;
        assert!(buf.len() >= data.end, "the read filled the block");
        let persistence = self.persistence(r);
        let mut content_range = ContentRange::new();
        let plan = match negotiated.format {
            Format::Raw => self.plan_range(r, len as u64, &mut content_range),
            Format::Car { .. } => Some((Status::OK, 0, len as u64)),
        };
        let head = stage_head(&self.conns.entries, r).expect("active");
        let head_only = head.method == Method::Head;
        let cid = routed_cid(head);
        assert!(
            matches!(cid.address(), Address::Stored(_)),
            "read by its digest"
        );
        let answer = answer_of(head, &cid, negotiated);
        let verdict = answer.check_block_suffices(&buf[data.clone()]);
        let mut out = Vec::new();
        let (status, body) = match (plan, negotiated.format) {
            (None, _) => (Status::RANGE_NOT_SATISFIABLE, 0..0),
            (Some((status, start, end)), Format::Raw) => {
                let range = (status == Status::PARTIAL_CONTENT).then(|| content_range.as_bytes());
                answer.write_head(
                    &mut out,
                    status.code(),
                    range,
                    Some(end - start),
                    persistence,
                );
                let body = data.start + start as usize..data.start + end as usize;
                (status, body)
            }
            (Some(_), Format::Car { .. }) => {
                let car_len = gateway::car_len(&cid, len);
                answer.write_head(
                    &mut out,
                    Status::OK.code(),
                    None,
                    Some(car_len),
                    persistence,
                );
                if !head_only {
                    gateway::write_car_prefix(&mut out, &cid, len);
                }
                (Status::OK, data)
            }
        };
        match verdict {
            Err(refusal) => {
                self.recycle(buf);
                self.respond_error(
                    now,
                    r,
                    Method::Get,
                    Status::new(refusal.status),
                    refusal.reason,
                );
            }
            Ok(()) if status == Status::RANGE_NOT_SATISFIABLE => {
                self.recycle(buf);
                self.respond_unsatisfiable(now, r, &content_range);
            }
            Ok(()) if head_only => {
                self.recycle(buf);
                self.queue_ipfs(now, r, status, out);
            }
            Ok(()) => self.send_with_head(now, r, status, buf, &out, body),
        }
    }

    /// Answers a GET or HEAD of an identity CID from the CID itself (the store is not asked).
    pub(super) fn respond_ipfs_inline(
        &mut self,
        now: Instant,
        r: ConnRef,
        head_only: bool,
        negotiated: Negotiated,
    ) {
        let persistence = self.persistence(r);
        let head = stage_head(&self.conns.entries, r).expect("active");
        assert_eq!(head_only, head.method == Method::Head);
        let cid = routed_cid(head);
        assert_eq!(cid.address(), Address::Inline, "routed as an identity CID");
        let answer = answer_of(head, &cid, negotiated);
        let mut out = Vec::new();
        if answer.not_modified(head.if_none_match.as_deref()) {
            answer.write_not_modified(&mut out, persistence);
            self.queue_ipfs(now, r, Status::NOT_MODIFIED, out);
            return;
        }
        if let Err(refusal) = answer.check_block_suffices(cid.inline_data()) {
            self.respond_error(
                now,
                r,
                Method::Get,
                Status::new(refusal.status),
                refusal.reason,
            );
            return;
        }
        let mut body = Vec::new();
        match negotiated.format {
            Format::Raw => body.extend_from_slice(cid.inline_data()),
            Format::Car { .. } => gateway::write_car_prefix(&mut body, &cid, 0),
        }
        answer.write_head(
            &mut out,
            Status::OK.code(),
            None,
            Some(body.len() as u64),
            persistence,
        );
        if !head_only {
            out.extend_from_slice(&body);
        }
        self.queue_ipfs(now, r, Status::OK, out);
    }
}
