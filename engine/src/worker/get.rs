//! GET and HEAD of a block: the address (from the worker's index view, `view.rs`), the read,
//! verification, ranges.
//!
//! Owns: `on_address`, `start_read`/`on_read_done`/`end_read`, `send_block` (verify, then 200,
//! 206, 416 or 500), `send_with_head`, and the stack-built header values (`etag_of`,
//! `location_of`, `ContentRange`).
//! Invariants: a read of a slot looked up in a view of version `v` (waiting for a buffer
//! included) counts in the reader horizon's `in_flight[v]` until the read ends.
//! Must never: send bytes that failed verification, or end a read twice.

use super::*;

/// `"<hex>"`: a block's ETag, on the stack.
pub(super) fn etag_of(hex: &Hex) -> [u8; HASH_HEX_LEN + 2] {
    let mut out = [b'"'; HASH_HEX_LEN + 2];
    out[1..=HASH_HEX_LEN].copy_from_slice(hex.as_bytes());
    out
}

/// `/block/<hex>`: a block's Location, on the stack.
pub(super) fn location_of(hex: &Hex) -> [u8; 7 + HASH_HEX_LEN] {
    let mut out = [0u8; 7 + HASH_HEX_LEN];
    out[..7].copy_from_slice(b"/block/");
    out[7..].copy_from_slice(hex.as_bytes());
    out
}

/// A `Content-Range` value on the stack: "bytes <start>-<end>/<len>" or "bytes */<len>" is at
/// most 6 + 3 * 20 + 2 bytes.
pub(super) struct ContentRange {
    pub(super) bytes: [u8; 72],
    pub(super) len: usize,
}

impl ContentRange {
    pub(super) fn new() -> ContentRange {
        ContentRange {
            bytes: [0; 72],
            len: 0,
        }
    }

    pub(super) fn write(&mut self, args: std::fmt::Arguments<'_>) {
        assert_eq!(self.len, 0, "written once");
        self.len = write_into(&mut self.bytes, args);
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Formats into `out` without a heap allocation; returns the length written.
pub(super) fn write_into(out: &mut [u8], args: std::fmt::Arguments<'_>) -> usize {
    struct Slice<'a> {
        out: &'a mut [u8],
        len: usize,
    }
    impl std::fmt::Write for Slice<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            let dst = self.out.get_mut(self.len..end).ok_or(std::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut w = Slice { out, len: 0 };
    std::fmt::Write::write_fmt(&mut w, args).expect("formatted text fits its buffer");
    w.len
}

pub(super) const CACHE_CONTROL: (&str, &[u8]) =
    ("Cache-Control", b"public, max-age=31536000, immutable");

/// The known bug `stale_read_error`: where the worker's read-error flag stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum StaleReadError {
    Clear,
    /// A read of this connection's request failed and is being retried.
    Retrying(ConnRef),
    /// The retry succeeded, and the flag was left set.
    Set,
}

/// What the known bug `stale_read_error` does with a read's completion.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StaleVerdict {
    Nothing,
    /// Read the same bytes again (a failed read's one retry).
    Retry,
    /// Answer `500` although the read succeeded (the flag was set).
    Fail,
}

impl Worker {
    /// The address of a GET or HEAD, from a view of `version`; called by the worker's view
    /// with the request's `Lookup::Block` taken.
    pub(super) fn on_address(
        &mut self,
        now: Instant,
        r: ConnRef,
        location: Option<Location>,
        version: u64,
    ) {
        let Some(active) = conn_at(&mut self.conns.entries, r).and_then(|c| c.active.as_ref())
        else {
            return;
        };
        let Route::GetBlock {
            hash,
            head_only,
            flavour,
        } = active.route
        else {
            return;
        };
        let method = active.head.method;
        let Some(location) = location else {
            self.respond_error(now, r, method, Status::NOT_FOUND, "no such block");
            return;
        };
        let answered = match flavour {
            Flavour::Block => self.answer_block_without_body(now, r, hash, head_only, location),
            Flavour::Ipfs(negotiated) => {
                self.answer_ipfs_without_body(now, r, negotiated, head_only, location)
            }
        };
        if answered {
            return;
        }
        // The view's version stays in flight until the read completes (guarantee 4), waiting
        // for the buffer budget included.
        self.begin_read(version);
        let need = self.read_grant(location.len);
        if need > 0 && !self.take_grant(r, need, GrantKind::Buffer, Turn::New) {
            self.wait_for_buffer(now, r, BufferNeed::Read { location, version });
            return;
        }
        self.start_read(r, location, version);
    }

