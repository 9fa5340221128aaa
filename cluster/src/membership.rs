//! Membership in etcd: reading the node map and changing node entries.
//!
//! Key layout (the prefix defaults to `/buddy-cluster/`): `<prefix>nodes/<id>` holds one
//! `NodeEntry` as JSON; `<prefix>locks/<name>` are etcd locks (one repair loop at a time).
//! The map is every key under `<prefix>nodes/`, read in one range request,
//! so it is a consistent snapshot at the response's revision.
//!
//! Owns the etcd client and the key layout; it never talks to a node. Every change is a
//! compare-and-swap transaction on the entry's `mod_revision` (or on its absence for `add`),
//! so two operators can never overwrite each other's change unseen. Every call has a deadline.

use std::time::Duration;

use anyhow::{bail, Context};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LockOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};

use crate::node_map::{check_node_id, NodeEntry, NodeMap, NodeState};

/// How long one etcd call may take before it counts as a failure.
pub const ETCD_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts of a compare-and-swap that keeps losing races before giving up.
const CAS_ATTEMPTS_MAX: usize = 5;

#[derive(Clone)]
pub struct Membership {
    client: Client,
    prefix: String,
}

/// Runs an etcd call with the deadline; a timeout is an error naming `what`.
async fn deadline<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(ETCD_CALL_TIMEOUT, call).await {
        Ok(result) => result.with_context(|| format!("etcd {what}")),
        Err(_) => bail!("etcd {what}: no answer within {ETCD_CALL_TIMEOUT:?}"),
    }
}

impl Membership {
    /// Connects to the given endpoints (`http://host:port`, or `host:port`).
    pub async fn connect(endpoints: &[String], prefix: &str) -> anyhow::Result<Membership> {
        if !prefix.ends_with('/') {
            bail!("the etcd prefix {prefix:?} must end with '/'");
        }
        // No HTTP/2 keep-alive pings: etcd refuses pings more often than every 5 s by default
        // (GOAWAY too_many_pings); the gateway's own ping request notices a dead etcd instead.
        let options = ConnectOptions::new().with_connect_timeout(ETCD_CALL_TIMEOUT);
        let client = deadline("connect", Client::connect(endpoints, Some(options))).await?;
        Ok(Membership {
            client,
            prefix: prefix.to_string(),
        })
    }

    fn nodes_prefix(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.nodes_prefix())
    }

    /// The whole map, at the revision of the read.
    pub async fn load(&mut self) -> anyhow::Result<NodeMap> {
        let options = GetOptions::new().with_prefix();
        let key = self.nodes_prefix();
        let resp = deadline("get nodes", self.client.get(key, Some(options))).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut nodes = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let entry: NodeEntry = serde_json::from_slice(kv.value()).with_context(|| {
                format!(
                    "etcd key {:?}: not a node entry",
                    String::from_utf8_lossy(kv.key())
                )
            })?;
            nodes.push(entry);
        }
        Ok(NodeMap::new(revision, nodes))
    }

    /// A cheap round trip that proves etcd answers.
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        let options = GetOptions::new().with_count_only();
        deadline("ping", self.client.get(self.nodes_prefix(), Some(options))).await?;
        Ok(())
    }

    /// Watches every node key from `revision` on.
    pub async fn watch_from(&mut self, revision: i64) -> anyhow::Result<WatchStream> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision);
        let key = self.nodes_prefix();
        deadline("watch", self.client.watch(key, Some(options))).await
    }

    /// Adds a node; refused if the id exists (even as a removed tombstone).
    pub async fn add(&mut self, entry: &NodeEntry) -> anyhow::Result<i64> {
        check_node_id(&entry.id).map_err(anyhow::Error::msg)?;
        let key = self.key(&entry.id);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, serde_json::to_vec(entry)?, None)]);
        let resp = deadline("add node", self.client.txn(txn)).await?;
        if !resp.succeeded() {
            bail!("node {:?} already exists (ids are never reused)", entry.id);
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Reads one entry with its modification revision.
    async fn get_one(&mut self, id: &str) -> anyhow::Result<(NodeEntry, i64)> {
        let resp = deadline("get node", self.client.get(self.key(id), None)).await?;
        let Some(kv) = resp.kvs().first() else {
            bail!("no node {id:?} in the cluster");
        };
        let entry = serde_json::from_slice(kv.value())
            .with_context(|| format!("etcd entry of node {id:?} is not a node entry"))?;
        Ok((entry, kv.mod_revision()))
    }

    /// Applies `change` to the entry of `id` atomically (retrying lost races); returns the new
    /// entry. `change` refuses by returning an error, which is passed on; a change that changes
    /// nothing writes nothing.
    pub async fn update(
        &mut self,
        id: &str,
        change: impl Fn(&mut NodeEntry) -> anyhow::Result<()>,
    ) -> anyhow::Result<NodeEntry> {
        for _ in 0..CAS_ATTEMPTS_MAX {
            let (before, mod_revision) = self.get_one(id).await?;
            let mut entry = before.clone();
            change(&mut entry)?;
            assert_eq!(entry.id, id, "a change may not rename a node");
            if entry == before {
                return Ok(entry); // nothing to write: no new revision for the gateways
            }
            let key = self.key(id);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    mod_revision,
                )])
                .and_then([TxnOp::put(key, serde_json::to_vec(&entry)?, None)]);
            if deadline("update node", self.client.txn(txn))
                .await?
                .succeeded()
            {
                return Ok(entry);
            }
        }
        bail!("node {id:?} kept changing under us ({CAS_ATTEMPTS_MAX} attempts); try again")
    }

    /// Moves a node to `to` if the state machine allows it.
    pub async fn set_state(&mut self, id: &str, to: NodeState) -> anyhow::Result<NodeEntry> {
        self.update(id, |entry| {
            if entry.state == to {
                return Ok(());
            }
            if !entry.state.can_become(to) {
                bail!(
                    "node {id:?} is {}; it cannot become {} (see docs/cluster.md)",
                    entry.state.name(),
                    to.name()
                );
            }
            entry.state = to;
            Ok(())
        })
        .await
    }
}

