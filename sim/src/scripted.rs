//! A scripted, faults-off run that returns each answer: the simulator's side of the
//! differential test (the `difftest` crate plays the same steps against the real binary).
//!
//! Owns: [`Step`] (the bytes one client connection sends, in pieces, and how many answers it
//! waits for), [`Answer`] (the responses parsed from what came back, and whether the server
//! closed the connection) and [`ScriptedNode`], a [`Harness`] that plays steps one at a time.
//! Never does: judge an answer (the differential test compares the two sides; the world's own
//! invariant checks still run after every step, and a failure of the world panics).
//! Like the server's controller thread, it publishes the node's figures (`StatsSnapshot`) to
//! every worker, before each step, so `/stats` and `/metrics` show the whole node (the seeded
//! world does not publish: its workers render only their own figures).
//! Invariants: a step is played until the node is quiet before the next one starts, so an
//! answer never depends on how steps interleave; connection `i` of a script is the same
//! connection for its whole life, opened on worker `i % workers` at its first step.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{Harness, HarnessConfig};
use crate::http_client::{parse_response, Response};

/// Most answers one step waits for (a pipeline longer than this is a script error).
pub const ANSWERS_PER_STEP_MAX: usize = 64;
/// How long a client waits for the close an answer announced (`Connection: close`): longer
/// than the engine's lingering close (1 s), which drains a refused body the client may still
/// send before it closes.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What one client connection does in one step of a script.
#[derive(Clone, Debug)]
pub struct Step {
    /// The script's name for the connection; a new name opens a new connection.
    pub conn: usize,
    /// Sent one after another; the node runs until quiet after each piece.
    pub pieces: Vec<Vec<u8>>,
    /// One entry per answer the step waits for, in order: whether it answers a `HEAD` (no
    /// body whatever its headers say).
    pub heads: Vec<bool>,
    /// Time that passes before the first piece is sent (after a previous step that stopped
    /// halfway through a request: the request timeout; before `/stats`: its publication).
    pub pause: Duration,
}

/// What came back on a connection in one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub responses: Vec<Response>,
    /// The server had closed the connection when the step ended.
    pub closed: bool,
    /// Bytes after the last whole response (a cut or malformed response).
    pub leftover_bytes: usize,
    /// Why the bytes after the last whole response did not parse, if they did not.
    pub error: Option<String>,
}

impl Answer {
    /// Parses what a client received: whole responses in order (`heads[i]`: the i-th answers
    /// a HEAD), then whatever is left.
    pub fn parse(bytes: &[u8], heads: &[bool], closed: bool) -> Answer {
        assert!(
            heads.len() <= ANSWERS_PER_STEP_MAX,
            "a step waits for too many answers"
        );
        let mut responses = Vec::new();
        let mut rest = bytes;
        let mut error = None;
        while !rest.is_empty() {
            let head = heads.get(responses.len()).copied().unwrap_or(false);
            match parse_response(rest, head) {
                Ok(Some((r, used))) => {
                    assert!(used > 0 && used <= rest.len(), "a response uses its bytes");
                    responses.push(r);
                    rest = &rest[used..];
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        Answer {
            responses,
            closed,
            leftover_bytes: rest.len(),
            error,
        }
    }

    /// Every answer the step waits for has come, or the connection is closed.
    pub fn complete(&self, heads: &[bool]) -> bool {
        self.responses.len() >= heads.len() || self.closed || self.error.is_some()
    }
}

/// A node of the simulator (faults off, no crashes, no random clients) that plays steps.
///
/// How to drive it: [`ScriptedNode::new`] with the configuration the real binary also gets,
/// then [`ScriptedNode::play`] for each step in order; each call returns that step's answer.
pub struct ScriptedNode {
    pub harness: Harness,
    /// The script's connection names to the fake network's handles.
    conns: BTreeMap<usize, u64>,
}

impl ScriptedNode {
    pub fn new(cfg: HarnessConfig) -> ScriptedNode {
        ScriptedNode {
            harness: Harness::new(cfg),
            conns: BTreeMap::new(),
        }
    }

    /// Plays one step to quiet and returns what came back on its connection.
    pub fn play(&mut self, step: &Step) -> Answer {
        assert!(!step.pieces.is_empty() || !step.heads.is_empty() || !step.pause.is_zero());
        self.harness.world.publish_stats();
        let workers = self.harness.world.opts.workers;
        let h = &mut self.harness;
        let handle = *self
            .conns
            .entry(step.conn)
            .or_insert_with(|| h.connect(step.conn % workers));
        if !step.pause.is_zero() {
            h.advance(step.pause);
        }
        for piece in &step.pieces {
            h.send(handle, piece);
            h.run_until_quiet();
        }
        let mut bytes = Vec::new();
        loop {
            let (got, wake) = h.world.net.client_read(handle, usize::MAX);
            h.world.wake_scripted(wake.into_iter().collect(), None);
            h.run_until_quiet();
            if got.is_empty() {
                break;
            }
            bytes.extend_from_slice(&got);
        }
        let is_closed = |h: &Harness| h.world.net.get(handle).is_none_or(|c| c.server_closed);
        let mut answer = Answer::parse(&bytes, &step.heads, is_closed(h));
        if !answer.closed && answer.responses.iter().any(Response::says_close) {
            h.advance(CLOSE_WAIT);
            answer.closed = is_closed(h);
        }
        if answer.closed {
            self.conns.remove(&step.conn);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_pipelined_answers_and_keeps_the_cut_rest() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\n";
        let a = Answer::parse(raw, &[false, false], false);
        assert_eq!(a.responses.len(), 1);
        assert_eq!(a.leftover_bytes, raw.len() - 40);
        assert!(!a.complete(&[false, false]) && a.error.is_none());
    }

    #[test]
    fn a_step_returns_the_answers_of_its_pipeline() {
        let mut node = ScriptedNode::new(HarnessConfig::default());
        let get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let head = b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
        let step = Step {
            conn: 0,
            pieces: vec![[get, head].concat()],
            heads: vec![false, true],
            pause: Duration::ZERO,
        };
        let a = node.play(&step);
        let statuses: Vec<u16> = a.responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200]);
        assert_eq!(a.responses[0].body, b"ok");
        assert!(a.closed && a.responses[1].says_close() && a.leftover_bytes == 0);
    }

    /// Found by the differential test: after a `413` whose body never comes, the lingering
    /// close (1 s) came up to `min_timeout / 2` (2.5 s) late, because entering the linger did
    /// not lower the worker's lazy deadline cache; the server happened to close in time.
    #[test]
    fn regression_a_lingering_close_comes_within_its_timeout() {
        let mut node = ScriptedNode::new(HarnessConfig::default());
        let put = b"PUT /block HTTP/1.1\r\nHost: x\r\nContent-Length: 524289\r\n\r\n";
        let step = Step {
            conn: 0,
            pieces: vec![put.to_vec()],
            heads: vec![false],
            pause: Duration::ZERO,
        };
        let a = node.play(&step);
        assert_eq!(
            a.responses.iter().map(|r| r.status).collect::<Vec<_>>(),
            [413]
        );
        assert!(a.responses[0].says_close());
        assert!(a.closed, "closed within CLOSE_WAIT, twice the linger");
    }
}
