//! The oracle for one answer: checks a response against the request it answers and the model,
//! and tells the model what the answer proved.
//!
//! Owns: what a correct server may answer to each request [`Kind`] (statuses, bodies, headers),
//! and which error answers need an injected fault behind them (through [`Explain`]). Never
//! does: draw randomness, send or read bytes, or schedule anything; it reads the model and the
//! evidence and records what it saw. Invariant: the model is only told what an answer proves
//! (an acknowledged write's effect, or a read's observation where it may be checked).

use engine::hash::BlockHash;

use crate::http_client::Response;
use crate::model::{Known, Model, ReadTicket, WriteEnd};
use crate::oracle::explain::{Explain, OwnIo};
use crate::oracle::figures::{self, Format};
use crate::oracle::listing;
use crate::request::{Edge, Kind, Req};

/// How the client sent the request being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// All of its bytes went out within microseconds, and it read its answers at once.
    Prompt,
    /// A slow sender (gaps up to a third of the request timeout) or a slow reader.
    Slow,
}

/// What checking one answer may consult and update: the model, the evidence for faults, how
/// the client sent the request, and where its own I/O ran.
pub struct Checker<'a, 'b> {
    pub model: &'a mut Model,
    pub explain: &'a mut Explain<'b>,
    pub sender: Sender,
    pub own: OwnIo,
}

fn retry_after_ok(resp: &Response) -> Result<(), String> {
    if resp.status == 503 && resp.header("Retry-After").is_none() {
        return Err("503 without Retry-After".into());
    }
    Ok(())
}

/// A `503` because storage did not answer by the request timeout (`Worker::answer_unconfirmed`)
/// needs storage that stalls that long. Nothing in a simulated world does (its slowest disk
/// op is about a second, and a node that crashes drops its connections instead): such an
/// answer is a reply the controller lost or never sent.
fn storage_timeout_explained(resp: &Response) -> Result<(), String> {
    if resp.status == 503 && resp.body.starts_with(b"storage did not") {
        return Err(
            "answered 503 for storage that did not answer within the request timeout, \
                    though nothing stalls storage that long: a lost reply"
                .into(),
        );
    }
    Ok(())
}

/// A `408` needs a slow client: a client that sent its whole request within microseconds (and
/// reads its answers) gives the worker nothing to wait for, so a 408 there is a request the
/// engine stopped reading and forgot to resume.
fn request_timeout_explained(resp: &Response, sender: Sender) -> Result<(), String> {
    if resp.status == 408 && sender == Sender::Prompt {
        return Err(
            "408 for a client that sent its request promptly: a stalled request \
                    the engine forgot to resume"
                .into(),
        );
    }
    Ok(())
}

