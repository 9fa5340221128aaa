//! Repair and rebalance: make every block sit on exactly its replicas.
//!
//! Walks every member's listing at once (a k-way merge of the sorted `GET /blocks` pages, so
//! memory is one page per node plus one batch, whatever the number of blocks), and for each
//! block compares where it is (its holders) with where placement puts it (its targets):
//! 1. a target that lacks it gets a copy: `POST /blocks/missing` to the target confirms it
//!    still lacks it, the bytes come from a holder (`GET`, SHA-256 checked), go out with
//!    `PUT /block/<hash>` (the node checks the hash again);
//! 2. only when every target holds it (listed, or copied now) and a fresh `HEAD` on each target
//!    confirms it, copies on other nodes (draining nodes, copies from an older map) are deleted.
//!
//! Owns that walk, its bandwidth bound (`max_bytes_per_sec`, `concurrency` copies in flight)
//! and its report. It never deletes a block's last copies, never trusts a listing for a
//! deletion, and never changes the map. Interrupting it at any point leaves every block with at
//! least the copies it had; a rerun picks up what is left (it is idempotent).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::block_hash::BlockHash;
use crate::node_client::{NodeClient, NodeError};
use crate::node_map::{NodeEntry, NodeMap};
use crate::placement::Placement;

/// Blocks decided together (one `POST /blocks/missing` per target per batch).
const BATCH_BLOCKS: usize = 256;
/// Listing page asked from each node.
const PAGE_BLOCKS: usize = 1000;

#[derive(Clone, Debug)]
pub struct RepairOptions {
    pub replicas: usize,
    /// Copies in flight at once.
    pub concurrency: usize,
    /// Block bytes copied per second at most (`None`: as fast as the copies go).
    pub max_bytes_per_sec: Option<u64>,
}

/// What a pass did; also the progress shown while it runs.
#[derive(Clone, Debug, Default)]
pub struct RepairReport {
    pub blocks_seen: u64,
    pub copies_made: u64,
    pub bytes_copied: u64,
    pub copies_failed: u64,
    pub extra_copies_removed: u64,
    /// Blocks left with fewer copies on their targets than placement wants.
    pub under_replicated: u64,
    /// Members whose listing could not be read (fully): the pass cannot be complete.
    pub unlisted_nodes: Vec<String>,
}

impl RepairReport {
    /// Every block is on all its targets and every node was listed.
    pub fn is_clean(&self) -> bool {
        self.copies_failed == 0 && self.under_replicated == 0 && self.unlisted_nodes.is_empty()
    }
}

/// One member's listing, read a page at a time.
struct Cursor<'m> {
    node: &'m NodeEntry,
    page: VecDeque<(BlockHash, u64)>,
    after: Option<BlockHash>,
    state: Walk,
}

#[derive(PartialEq, Eq)]
enum Walk {
    More,
    Done,
    Failed,
}

/// A block as the listings show it.
struct Seen<'m> {
    hash: BlockHash,
    len: u64,
    holders: Vec<&'m NodeEntry>,
}

/// Spreads copies over time so that at most `rate` bytes per second start.
struct Pacer {
    started: Instant,
    rate: Option<u64>,
    reserved_bytes: Mutex<u64>,
}

impl Pacer {
    async fn reserve(&self, bytes: u64) {
        let Some(rate) = self.rate else { return };
        let due = {
            let mut reserved = self.reserved_bytes.lock().await;
            let due = self.started + Duration::from_secs_f64(*reserved as f64 / rate as f64);
            *reserved += bytes;
            due
        };
        tokio::time::sleep_until(due.into()).await;
    }
}

