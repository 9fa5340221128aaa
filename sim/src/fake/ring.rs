//! The fake io_uring of one worker: an in-flight table that completes operations after seeded
//! latencies, in any order.
//!
//! Fault model (each probability drawn per seed, all zero once faults are healed):
//! - Every operation completes after a seeded latency (network ops: the seed's network range;
//!   file ops: the disk range with a rare long tail), so completions arrive out of order.
//! - Recv, Send, ReadAt and WriteAt may transfer fewer bytes than asked (at least one).
//! - Any socket or file op may complete with EAGAIN, having done nothing.
//! - ReadAt and WriteAt may fail with EIO (a failed write may have written a prefix).
//! - ReadAt may turn a sector bad: it and later reads of it fail with EIO (see `disk`).
//! - With verification on: ReadAt may return one flipped bit (the stored bytes are fine), and
//!   WriteAt may land at another offset while reporting success (the disk records the damage).
//! - Recv and Send may fail with ECONNRESET (the connection is then marked faulted).
//! - Accept may fail with ECONNABORTED or EMFILE.
//! - Cancel of a parked op completes the target with ECANCELED; of an op already under way, it
//!   either completes the target with ECANCELED or lets it finish normally (too late).
//! - A Recv with no bytes waits (parked) for the client; a Send to a full client window waits for
//!   the client to read; an Accept waits for a connection. Parked ops never time out by
//!   themselves: the worker's own timers must deal with silent peers.
//!
//! Every op returns its buffer with its completion. Ops still in flight at a crash are lost
//! (a WriteAt in flight may have written a prefix: see `World::crash`).

use std::collections::{BTreeMap, BTreeSet};

use engine::io::{Completion, Errno, Op, OpId};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::fake::disk::Disk;
use crate::fake::net::Net;
use crate::options::{Faults, Options};

#[derive(Debug)]
pub struct InFlight {
    pub op: Op,
    pub due: Option<u64>,
    pub canceled: bool,
}

/// One worker's in-flight table, with a time index of the ops that are due.
#[derive(Debug, Default)]
pub struct Ring {
    ops: BTreeMap<OpId, InFlight>,
    timed: BTreeSet<(u64, OpId)>,
    pub accept_parked: Option<OpId>,
    pub submitted: u64,
}

/// Counts of injected faults that can explain an error answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounters {
    pub read_faults: u64,
    pub write_faults: u64,
    pub misdirected: u64,
    /// Sectors turned bad (sticky read errors).
    pub sticky: u64,
    pub conn_faults: u64,
    pub eagain: u64,
    pub short: u64,
    pub accept_errors: u64,
}

/// One injected file fault that may explain one error answer: on which worker's ring, when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injected {
    pub worker: usize,
    pub at_ns: u64,
}

/// The injected read and write faults not yet used to explain an answer (the oracle takes an
/// entry out when it explains a `500` by it: per-request attribution).
#[derive(Debug, Default)]
pub struct FaultLog {
    pub reads: Vec<Injected>,
    pub writes: Vec<Injected>,
}

/// What the ring needs from the rest of the world to complete an op.
pub struct IoEnv<'a> {
    pub now: u64,
    pub worker: usize,
    pub net: &'a mut Net,
    pub disk: &'a mut Disk,
    pub rng: &'a mut ChaCha8Rng,
    pub faults: Faults,
    pub counters: &'a mut FaultCounters,
    pub log: &'a mut FaultLog,
}

/// A completed op and whom it concerns; `Err` from [`complete`] hands back an op that was not
/// ready after all (no bytes, full window, empty backlog), to be parked again.
pub type Outcome = (Completion, Wake);

/// Whom a completion concerns besides the worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wake {
    /// A client whose connection has new bytes or was closed.
    pub conn: Option<u64>,
}

impl Ring {
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    pub fn contains(&self, id: OpId) -> bool {
        self.ops.contains_key(&id)
    }

    pub fn next_due(&self) -> Option<u64> {
        self.timed.first().map(|&(t, _)| t)
    }

    /// Adds an op, due at `due` or parked (`None`).
    pub fn insert(&mut self, id: OpId, op: Op, due: Option<u64>) {
        assert!(
            !self.ops.contains_key(&id),
            "op id {id:?} submitted twice while in flight"
        );
        self.submitted += 1;
        if let Some(t) = due {
            self.timed.insert((t, id));
        }
        self.ops.insert(
            id,
            InFlight {
                op,
                due,
                canceled: false,
            },
        );
    }