/// Checks one answer against the request and the model, and updates the model.
pub fn check(req: &Req, resp: &Response, ctx: &mut Checker<'_, '_>) -> Result<(), String> {
    retry_after_ok(resp)?;
    storage_timeout_explained(resp)?;
    request_timeout_explained(resp, ctx.sender)?;
    let s = resp.status;
    match &req.kind {
        Kind::Put { content, .. } => check_put(req, *content, resp, ctx),
        Kind::ChunkedAtLimit { content } => check_put(req, *content, resp, ctx)
            .map_err(|e| format!("a chunked body of exactly the limit: {e}")),
        Kind::Delete { .. } => {
            let t = req.write.expect("a DELETE holds a write ticket");
            match s {
                204 | 404 => {
                    if !resp.body.is_empty() && s == 204 {
                        return Err("204 with a body".into());
                    }
                    let prior = if s == 204 {
                        Known::Present
                    } else {
                        Known::Absent
                    };
                    ctx.model
                        .end_write(t, WriteEnd::Effect(Known::Absent), Some(prior));
                    take_violation(ctx)
                }
                500 => match explain_write_500(resp, ctx) {
                    Some(end) => {
                        ctx.model.end_write(t, end, None);
                        Ok(())
                    }
                    None => {
                        ctx.model.end_write(t, WriteEnd::Unknown, None);
                        Err(format!("unexplained 500 for a DELETE: {}", body_text(resp)))
                    }
                },
                503 | 408 => {
                    ctx.model.end_write(t, WriteEnd::NoEffect, None);
                    Ok(())
                }
                _ => {
                    ctx.model.end_write(t, WriteEnd::Unknown, None);
                    Err(format!(
                        "unexpected status for a DELETE: {}",
                        body_text(resp)
                    ))
                }
            }
        }
        Kind::Get { if_none_match, .. } => {
            let t = req.read.expect("a GET holds a read ticket");
            match s {
                200 => {
                    check_block_body(&t, &resp.body, ctx)?;
                    saw(&t, Known::Present, ctx)
                }
                304 if *if_none_match => saw(&t, Known::Present, ctx),
                404 => saw(&t, Known::Absent, ctx),
                500 => explain_read_500(&t, resp, ctx),
                503 | 408 => Ok(()),
                _ => Err("unexpected status for a GET".into()),
            }
        }
        Kind::Head { hash } => {
            let t = req.read.expect("a HEAD holds a read ticket");
            match s {
                200 => {
                    if let Some(bytes) = ctx.model.content_of(hash) {
                        if resp.content_length() != Some(bytes.len() as u64) {
                            return Err("HEAD Content-Length is not the block length".into());
                        }
                    }
                    saw(&t, Known::Present, ctx)
                }
                404 => saw(&t, Known::Absent, ctx),
                503 | 408 => Ok(()),
                _ => Err("unexpected status for a HEAD".into()),
            }
        }
        Kind::Range { hash, spec } => {
            let t = req.read.expect("a range GET holds a read ticket");
            let content = ctx.model.content_of(hash).map(<[u8]>::to_vec);
            match (s, content) {
                (200, _) => {
                    check_block_body(&t, &resp.body, ctx)?;
                    saw(&t, Known::Present, ctx)
                }
                (206, Some(bytes)) => {
                    let Some(Some((a, b))) = spec.expect(bytes.len() as u64) else {
                        return Err(format!("206 for {spec:?} of {} bytes", bytes.len()));
                    };
                    let damaged = t.maybe_corrupt || ctx.model.maybe_corrupt(hash);
                    if resp.body != bytes[a as usize..=b as usize]
                        && !ctx.explain.unverified_damage(hash, damaged, a, &resp.body)
                    {
                        return Err(format!("206 body is not bytes {a}-{b} of the block"));
                    }
                    let cr = format!("bytes {a}-{b}/{}", bytes.len());
                    if resp.header("Content-Range") != Some(cr.as_str()) {
                        return Err(format!("Content-Range is not {cr}"));
                    }
                    saw(&t, Known::Present, ctx)
                }
                (416, Some(bytes)) => {
                    if spec.expect(bytes.len() as u64) != Some(None) {
                        return Err(format!("416 for {spec:?} of {} bytes", bytes.len()));
                    }
                    saw(&t, Known::Present, ctx)
                }
                (404, _) => saw(&t, Known::Absent, ctx),
                (500, _) => explain_read_500(&t, resp, ctx),
                (503 | 408, _) => Ok(()),
                _ => Err(format!("unexpected status for a range GET {spec:?}")),
            }
        }
        // A body with Content-Length streams into a slot before its hash is known: a full
        // store (507) or a failed write (500) may come first.
        Kind::PutWrongHash { .. } => match s {
            507 => Ok(()),
            500 if explain_write_500(resp, ctx).is_some() => Ok(()),
            _ => expect_one(s, 422),
        },
        Kind::Unauthorized { .. } => expect_one(s, 401),
        Kind::HeadLimit {
            edge: Edge::AtLimit,
        } => {
            if s == 200 && resp.body != b"ok" {
                return Err("/health body is not ok".into());
            }
            expect_one(s, 200).map_err(|e| format!("a head of exactly the limit: {e}"))
        }
        Kind::HeadLimit {
            edge: Edge::OverByOne,
        } => expect_one(s, 431).map_err(|e| format!("a head one byte over the limit: {e}")),
        // Over the limit only in the sum of its pieces. Before the sum is known the upload
        // may wait for (and get) a slot: a full store or a failed write may come first.
        Kind::ChunkedOverLimit => match s {
            507 => Ok(()),
            500 if explain_write_500(resp, ctx).is_some() => Ok(()),
            _ => expect_one(s, 413),
        },
        Kind::BadHex => expect_one(s, 400),
        Kind::Oversize => expect_one(s, 413),
        Kind::UnknownPath => expect_one(s, 404),
        Kind::NotAllowed { .. } => {
            expect_one(s, 405)?;
            if s == 405 && resp.header("Allow").is_none() {
                return Err("405 without Allow".into());
            }
            Ok(())
        }
        Kind::Garbage { .. } => {
            if (400..500).contains(&s) || s == 501 || s == 505 || s == 503 {
                Ok(())
            } else {
                Err("garbage was not refused".into())
            }
        }
        Kind::Health => {
            if s == 200 && resp.body != b"ok" {
                return Err("/health body is not ok".into());
            }
            expect_one(s, 200)
        }
        Kind::Stats => {
            if s == 200 && !resp.body.starts_with(b"{") {
                return Err("/stats is not JSON".into());
            }
            expect_one(s, 200)?;
            figures_ok(s, Format::Json, &req.reads, resp, ctx)
        }
        Kind::Metrics => {
            expect_one(s, 200)?;
            figures_ok(s, Format::Prometheus, &req.reads, resp, ctx)
        }
        Kind::Missing { hashes } => {
            expect_one(s, 200)?;
            if s == 200 {
                listing::check_missing(hashes, &req.reads, &resp.body, ctx)?;
            }
            Ok(())
        }
        Kind::List { after, limit } => {
            expect_one(s, 200)?;
            if s == 200 {
                listing::check_list(after.as_ref(), *limit, &req.reads, &resp.body, ctx)?;
            }
            Ok(())
        }
    }
}