    /// `/block/`: a 304, or a HEAD's 200, needs no read. True when answered.
    pub(super) fn answer_block_without_body(
        &mut self,
        now: Instant,
        r: ConnRef,
        hash: BlockHash,
        head_only: bool,
        location: Location,
    ) -> bool {
        let active = conn_at(&mut self.conns.entries, r)
            .and_then(|c| c.active.as_ref())
            .expect("active");
        let method = active.head.method;
        let hex = hash.hex();
        let not_modified = active
            .head
            .if_none_match
            .as_ref()
            .is_some_and(|v| http::if_none_match_matches(v, hex.as_str()));
        let etag = etag_of(&hex);
        if not_modified {
            let headers: [(&str, &[u8]); 2] = [("ETag", &etag), CACHE_CONTROL];
            self.respond_head_only(now, r, method, Status::NOT_MODIFIED, &headers, None);
            return true;
        }
        if head_only {
            let headers: [(&str, &[u8]); 4] = [
                ("Content-Type", b"application/octet-stream"),
                ("ETag", &etag),
                CACHE_CONTROL,
                ("Accept-Ranges", b"bytes"),
            ];
            self.respond_head_only(
                now,
                r,
                method,
                Status::OK,
                &headers,
                Some(u64::from(location.len)),
            );
            return true;
        }
        false
    }

    pub(super) fn start_read(&mut self, r: ConnRef, location: Location, version: u64) {
        debug_assert!(self.reads.in_flight.contains_key(&version));
        let end = HEAD_ROOM_BYTES + location.len as usize;
        let buf = self.read_buf(location.len);
        let active = self.active_mut(r);
        active.stage = Stage::Read {
            location,
            version,
            read: 0,
        };
        let op = Op::ReadAt {
            offset: location.slot.offset,
            buf,
            start: HEAD_ROOM_BYTES,
            end,
        };
        self.submit_file(r, op);
    }

    pub(super) fn on_read_done(
        &mut self,
        now: Instant,
        r: ConnRef,
        buf: Vec<u8>,
        outcome: FileOutcome,
    ) {
        let stale = self.stale_read_error(r, outcome);
        let conn = self.conns.live_mut(r);
        let active = conn.active.as_mut().expect("active");
        let Stage::Read {
            location,
            version,
            read,
        } = &mut active.stage
        else {
            unreachable!()
        };
        let (location, version) = (*location, *version);
        let len = location.len as usize;
        let mut short_fails = false;
        let failed = match outcome {
            FileOutcome::Moved(n) => {
                *read += n;
                short_fails = self.config.bugs.short_read_fails() && *read < len
                    || stale == StaleVerdict::Fail;
                short_fails
            }
            FileOutcome::Again => false,
            FileOutcome::Failed if stale == StaleVerdict::Retry => false,
            FileOutcome::Failed | FileOutcome::Abandoned => true,
        };
        if failed {
            active.stage = Stage::Responded;
            self.end_read(version);
            self.recycle(buf);
            if outcome == FileOutcome::Failed || short_fails {
                self.respond_error(
                    now,
                    r,
                    Method::Get,
                    Status::INTERNAL_SERVER_ERROR,
                    "read from the data file failed",
                );
            }
            return;
        }
        if *read < len {
            let start = HEAD_ROOM_BYTES + *read;
            let offset = location.slot.offset + *read as u64;
            let end = HEAD_ROOM_BYTES + len;
            self.submit_file(
                r,
                Op::ReadAt {
                    offset,
                    buf,
                    start,
                    end,
                },
            );
            return;
        }
        active.stage = Stage::Responded;
        self.end_read(version);
        self.send_block(now, r, buf, location);
    }

    /// The known bug `stale_read_error`: a failed read is retried once (fine), but a retry
    /// that succeeds leaves the worker's read-error flag set, and the next read that succeeds,
    /// whichever GET it serves, answers `500`.
    fn stale_read_error(&mut self, r: ConnRef, outcome: FileOutcome) -> StaleVerdict {
        if !self.config.bugs.stale_read_error() {
            return StaleVerdict::Nothing;
        }
        let state = self.stale_read_error;
        let (next, verdict) = match (outcome, state) {
            (FileOutcome::Failed, StaleReadError::Retrying(by)) if by == r => {
                (StaleReadError::Clear, StaleVerdict::Nothing)
            }
            (FileOutcome::Failed, _) => (StaleReadError::Retrying(r), StaleVerdict::Retry),
            (FileOutcome::Moved(_), StaleReadError::Retrying(by)) if by == r => {
                (StaleReadError::Set, StaleVerdict::Nothing)
            }
            (FileOutcome::Moved(_), StaleReadError::Set) => {
                (StaleReadError::Clear, StaleVerdict::Fail)
            }
            _ => (state, StaleVerdict::Nothing),
        };
        self.stale_read_error = next;
        verdict
    }