    /// Makes a parked (or timed) op due at `due`.
    pub fn schedule(&mut self, id: OpId, due: u64) {
        let Some(entry) = self.ops.get_mut(&id) else {
            return;
        };
        if let Some(t) = entry.due {
            if t <= due {
                return;
            }
            self.timed.remove(&(t, id));
        }
        entry.due = Some(due);
        self.timed.insert((due, id));
    }

    /// Parks an op again (no longer due).
    pub fn park(&mut self, id: OpId) {
        let entry = self.ops.get_mut(&id).expect("parking an op in flight");
        if let Some(t) = entry.due.take() {
            self.timed.remove(&(t, id));
        }
    }

    /// The earliest op due at or before `now`, removed from the time index (not the table).
    pub fn pop_due(&mut self, now: u64) -> Option<OpId> {
        let &(t, id) = self.timed.first()?;
        if t > now {
            return None;
        }
        self.timed.pop_first();
        self.ops.get_mut(&id).expect("timed op in flight").due = None;
        Some(id)
    }

    pub fn get_mut(&mut self, id: OpId) -> Option<&mut InFlight> {
        self.ops.get_mut(&id)
    }

    pub fn remove(&mut self, id: OpId) -> InFlight {
        let entry = self.ops.remove(&id).expect("removing an op in flight");
        if let Some(t) = entry.due {
            self.timed.remove(&(t, id));
        }
        entry
    }

    /// Cheap checks the world runs after every step: the time index holds only ops in flight,
    /// and the parked accept is one of them.
    pub fn check_invariants(&self) {
        assert!(
            self.timed.len() <= self.ops.len(),
            "the time index holds {} ops, the table {}",
            self.timed.len(),
            self.ops.len()
        );
        if let Some(id) = self.accept_parked {
            assert!(
                self.ops.contains_key(&id),
                "parked accept {id:?} not in flight"
            );
        }
    }

    /// Every op in flight, removed (a crash).
    pub fn drain(&mut self) -> Vec<(OpId, InFlight)> {
        self.timed.clear();
        self.accept_parked = None;
        std::mem::take(&mut self.ops).into_iter().collect()
    }
}

/// A latency from `range`, with a rare long tail.
pub fn latency(rng: &mut ChaCha8Rng, range: (u64, u64), tail_p: f64) -> u64 {
    let base = rng.random_range(range.0..=range.1);
    if tail_p > 0.0 && rng.random_bool(tail_p) {
        base * rng.random_range(10..=100)
    } else {
        base
    }
}

/// When an op just submitted is due (`None`: parked until an event).
pub fn first_due(op: &Op, env: &mut IoEnv<'_>, opts: &Options, healed: bool) -> Option<u64> {
    let now = env.now;
    let net = latency(env.rng, opts.net_latency_ns, 0.0);
    match op {
        Op::Accept => (env.net.backlog_len(env.worker) > 0).then_some(now + net),
        Op::Recv { conn, .. } => match env.net.get(conn.0) {
            None => Some(now + net),
            Some(c) => {
                let ready =
                    !c.to_server.is_empty() || c.client_fin || c.client_gone || c.server_closed;
                ready.then_some(now + net)
            }
        },
        Op::Send { .. } | Op::Close { .. } => Some(now + net),
        Op::Cancel { .. } => Some(now + 1_000),
        Op::ReadAt { .. } | Op::WriteAt { .. } => {
            let tail = if healed { 0.0 } else { opts.disk_tail_p };
            Some(now + latency(env.rng, opts.disk_latency_ns, tail))
        }
    }
}

/// The server writes blocks with `O_DIRECT`: a whole write at an aligned offset goes out padded
/// with zeros to whole `WRITE_PAD_BYTES` units, never past the slot's end (`Op::WriteAt`'s
/// `slot_end`). Here every such write is padded, short ones too (the server keeps writes under
/// 8 KiB buffered), the most a driver may do: the byte-exact oracles then check that padding
/// never reaches another slot's bytes.
fn pad_like_the_server(
    env: &mut IoEnv<'_>,
    offset: u64,
    moved: usize,
    asked: usize,
    slot_end: u64,
) {
    use engine::io::WRITE_PAD_BYTES;
    if moved < asked || !offset.is_multiple_of(WRITE_PAD_BYTES) {
        return;
    }
    let end = offset + moved as u64;
    let padded = end.div_ceil(WRITE_PAD_BYTES) * WRITE_PAD_BYTES;
    assert!(
        padded <= slot_end,
        "padding past the slot's end ({padded} > {slot_end})"
    );
    if padded > end {
        env.disk
            .write(end, &vec![0u8; (padded - end) as usize], true);
    }
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && rng.random_bool(p)
}

