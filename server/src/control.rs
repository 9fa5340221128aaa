//! The controller thread: drains every worker queue, runs the engine's controller cycle over
//! libmdbx, and pushes replies. The only thread that touches the index.
//!
//! It parks when idle (workers unpark it after pushing) and wakes a worker through its eventfd
//! after pushing replies to it. A reply that does not fit a full worker queue stays in the
//! controller's outbox and is pushed on a later turn.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The scrub's state machine, which `run` drives (`scrub_step`).
pub use engine::controller::Scrub;
use engine::controller::{
    Controller, ControllerIo, CycleOutcome, DataFinish, IndexDurability, ScrubOutcome, SyncError,
    Syncer,
};
use engine::message::{Frame, ToController, ToWorker};
use engine::meta::MetaStore;
use engine::stats::StatsSnapshot;

use crate::mdbx::{IndexSync, MdbxStore};
use crate::shared::Shared;

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
    shared: &'a Shared,
    syncer: SyncThread,
    /// Since when a flush of the data file has been in flight (for the watchdog).
    data_sync_since: Option<engine::Instant>,
    /// Since when the index's background flush has been in flight (for the watchdog).
    durable_since: Option<engine::Instant>,
}

impl Io<'_> {
    /// Tells the watchdog since when the oldest flush in flight has been running, before this
    /// thread may block on it.
    fn publish_flushes(&self) {
        let oldest = [self.data_sync_since, self.durable_since]
            .into_iter()
            .flatten()
            .min();
        self.shared.sync_since.store(oldest);
    }
}

impl ControllerIo for Io<'_> {
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

    /// Full durability: the data-sync thread syncs the index (an fdatasync, the steady meta
    /// page, another fdatasync: most of a batch's time) while this thread answers reads.
    fn index_durability(&self) -> IndexDurability {
        match self.syncer.index {
            Some(_) => IndexDurability::InBackground,
            None => IndexDurability::InCycle,
        }
    }

    fn begin_durable(&mut self) {
        self.syncer.begin_durable();
        self.durable_since = Some(self.shared.now());
        self.publish_flushes();
    }

    fn now(&mut self) -> engine::Instant {
        self.shared.now()
    }
}

/// A thread that runs the data file's fdatasync while the controller thread does a batch's
/// index work (`ControllerIo::begin_sync_data`): at most one sync in flight. In full
/// durability it also makes the index durable after each batch's non-durable commit
/// (`ControllerIo::begin_durable`) and wakes the controller thread when done (the result is
/// taken by `poll_durable`). In relaxed durability it starts the writeback of dirty data pages
/// every `WRITEBACK_KICK` (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, no waiting), so that the
/// once-a-second durable commit's fdatasync finds little left to write instead of stalling
/// every PUT behind a second of data. Which sync is in flight, and the error of one nobody
/// waited for, are the engine's [`Syncer`]'s to decide; this struct does the I/O.
struct SyncThread {
    /// `None` only while dropping (closing it ends the thread).
    start: Option<std::sync::mpsc::SyncSender<SyncRequest>>,
    done: std::sync::mpsc::Receiver<Result<(), SyncError>>,
    state: Syncer,
    /// Full durability: the index's background sync (see `ControllerIo::begin_durable`).
    index: Option<IndexSync>,
    /// A `Durable` request in flight, since when.
    durable_since: Option<std::time::Instant>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum SyncRequest {
    Sync,
    StartWriteback,
    /// The index's sync (full durability); the result goes to `done` like `Sync`'s.
    Durable,
}

/// How often relaxed durability starts the data file's writeback (see `Syncer`).
const WRITEBACK_KICK: Duration = Duration::from_millis(100);

impl SyncThread {
    /// `index`: make batches durable in the background (full durability). The thread wakes
    /// the thread that spawns it whenever a `Durable` request is done.
    fn spawn(data: &File, index: Option<IndexSync>) -> std::io::Result<SyncThread> {
        let file = data.try_clone()?;
        let (start, requests) = std::sync::mpsc::sync_channel::<SyncRequest>(1);
        let (results, done) = std::sync::mpsc::sync_channel(1);
        let controller = std::thread::current();
        let index_sync = index.clone();
        let thread = std::thread::Builder::new()
            .name("data-sync".into())
            .spawn(move || {
                // Ends when the controller thread drops its sender.
                while let Ok(request) = requests.recv() {
                    let r = match request {
                        SyncRequest::Sync => crate::datafile::fdatasync(&file)
                            .map_err(|e| SyncError::Io(e.to_string())),
                        // Only starts I/O: a write error surfaces at the next fdatasync.
                        SyncRequest::StartWriteback => {
                            crate::datafile::start_writeback(&file);
                            continue;
                        }
                        SyncRequest::Durable => index_sync
                            .as_ref()
                            .expect("durable requests have an index")
                            .sync()
                            .map_err(SyncError::Io),
                    };
                    let durable = matches!(request, SyncRequest::Durable);
                    if results.send(r).is_err() {
                        break;
                    }
                    if durable {
                        controller.unpark();
                    }
                }
            })?;
        Ok(SyncThread {
            start: Some(start),
            done,
            state: Syncer::new(),
            index,
            durable_since: None,
            thread: Some(thread),
        })
    }

