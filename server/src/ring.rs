//! The worker driver: one thread, one io_uring, one SO_REUSEPORT listener, running the engine's
//! `Worker`.
//!
//! Each loop turn: take controller replies from the rtrb queue; `tick`; push the worker's
//! messages (a full queue keeps them in the worker: back-pressure); turn the worker's operations
//! into SQEs (a full SQ spills into a bounded backlog); one `io_uring_enter` that submits and
//! waits for at least one completion or the worker's next deadline; record every CQE, then hand
//! them to the worker. The in-flight table owns every buffer from submission until its CQE is
//! reaped, also after the connection is gone. Nothing here blocks except that one wait.
//!
//! The controller wakes a waiting worker through an eventfd the worker always has a read on.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use engine::io::{Completion, Errno, Op, OpId};
use engine::message::{Frame, ToController, ToWorker};
use engine::worker::{AfterServing, Worker};
use io_uring::{opcode, squeue, types, IoUring};

use crate::direct_write::{DirectWrites, Pending};
use crate::fd_log::FdLog;
use crate::mdbx_view::MdbxView;
use crate::shared::Shared;

/// Submission queue entries per ring.
pub const RING_ENTRIES: u32 = 1024;
/// Operations waiting for room in the SQ, at most (beyond: the worker is not polled for more).
pub const BACKLOG_MAX: usize = 4096;
/// Longest wait in the kernel without a deadline (also bounds shutdown-flag latency).
const WAIT_MAX: Duration = Duration::from_millis(250);
/// How often the worker publishes its counters for /stats.
const STATS_EVERY: Duration = Duration::from_millis(50);
/// `user_data` of the internal eventfd read.
const WAKE_TOKEN: u64 = u64::MAX;

/// A worker's ends of its queues and its wake-up eventfd.
pub struct WorkerLinks {
    pub to_controller: rtrb::Producer<Frame>,
    pub from_controller: rtrb::Consumer<Frame>,
    pub wake: Arc<OwnedFd>,
    pub controller: std::thread::Thread,
}

/// What the in-flight table keeps for one operation until its CQE arrives.
struct InFlight {
    id: OpId,
    buf: Option<Vec<u8>>,
    /// For receives: where the received bytes start in `buf`.
    recv_base: Option<usize>,
    purpose: Purpose,
    /// For a direct write: its bounce buffer (read by the kernel until the CQE).
    direct: Option<Pending>,
}

/// What an operation is for, as far as the driver itself cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Purpose {
    /// An accept on the listener: its failures for want of descriptors are logged.
    Accept,
    Other,
}

pub struct Driver {
    ring: IoUring,
    worker: Worker,
    /// The worker's index view: renewed when it has lookups, released before every wait.
    view: MdbxView,
    links: WorkerLinks,
    listener: Option<OwnedFd>,
    data_fd: RawFd,
    shared: Arc<Shared>,
    in_flight: Vec<Option<InFlight>>,
    backlog: VecDeque<squeue::Entry>,
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    completions: Vec<(u64, i32)>,
    fd_log: FdLog,
    direct: DirectWrites,
    /// `Shared::health_changes` when the worker last took the watchdog's verdict.
    health_seen: u64,
    /// `Shared::snapshot_changes` when the worker last took the stats snapshot (`None`: never).
    snapshot_seen: Option<u64>,
}

