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

use engine::controller::{Controller, ControllerIo, CycleOutcome};
use engine::message::{Frame, ToController, ToWorker};
use engine::stats::StatsSnapshot;

use crate::mdbx::MdbxStore;
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
}

impl ControllerIo for Io<'_> {
    fn sync_data(&mut self) -> Result<(), String> {
        crate::datafile::fdatasync(self.data).map_err(|e| e.to_string())
    }
    fn now(&mut self) -> engine::Instant {
        self.shared.now()
    }
}

pub fn run(
    mut controller: Controller<MdbxStore>,
    mut links: Vec<ControllerLinks>,
    data: File,
    shared: Arc<Shared>,
    template: StatsSnapshot,
) -> Controller<MdbxStore> {
    let mut io = Io {
        data: &data,
        shared: &shared,
    };
    let mut last_publish = shared.now();
    loop {
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
        match controller.run_cycle(now, &mut io) {
            CycleOutcome::Paused { until } => {
                std::thread::park_timeout(until.saturating_since(now));
                continue;
            }
            CycleOutcome::Ran { .. } => {
                publish(&controller, &links, &shared, &template);
                last_publish = now;
            }
            CycleOutcome::Idle => {
                // Worker counters (reads, errors, corruption) change without controller work:
                // keep the figures every worker renders for /stats fresh.
                if now.saturating_since(last_publish) >= STATS_REFRESH {
                    publish(&controller, &links, &shared, &template);
                    last_publish = now;
                }
            }
        }
        let waiting = push_replies(&mut controller, &mut links);
        if received == 0 && controller.inbox_len() == 0 {
            // Replies to workers that have exited have nobody to read them.
            if shared.workers_running.load(Ordering::Acquire) == 0 {
                break;
            }
            let park = if waiting > 0 {
                Duration::from_micros(200)
            } else {
                IDLE_PARK
            };
            std::thread::park_timeout(park);
        }
    }
    publish(&controller, &links, &shared, &template);
    controller
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
) {
    let snapshot = StatsSnapshot {
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
