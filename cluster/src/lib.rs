//! buddy-cluster: several buddy-blocks nodes behind stateless gateways, with membership and
//! placement in etcd (docs/cluster.md).
//!
//! Nodes stay single-node servers that never talk to each other; this crate only uses their
//! HTTP API. Modules, each with one job:
//! - `block_hash`: a block's address;
//! - `node_map`: node entries, their states, the map snapshot;
//! - `placement`: which nodes hold a block (pure, weighted rendezvous hashing);
//! - `membership`: the map in etcd (read, compare-and-swap changes, watch);
//! - `map_watch`: the gateway's current map and etcd status;
//! - `node_client`: HTTP calls to nodes, each with a deadline;
//! - `gateway`: the node API in front of the cluster;
//! - `repair`: copy missing replicas, remove extra ones.

pub mod block_hash;
pub mod gateway;
pub mod map_watch;
pub mod membership;
pub mod node_client;
pub mod node_map;
pub mod placement;
pub mod repair;