/// A PUT of model content (any framing): 201/200 with the address, or an answer that stored
/// nothing (a full store, a deadline) or a 500 a fault explains; never another refusal.
fn check_put(
    req: &Req,
    content: usize,
    resp: &Response,
    ctx: &mut Checker<'_, '_>,
) -> Result<(), String> {
    let s = resp.status;
    let hash = ctx.model.contents[content].0;
    let t = req.write.expect("a PUT holds a write ticket");
    let end = match s {
        200 | 201 => {
            let hex = hash.to_hex();
            if resp.body != hex.as_bytes() {
                return Err(format!("PUT body is not the address {hex}"));
            }
            let loc = format!("/block/{hex}");
            if resp.header("Location") != Some(loc.as_str()) {
                return Err("PUT without the right Location".into());
            }
            let prior = if s == 201 {
                ctx.model.fresh_copy(&hash);
                Known::Absent
            } else {
                Known::Present
            };
            ctx.model
                .end_write(t, WriteEnd::Effect(Known::Present), Some(prior));
            return take_violation(ctx);
        }
        500 => match explain_write_500(resp, ctx) {
            Some(end) => end,
            None => return Err(format!("unexplained 500: {}", body_text(resp))),
        },
        503 | 507 | 408 => WriteEnd::NoEffect,
        _ => {
            ctx.model.end_write(t, WriteEnd::NoEffect, None);
            return Err(format!("unexpected status {s} for a PUT"));
        }
    };
    ctx.model.end_write(t, end, None);
    Ok(())
}

/// A `200` of `/stats` or `/metrics` carries stored-block figures the model allows.
fn figures_ok(
    status: u16,
    format: Format,
    reads: &[ReadTicket],
    resp: &Response,
    ctx: &Checker<'_, '_>,
) -> Result<(), String> {
    if status != 200 {
        return Ok(());
    }
    figures::check(format, &resp.body, reads, ctx.model)
}