    fn send(&self, request: SyncRequest) {
        self.start
            .as_ref()
            .expect("not dropped")
            .send(request)
            .expect("the data-sync thread runs");
    }

    /// Starts making the index's last commit durable (`ControllerIo::begin_durable`).
    fn begin_durable(&mut self) {
        assert!(self.durable_since.is_none(), "one index sync at a time");
        self.wait();
        self.state.begin_index();
        self.send(SyncRequest::Durable);
        self.durable_since = Some(std::time::Instant::now());
    }

    /// The outcome of the `Durable` request in flight once it is done, and how long it took.
    fn poll_durable(&mut self) -> Option<(Result<(), SyncError>, Duration)> {
        let since = self.durable_since?;
        let result = match self.done.try_recv() {
            Ok(result) => result,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            // The thread died (it panicked): the sync's outcome is unknown.
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(SyncError::Stopped),
        };
        self.durable_since = None;
        self.state.index_done();
        Some((result, since.elapsed()))
    }

    /// Starts a background fdatasync. One begun earlier but never waited for (the batch
    /// failed before its sync point) covers older writes only: it is finished first.
    fn begin(&mut self) {
        self.wait();
        self.state.begin_data();
        self.send(SyncRequest::Sync);
    }

    /// Starts the writeback of the data file's dirty pages unless a sync is in flight or the
    /// thread is still busy with the previous request (then this one is not needed).
    fn start_writeback(&mut self) {
        if self.state.may_start_writeback() {
            if let Some(start) = &self.start {
                let _ = start.try_send(SyncRequest::StartWriteback);
            }
        }
    }

    /// The result of the background sync, or of an fdatasync of `data` now when none runs.
    fn finish(&mut self, data: &File) -> Result<(), SyncError> {
        self.wait();
        match self.state.finish_data() {
            DataFinish::Report(result) => result,
            DataFinish::SyncNow => {
                crate::datafile::fdatasync(data).map_err(|e| SyncError::Io(e.to_string()))
            }
        }
    }

