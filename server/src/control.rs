//! The controller thread: drains every worker queue, runs the engine's controller cycle over
//! libmdbx, and pushes replies. The only thread that writes the index (the `checkpoint`
//! thread only makes its commits durable).
//!
//! It drives the engine's `Controller` in the order its doc gives: frames in, `start_cycle`,
//! read replies out, `finish_cycle` (the batch's log record through [`FileLog`] into the data
//! file's log region, the one flush, the commit), replies out, then
//! `poll_checkpoint` (a checkpoint on the `checkpoint` thread, [`crate::checkpoint`]), and
//! `checkpoint_done` when one ends. It parks when idle (workers unpark it after pushing; the
//! checkpoint thread when a checkpoint ends) and wakes a worker through its eventfd after
//! pushing replies to it. A reply that does not fit a full worker queue stays in the
//! controller's outbox and is pushed on a later turn. At shutdown it waits for the checkpoint
//! in flight and makes the index durable before the store closes (the next start then
//! replays nothing).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The scrub's state machine, which `run` drives (`scrub_step`).
pub use engine::controller::Scrub;
use engine::controller::{Controller, ControllerIo, CycleOutcome, ScrubOutcome, SyncError};
use engine::message::{Frame, ToController, ToWorker};
use engine::meta::MetaStore;
use engine::stats::StatsSnapshot;

use crate::checkpoint::{CheckpointThread, Checkpoints};
use crate::data_sync::{SyncThread, WRITEBACK_KICK};
use crate::log_file::FileLog;
use crate::mdbx::MdbxStore;
use crate::shared::Shared;
use crate::trailer::Layout;

/// Longest park when idle.
const IDLE_PARK: Duration = Duration::from_millis(100);
/// How often an idle controller republishes the /stats snapshot (workers publish their
/// counters every 50 ms; without this, other workers' figures would go stale while idle).
const STATS_REFRESH: Duration = Duration::from_millis(100);

pub struct ControllerLinks {
    pub from_worker: rtrb::Consumer<Frame>,
    pub to_worker: rtrb::Producer<Frame>,
    pub wake: Arc<OwnedFd>,
}

struct Io<'a> {
    data: &'a File,
    /// The log region of the data file (the records of durable batches).
    log: FileLog<'a>,
    shared: &'a Shared,
    syncer: SyncThread,
    /// Full durability: the thread that runs checkpoints.
    checkpoint: Option<CheckpointThread>,
    /// Since when a flush of the data file has been in flight (for the watchdog).
    data_sync_since: Option<engine::Instant>,
    /// Since when a checkpoint has been in flight (for the watchdog).
    checkpoint_since: Option<engine::Instant>,
}

impl Io<'_> {
    /// Tells the watchdog since when the oldest flush in flight has been running, before this
    /// thread may block on it.
    fn publish_flushes(&self) {
        let oldest = [self.data_sync_since, self.checkpoint_since]
            .into_iter()
            .flatten()
            .min();
        self.shared.sync_since.store(oldest);
    }

    /// The outcome of the checkpoint in flight once it ended (`wait`: block for it).
    fn checkpoint_ended(&mut self, wait: bool) -> Option<(Result<(), SyncError>, Duration)> {
        let thread = self.checkpoint.as_mut()?;
        let ended = if wait { thread.wait() } else { thread.poll() }?;
        self.checkpoint_since = None;
        self.publish_flushes();
        Some(ended)
    }
}

impl ControllerIo for Io<'_> {
    /// The batch's one flush: on this thread (a hand-off to the `data-sync` thread and back
    /// cost ~70 us a batch, measured), unless the engine began a sync in the background
    /// (relaxed mode's durable commit), whose result this waits for. Either way the watchdog
    /// sees the flush's start time first, so a stalled disk is reported as a stalled flush.
    fn sync_data(&mut self) -> Result<(), SyncError> {
        if self.data_sync_since.is_none() {
            self.data_sync_since = Some(self.shared.now());
            self.publish_flushes();
        }
        let result = self.syncer.finish(self.data);
        self.data_sync_since = None;
        self.publish_flushes();
        result
    }

    fn begin_sync_data(&mut self) {
        self.syncer.begin();
        self.data_sync_since = Some(self.shared.now());
        self.publish_flushes();
    }

    /// Into the page cache from this thread (about 10 us); the batch's `sync_data` makes it
    /// durable with the blocks.
    fn write_log(&mut self, sector: u64, bytes: &[u8]) -> Result<(), SyncError> {
        self.log
            .write_log(sector, bytes)
            .map_err(|e| SyncError::Io(format!("writing the write-ahead log: {e}")))
    }

    /// On the `checkpoint` thread; its end unparks this thread, and `run` hands the outcome to
    /// `Controller::checkpoint_done`.
    fn begin_checkpoint(&mut self) {
        self.checkpoint
            .as_mut()
            .expect("checkpoints happen in full durability, which has the thread")
            .begin();
        self.checkpoint_since = Some(self.shared.now());
        self.publish_flushes();
    }

    fn now(&mut self) -> engine::Instant {
        self.shared.now()
    }
}