/// A transfer size in `1..=n`, short with the seed's probability.
fn transfer(env: &mut IoEnv<'_>, n: usize) -> usize {
    assert!(n >= 1);
    if n > 1 && chance(env.rng, env.faults.short) {
        env.counters.short += 1;
        env.rng.random_range(1..n)
    } else {
        n
    }
}

fn done(op: OpId, result: Result<u64, Errno>, buf: Option<Vec<u8>>) -> Completion {
    Completion { op, result, buf }
}

/// Completes a due op against the network and the disk.
pub fn complete(id: OpId, entry: InFlight, env: &mut IoEnv<'_>) -> Result<Outcome, InFlight> {
    let canceled = entry.canceled;
    let out = |c: Completion, conn: Option<u64>| Ok((c, Wake { conn }));
    match entry.op {
        Op::Accept => {
            if canceled {
                return out(done(id, Err(Errno::ECANCELED), None), None);
            }
            if env.net.backlog_len(env.worker) == 0 {
                return Err(InFlight {
                    op: Op::Accept,
                    due: None,
                    canceled,
                });
            }
            if chance(env.rng, env.faults.accept_error) {
                env.counters.accept_errors += 1;
                let e = if env.rng.random_bool(0.5) {
                    Errno::ECONNABORTED
                } else {
                    Errno::EMFILE
                };
                return out(done(id, Err(e), None), None);
            }
            let handle = env.net.accept(env.worker).expect("backlog checked");
            out(done(id, Ok(handle), None), None)
        }
        Op::Recv { conn, mut buf, max } => {
            if canceled {
                return out(done(id, Err(Errno::ECANCELED), Some(buf)), None);
            }
            let Some(c) = env.net.get_mut(conn.0) else {
                return out(done(id, Err(Errno::ECONNRESET), Some(buf)), None);
            };
            if c.client_gone || c.server_reset {
                return out(done(id, Err(Errno::ECONNRESET), Some(buf)), None);
            }
            if chance(env.rng, env.faults.eagain) {
                env.counters.eagain += 1;
                return out(done(id, Err(Errno::EAGAIN), Some(buf)), None);
            }
            if chance(env.rng, env.faults.conn_reset) {
                env.counters.conn_faults += 1;
                let c = env.net.get_mut(conn.0).expect("checked above");
                c.faulted = true;
                return out(done(id, Err(Errno::ECONNRESET), Some(buf)), None);
            }
            let c = env.net.get_mut(conn.0).expect("checked above");
            if c.to_server.is_empty() {
                if c.client_fin {
                    return out(done(id, Ok(0), Some(buf)), None);
                }
                c.recv_waiter = Some(id);
                return Err(InFlight {
                    op: Op::Recv { conn, buf, max },
                    due: None,
                    canceled,
                });
            }
            let avail = c.to_server.len().min(max);
            let n = transfer(env, avail);
            let c = env.net.get_mut(conn.0).expect("checked above");
            buf.extend(c.to_server.drain(..n));
            out(done(id, Ok(n as u64), Some(buf)), None)
        }
        Op::Send {
            conn,
            buf,
            start,
            end,
        } => {
            assert!(
                start < end && end <= buf.len(),
                "send of an empty or bad range"
            );
            if canceled {
                return out(done(id, Err(Errno::ECANCELED), Some(buf)), None);
            }
            let Some(c) = env.net.get_mut(conn.0) else {
                return out(done(id, Err(Errno::EPIPE), Some(buf)), None);
            };
            if c.client_gone || c.server_reset {
                return out(done(id, Err(Errno::EPIPE), Some(buf)), None);
            }
            if chance(env.rng, env.faults.eagain) {
                env.counters.eagain += 1;
                return out(done(id, Err(Errno::EAGAIN), Some(buf)), None);
            }
            if chance(env.rng, env.faults.conn_reset) {
                env.counters.conn_faults += 1;
                env.net.get_mut(conn.0).expect("checked").faulted = true;
                return out(done(id, Err(Errno::ECONNRESET), Some(buf)), None);
            }
            let c = env.net.get_mut(conn.0).expect("checked above");
            let room = c.window_bytes.saturating_sub(c.to_client.len());
            if room == 0 {
                c.send_waiter = Some(id);
                return Err(InFlight {
                    op: Op::Send {
                        conn,
                        buf,
                        start,
                        end,
                    },
                    due: None,
                    canceled,
                });
            }
            let n = transfer(env, (end - start).min(room));
            let c = env.net.get_mut(conn.0).expect("checked above");
            c.to_client.extend(&buf[start..start + n]);
            out(done(id, Ok(n as u64), Some(buf)), Some(conn.0))
        }
        Op::ReadAt {
            offset,
            mut buf,
            start,
            end,
        } => {
            assert!(
                start < end && end <= buf.len(),
                "read into an empty or bad range"
            );
            if chance(env.rng, env.faults.eagain) {
                env.counters.eagain += 1;
                return out(done(id, Err(Errno::EAGAIN), Some(buf)), None);
            }
            if chance(env.rng, env.faults.file_eio) {
                env.counters.read_faults += 1;
                env.log.reads.push(Injected {
                    worker: env.worker,
                    at_ns: env.now,
                });
                return out(done(id, Err(Errno::EIO), Some(buf)), None);
            }
            if chance(env.rng, env.faults.sticky_read) {
                // This read fails for it (a read fault); later ones are explained as damage.
                env.counters.sticky += 1;
                env.counters.read_faults += 1;
                env.log.reads.push(Injected {
                    worker: env.worker,
                    at_ns: env.now,
                });
                env.disk
                    .mark_bad(offset + env.rng.random_range(0..(end - start) as u64));
            }
            if env.disk.is_bad(offset, (end - start) as u64) {
                return out(done(id, Err(Errno::EIO), Some(buf)), None);
            }
            let n = transfer(env, end - start);
            env.disk.read(offset, &mut buf[start..start + n]);
            if chance(env.rng, env.faults.bit_flip) {
                env.counters.read_faults += 1;
                env.log.reads.push(Injected {
                    worker: env.worker,
                    at_ns: env.now,
                });
                let at = env.rng.random_range(start..start + n);
                buf[at] ^= 1 << env.rng.random_range(0..8);
            }
            out(done(id, Ok(n as u64), Some(buf)), None)
        }
        Op::WriteAt {
            offset,
            buf,
            start,
            end,
            slot_end,
        } => {
            assert!(
                start < end && end <= buf.len(),
                "write of an empty or bad range"
            );
            if chance(env.rng, env.faults.eagain) {
                env.counters.eagain += 1;
                return out(done(id, Err(Errno::EAGAIN), Some(buf)), None);
            }
            if chance(env.rng, env.faults.file_eio) {
                env.counters.write_faults += 1;
                env.log.writes.push(Injected {
                    worker: env.worker,
                    at_ns: env.now,
                });
                let prefix = env.rng.random_range(0..=end - start);
                if prefix > 0 {
                    env.disk.write(offset, &buf[start..start + prefix], true);
                }
                return out(done(id, Err(Errno::EIO), Some(buf)), None);
            }
            let n = transfer(env, end - start);
            if chance(env.rng, env.faults.misdirect) {
                env.counters.misdirected += 1;
                let sectors = env.disk.capacity_bytes() / crate::fake::disk::SECTOR_BYTES;
                let mut target = env.rng.random_range(0..sectors) * crate::fake::disk::SECTOR_BYTES;
                target = target.min(env.disk.capacity_bytes() - n as u64);
                env.disk.write(target, &buf[start..start + n], false);
                env.disk.mark_damaged(offset, n as u64);
            } else {
                env.disk.write(offset, &buf[start..start + n], true);
                pad_like_the_server(env, offset, n, end - start, slot_end);
            }
            out(done(id, Ok(n as u64), Some(buf)), None)
        }
        Op::Close { conn } => {
            env.net.server_close(conn.0);
            out(done(id, Ok(0), None), Some(conn.0))
        }
        Op::Cancel { .. } => out(done(id, Ok(0), None), None),
    }
}