    /// Verifies the bytes read, then answers 200 or 206 (or 416, or 500 on corruption).
    pub(super) fn send_block(
        &mut self,
        now: Instant,
        r: ConnRef,
        buf: Vec<u8>,
        location: Location,
    ) {
        let active = conn_at(&mut self.conns.entries, r)
            .and_then(|c| c.active.as_ref())
            .expect("active");
        let Route::GetBlock { hash, flavour, .. } = active.route else {
            unreachable!()
        };
        let len = u64::from(location.len);
        let data = &buf[HEAD_ROOM_BYTES..];
        debug_assert_eq!(data.len() as u64, len);
        let ok = match self.config.verify_reads {
            VerifyReads::Crc32c => crc32c::crc32c(data) == location.crc32c,
            VerifyReads::Sha256 => BlockHash::of(data) == hash,
            VerifyReads::Off => true,
        };
        if !ok {
            self.stats.corrupt_blocks_detected += 1;
            if let Some(held_back) = self.corrupt_log.allow(now) {
                let check = self.config.verify_reads.as_str();
                tracing::error!(
                    %hash,
                    offset = location.slot.offset,
                    len = location.len,
                    check,
                    held_back,
                    "a GET read bytes that fail verification (corrupt block, answered 500); \
                     run `buddy-blocks check --repair` offline and re-fetch it"
                );
            }
            self.recycle(buf);
            self.respond_error(
                now,
                r,
                Method::Get,
                Status::INTERNAL_SERVER_ERROR,
                "stored bytes failed verification",
            );
            return;
        }
        if let Flavour::Ipfs(negotiated) = flavour {
            self.send_ipfs_block(now, r, buf, location, negotiated);
            return;
        }
        let mut content_range = ContentRange::new();
        let Some((status, start, end)) = self.plan_range(r, len, &mut content_range) else {
            self.recycle(buf);
            self.respond_unsatisfiable(now, r, &content_range);
            return;
        };
        let etag = etag_of(&hash.hex());
        let headers: [(&str, &[u8]); 5] = [
            ("Content-Type", b"application/octet-stream"),
            ("ETag", &etag),
            CACHE_CONTROL,
            ("Accept-Ranges", b"bytes"),
            ("Content-Range", content_range.as_bytes()),
        ];
        let headers = if status == Status::PARTIAL_CONTENT {
            &headers[..]
        } else {
            &headers[..4]
        };
        let persistence = persistence_of(self.conns.live_mut(r));
        let mut head = std::mem::take(&mut self.bufs.head_scratch);
        head.clear();
        http::write_response_head(&mut head, status, headers, Some(end - start), persistence);
        let body = HEAD_ROOM_BYTES + start as usize..HEAD_ROOM_BYTES + end as usize;
        self.send_with_head(now, r, status, buf, &head, body);
        self.bufs.head_scratch = head;
    }

    /// Status (200 or 206) and byte span of a GET of `len` bytes under the request's `Range`,
    /// writing `Content-Range` for a 206; `None` (with `bytes */<len>` written) when the range
    /// is unsatisfiable.
    pub(super) fn plan_range(
        &self,
        r: ConnRef,
        len: u64,
        content_range: &mut ContentRange,
    ) -> Option<(Status, u64, u64)> {
        let range = stage_head(&self.conns.entries, r).and_then(|h| h.range.as_deref());
        let spec = range.map_or(RangeSpec::Full, |v| http::parse_range(v, len));
        match spec {
            RangeSpec::Full => Some((Status::OK, 0, len)),
            RangeSpec::Partial {
                start,
                end_inclusive,
            } => {
                content_range.write(format_args!("bytes {start}-{end_inclusive}/{len}"));
                Some((Status::PARTIAL_CONTENT, start, end_inclusive + 1))
            }
            RangeSpec::Unsatisfiable => {
                content_range.write(format_args!("bytes */{len}"));
                None
            }
        }
    }

    pub(super) fn respond_unsatisfiable(
        &mut self,
        now: Instant,
        r: ConnRef,
        content_range: &ContentRange,
    ) {
        let headers: [(&str, &[u8]); 1] = [("Content-Range", content_range.as_bytes())];
        let body: [&[u8]; 1] = [b"range not satisfiable\n"];
        self.respond_full(
            now,
            r,
            Method::Get,
            Status::RANGE_NOT_SATISFIABLE,
            &headers,
            &body,
            After::AsAsked,
        );
    }

    /// Sends `head` followed by `buf[body]`, the head written into the room before the body
    /// (no copy of the body, no second buffer).
    pub(super) fn send_with_head(
        &mut self,
        now: Instant,
        r: ConnRef,
        status: Status,
        mut buf: Vec<u8>,
        head: &[u8],
        body: std::ops::Range<usize>,
    ) {
        assert!(body.start <= body.end && body.end <= buf.len());
        assert!(
            !head.is_empty() && head.len() <= body.start,
            "a {}-byte response head fits the room before the body",
            head.len()
        );
        let head_start = body.start - head.len();
        buf[head_start..body.start].copy_from_slice(head);
        self.queue_response(now, r, Method::Get, status, buf, head_start, body.end);
    }
}
