//! Placement properties: determinism, distinct replicas, balance by weight, minimal movement.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn node(id: &str, state: NodeState, weight: u64) -> NodeEntry {
    NodeEntry {
        id: id.to_string(),
        addr: format!("{id}.invalid:1"),
        state,
        weight,
    }
}

fn active(ids_weights: &[(&str, u64)]) -> NodeMap {
    let nodes = ids_weights
        .iter()
        .map(|&(id, w)| node(id, NodeState::Active, w))
        .collect();
    NodeMap::new(1, nodes)
}

/// `n` distinct, well-spread block hashes.
fn hashes(n: u64) -> Vec<BlockHash> {
    (0..n).map(|i| BlockHash::of(&i.to_le_bytes())).collect()
}

fn ids(nodes: &[&NodeEntry]) -> Vec<String> {
    nodes.iter().map(|n| n.id.clone()).collect()
}

/// Share of replica slots each node gets over `blocks`.
fn shares(map: &NodeMap, replicas: usize, blocks: &[BlockHash]) -> BTreeMap<String, f64> {
    let p = Placement::new(map, replicas);
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for h in blocks {
        for n in p.replicas(h) {
            *counts.entry(n.id.clone()).or_default() += 1.0;
        }
    }
    let total = (blocks.len() * replicas) as f64;
    counts.values_mut().for_each(|c| *c /= total);
    counts
}

/// With one replica, each node's share of 50,000 blocks is its weight's share within 1.5 points.
#[test]
fn balance_follows_weight() {
    let weights = [("a", 1u64), ("b", 2), ("c", 3), ("d", 4), ("e", 10)];
    let total: u64 = weights.iter().map(|w| w.1).sum();
    let got = shares(&active(&weights), 1, &hashes(50_000));
    for (id, w) in weights {
        let want = w as f64 / total as f64;
        let share = got[id];
        assert!(
            (share - want).abs() < 0.015,
            "{id}: share {share:.4}, want {want:.4}"
        );
    }
}

/// Three replicas over six equal nodes: every node holds half of the blocks, within 2 points.
#[test]
fn balance_with_three_replicas() {
    let ids = [
        ("a", 64u64),
        ("b", 64),
        ("c", 64),
        ("d", 64),
        ("e", 64),
        ("f", 64),
    ];
    for (id, share) in shares(&active(&ids), 3, &hashes(30_000)) {
        assert!((share - 1.0 / 6.0).abs() < 0.02, "{id}: share {share:.4}");
    }
}

/// Adding a fifth equal node with R=3 puts it in about 3/5 of the replica sets, and every
/// changed set is the old one with exactly one member swapped for the new node.
#[test]
fn adding_a_node_moves_only_its_share() {
    let before = active(&[("a", 8), ("b", 8), ("c", 8), ("d", 8)]);
    let after = active(&[("a", 8), ("b", 8), ("c", 8), ("d", 8), ("e", 8)]);
    let (p0, p1) = (Placement::new(&before, 3), Placement::new(&after, 3));
    let blocks = hashes(20_000);
    let mut moved = 0usize;
    for h in &blocks {
        let (old, new) = (ids(&p0.replicas(h)), ids(&p1.replicas(h)));
        if old != new {
            moved += 1;
            assert!(new.contains(&"e".to_string()), "{h}: {old:?} -> {new:?}");
            let kept = old.iter().filter(|id| new.contains(id)).count();
            assert_eq!(kept, 2, "{h}: {old:?} -> {new:?}");
        }
    }
    let fraction = moved as f64 / blocks.len() as f64;
    assert!((fraction - 0.6).abs() < 0.02, "moved {fraction:.4}");
}