/// Runs one step of the engine's scrub if due, reading the data file for it; returns whether
/// it checked a block. It runs on the controller thread between cycles, so no slot it reads can
/// be freed and reused while it reads it.
fn scrub_step(
    scrub: &mut Scrub,
    now: engine::Instant,
    controller: &Controller<MdbxStore>,
    data: &File,
) -> bool {
    let next = controller
        .store()
        .read()
        .and_then(|read| scrub.poll_read(now, &read));
    let request = match next {
        Ok(Some(request)) => request,
        Ok(None) => return false,
        Err(e) => {
            tracing::error!("scrub: reading the index: {e}");
            return false;
        }
    };
    let hash = request.hash;
    let read = std::os::unix::fs::FileExt::read_exact_at(data, scrub.buffer(), request.offset);
    if let Err(e) = &read {
        tracing::error!(%hash, "scrub: reading the data file: {e}");
    }
    if scrub.handle_read(read.is_ok()) == ScrubOutcome::NewlyCorrupt {
        tracing::error!(%hash, offset = request.offset, len = request.len,
            "scrub: stored bytes do not hash to their address (corrupt block); \
             run `buddy-blocks check --repair` offline and re-fetch it");
    }
    true
}

pub fn run(
    mut controller: Controller<MdbxStore>,
    mut links: Vec<ControllerLinks>,
    data: File,
    layout: Layout,
    shared: Arc<Shared>,
    template: StatsSnapshot,
    mut scrub: Option<Scrub>,
) -> Controller<MdbxStore> {
    let relaxed = controller.config().durability == engine::controller::Durability::Relaxed;
    assert_eq!(controller.config().log_sectors, layout.log_sectors());
    // Closing the index syncs it, making its last commit durable; in relaxed durability that
    // commit may point at blocks not yet synced, so the data goes first, also when this
    // thread unwinds from a panic (the guard drops before `controller`, a parameter).
    let _data_first = SyncOnDrop(&data);
    let checkpoints = Checkpoints::from_env();
    let checkpoint = (!relaxed).then(|| {
        CheckpointThread::spawn(controller.store().index_sync())
            .expect("starting the checkpoint thread")
    });
    let mut io = Io {
        data: &data,
        log: FileLog::new(&data, layout.capacity_bytes, layout.log_sectors()),
        shared: &shared,
        syncer: SyncThread::spawn(&data).expect("starting the data-sync thread"),
        checkpoint,
        data_sync_since: None,
        checkpoint_since: None,
    };
    let mut last_publish = shared.now();
    let mut last_writeback = shared.now();
    let test_panic = crate::fail_fast::TestPanic::from_env("controller");
    loop {
        shared.controller_beat.store(Some(shared.now()));
        if let Some(cause) = controller.failure() {
            shared.report_storage_failure(cause);
        }
        if relaxed && shared.now().saturating_since(last_writeback) >= WRITEBACK_KICK {
            io.syncer.start_writeback();
            last_writeback = shared.now();
        }
        if let Some(s) = scrub.as_mut() {
            if scrub_step(s, shared.now(), &controller, &data) {
                publish(&controller, &links, &shared, &template, scrub.as_ref());
            }
        }
        if let Some((result, took)) = io.checkpoint_ended(false) {
            controller.checkpoint_done(result, took);
            push_replies(&mut controller, &mut links);
        }
        let mut received = 0usize;
        for link in &mut links {
            while let Ok(frame) = link.from_worker.pop() {
                match ToController::decode(&frame) {
                    Ok(m) => controller.handle_message(m),
                    Err(e) => tracing::error!("dropping undecodable worker frame: {e}"),
                }
                received += 1;
            }
        }
        let now = shared.now();
        // Writes wait for log space (a checkpoint frees it and wakes this thread).
        let mut blocked = false;
        match controller.start_cycle(now) {
            CycleOutcome::Paused { until } => {
                std::thread::park_timeout(until.saturating_since(now));
                continue;
            }
            CycleOutcome::Ran { .. } => {
                // Read replies go out before the batch's flush and commit.
                push_replies(&mut controller, &mut links);
                let seq = controller.header().commit_seq;
                controller.finish_cycle(&mut io);
                // A cycle of reads changes no figure a client waits for: those publish with
                // the idle refresh.
                let committed = controller.header().commit_seq != seq;
                if committed || now.saturating_since(last_publish) >= STATS_REFRESH {
                    publish(&controller, &links, &shared, &template, scrub.as_ref());
                    last_publish = now;
                }
            }
            CycleOutcome::Idle => {
                blocked = controller.inbox_len() > 0;
                // Worker counters (reads, errors, corruption) change without controller work:
                // keep the figures every worker renders for /stats fresh.
                if now.saturating_since(last_publish) >= STATS_REFRESH {
                    test_panic.check();
                    publish(&controller, &links, &shared, &template, scrub.as_ref());
                    last_publish = now;
                }
            }
        }
        let waiting = push_replies(&mut controller, &mut links);
        if checkpoints == Checkpoints::On {
            controller.poll_checkpoint(shared.now(), &mut io);
        }
        if received == 0 && (controller.inbox_len() == 0 || blocked) {
            // Replies to workers that have exited have nobody to read them.
            let idle = controller.inbox_len() == 0 && !controller.checkpoint_in_flight();
            if idle && shared.workers_running.load(Ordering::Acquire) == 0 {
                break;
            }
            let mut park = if waiting > 0 {
                Duration::from_micros(200)
            } else {
                IDLE_PARK
            };
            if let Some(at) = controller.poll_timeout() {
                park = park.min(at.saturating_since(shared.now()));
            }
            if let Some(s) = scrub.as_ref() {
                park = park.min(s.poll_timeout().saturating_since(shared.now()));
            }
            std::thread::park_timeout(park);
        }
    }
    close(&mut controller, &mut io, relaxed);
    publish(&controller, &links, &shared, &template, scrub.as_ref());
    if let Some(e) = io.syncer.state.take_unreported() {
        tracing::error!("a background fdatasync of the data file failed: {e}");
    }
    controller
}