/// One repair pass over `map`; `progress` is called after every batch.
pub async fn repair(
    map: &NodeMap,
    client: &NodeClient,
    options: &RepairOptions,
    mut progress: impl FnMut(&RepairReport),
) -> RepairReport {
    assert!(options.concurrency >= 1);
    let placement = Placement::new(map, options.replicas);
    let mut cursors: Vec<Cursor> = map
        .members()
        .map(|node| Cursor {
            node,
            page: VecDeque::new(),
            after: None,
            state: Walk::More,
        })
        .collect();
    let pacer = Arc::new(Pacer {
        started: Instant::now(),
        rate: options.max_bytes_per_sec,
        reserved_bytes: Mutex::new(0),
    });
    let mut report = RepairReport::default();
    loop {
        let mut batch = Vec::with_capacity(BATCH_BLOCKS);
        while batch.len() < BATCH_BLOCKS {
            match next_block(&mut cursors, client, &mut report).await {
                Some(seen) => batch.push(seen),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        report.blocks_seen += batch.len() as u64;
        repair_batch(&placement, client, options, &pacer, batch, &mut report).await;
        progress(&report);
    }
    report
}

/// The smallest hash at the front of any listing, with every node that lists it.
async fn next_block<'m>(
    cursors: &mut [Cursor<'m>],
    client: &NodeClient,
    report: &mut RepairReport,
) -> Option<Seen<'m>> {
    for c in cursors
        .iter_mut()
        .filter(|c| c.page.is_empty() && c.state == Walk::More)
    {
        match client
            .list(&c.node.addr, c.after.as_ref(), PAGE_BLOCKS)
            .await
        {
            Ok(page) if page.is_empty() => c.state = Walk::Done,
            Ok(page) => {
                c.after = page.last().map(|p| p.0);
                c.page.extend(page);
            }
            Err(e) => {
                tracing::warn!(node = %c.node.id, error = %e, "listing failed: node skipped");
                report.unlisted_nodes.push(c.node.id.clone());
                c.state = Walk::Failed;
            }
        }
    }
    let (hash, len) = cursors
        .iter()
        .filter_map(|c| c.page.front())
        .min()
        .copied()?;
    let mut holders = Vec::new();
    for c in cursors.iter_mut() {
        if c.page.front().is_some_and(|f| f.0 == hash) {
            c.page.pop_front();
            holders.push(c.node);
        }
    }
    assert!(!holders.is_empty());
    Some(Seen { hash, len, holders })
}

async fn repair_batch(
    placement: &Placement<'_>,
    client: &NodeClient,
    options: &RepairOptions,
    pacer: &Arc<Pacer>,
    batch: Vec<Seen<'_>>,
    report: &mut RepairReport,
) {
    let targets: Vec<Vec<&NodeEntry>> = batch.iter().map(|s| placement.replicas(&s.hash)).collect();
    // Per block, how many of its targets hold it; per target node, the blocks it lacks.
    let mut on_target: Vec<usize> = vec![0; batch.len()];
    let mut wanted: Vec<(&NodeEntry, Vec<usize>)> = Vec::new();
    for (i, (seen, tgts)) in batch.iter().zip(&targets).enumerate() {
        for t in tgts {
            if seen.holders.iter().any(|h| h.id == t.id) {
                on_target[i] += 1;
            } else if let Some(w) = wanted.iter_mut().find(|w| w.0.id == t.id) {
                w.1.push(i);
            } else {
                wanted.push((t, vec![i]));
            }
        }
    }
    let mut copies = Vec::new();
    for (target, blocks) in &wanted {
        let hashes: Vec<BlockHash> = blocks.iter().map(|&i| batch[i].hash).collect();
        let absent = match client.missing(&target.addr, &hashes).await {
            Ok(absent) => absent,
            Err(e) => {
                tracing::warn!(node = %target.id, error = %e, "cannot copy to node");
                report.copies_failed += blocks.len() as u64;
                continue;
            }
        };
        for &i in blocks {
            let seen = &batch[i];
            if !absent.contains(&seen.hash) {
                on_target[i] += 1; // it arrived since the listing
                continue;
            }
            let sources = seen.holders.iter().map(|h| h.addr.clone()).collect();
            let copy = Copy {
                hash: seen.hash,
                len: seen.len,
                sources,
                target: target.addr.clone(),
            };
            copies.push((i, copy));
        }
    }
    for (i, result) in run_copies(client, options.concurrency, pacer, copies).await {
        match result {
            Ok(bytes) => {
                report.copies_made += 1;
                report.bytes_copied += bytes;
                on_target[i] += 1;
            }
            Err(message) => {
                tracing::warn!("{message}");
                report.copies_failed += 1;
            }
        }
    }
    for ((seen, tgts), count) in batch.iter().zip(&targets).zip(on_target) {
        assert!(count <= tgts.len());
        if count < tgts.len() {
            report.under_replicated += 1;
            continue;
        }
        remove_extra_copies(client, seen, tgts, report).await;
    }
}

/// A copy to make: the block, the addresses holding it (tried in order), the target address.
struct Copy {
    hash: BlockHash,
    len: u64,
    sources: Vec<String>,
    target: String,
}

/// Runs the copies, `concurrency` at a time and paced; each result with its batch index.
async fn run_copies(
    client: &NodeClient,
    concurrency: usize,
    pacer: &Arc<Pacer>,
    copies: Vec<(usize, Copy)>,
) -> Vec<(usize, Result<u64, String>)> {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for (i, copy) in copies {
        let (client, pacer, slots) = (client.clone(), pacer.clone(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            pacer.reserve(copy.len).await;
            (i, copy_one(&client, &copy).await)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        out.push(joined.unwrap_or_else(|e| (usize::MAX, Err(format!("copy task failed: {e}")))));
    }
    out
}

/// Reads the block from the first source that returns the right bytes and writes it to the target.
async fn copy_one(client: &NodeClient, copy: &Copy) -> Result<u64, String> {
    let mut errors = Vec::new();
    for source in &copy.sources {
        match client.get(source, &copy.hash).await {
            Ok(Some(bytes)) if BlockHash::of(&bytes) == copy.hash => {
                assert_eq!(bytes.len() as u64, copy.len, "one hash, two lengths");
                return match client.put(&copy.target, &copy.hash, bytes).await {
                    Ok(_) => Ok(copy.len),
                    Err(e) => Err(format!("copy of {} to {}: {e}", copy.hash, copy.target)),
                };
            }
            Ok(Some(_)) => errors.push(format!("{source}: bytes fail the SHA-256")),
            Ok(None) => errors.push(format!("{source}: gone")),
            Err(e) => errors.push(format!("{source}: {e}")),
        }
    }
    Err(format!(
        "no source for {}: {}",
        copy.hash,
        errors.join("; ")
    ))
}

/// Deletes the block from holders that are not its targets, once every target confirms it.
async fn remove_extra_copies(
    client: &NodeClient,
    seen: &Seen<'_>,
    targets: &[&NodeEntry],
    report: &mut RepairReport,
) {
    let extra: Vec<&NodeEntry> = seen
        .holders
        .iter()
        .copied()
        .filter(|h| !targets.iter().any(|t| t.id == h.id))
        .collect();
    if extra.is_empty() || targets.is_empty() {
        return;
    }
    for t in targets {
        if !matches!(client.head(&t.addr, &seen.hash).await, Ok(Some(_))) {
            report.under_replicated += 1; // a target lost it since: keep every other copy
            return;
        }
    }
    for node in extra {
        match client.delete(&node.addr, &seen.hash).await {
            Ok(_) => report.extra_copies_removed += 1,
            Err(e) => log_delete_failure(&node.id, &seen.hash, &e),
        }
    }
}

fn log_delete_failure(node: &str, hash: &BlockHash, error: &NodeError) {
    tracing::warn!(node, %hash, %error, "extra copy not removed (the next pass will)");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pacer lets 1 MB/s start 300 KB in three reservations no sooner than 0.2 s in
    /// (the first starts at once), and without a rate never waits.
    #[tokio::test]
    async fn pacer_bounds_bandwidth() {
        let pacer = Pacer {
            started: Instant::now(),
            rate: Some(1_000_000),
            reserved_bytes: Mutex::new(0),
        };
        for _ in 0..3 {
            pacer.reserve(100_000).await;
        }
        let waited = pacer.started.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        let free = Pacer {
            started: Instant::now(),
            rate: None,
            reserved_bytes: Mutex::new(0),
        };
        free.reserve(u64::MAX / 2).await;
        assert!(free.started.elapsed() < Duration::from_millis(100));
    }

    /// A clean report is one with nothing failed, nothing short and every node listed.
    #[test]
    fn clean_reports() {
        let mut r = RepairReport::default();
        assert!(r.is_clean());
        r.unlisted_nodes.push("n1".into());
        assert!(!r.is_clean());
        let short = RepairReport {
            under_replicated: 1,
            ..RepairReport::default()
        };
        assert!(!short.is_clean());
    }
}
