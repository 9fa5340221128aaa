//! The request script: one deterministic sequence of steps covering every endpoint of SPEC
//! with good and bad input, played the same on both sides.
//!
//! Owns: [`Entry`] (a labelled step and how its answers are compared), the builder
//! [`Script`] and the request bytes it is made of. The steps themselves are in [`blocks`]
//! (the block API: writes, reads, ranges, conditional requests, auth, listings),
//! [`framing`] (bodies, pipelining, fragments, limits, bad input, timeouts, HTTP/1.0) and
//! [`ipfs`] (the gateway). Never does: play a step.
//! Invariants: the script is a pure function of its configuration (same bytes every run);
//! every step waits for the answers it asks for, so no step races another.

mod blocks;
mod framing;
mod ipfs;

use std::time::Duration;

use engine::hash::BlockHash;
use sim::http_client::{self, Style};
use sim::scripted::Step;

use crate::compare::Compare;
use crate::NodeConfig;

/// One step of the script, with a label for reports.
#[derive(Clone, Debug)]
pub struct Entry {
    pub label: String,
    pub step: Step,
    pub compare: Compare,
}

/// The script under construction.
pub struct Script {
    pub entries: Vec<Entry>,
    /// The bearer token the node runs with.
    token: Vec<u8>,
    /// The connection name of the next fresh connection.
    next_conn: usize,
}

impl Script {
    fn new(cfg: &NodeConfig) -> Script {
        Script {
            entries: Vec::new(),
            token: cfg.auth_token.as_bytes().to_vec(),
            next_conn: 100,
        }
    }
}

/// The whole script (but the request timeout) for a node running `cfg`.
pub fn script(cfg: &NodeConfig) -> Vec<Entry> {
    let mut s = Script::new(cfg);
    blocks::add(&mut s);
    framing::add(&mut s);
    ipfs::add(&mut s);
    s.observe();
    s.entries
}

/// A full store's script: PUTs of the largest block until the data file has no slot left
/// (`507`), a DELETE that frees one, the PUT again. It runs on nodes of their own with a
/// small data file and empty pools ([`NodeConfig::full_store`]).
pub fn full_store(cfg: &NodeConfig) -> Vec<Entry> {
    let mut s = Script::new(cfg);
    let conn = s.fresh();
    let blocks: Vec<Vec<u8>> = (0..6).map(|i| content(524_288, 60 + i)).collect();
    for (i, b) in blocks.iter().enumerate() {
        s.on(conn, &format!("full store: put block {i}"), &[s.put(b)]);
    }
    let first = BlockHash::of(&blocks[0]);
    s.on(conn, "full store: delete block 0", &[s.delete(&first)]);
    let last = blocks.len() - 1;
    s.on(
        conn,
        "full store: put the last block again",
        &[s.put(&blocks[last])],
    );
    s.on(
        conn,
        "full store: a small block",
        &[s.put(&content(100, 70))],
    );
    s.observe();
    s.entries
}

/// The request timeout's script: clients that stop halfway. It waits out `cfg`'s request
/// timeout in real time on the server's side, so it runs on nodes of their own with a short
/// one ([`NodeConfig::short_timeouts`]); the main script's nodes keep the default, so that a
/// slow disk on a busy machine never turns a write into a `503`.
pub fn timeouts(cfg: &NodeConfig) -> Vec<Entry> {
    let mut s = Script::new(cfg);
    framing::timeouts(&mut s, cfg.request_timeout);
    s.entries
}

/// Deterministic, distinct content of `len` bytes: SHA-256 in counter mode over `tag`.
pub fn content(len: usize, tag: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let mut input = counter.to_le_bytes().to_vec();
        input.push(tag);
        out.extend_from_slice(&BlockHash::of(&input).0);
        counter += 1;
    }
    out.truncate(len);
    out
}

fn is_head(request: &[u8]) -> bool {
    request.starts_with(b"HEAD ")
}

impl Script {
    /// A fresh connection's name (each used by one step unless kept).
    fn fresh(&mut self) -> usize {
        self.next_conn += 1;
        self.next_conn
    }

    fn push(&mut self, label: &str, step: Step, compare: Compare) {
        self.entries.push(Entry {
            label: label.to_string(),
            step,
            compare,
        });
    }

    /// Requests sent in one write on connection `conn`, each waiting for its answer.
    fn on(&mut self, conn: usize, label: &str, requests: &[Vec<u8>]) {
        let step = Step {
            conn,
            pieces: vec![requests.concat()],
            heads: requests.iter().map(|r| is_head(r)).collect(),
            pause: Duration::ZERO,
        };
        self.push(label, step, Compare::Exact);
    }

    /// One request on a fresh connection.
    fn one(&mut self, label: &str, request: Vec<u8>) {
        let conn = self.fresh();
        self.on(conn, label, &[request]);
    }

    /// Raw bytes in pieces on a fresh connection, waiting for `answers` answers.
    fn pieces(&mut self, label: &str, pieces: Vec<Vec<u8>>, answers: usize, pause: Duration) {
        let conn = self.fresh();
        let step = Step {
            conn,
            pieces,
            heads: vec![false; answers],
            pause,
        };
        self.push(label, step, Compare::Exact);
    }

    fn auth(&self) -> Option<&[u8]> {
        Some(&self.token)
    }

    fn put(&self, body: &[u8]) -> Vec<u8> {
        http_client::put(body, None, &Style::default(), self.auth())
    }

    fn put_at(&self, path_hash: &BlockHash, body: &[u8]) -> Vec<u8> {
        http_client::put(body, Some(path_hash), &Style::default(), self.auth())
    }

    fn get(&self, method: &str, path: &str, extra: &[&str]) -> Vec<u8> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        http_client::bodyless(method, path, &Style::default(), None, &extra)
    }

    fn delete(&self, hash: &BlockHash) -> Vec<u8> {
        let path = format!("/block/{}", hash.to_hex());
        http_client::bodyless("DELETE", &path, &Style::default(), self.auth(), &[])
    }

    /// `/stats`, `/metrics` and `/health` once every write is published (the server publishes
    /// its figures at least once a second).
    fn observe(&mut self) {
        let conn = self.fresh();
        let stats = Step {
            conn,
            pieces: vec![self.get("GET", "/stats", &[])],
            heads: vec![false],
            pause: Duration::from_millis(1500),
        };
        self.push("stats after the writes", stats, Compare::Stats);
        let metrics = Step {
            conn,
            pieces: vec![self.get("GET", "/metrics", &[])],
            heads: vec![false],
            pause: Duration::ZERO,
        };
        self.push("metrics", metrics, Compare::Metrics);
        let health = self.get("GET", "/health", &[]);
        let head_health = self.get("HEAD", "/health", &[]);
        self.on(conn, "health after the script", &[health, head_health]);
    }
}