    /// Waits for the `Sync` in flight, if one is, and hands its result to the state machine.
    fn wait(&mut self) {
        if self.state.data_in_flight() {
            let result = self.done.recv().expect("the data-sync thread answers");
            self.state.data_done(result);
        }
    }
}

impl Drop for SyncThread {
    /// Ends the thread and waits for it: it holds the index (`IndexSync`), which must be
    /// closed when the controller's store is (a restart in the same process reopens it).
    fn drop(&mut self) {
        drop(self.start.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
    shared: Arc<Shared>,
    template: StatsSnapshot,
    mut scrub: Option<Scrub>,
) -> Controller<MdbxStore> {
    let relaxed = controller.config().durability == engine::controller::Durability::Relaxed;
    let index = (!relaxed).then(|| controller.store().index_sync());
    // Closing the index syncs it, making its last commit durable; in relaxed durability that
    // commit may point at blocks not yet synced, so the data goes first, also when this
    // thread unwinds from a panic (the guard drops before `controller`, a parameter).
    let _data_first = SyncOnDrop(&data);
    let mut io = Io {
        data: &data,
        shared: &shared,
        syncer: SyncThread::spawn(&data, index).expect("starting the data-sync thread"),
        data_sync_since: None,
        durable_since: None,
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
        if let Some((result, took)) = io.syncer.poll_durable() {
            io.durable_since = None;
            io.publish_flushes();
            controller.durable_done(result, took);
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
        match controller.start_cycle(now) {
            CycleOutcome::Paused { until } => {
                std::thread::park_timeout(until.saturating_since(now));
                continue;
            }
            CycleOutcome::Ran { .. } => {
                // GET addresses go out before the batch's fdatasync and commit.
                push_replies(&mut controller, &mut links);
                let seq = controller.header().commit_seq;
                controller.finish_cycle(&mut io);
                // A cycle of reads changes no figure a client waits for: those (thousands a
                // second while batches are made durable) publish with the idle refresh.
                let committed = controller.header().commit_seq != seq;
                if committed || now.saturating_since(last_publish) >= STATS_REFRESH {
                    publish(&controller, &links, &shared, &template, scrub.as_ref());
                    last_publish = now;
                }
            }
            CycleOutcome::Idle => {
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
        // Writes that wait for the batch being made durable: the data-sync thread wakes this
        // one when it is.
        let only_blocked_writes =
            controller.awaits_durable() && controller.poll_timeout().is_none();
        if received == 0 && (controller.inbox_len() == 0 || only_blocked_writes) {
            // Replies to workers that have exited have nobody to read them.
            let idle = controller.inbox_len() == 0 && !controller.awaits_durable();
            if idle && shared.workers_running.load(Ordering::Acquire) == 0 {
                break;
            }
            let mut park = if waiting > 0 {
                Duration::from_micros(200)
            } else {
                IDLE_PARK
            };
            if let Some(s) = scrub.as_ref() {
                park = park.min(s.poll_timeout().saturating_since(shared.now()));
            }
            std::thread::park_timeout(park);
        }
    }
    publish(&controller, &links, &shared, &template, scrub.as_ref());
    if let Some(e) = io.syncer.state.take_unreported() {
        tracing::error!("a background fdatasync of the data file failed: {e}");
    }
    controller
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file() -> File {
        tempfile::tempfile().expect("temp file")
    }

    /// fdatasync of a pipe fails (EINVAL): a stand-in for a failing disk.
    fn failing_file() -> File {
        let mut fds = [0; 2];
        // SAFETY: pipe() fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fds[1] is open and owned by nobody else; fds[0] is closed here.
        unsafe {
            libc::close(fds[0]);
            std::os::fd::FromRawFd::from_raw_fd(fds[1])
        }
    }

    #[test]
    fn a_background_sync_reports_its_result_and_a_direct_sync_runs_without_one() {
        let ok = temp_file();
        let mut syncer = SyncThread::spawn(&ok, None).unwrap();
        syncer.begin();
        assert_eq!(syncer.finish(&ok), Ok(()));
        // None in flight: finish syncs directly.
        assert_eq!(syncer.finish(&ok), Ok(()));
        assert!(syncer.finish(&failing_file()).is_err());
        let bad = failing_file();
        let mut syncer = SyncThread::spawn(&bad, None).unwrap();
        syncer.begin();
        assert!(syncer.finish(&ok).is_err(), "the background sync's failure");
    }

    #[test]
    fn writeback_kicks_interleave_with_syncs() {
        use std::io::Write;
        let mut f = temp_file();
        let mut syncer = SyncThread::spawn(&f, None).unwrap();
        for round in 0..20u8 {
            f.write_all(&[round; 8192]).unwrap();
            syncer.start_writeback();
            if round % 3 == 0 {
                syncer.begin();
                // No kick while a sync is in flight: it would be redundant.
                syncer.start_writeback();
                assert_eq!(syncer.finish(&f), Ok(()));
            }
        }
        assert_eq!(syncer.finish(&f), Ok(()));
        // A kick on a file whose sync fails is ignored; the sync still reports the failure.
        let bad = failing_file();
        let mut syncer = SyncThread::spawn(&bad, None).unwrap();
        syncer.start_writeback();
        syncer.begin();
        assert!(syncer.finish(&f).is_err());
    }

    #[test]
    fn a_failed_background_sync_nobody_waited_for_fails_the_next_sync() {
        let bad = failing_file();
        let ok = temp_file();
        let mut syncer = SyncThread::spawn(&bad, None).unwrap();
        syncer.begin(); // its batch failed before the sync point: never waited for
        syncer.begin();
        let first = syncer.finish(&ok);
        assert!(first.is_err(), "{first:?}");
        assert!(syncer.state.is_idle());
    }
}