/// How a locked piece of work ended.
pub enum Locked<T> {
    /// The work finished while the lock was held.
    Done(T),
    /// Someone else held the lock for the whole wait.
    Busy,
}

impl Membership {
    /// Runs `work` holding the etcd lock `<prefix>locks/<name>`, bound to a lease of `ttl` that
    /// is renewed while `work` runs. Waits at most `wait` for the lock. If the lease cannot be
    /// renewed (etcd gone), `work` is dropped (cancelled) and the error returned: the lock may
    /// have passed to someone else, so the work must be safe to interrupt.
    pub async fn with_lock<T>(
        &mut self,
        name: &str,
        ttl: Duration,
        wait: Duration,
        work: impl std::future::Future<Output = T>,
    ) -> anyhow::Result<Locked<T>> {
        let ttl_secs = ttl.as_secs().max(2) as i64;
        let lease = deadline("lease grant", self.client.lease_grant(ttl_secs, None))
            .await?
            .id();
        let (mut keeper, mut renewals) =
            deadline("lease keep-alive", self.client.lease_keep_alive(lease)).await?;
        let options = LockOptions::new().with_lease(lease);
        let key = format!("{}locks/{name}", self.prefix);
        let lock_key = match tokio::time::timeout(wait, self.client.lock(key, Some(options))).await
        {
            Ok(locked) => locked.context("etcd lock")?.key().to_vec(),
            Err(_) => {
                let _ = deadline("lease revoke", self.client.lease_revoke(lease)).await;
                return Ok(Locked::Busy);
            }
        };
        let period = Duration::from_secs(ttl_secs as u64) / 3;
        let renew = async {
            loop {
                tokio::time::sleep(period).await;
                keeper
                    .keep_alive()
                    .await
                    .context("renewing the lock's lease")?;
                match tokio::time::timeout(period, renewals.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                    _ => anyhow::bail!("the lock's lease could not be renewed: lock lost"),
                }
            }
        };
        let outcome = tokio::select! {
            done = work => Ok(Locked::Done(done)),
            lost = renew => lost,
        };
        // Best effort: if etcd is gone, the lease expires by itself and frees the lock.
        let _ = deadline("unlock", self.client.unlock(lock_key)).await;
        let _ = deadline("lease revoke", self.client.lease_revoke(lease)).await;
        outcome
    }
}
