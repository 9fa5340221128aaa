//! One load-generating connection: the plan it follows, the requests it sends (PUT, GET, HEAD,
//! DELETE), the checks on every response, and its latency histograms and error counts.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use benches::body::BodyFactory;
use benches::conn::Conn;
use benches::spec::{Mix, Op, SizeDist, Target, Url};
use benches::Rng;
use engine::hash::{BlockHash, HASH_HEX_LEN};
use hdrhistogram::Histogram;

/// A stored block the run knows about: its address and length.
#[derive(Clone, Copy)]
pub(crate) struct Key {
    pub(crate) hash: BlockHash,
    pub(crate) len: u32,
}

pub(crate) const OPS: usize = 4;

/// What one connection measured.
pub(crate) struct ConnStats {
    pub(crate) hist: Vec<Histogram<u32>>,
    pub(crate) bytes: u64,
    pub(crate) errors: ErrorCounts,
    pub(crate) first_errors: Vec<String>,
    pub(crate) last_done: Option<Instant>,
    pub(crate) reconnects: u64,
    pub(crate) puts_turned_from_delete: u64,
}

#[derive(Default, Clone, Copy)]
pub(crate) struct ErrorCounts {
    pub(crate) io: u64,
    pub(crate) status: u64,
    pub(crate) verify: u64,
    pub(crate) protocol: u64,
}

impl ErrorCounts {
    pub(crate) fn total(&self) -> u64 {
        self.io + self.status + self.verify + self.protocol
    }
    pub(crate) fn add(&mut self, o: &ErrorCounts) {
        self.io += o.io;
        self.status += o.status;
        self.verify += o.verify;
        self.protocol += o.protocol;
    }
}

pub(crate) enum Failure {
    Io(io::Error),
    Status(String),
    Verify(String),
    Protocol(String),
}

