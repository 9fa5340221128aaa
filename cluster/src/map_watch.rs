//! The gateway's view of the map: the last map read from etcd and whether etcd answers.
//!
//! Owns a background task that loads the map, watches the node keys, reloads the whole map on
//! any change (so every map served is a consistent snapshot at one revision), and pings etcd
//! every `PING_INTERVAL` so a dead etcd is noticed even when nothing changes. When etcd fails,
//! the last map stays in use and the status says since when etcd is unreachable and why.
//!
//! It never blocks a request: readers take an `Arc` of the current map. Invariant: the map's
//! revision never goes backwards (a stale reload is dropped).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::membership::Membership;
use crate::node_map::NodeMap;

/// How often the watcher proves etcd still answers.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before reconnecting after etcd failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// What the gateway knows about etcd.
#[derive(Clone, Debug)]
pub enum EtcdStatus {
    /// Never reached yet: no map, so no block request can be placed.
    Connecting {
        since: Instant,
        last_error: Option<String>,
    },
    /// The map is current (watched).
    Connected { since: Instant },
    /// The last map is in use; etcd has not answered since `since`.
    Unreachable { since: Instant, error: String },
}

impl EtcdStatus {
    pub fn name(&self) -> &'static str {
        match self {
            EtcdStatus::Connecting { .. } => "connecting",
            EtcdStatus::Connected { .. } => "connected",
            EtcdStatus::Unreachable { .. } => "unreachable",
        }
    }

    pub fn since(&self) -> Instant {
        match self {
            EtcdStatus::Connecting { since, .. }
            | EtcdStatus::Connected { since }
            | EtcdStatus::Unreachable { since, .. } => *since,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            EtcdStatus::Connecting { last_error, .. } => last_error.as_deref(),
            EtcdStatus::Connected { .. } => None,
            EtcdStatus::Unreachable { error, .. } => Some(error),
        }
    }
}

struct Inner {
    map: Option<Arc<NodeMap>>,
    status: EtcdStatus,
}

/// Shared between the watcher task and request handlers.
#[derive(Clone)]
pub struct MapCell(Arc<RwLock<Inner>>);

impl Default for MapCell {
    fn default() -> Self {
        MapCell(Arc::new(RwLock::new(Inner {
            map: None,
            status: EtcdStatus::Connecting {
                since: Instant::now(),
                last_error: None,
            },
        })))
    }
}

impl MapCell {
    /// The map in use, if one was ever loaded.
    pub fn map(&self) -> Option<Arc<NodeMap>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).map.clone()
    }

    pub fn status(&self) -> EtcdStatus {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .status
            .clone()
    }

    /// Installs a freshly read map (ignored if older than the one in use) and marks etcd up.
    pub fn publish(&self, map: NodeMap) {
        let mut inner = self.0.write().unwrap_or_else(|e| e.into_inner());
        let newer = inner
            .map
            .as_ref()
            .is_none_or(|m| m.revision <= map.revision);
        if newer {
            if inner
                .map
                .as_ref()
                .is_none_or(|m| m.revision != map.revision)
            {
                tracing::info!(
                    revision = map.revision,
                    nodes = map.nodes().len(),
                    "map loaded"
                );
            }
            inner.map = Some(Arc::new(map));
        }
        if !matches!(inner.status, EtcdStatus::Connected { .. }) {
            inner.status = EtcdStatus::Connected {
                since: Instant::now(),
            };
        }
    }

    /// Records that etcd failed; the map in use stays.
    pub fn fail(&self, error: String) {
        let mut inner = self.0.write().unwrap_or_else(|e| e.into_inner());
        inner.status = match &inner.status {
            EtcdStatus::Connecting { since, .. } => EtcdStatus::Connecting {
                since: *since,
                last_error: Some(error),
            },
            EtcdStatus::Unreachable { since, .. } => EtcdStatus::Unreachable {
                since: *since,
                error,
            },
            EtcdStatus::Connected { .. } => {
                tracing::warn!(%error, "etcd unreachable: serving the last map");
                EtcdStatus::Unreachable {
                    since: Instant::now(),
                    error,
                }
            }
        };
    }
}

/// Follows etcd forever, publishing maps into `cell`.
pub async fn run(endpoints: Vec<String>, prefix: String, cell: MapCell) {
    loop {
        if let Err(e) = follow(&endpoints, &prefix, &cell).await {
            cell.fail(format!("{e:#}"));
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// One connection's life: load, watch, reload on change, ping; returns on the first failure.
async fn follow(endpoints: &[String], prefix: &str, cell: &MapCell) -> anyhow::Result<()> {
    let mut etcd = Membership::connect(endpoints, prefix).await?;
    let map = etcd.load().await?;
    let mut watch = etcd.watch_from(map.revision + 1).await?;
    cell.publish(map);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    loop {
        tokio::select! {
            message = watch.message() => match message? {
                Some(_) => cell.publish(etcd.load().await?),
                None => anyhow::bail!("etcd closed the watch"),
            },
            _ = ping.tick() => etcd.ping().await?,
        }
    }
}