/// Draining a node moves only the blocks it held; reads still reach it after the replicas.
#[test]
fn draining_moves_only_its_blocks() {
    let before = active(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    let mut nodes = before.nodes().to_vec();
    nodes[1].state = NodeState::Draining;
    let after = NodeMap::new(2, nodes);
    let (p0, p1) = (Placement::new(&before, 3), Placement::new(&after, 3));
    for h in &hashes(5_000) {
        let (old, new) = (ids(&p0.replicas(h)), ids(&p1.replicas(h)));
        assert!(!new.contains(&"b".to_string()));
        if !old.contains(&"b".to_string()) {
            assert_eq!(old, new, "{h}: a block not on b moved");
        }
        assert_eq!(
            ids(&p1.read_order(h)).len(),
            4,
            "draining nodes are still read"
        );
    }
}

/// Read order: active replicas first, then joining replicas, then the rest.
#[test]
fn read_order_prefers_active_replicas() {
    let map = NodeMap::new(
        1,
        vec![
            node("a", NodeState::Joining, 1),
            node("b", NodeState::Active, 1),
            node("c", NodeState::Active, 1),
            node("d", NodeState::Draining, 1),
            node("e", NodeState::Removed, 1),
        ],
    );
    let p = Placement::new(&map, 3);
    for h in &hashes(200) {
        let order = ids(&p.read_order(h));
        let pos = |id: &str| order.iter().position(|x| x == id).unwrap();
        assert_eq!(order.len(), 4, "removed nodes are never read: {order:?}");
        assert!(pos("b") < pos("a") && pos("c") < pos("a"), "{order:?}");
        assert_eq!(order[3], "d", "{order:?}");
    }
}

fn arb_map() -> impl Strategy<Value = NodeMap> {
    let state = prop_oneof![
        Just(NodeState::Joining),
        Just(NodeState::Active),
        Just(NodeState::Draining),
        Just(NodeState::Removed)
    ];
    prop::collection::vec((state, 0u64..1000), 1..10).prop_map(|v| {
        let nodes = v
            .into_iter()
            .enumerate()
            .map(|(i, (s, w))| node(&format!("n{i}"), s, w))
            .collect();
        NodeMap::new(1, nodes)
    })
}

proptest! {
    /// Replicas are distinct placed nodes, as many as possible, and the answer is a pure
    /// function of (hash, map): shuffling the input order changes nothing.
    #[test]
    fn replicas_are_distinct_and_deterministic(
        map in arb_map(), seed in any::<u64>(), r in 1usize..5, rot in 0usize..10,
    ) {
        let h = BlockHash::of(&seed.to_le_bytes());
        let p = Placement::new(&map, r);
        let reps = ids(&p.replicas(&h));
        let mut sorted = reps.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), reps.len());
        prop_assert_eq!(reps.len(), r.min(map.placed_count()));
        for id in &reps {
            let n = map.get(id).unwrap();
            prop_assert!(n.state.is_placed() && n.weight > 0);
        }
        let mut nodes = map.nodes().to_vec();
        let len = nodes.len();
        nodes.rotate_left(rot % len);
        let shuffled = NodeMap::new(map.revision, nodes);
        prop_assert_eq!(ids(&Placement::new(&shuffled, r).replicas(&h)), reps.clone());
        let order = ids(&p.read_order(&h));
        for id in &reps {
            prop_assert!(order[..reps.len()].contains(id));
        }
    }

    /// Adding a node changes a replica set only by bringing the new node in.
    #[test]
    fn adding_never_shuffles_old_nodes(map in arb_map(), seed in any::<u64>(), w in 1u64..1000) {
        let h = BlockHash::of(&seed.to_le_bytes());
        let mut nodes = map.nodes().to_vec();
        nodes.push(node("new", NodeState::Active, w));
        let bigger = NodeMap::new(2, nodes);
        let old = ids(&Placement::new(&map, 3).replicas(&h));
        let new = ids(&Placement::new(&bigger, 3).replicas(&h));
        let added: Vec<&String> = new.iter().filter(|id| !old.contains(id)).collect();
        let only_new = added.is_empty() || added == vec![&"new".to_string()];
        prop_assert!(only_new, "{:?} -> {:?}", old, new);
    }
}