impl Failure {
    pub(crate) fn text(&self) -> String {
        match self {
            Failure::Io(e) => format!("io: {e}"),
            Failure::Status(s) => format!("status: {s}"),
            Failure::Verify(s) => format!("verify: {s}"),
            Failure::Protocol(s) => format!("protocol: {s}"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::InvalidData {
            Failure::Protocol(e.to_string())
        } else {
            Failure::Io(e)
        }
    }
}

pub(crate) fn new_hist() -> Histogram<u32> {
    // Microseconds, 1 us .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Everything a connection thread needs, shared read-only.
pub(crate) struct Plan {
    pub(crate) target: Target,
    pub(crate) url: Url,
    pub(crate) mix: Mix,
    pub(crate) sizes: SizeDist,
    pub(crate) bodies: BodyFactory,
    pub(crate) read_pool: Vec<Key>,
    pub(crate) seed: u64,
    pub(crate) nonce: u64,
}

/// One connection's state across phases.
pub(crate) struct Worker {
    pub(crate) id: u64,
    pub(crate) conn: Conn,
    pub(crate) rng: Rng,
    pub(crate) seq: u64,
    pub(crate) body_buf: Vec<u8>,
    pub(crate) head_buf: Vec<u8>,
    pub(crate) deletable: Vec<Key>,
}

impl Worker {
    pub(crate) fn new(id: u64, plan: &Plan, timeout: Duration) -> Worker {
        Worker {
            id,
            conn: Conn::new(plan.url.addr, timeout),
            rng: Rng::new(plan.seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            seq: 0,
            body_buf: Vec::new(),
            head_buf: Vec::with_capacity(256),
            deletable: Vec::new(),
        }
    }

    pub(crate) fn path_for(&self, plan: &Plan, hash: &BlockHash, out: &mut Vec<u8>) {
        let mut hex = [0u8; HASH_HEX_LEN];
        hash.write_hex(&mut hex);
        match plan.target {
            Target::Buddy => out.extend_from_slice(b"/block/"),
            Target::Webdav => {
                out.extend_from_slice(plan.url.prefix.as_bytes());
                out.push(b'/');
            }
        }
        out.extend_from_slice(&hex);
    }

    pub(crate) fn build_head(
        &mut self,
        plan: &Plan,
        method: &str,
        hash: Option<&BlockHash>,
        len: Option<u32>,
    ) {
        let mut h = std::mem::take(&mut self.head_buf);
        h.clear();
        h.extend_from_slice(method.as_bytes());
        h.push(b' ');
        match hash {
            Some(hash) => self.path_for(plan, hash, &mut h),
            None => h.extend_from_slice(b"/block"),
        }
        h.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        h.extend_from_slice(plan.url.host_header.as_bytes());
        h.extend_from_slice(b"\r\n");
        if let Some(len) = len {
            h.extend_from_slice(b"Content-Length: ");
            h.extend_from_slice(len.to_string().as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"\r\n");
        self.head_buf = h;
    }

    /// PUTs one fresh block; returns its key and the body bytes sent.
    pub(crate) fn put(&mut self, plan: &Plan) -> Result<(Key, u64), Failure> {
        let len = plan.sizes.pick(&mut self.rng);
        self.seq += 1;
        let unique = [plan.nonce, (self.id << 40) | self.seq];
        let body = plan
            .bodies
            .make(len, unique, &mut self.rng, &mut self.body_buf);
        let hash = body.hash;
        let send_hash = match plan.target {
            Target::Buddy => None,
            Target::Webdav => Some(hash),
        };
        self.build_head(plan, "PUT", send_hash.as_ref(), Some(len as u32));
        let parts = body.parts(&plan.bodies, &self.body_buf);
        let resp = self
            .conn
            .exchange(&self.head_buf, &parts, false)
            .map_err(Failure::from)?;
        match plan.target {
            Target::Buddy => {
                if resp.status != 201 {
                    return Err(Failure::Status(format!(
                        "PUT answered {} (expected 201): {}",
                        resp.status,
                        self.conn.preview(&resp)
                    )));
                }
                let mut hex = [0u8; HASH_HEX_LEN];
                hash.write_hex(&mut hex);
                let got = self.conn.body(&resp).trim_ascii();
                if got != hex {
                    return Err(Failure::Verify(format!(
                        "PUT returned hash {:?}, expected {}",
                        String::from_utf8_lossy(&got[..got.len().min(80)]),
                        hash.to_hex()
                    )));
                }
            }
            Target::Webdav => {
                if resp.status != 201 && resp.status != 204 {
                    return Err(Failure::Status(format!(
                        "PUT answered {} (expected 201/204)",
                        resp.status
                    )));
                }
            }
        }
        Ok((
            Key {
                hash,
                len: len as u32,
            },
            len as u64,
        ))
    }

    pub(crate) fn get(&mut self, plan: &Plan, key: Key, head_only: bool) -> Result<u64, Failure> {
        let method = if head_only { "HEAD" } else { "GET" };
        self.build_head(plan, method, Some(&key.hash), None);
        let resp = self.conn.exchange(&self.head_buf, &[], head_only)?;
        if resp.status != 200 {
            return Err(Failure::Status(format!(
                "{method} {} answered {} (expected 200)",
                key.hash.to_hex(),
                resp.status
            )));
        }
        if resp.content_length != Some(key.len as u64) {
            return Err(Failure::Verify(format!(
                "{method} {}: Content-Length {:?}, expected {}",
                key.hash.to_hex(),
                resp.content_length,
                key.len
            )));
        }
        if head_only {
            return Ok(0);
        }
        let body = self.conn.body(&resp);
        if !plan.bodies.verify(body, &key.hash) {
            return Err(Failure::Verify(format!(
                "GET {}: body of {} bytes does not hash to its address",
                key.hash.to_hex(),
                body.len()
            )));
        }
        Ok(key.len as u64)
    }

    pub(crate) fn delete(&mut self, plan: &Plan, key: Key) -> Result<(), Failure> {
        self.build_head(plan, "DELETE", Some(&key.hash), None);
        let resp = self.conn.exchange(&self.head_buf, &[], false)?;
        let ok = match plan.target {
            Target::Buddy => resp.status == 204,
            Target::Webdav => resp.status == 204 || resp.status == 200,
        };
        if !ok {
            return Err(Failure::Status(format!(
                "DELETE {} answered {} (expected 204)",
                key.hash.to_hex(),
                resp.status
            )));
        }
        Ok(())
    }

    /// One operation of the mix; returns the op actually done and the body bytes moved.
    pub(crate) fn one(&mut self, plan: &Plan, op: Op) -> (Op, Result<u64, Failure>) {
        match op {
            Op::Put => (Op::Put, self.put_tracked(plan)),
            Op::Get | Op::Head => {
                let key = plan.read_pool[self.rng.below(plan.read_pool.len() as u64) as usize];
                (op, self.get(plan, key, op == Op::Head))
            }
            Op::Delete => match self.deletable.pop() {
                Some(key) => (Op::Delete, self.delete(plan, key).map(|()| 0)),
                None => (Op::Put, self.put_tracked(plan)),
            },
        }
    }

    pub(crate) fn put_tracked(&mut self, plan: &Plan) -> Result<u64, Failure> {
        let (key, bytes) = self.put(plan)?;
        if plan.mix.has(Op::Delete) {
            self.deletable.push(key);
        }
        Ok(bytes)
    }
}

pub(crate) struct Timing {
    pub(crate) warmup_end: Instant,
    pub(crate) end: Option<Instant>,
    pub(crate) requests: Option<u64>,
}

pub(crate) fn run_connection(
    w: &mut Worker,
    plan: &Plan,
    timing: &Timing,
    claimed: &AtomicU64,
    stop: &AtomicBool,
    barrier: &Barrier,
) -> ConnStats {
    let mut st = ConnStats {
        hist: (0..OPS).map(|_| new_hist()).collect(),
        bytes: 0,
        errors: ErrorCounts::default(),
        first_errors: Vec::new(),
        last_done: None,
        reconnects: 0,
        puts_turned_from_delete: 0,
    };
    // Connect before the start so `reconnects` counts only connections lost during the run (a
    // failure here shows up as an error on the first request).
    let _ = w.conn.ensure_connected();
    let connects_before = w.conn.connects;
    barrier.wait();
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        if let Some(end) = timing.end {
            if t0 >= end {
                break;
            }
        }
        let measured = t0 >= timing.warmup_end;
        if measured {
            if let Some(n) = timing.requests {
                if claimed.fetch_add(1, Ordering::Relaxed) >= n {
                    break;
                }
            }
        }
        let wanted = plan.mix.pick(&mut w.rng);
        let (op, result) = w.one(plan, wanted);
        let t1 = Instant::now();
        let in_window = measured && timing.end.is_none_or(|end| t1 <= end);
        match result {
            Ok(bytes) => {
                if in_window {
                    let us = (t1 - t0).as_micros().max(1) as u64;
                    st.hist[op as usize].saturating_record(us);
                    st.bytes += bytes;
                    st.last_done = Some(t1);
                    if wanted == Op::Delete && op == Op::Put {
                        st.puts_turned_from_delete += 1;
                    }
                }
            }
            Err(f) => {
                // Errors count whether or not they fall in the measured window.
                match &f {
                    Failure::Io(_) => st.errors.io += 1,
                    Failure::Status(_) => st.errors.status += 1,
                    Failure::Verify(_) => st.errors.verify += 1,
                    Failure::Protocol(_) => st.errors.protocol += 1,
                }
                if st.first_errors.len() < 5 {
                    st.first_errors.push(f.text());
                }
                if matches!(f, Failure::Io(_) | Failure::Protocol(_)) {
                    w.conn.drop_stream();
                    // Do not spin on a dead server.
                    std::thread::sleep(Duration::from_millis(10));
                }
                if in_window {
                    st.last_done = Some(t1);
                }
            }
        }
    }
    st.reconnects = w.conn.connects - connects_before;
    st
}
