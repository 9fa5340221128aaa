//! What the worker reports to its driver: stats, health, and the figures the driver hands in.
//!
//! Owns: `stats`, `set_snapshot`, `set_health`, `oldest_wait_since`, `oldest_file_op_since`,
//! `health` and the snapshot
//! `/stats` and `/metrics` render.
//! Must never: change request or connection state.

use super::*;

impl Worker {
    /// The driver hands in the latest shared figures (controller, all workers).
    pub fn set_snapshot(&mut self, snapshot: Arc<StatsSnapshot>) {
        self.snapshot = snapshot;
    }

    /// The driver hands in its watchdog's verdict over the whole node (a stalled controller
    /// or flush, a latched storage error), so that every worker's `/health` tells the same
    /// truth, including workers with no request waiting. `None`: the driver sees nothing wrong.
    pub fn set_health(&mut self, verdict: Option<Unhealthy>) {
        self.node_health = verdict;
    }

    /// Since when this worker's oldest request has waited for the controller (request ids
    /// grow, so the first pending one is the oldest).
    pub fn oldest_wait_since(&self) -> Option<Instant> {
        self.link.pending.values().next().map(|w| w.sent)
    }

    /// Since when this worker's oldest read or write of the data file has been in flight
    /// (the driver's watchdog reports one the disk does not complete: `disk_stalled`).
    pub fn oldest_file_op_since(&self) -> Option<Instant> {
        self.ops.oldest_file_op_since()
    }

    /// What `/health` answers now: the driver's verdict, or this worker's own view (its
    /// oldest request waiting for the controller, shutting down).
    pub(super) fn health(&self, now: Instant) -> Option<Unhealthy> {
        if self.node_health.is_some() {
            return self.node_health.clone();
        }
        let own = Observations {
            now,
            oldest_wait_since: self.oldest_wait_since(),
            oldest_file_op_since: self.oldest_file_op_since(),
            shutting_down: self.shutting_down,
            storage_failure: self
                .snapshot
                .controller
                .failed
                .then(|| "the controller latched a storage error (see the log)".to_string()),
            ..Observations::default()
        };
        health::verdict(&own, self.config.stall_limit)
    }

    pub(super) fn snapshot_now(&mut self) -> StatsSnapshot {
        let mut s = StatsSnapshot::clone(&self.snapshot);
        let own = self.stats();
        let id = self.config.id as usize;
        if s.workers.len() <= id {
            s.workers.resize(id + 1, WorkerStats::default());
        }
        s.workers[id] = own;
        s.verify_reads = self.config.verify_reads.as_str();
        s.health = self.health(self.now_seen);
        s
    }

    pub fn stats(&self) -> WorkerStats {
        let mut s = self.stats.clone();
        s.connections_open = self.conns.open as u64;
        s.pool_free = self.slots.pools.levels();
        let targets = self.slots.pools.targets();
        for (i, t) in targets.iter().enumerate() {
            s.pool_target[i] = u64::from(*t);
        }
        s.refill_requests = self.slots.pools.refill_requests;
        s.ops_in_flight = self.ops.in_flight() as u64;
        s.controller_requests_waiting = self.link.pending.len() as u64;
        s.buffer_granted_bytes = self.budget.granted_bytes() as u64;
        s
    }

    /// Bytes held in this worker's pool (reserved, idle).
    pub fn pooled_bytes(&self) -> u64 {
        self.slots.pools.pooled_bytes()
    }

    pub fn connections_open(&self) -> usize {
        self.conns.open
    }
}
