//! The stats publication: the controller's figures handed to every worker, which answers
//! `/stats` and `/metrics` from them (as the server's controller thread publishes its
//! `StatsSnapshot`).
//!
//! Owns: when the simulated node publishes. It publishes at every start and right before each
//! batch's replies are handed out, so no reply reaches a worker before the figures of its batch
//! do: the oracle (`oracle::figures`) may then bound the figures by what clients were told.
//! Never does: judge a figure, or publish anything the controller did not report.

use std::sync::Arc;

use engine::stats::StatsSnapshot;

use super::World;

impl World {
    /// Hands the node's figures to every worker of the running node, as the server's
    /// controller thread does (`server/src/control.rs`, `publish`): the controller's, every
    /// worker's, the queues'.
    pub(crate) fn publish_stats(&mut self) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        let snapshot = Arc::new(StatsSnapshot {
            controller: node.controller.stats(),
            workers: node.workers.iter().map(|w| w.worker.stats()).collect(),
            queue_to_controller: node
                .workers
                .iter()
                .map(|w| w.to_controller.len() as u64)
                .collect(),
            queue_to_worker: node
                .workers
                .iter()
                .map(|w| w.to_worker.len() as u64)
                .collect(),
            version: env!("CARGO_PKG_VERSION"),
            durability: self.opts.durability.as_str(),
            verify_reads: self.opts.verify_reads.as_str(),
            ..StatsSnapshot::default()
        });
        assert!(snapshot.controller.used_bytes <= snapshot.controller.capacity_bytes);
        for wb in &mut node.workers {
            wb.worker.set_snapshot(Arc::clone(&snapshot));
        }
    }
}