/// Shutdown, full durability: the checkpoint in flight ends, then the index is made durable
/// (a last checkpoint: every commit lies over flushed data and records), so the next start
/// has nothing to replay. Relaxed mode: libmdbx syncs at close, after the data (`SyncOnDrop`).
fn close(controller: &mut Controller<MdbxStore>, io: &mut Io<'_>, relaxed: bool) {
    if let Some((result, took)) = io.checkpoint_ended(true) {
        controller.checkpoint_done(result, took);
    }
    if relaxed {
        return;
    }
    if let Err(e) = controller.store().sync() {
        tracing::error!(
            "making the index durable at shutdown: {e}; the next start replays the \
             write-ahead log instead"
        );
    }
}

/// Syncs the data file when dropped (see `run`).
struct SyncOnDrop<'a>(&'a File);

impl Drop for SyncOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = crate::datafile::fdatasync(self.0) {
            tracing::error!(
                "syncing the data file before closing the index: {e}; blocks written since \
                 the last durable commit may be lost: run `buddy-blocks check --repair`"
            );
        }
    }
}

/// Pushes replies; returns how many are still waiting for room.
fn push_replies(controller: &mut Controller<MdbxStore>, links: &mut [ControllerLinks]) -> usize {
    for (w, link) in links.iter_mut().enumerate() {
        let mut pushed = false;
        let producer = &mut link.to_worker;
        controller.drain_outbox(w as u8, |m: &ToWorker| {
            let ok = producer.push(m.encode()).is_ok();
            pushed |= ok;
            ok
        });
        if pushed {
            wake(&link.wake);
        }
    }
    controller.outbox_len()
}

fn wake(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Wakes every worker (shutdown).
pub fn wake_all(fds: &[Arc<OwnedFd>]) {
    for fd in fds {
        wake(fd);
    }
}

fn publish(
    controller: &Controller<MdbxStore>,
    links: &[ControllerLinks],
    shared: &Shared,
    template: &StatsSnapshot,
    scrub: Option<&Scrub>,
) {
    let snapshot = StatsSnapshot {
        scrub_blocks: scrub.map_or(0, Scrub::blocks),
        scrub_corrupt: scrub.map_or(0, Scrub::corrupt),
        scrub_passes: scrub.map_or(0, Scrub::passes),
        controller: controller.stats(),
        workers: shared.worker_stats(),
        queue_to_controller: links.iter().map(|l| l.from_worker.slots() as u64).collect(),
        queue_to_worker: links
            .iter()
            .map(|l| (l.to_worker.buffer().capacity() - l.to_worker.slots()) as u64)
            .collect(),
        uptime_s: shared.uptime().as_secs(),
        ..template.clone()
    };
    shared.publish(snapshot);
}
