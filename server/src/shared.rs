//! State shared by the server's threads: the shutdown flag, the clock base and the figures
//! /stats renders. Everything else travels through the SPSC queues.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::stats::{StatsSnapshot, WorkerStats};

pub struct Shared {
    pub shutdown: AtomicBool,
    pub workers_running: AtomicUsize,
    pub drain_timeout: Duration,
    start: std::time::Instant,
    snapshot: Mutex<Arc<StatsSnapshot>>,
    workers: Vec<Mutex<WorkerStats>>,
}

impl Shared {
    pub fn new(workers: usize, drain_timeout: Duration, template: StatsSnapshot) -> Shared {
        Shared {
            shutdown: AtomicBool::new(false),
            workers_running: AtomicUsize::new(workers),
            drain_timeout,
            start: std::time::Instant::now(),
            snapshot: Mutex::new(Arc::new(template)),
            workers: (0..workers)
                .map(|_| Mutex::new(WorkerStats::default()))
                .collect(),
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

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}
