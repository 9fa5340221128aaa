//! Placement: which nodes hold a block, as a pure function of its hash and the map.
//!
//! Weighted rendezvous (highest-random-weight) hashing: every member node gets a score for the
//! block, `weight / -ln(u)` with `u` a uniform draw from the block's hash and the node's id;
//! a block's replicas are the `replicas` best-scoring *placed* nodes (joining or active, weight
//! above zero). Adding a node therefore moves only the blocks it now wins (about its share of
//! the weight), and removing one moves only the blocks it held.
//!
//! Owns the score and the orders derived from it. It never does I/O and never reads a clock:
//! the same map (same etcd revision) and hash give the same answer on every gateway and in
//! repair. Invariants: replicas are distinct, there are `min(replicas, placed nodes)` of them,
//! and the read order starts with the replicas.

use sha2::{Digest, Sha256};

use crate::block_hash::{self, BlockHash};
use crate::node_map::{NodeEntry, NodeMap, NodeState};

/// Most replicas a block may have (a sanity bound on the `--replicas` flag).
pub const REPLICAS_MAX: usize = 16;

/// A map made ready for placing blocks: each member's seed is computed once.
pub struct Placement<'m> {
    map: &'m NodeMap,
    replicas: usize,
    /// Members with their seeds, in map (id) order.
    members: Vec<(&'m NodeEntry, u64)>,
}

impl<'m> Placement<'m> {
    pub fn new(map: &'m NodeMap, replicas: usize) -> Placement<'m> {
        assert!(
            (1..=REPLICAS_MAX).contains(&replicas),
            "replicas out of range"
        );
        let members = map.members().map(|n| (n, seed_of(&n.id))).collect();
        Placement {
            map,
            replicas,
            members,
        }
    }

    pub fn map(&self) -> &'m NodeMap {
        self.map
    }

    pub fn replica_count(&self) -> usize {
        self.replicas
    }

    /// Every member, best score first (ties broken by id, so the order is total).
    pub fn ranking(&self, hash: &BlockHash) -> Vec<&'m NodeEntry> {
        let block = block_hash::placement_key(hash);
        let mut scored: Vec<(f64, &'m NodeEntry)> = self
            .members
            .iter()
            .map(|&(node, seed)| (score(block, seed, node.weight), node))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        scored.into_iter().map(|(_, n)| n).collect()
    }

    /// The nodes that should hold the block, best first.
    pub fn replicas(&self, hash: &BlockHash) -> Vec<&'m NodeEntry> {
        let out: Vec<&NodeEntry> = self
            .ranking(hash)
            .into_iter()
            .filter(|n| n.state.is_placed() && n.weight > 0)
            .take(self.replicas)
            .collect();
        debug_assert!(out.len() == self.replicas.min(self.map.placed_count()));
        out
    }

    /// Where a read looks: active replicas, then joining replicas (repair may not have filled
    /// them yet), then every other member (draining nodes, copies from an older map), by score.
    pub fn read_order(&self, hash: &BlockHash) -> Vec<&'m NodeEntry> {
        let ranking = self.ranking(hash);
        let replicas = self.replicas(hash);
        let mut order: Vec<&NodeEntry> = replicas
            .iter()
            .copied()
            .filter(|n| n.state == NodeState::Active)
            .collect();
        order.extend(replicas.iter().filter(|n| n.state != NodeState::Active));
        order.extend(
            ranking
                .into_iter()
                .filter(|n| !replicas.iter().any(|r| r.id == n.id)),
        );
        debug_assert_eq!(order.len(), self.members.len());
        order
    }
}

/// A node's seed: the first 8 bytes of the SHA-256 of its id.
fn seed_of(id: &str) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The weighted rendezvous score of a (block, node) pair; higher wins. Weight 0 scores 0.
fn score(block: u64, seed: u64, weight: u64) -> f64 {
    let x = fmix64(fmix64(block ^ seed) ^ seed.rotate_left(32));
    // 53 uniform bits, shifted off zero so that ln(u) < 0 is finite: u in (0, 1).
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    debug_assert!(u > 0.0 && u < 1.0);
    weight as f64 / -u.ln()
}

/// MurmurHash3's 64-bit finalizer: a bijective mix whose output bits all depend on every input bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests;
