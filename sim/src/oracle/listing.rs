//! The oracle for the answers that list addresses: `POST /blocks/missing` (a subsequence of
//! its input) and `GET /blocks` (ascending pages, complete up to their last line).
//!
//! Owns: parsing those bodies and judging them against the model's read tickets, taken when
//! the request was sent. Never does: draw randomness, or tell the model anything a line does
//! not prove (each judged address goes through [`super::answer::saw`]).

use engine::hash::BlockHash;

use crate::model::{Known, Model, ReadTicket};
use crate::oracle::answer::{saw, Checker};

/// `POST /blocks/missing`: a subsequence of the input, in order; certain states must agree.
pub(super) fn check_missing(
    hashes: &[BlockHash],
    reads: &[ReadTicket],
    body: &[u8],
    ctx: &mut Checker<'_, '_>,
) -> Result<(), String> {
    let mut listed = Vec::new();
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        listed.push(BlockHash::from_hex(line).ok_or("a missing line is not a hash")?);
    }
    let mut next = 0;
    let mut missing = vec![false; hashes.len()];
    for h in &listed {
        let at = hashes[next..]
            .iter()
            .position(|x| x == h)
            .ok_or("not a subsequence")?;
        missing[next + at] = true;
        next += at + 1;
    }
    for (i, t) in reads.iter().enumerate() {
        // The engine answers every line; a hash listed twice is judged by its first line.
        if hashes.iter().position(|x| *x == t.hash) != Some(i) {
            continue;
        }
        let seen = if missing[i] {
            Known::Absent
        } else {
            Known::Present
        };
        saw(t, seen, ctx)?;
    }
    Ok(())
}

/// `GET /blocks`: ascending, after `after`, at most `limit` lines, every line a known block,
/// and complete: the page covers every stored address from the cursor to its last line (to
/// the end when the page is short), so each address the model was sure of when the request
/// was sent (`reads`, unless a write touched it since) must be listed exactly when stored.
pub(super) fn check_list(
    after: Option<&BlockHash>,
    limit: u16,
    reads: &[ReadTicket],
    body: &[u8],
    ctx: &mut Checker<'_, '_>,
) -> Result<(), String> {
    let listed = parse_list(after, body, ctx.model)?;
    if listed.len() > usize::from(limit) {
        return Err(format!("{} lines for limit {limit}", listed.len()));
    }
    // A full page covers up to its last line; a short one claims nothing more is stored.
    let covered_to = if listed.len() == usize::from(limit) {
        listed.last().copied()
    } else {
        None
    };
    for t in reads {
        debug_assert!(
            after.is_none_or(|a| t.hash > *a),
            "a ticket before the cursor"
        );
        if covered_to.is_some_and(|end| t.hash > end) {
            continue;
        }
        let seen = if listed.binary_search(&t.hash).is_ok() {
            Known::Present
        } else {
            Known::Absent
        };
        saw(t, seen, ctx).map_err(|e| {
            format!(
                "GET /blocks after {after:?} limit {limit} ({} lines): {e}",
                listed.len()
            )
        })?;
    }
    Ok(())
}

/// The lines of a listing: ascending after `after`, each a block some client stored, with its
/// length.
fn parse_list(
    after: Option<&BlockHash>,
    body: &[u8],
    model: &Model,
) -> Result<Vec<BlockHash>, String> {
    let mut previous = after.copied();
    let mut listed = Vec::new();
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let text = std::str::from_utf8(line).map_err(|_| "a listing line is not text")?;
        let (hex, len) = text
            .split_once(' ')
            .ok_or("a listing line without a length")?;
        let hash = BlockHash::from_hex(hex.as_bytes()).ok_or("a listing line without a hash")?;
        let len: usize = len
            .parse()
            .map_err(|_| "a listing length is not a number")?;
        if previous.is_some_and(|p| hash <= p) {
            return Err(format!(
                "listing not ascending after {previous:?} at {hash}"
            ));
        }
        match model.content_of(&hash) {
            Some(bytes) if bytes.len() == len => {}
            Some(bytes) => {
                return Err(format!(
                    "{hash} listed with {len} bytes, it has {}",
                    bytes.len()
                ))
            }
            None => return Err(format!("{hash} listed, but no client ever stored it")),
        }
        previous = Some(hash);
        listed.push(hash);
    }
    Ok(listed)
}