fn take_violation(ctx: &mut Checker<'_, '_>) -> Result<(), String> {
    match ctx.model.violations.pop() {
        Some(v) => Err(v),
        None => Ok(()),
    }
}

fn expect_one(status: u16, want: u16) -> Result<(), String> {
    if status == want || status == 503 || status == 408 {
        Ok(())
    } else {
        Err(format!("expected {want}"))
    }
}

fn body_text(resp: &Response) -> String {
    String::from_utf8_lossy(&resp.body[..resp.body.len().min(80)])
        .trim()
        .to_string()
}

/// A 200 body must be the block: it hashes to the address (never another block's bytes),
/// unless reads are unverified and the block's own slot holds damaged bytes that no fault of
/// the engine explains ([`Explain::unverified_damage`]).
fn check_block_body(t: &ReadTicket, body: &[u8], ctx: &mut Checker<'_, '_>) -> Result<(), String> {
    let hash = &t.hash;
    let damaged = t.maybe_corrupt || ctx.model.maybe_corrupt(hash);
    if BlockHash::of(body) != *hash && ctx.explain.unverified_damage(hash, damaged, 0, body) {
        return Ok(());
    }
    if BlockHash::of(body) != *hash {
        return Err(format!(
            "GET {} returned {} bytes that hash to {} (foreign or corrupt bytes)",
            hash,
            body.len(),
            BlockHash::of(body)
        ));
    }
    if let Some(expected) = ctx.model.content_of(hash) {
        assert_eq!(expected, body, "content addressing: same hash, same bytes");
    }
    Ok(())
}

/// A read saw the address `Present` or `Absent`: compare with the model where it is certain.
pub(super) fn saw(t: &ReadTicket, seen: Known, ctx: &mut Checker<'_, '_>) -> Result<(), String> {
    let expected = ctx.model.read_expectation(t);
    if expected != Known::Uncertain {
        ctx.model.checked_reads += 1;
    }
    if expected != Known::Uncertain && expected != seen {
        let what = if seen == Known::Absent {
            "an acknowledged block is missing"
        } else {
            "a deleted (or never stored) block was served"
        };
        return Err(format!("{}: {what} (model: {expected:?})", t.hash));
    }
    ctx.model.observe(t, seen);
    Ok(())
}

fn explain_read_500(
    t: &ReadTicket,
    resp: &Response,
    ctx: &mut Checker<'_, '_>,
) -> Result<(), String> {
    let text = body_text(resp);
    let hash = &t.hash;
    let damaged = t.maybe_corrupt || ctx.model.maybe_corrupt(hash);
    if damaged || ctx.explain.stored_corrupt(hash) || ctx.explain.read_fault(ctx.own) {
        return Ok(());
    }
    let entry = ctx.explain.indexed(hash);
    Err(format!(
        "unexplained 500 ({text}) for {hash}: no read fault injected on worker {}'s ring since \
        the request was sent, and the stored bytes are intact (index entry now: {entry:?})",
        ctx.own.worker
    ))
}

/// Why a PUT or DELETE may get a 500, and what it then did: a failed data write stored
/// nothing, nor did a write a latched controller refused; but a batch committed before its
/// index failed to become durable (in the background) stays committed, so its writes may have
/// happened.
fn explain_write_500(resp: &Response, ctx: &mut Checker<'_, '_>) -> Option<WriteEnd> {
    let text = body_text(resp);
    if text.starts_with("write to the data file failed") {
        return ctx
            .explain
            .write_fault(ctx.own)
            .then_some(WriteEnd::NoEffect);
    }
    if !ctx.explain.latched {
        return None;
    }
    Some(if ctx.explain.durable_failed {
        WriteEnd::Unknown
    } else {
        WriteEnd::NoEffect
    })
}
