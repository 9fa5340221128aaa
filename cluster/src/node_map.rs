//! The membership map: which nodes exist, where they listen, their state and weight.
//!
//! Owns the node entry (as stored in etcd, JSON), the node state machine and its legal
//! transitions, and the `NodeMap` snapshot a gateway or repair works from. It never talks to
//! etcd or to a node: `membership` reads and writes it, `placement` computes from it.
//!
//! Invariants: node ids are unique in a map and the map is sorted by id; a map carries the
//! etcd revision it was read at (0 for a map built by hand), so two gateways with the same
//! revision place every block alike.

use serde::{Deserialize, Serialize};

/// The life of a node in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Added and placed (new writes and repair copies go to it), read after active replicas.
    Joining,
    /// A full member: placed, read first.
    Active,
    /// Not placed any more; still read, and repair moves its blocks away.
    Draining,
    /// Out of the cluster: never placed, read, listed or repaired. A tombstone in etcd.
    Removed,
}

impl NodeState {
    /// New blocks are placed on it.
    pub fn is_placed(self) -> bool {
        matches!(self, NodeState::Joining | NodeState::Active)
    }

    /// It may hold blocks that matter: reads, listings, DELETEs and repair include it.
    pub fn is_member(self) -> bool {
        self != NodeState::Removed
    }

    /// Whether an operator may move a node from `self` to `to`.
    pub fn can_become(self, to: NodeState) -> bool {
        use NodeState::*;
        matches!(
            (self, to),
            (Joining, Active)
                | (Joining, Draining)
                | (Active, Draining)
                | (Draining, Active)
                | (Draining, Removed)
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            NodeState::Joining => "joining",
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Removed => "removed",
        }
    }
}

/// One node as stored under `<prefix>nodes/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub id: String,
    /// `host:port` of the node's HTTP API.
    pub addr: String,
    pub state: NodeState,
    /// Relative share of blocks; by convention the node's capacity in bytes. 0 places nothing.
    pub weight: u64,
}

/// Longest node id accepted.
pub const NODE_ID_CHARS_MAX: usize = 64;

/// Node ids are short names made of `[A-Za-z0-9_.-]`, so they are safe in etcd keys and logs.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > NODE_ID_CHARS_MAX || !id.chars().all(ok_char) {
        return Err(format!(
            "node id {id:?}: use 1 to {NODE_ID_CHARS_MAX} characters of A-Z a-z 0-9 - _ ."
        ));
    }
    Ok(())
}

/// A snapshot of the membership at one etcd revision.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeMap {
    /// The etcd revision the map was read at.
    pub revision: i64,
    nodes: Vec<NodeEntry>,
}

impl NodeMap {
    /// Builds a map; panics on duplicate ids (membership never stores two entries per id).
    pub fn new(revision: i64, mut nodes: Vec<NodeEntry>) -> NodeMap {
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        for pair in nodes.windows(2) {
            assert_ne!(pair[0].id, pair[1].id, "duplicate node id in a map");
        }
        NodeMap { revision, nodes }
    }

    /// All entries, removed ones included, sorted by id.
    pub fn nodes(&self) -> &[NodeEntry] {
        &self.nodes
    }

    pub fn get(&self, id: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Nodes that may hold blocks (every state but removed).
    pub fn members(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.iter().filter(|n| n.state.is_member())
    }

    /// How many nodes new blocks are placed on.
    pub fn placed_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.state.is_placed() && n.weight > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state machine: forward through drain to removed, back from drain, never out of removed.
    #[test]
    fn state_transitions() {
        use NodeState::*;
        assert!(Joining.can_become(Active));
        assert!(Active.can_become(Draining));
        assert!(Draining.can_become(Active));
        assert!(Draining.can_become(Removed));
        assert!(!Active.can_become(Removed), "removal needs a drain first");
        for to in [Joining, Active, Draining, Removed] {
            assert!(!Removed.can_become(to));
        }
    }

    /// Entries are stored as small JSON objects with lowercase states.
    #[test]
    fn entry_json() {
        let e = NodeEntry {
            id: "n1".into(),
            addr: "127.0.0.1:1".into(),
            state: NodeState::Draining,
            weight: 7,
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"id":"n1","addr":"127.0.0.1:1","state":"draining","weight":7}"#
        );
        assert_eq!(serde_json::from_str::<NodeEntry>(&text).unwrap(), e);
    }

    /// Ids are checked before they become etcd keys.
    #[test]
    fn node_ids() {
        assert!(check_node_id("node-1.a_b").is_ok());
        assert!(check_node_id("").is_err());
        assert!(check_node_id("a/b").is_err());
        assert!(check_node_id(&"x".repeat(65)).is_err());
    }
}