impl Driver {
    pub fn new(
        worker: Worker,
        view: MdbxView,
        links: WorkerLinks,
        listener: OwnedFd,
        data_fd: RawFd,
        direct_file: Option<Arc<std::fs::File>>,
        shared: Arc<Shared>,
    ) -> Result<Driver> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(RING_ENTRIES)
            .context("creating io_uring (is io_uring enabled in this kernel?)")?;
        let worker_id = worker.id();
        Ok(Driver {
            ring,
            worker,
            view,
            links,
            listener: Some(listener),
            data_fd,
            shared,
            in_flight: Vec::new(),
            backlog: VecDeque::new(),
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            completions: Vec::with_capacity(RING_ENTRIES as usize * 2),
            fd_log: FdLog::new(usize::from(worker_id)),
            direct: DirectWrites::new(direct_file)
                .context("mapping the worker's buffers for direct writes")?,
            health_seen: 0,
            snapshot_seen: None,
        })
    }

    /// Runs until shutdown has drained this worker (or the drain timeout passed).
    pub fn run(mut self) -> Result<()> {
        let id = self.worker.id() as usize;
        let mut shutdown_deadline = None;
        let mut last_stats = self.shared.now();
        let test_panic = crate::fail_fast::TestPanic::from_env("worker");
        loop {
            let now = self.shared.now();
            self.take_replies(now);
            if shutdown_deadline.is_none() && self.shared.shutdown.load(Ordering::Acquire) {
                self.worker.begin_shutdown();
                shutdown_deadline = Some(now + self.shared.drain_timeout);
                // New connections are refused from here on.
                self.listener = None;
            }
            let snapshot_changes = self.shared.snapshot_changes.load(Ordering::Acquire);
            if self.snapshot_seen != Some(snapshot_changes) {
                self.snapshot_seen = Some(snapshot_changes);
                self.worker.set_snapshot(self.shared.snapshot());
            }
            let health_changes = self.shared.health_changes.load(Ordering::Acquire);
            if health_changes != self.health_seen {
                self.health_seen = health_changes;
                self.worker.set_health(self.shared.health());
            }
            self.worker.tick(now);
            // GET and HEAD lookups, on this thread; the view is released before the wait.
            self.worker
                .serve_reads(now, &mut self.view, AfterServing::Release);
            self.shared.oldest_wait[id].store(self.worker.oldest_wait_since());
            self.push_messages();
            self.take_ops();
            self.shared.oldest_file_op[id].store(self.worker.oldest_file_op_since());
            if now.saturating_since(last_stats) >= STATS_EVERY {
                last_stats = now;
                test_panic.check();
                self.shared.publish_worker(id, self.worker.stats());
            }
            if let Some(deadline) = shutdown_deadline {
                if self.worker.is_drained() && self.worker.messages_waiting() == 0 {
                    break;
                }
                if now >= deadline {
                    tracing::warn!(
                        worker = id,
                        "drain timeout: closing with requests in flight"
                    );
                    // Buffers of ops still in flight must outlive the kernel's use of them.
                    std::mem::forget(std::mem::take(&mut self.in_flight));
                    break;
                }
            }
            self.arm_wake();
            let wait = self.wait_time(now);
            self.submit_and_wait(wait)?;
            self.reap();
            let now = self.shared.now();
            self.handle_completions(now);
        }
        self.shared.publish_worker(id, self.worker.stats());
        // The eventfd read may still be pending in the kernel while the ring is torn down.
        Box::leak(std::mem::take(&mut self.wake_buf));
        Ok(())
    }

    fn take_replies(&mut self, now: engine::Instant) {
        while let Ok(frame) = self.links.from_controller.pop() {
            match ToWorker::decode(&frame) {
                Ok(m) => self.worker.handle_message(now, m),
                Err(e) => tracing::error!("dropping undecodable controller frame: {e}"),
            }
        }
    }

    fn push_messages(&mut self) {
        let producer = &mut self.links.to_controller;
        let mut pushed = false;
        self.worker.drain_messages(|m: &ToController| {
            let ok = producer.push(m.encode()).is_ok();
            pushed |= ok;
            ok
        });
        if pushed {
            self.links.controller.unpark();
        }
    }

    fn wait_time(&self, now: engine::Instant) -> Duration {
        let mut wait = WAIT_MAX;
        if let Some(t) = self.worker.poll_timeout() {
            wait = wait.min(t.saturating_since(now));
        }
        if self.worker.messages_waiting() > 0 || !self.backlog.is_empty() {
            // The controller queue or the SQ was full: try again soon.
            wait = wait.min(Duration::from_micros(200));
        }
        wait
    }

    fn take_ops(&mut self) {
        while self.backlog.len() < BACKLOG_MAX {
            let Some((id, op)) = self.worker.poll_io() else {
                break;
            };
            let entry = self.prepare(id, op);
            self.backlog.push_back(entry);
        }
        self.flush_backlog();
    }

    fn flush_backlog(&mut self) {
        let mut sq = self.ring.submission();
        while let Some(entry) = self.backlog.front() {
            // SAFETY: every buffer an entry points to is owned by `self.in_flight` until the
            // entry's CQE is reaped (see `prepare`), so it outlives the kernel's use of it.
            if unsafe { sq.push(entry) }.is_err() {
                break;
            }
            self.backlog.pop_front();
        }
    }

    fn arm_wake(&mut self) {
        if self.wake_armed {
            return;
        }
        let fd = self.links.wake.as_raw_fd();
        let entry = opcode::Read::new(types::Fd(fd), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(WAKE_TOKEN);
        // SAFETY: `wake_buf` is a heap box owned by the driver for its whole life; the driver
        // outlives the ring's use of it (it is only dropped after the loop ends, and a pending
        // eventfd read then is cancelled when the ring closes).
        if unsafe { self.ring.submission().push(&entry) }.is_ok() {
            self.wake_armed = true;
        }
    }

    /// Moves the op's buffer into the in-flight table and builds its SQE.
    fn prepare(&mut self, id: OpId, op: Op) -> squeue::Entry {
        let index = id.index() as usize;
        if self.in_flight.len() <= index {
            self.in_flight.resize_with(index + 1, || None);
        }
        assert!(
            self.in_flight[index].is_none(),
            "op slot {index} reused while in flight"
        );
        let mut slot = InFlight {
            id,
            buf: None,
            recv_base: None,
            direct: None,
            purpose: Purpose::Other,
        };
        let entry = match op {
            Op::Accept => {
                slot.purpose = Purpose::Accept;
                let fd = self.listener.as_ref().map_or(-1, |l| l.as_raw_fd());
                opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            }
            Op::Recv { conn, mut buf, max } => {
                buf.reserve(max);
                let base = buf.len();
                // SAFETY: `base + max <= capacity` after the reserve; the Vec moves into the
                // table below and its heap block does not move while it sits there.
                let ptr = unsafe { buf.as_mut_ptr().add(base) };
                slot.recv_base = Some(base);
                slot.buf = Some(buf);
                opcode::Recv::new(types::Fd(conn.0 as RawFd), ptr, max as u32).build()
            }
            Op::Send {
                conn,
                buf,
                start,
                end,
            } => {
                assert!(start < end && end <= buf.len());
                // SAFETY: in bounds (asserted); the buffer lives in the table until the CQE.
                let ptr = unsafe { buf.as_ptr().add(start) };
                slot.buf = Some(buf);
                opcode::Send::new(types::Fd(conn.0 as RawFd), ptr, (end - start) as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Op::ReadAt {
                offset,
                mut buf,
                start,
                end,
            } => {
                assert!(start < end && end <= buf.len());
                // SAFETY: in bounds (asserted); the buffer lives in the table until the CQE.
                let ptr = unsafe { buf.as_mut_ptr().add(start) };
                slot.buf = Some(buf);
                opcode::Read::new(types::Fd(self.data_fd), ptr, (end - start) as u32)
                    .offset(offset)
                    .build()
            }
            Op::WriteAt {
                offset,
                buf,
                start,
                end,
                slot_end,
            } => {
                assert!(start < end && end <= buf.len());
                if let Some((entry, pending)) =
                    self.direct.prepare(offset, &buf[start..end], slot_end)
                {
                    slot.buf = Some(buf);
                    slot.direct = Some(pending);
                    self.in_flight[index] = Some(slot);
                    return entry.user_data(id.0);
                }
                // SAFETY: in bounds (asserted); the buffer lives in the table until the CQE.
                let ptr = unsafe { buf.as_ptr().add(start) };
                slot.buf = Some(buf);
                opcode::Write::new(types::Fd(self.data_fd), ptr, (end - start) as u32)
                    .offset(offset)
                    .build()
            }
            Op::Close { conn } => opcode::Close::new(types::Fd(conn.0 as RawFd)).build(),
            Op::Cancel { target } => opcode::AsyncCancel::new(target.0).build(),
        };
        self.in_flight[index] = Some(slot);
        entry.user_data(id.0)
    }

    fn submit_and_wait(&mut self, wait: Duration) -> Result<()> {
        let ts = types::Timespec::new()
            .sec(wait.as_secs())
            .nsec(wait.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                    Ok(())
                }
                _ => Err(e).context("io_uring_enter"),
            },
        }
    }

    fn reap(&mut self) {
        for cqe in self.ring.completion() {
            self.completions.push((cqe.user_data(), cqe.result()));
        }
    }

    fn handle_completions(&mut self, now: engine::Instant) {
        let completions = std::mem::take(&mut self.completions);
        for &(user_data, res) in &completions {
            if user_data == WAKE_TOKEN {
                self.wake_armed = false;
                continue;
            }
            let id = OpId(user_data);
            let slot = self.in_flight[id.index() as usize]
                .take()
                .expect("CQE for a known op");
            assert_eq!(slot.id, id, "CQE matches the op in its slot");
            let mut buf = slot.buf;
            let mut result = if res < 0 {
                Err(Errno(-res))
            } else {
                Ok(res as u64)
            };
            if let Some(pending) = slot.direct {
                result = self.direct.finish(pending, result);
            }
            if slot.purpose == Purpose::Accept {
                self.fd_log.on_accept(std::time::Instant::now(), result);
            }
            if let (Some(base), Some(b), Ok(n)) = (slot.recv_base, buf.as_mut(), result) {
                // SAFETY: the kernel wrote `n` bytes starting at `base`, within the capacity
                // reserved in `prepare`.
                unsafe { b.set_len(base + n as usize) };
            }
            self.worker.handle_completion(
                now,
                Completion {
                    op: id,
                    result,
                    buf,
                },
            );
        }
        self.completions = completions;
        self.completions.clear();
    }
}
