//! State shared by the server's threads: the shutdown flag, the clock base, the figures
//! /stats renders, and what the watchdog watches (the controller's heartbeat, the flush in
//! flight, each worker's oldest wait for the controller, a latched storage error) with its
//! verdict. Everything else travels through the SPSC queues.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::health::Unhealthy;
use engine::stats::{StatsSnapshot, WorkerStats};

/// An optional engine instant in one atomic: 0 is `None`, else nanoseconds + 1.
#[derive(Default)]
pub struct AtomicInstant(AtomicU64);

impl AtomicInstant {
    pub fn store(&self, at: Option<engine::Instant>) {
        self.0
            .store(at.map_or(0, |t| t.0.saturating_add(1)), Ordering::Release);
    }

    pub fn load(&self) -> Option<engine::Instant> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            n => Some(engine::Instant(n - 1)),
        }
    }
}

pub struct Shared {
    pub shutdown: AtomicBool,
    pub workers_running: AtomicUsize,
    pub drain_timeout: Duration,
    start: std::time::Instant,
    snapshot: Mutex<Arc<StatsSnapshot>>,
    /// Bumped after each `publish` (workers look at it every loop turn and take the snapshot's
    /// lock only when it moved: no shared lock and cache line per turn).
    pub snapshot_changes: AtomicU64,
    workers: Vec<Mutex<WorkerStats>>,
    /// The end of the controller thread's last loop turn (it turns at least every 100 ms).
    pub controller_beat: AtomicInstant,
    /// Since when the oldest flush (data file or index) in flight has been running.
    pub sync_since: AtomicInstant,
    /// Per worker: since when its oldest request has waited for the controller.
    pub oldest_wait: Vec<AtomicInstant>,
    /// Per worker: since when its oldest read or write of the data file has been in flight.
    pub oldest_file_op: Vec<AtomicInstant>,
    /// The controller's latched storage error, in its own words (set once).
    storage_failure: Mutex<Option<String>>,
    /// The watchdog's verdict, and a counter bumped when it changes (workers look at the
    /// counter every loop turn and take the lock only when it moved).
    health: Mutex<Option<Unhealthy>>,
    pub health_changes: AtomicU64,
}

impl Shared {
    pub fn new(workers: usize, drain_timeout: Duration, template: StatsSnapshot) -> Shared {
        Shared {
            shutdown: AtomicBool::new(false),
            workers_running: AtomicUsize::new(workers),
            drain_timeout,
            start: std::time::Instant::now(),
            snapshot: Mutex::new(Arc::new(template)),
            snapshot_changes: AtomicU64::new(0),
            workers: (0..workers)
                .map(|_| Mutex::new(WorkerStats::default()))
                .collect(),
            controller_beat: AtomicInstant::default(),
            sync_since: AtomicInstant::default(),
            oldest_wait: (0..workers).map(|_| AtomicInstant::default()).collect(),
            oldest_file_op: (0..workers).map(|_| AtomicInstant::default()).collect(),
            storage_failure: Mutex::new(None),
            health: Mutex::new(None),
            health_changes: AtomicU64::new(0),
        }
    }

    /// Engine time: nanoseconds since the server started (monotonic).
    pub fn now(&self) -> engine::Instant {
        engine::Instant(self.start.elapsed().as_nanos() as u64)
    }

    pub fn uptime(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn snapshot(&self) -> Arc<StatsSnapshot> {
        Arc::clone(&self.snapshot.lock().expect("snapshot lock"))
    }

    pub fn publish(&self, snapshot: StatsSnapshot) {
        *self.snapshot.lock().expect("snapshot lock") = Arc::new(snapshot);
        self.snapshot_changes.fetch_add(1, Ordering::AcqRel);
    }

    pub fn publish_worker(&self, id: usize, stats: WorkerStats) {
        *self.workers[id].lock().expect("worker stats lock") = stats;
    }

    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.workers
            .iter()
            .map(|m| m.lock().expect("worker stats lock").clone())
            .collect()
    }

    /// Records the controller's latched storage error (the first one only).
    pub fn report_storage_failure(&self, cause: &str) {
        let mut failure = self.storage_failure.lock().expect("storage failure lock");
        if failure.is_none() {
            *failure = Some(cause.to_string());
        }
    }

    pub fn storage_failure(&self) -> Option<String> {
        self.storage_failure
            .lock()
            .expect("storage failure lock")
            .clone()
    }

    /// The watchdog publishes its verdict.
    pub fn set_health(&self, verdict: Option<Unhealthy>) {
        let mut health = self.health.lock().expect("health lock");
        if *health != verdict {
            *health = verdict;
            self.health_changes.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn health(&self) -> Option<Unhealthy> {
        self.health.lock().expect("health lock").clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}
