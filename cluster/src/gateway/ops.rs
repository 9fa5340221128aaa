//! `/health`, `/stats` and `/metrics` of the gateway, and the counters behind them.
//!
//! Owns the operator's view: the etcd status and map revision, each member's health and
//! capacity (asked live, in parallel, with a short deadline), the gateway's own counters.
//!
//! `/health` says `200 ok` when etcd and every placed node answer; `200 degraded: ...` when it
//! serves but something is down (etcd unreachable: last map in use; or a node down); `503` when
//! it cannot take writes (no map, or fewer than W placed nodes healthy). It never changes a node.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::reply::{self, Reply};
use super::Gateway;
use crate::map_watch::EtcdStatus;
use crate::node_map::NodeEntry;

/// Deadline of the live checks behind /health and /stats.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

const METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "DELETE", "POST", "other"];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; METHODS.len()],
    responses: [AtomicU64; STATUS_CLASSES.len()],
    quorum_failures: AtomicU64,
    read_fallbacks: AtomicU64,
    corrupt_replies: AtomicU64,
    node_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn count_request(&self, method: &Method) {
        let i = METHODS.iter().position(|m| *m == method.as_str());
        bump(&self.requests[i.unwrap_or(METHODS.len() - 1)]);
    }

    pub fn count_status(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        bump(&self.responses[class]);
    }

    pub fn count_quorum_failure(&self) {
        bump(&self.quorum_failures);
    }

    pub fn count_fallback(&self) {
        bump(&self.read_fallbacks);
    }

    pub fn count_corrupt(&self) {
        bump(&self.corrupt_replies);
    }

    pub fn count_node_error(&self) {
        bump(&self.node_errors);
    }

    fn snapshot(&self) -> serde_json::Value {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let by = |names: &[&str], counters: &[AtomicU64]| {
            let pairs = names
                .iter()
                .zip(counters)
                .map(|(n, c)| (n.to_string(), json!(load(c))));
            serde_json::Value::Object(pairs.collect())
        };
        json!({
            "requests": by(&METHODS, &self.requests),
            "responses": by(&STATUS_CLASSES, &self.responses),
            "put_quorum_failures": load(&self.quorum_failures),
            "read_fallbacks": load(&self.read_fallbacks),
            "corrupt_replies": load(&self.corrupt_replies),
            "node_errors": load(&self.node_errors),
        })
    }
}

/// One member as seen live.
struct Probe<'m> {
    node: &'m NodeEntry,
    health: Result<(), String>,
    stats: Option<serde_json::Value>,
}

impl Gateway {
    /// Asks every member for /health and /stats at once.
    async fn probe_members<'m>(&self, nodes: &[&'m NodeEntry]) -> Vec<Probe<'m>> {
        let calls: Vec<_> = nodes
            .iter()
            .map(|n| {
                let (client, addr) = (self.nodes.clone(), n.addr.clone());
                tokio::spawn(async move {
                    let ask = async { (client.health(&addr).await, client.stats(&addr).await) };
                    tokio::time::timeout(PROBE_TIMEOUT, ask).await
                })
            })
            .collect();
        let mut out = Vec::with_capacity(nodes.len());
        for (node, call) in nodes.iter().zip(calls) {
            let (health, stats) = match call.await {
                Ok(Ok((health, stats))) => (health.map_err(|e| e.to_string()), stats.ok()),
                Ok(Err(_)) => (Err(format!("no answer within {PROBE_TIMEOUT:?}")), None),
                Err(e) => (Err(format!("probe failed: {e}")), None),
            };
            out.push(Probe {
                node,
                health,
                stats,
            });
        }
        out
    }

    pub(super) async fn health(&self) -> Reply {
        let map = match self.current_map() {
            Ok(map) => map,
            Err(refusal) => return *refusal,
        };
        let placed: Vec<&NodeEntry> = map.members().filter(|n| n.state.is_placed()).collect();
        let probes = self.probe_members(&placed).await;
        let healthy = probes.iter().filter(|p| p.health.is_ok()).count();
        let mut problems = Vec::new();
        if let EtcdStatus::Unreachable { since, error } = self.cell.status() {
            problems.push(format!(
                "etcd unreachable for {}s ({error}); serving map revision {}",
                since.elapsed().as_secs(),
                map.revision
            ));
        }
        for p in &probes {
            if let Err(e) = &p.health {
                problems.push(format!("node {} down: {e}", p.node.id));
            }
        }
        let quorum = self.config.write_quorum;
        if healthy < quorum {
            let message = format!(
                "cannot take writes: {healthy} of {} placed nodes healthy, W={quorum}; {}",
                placed.len(),
                problems.join("; ")
            );
            return reply::text(StatusCode::SERVICE_UNAVAILABLE, message);
        }
        if problems.is_empty() {
            return reply::text(StatusCode::OK, "ok");
        }
        reply::text(StatusCode::OK, format!("degraded: {}", problems.join("; ")))
    }

    pub(super) async fn stats(&self) -> Reply {
        let map = self.cell.map();
        let members: Vec<&NodeEntry> = map.iter().flat_map(|m| m.members()).collect();
        let probes = self.probe_members(&members).await;
        let figure = |p: &Probe, key: &str| p.stats.as_ref().and_then(|s| s[key].as_u64());
        let (mut capacity, mut free) = (0u64, 0u64);
        let nodes: Vec<serde_json::Value> = probes
            .iter()
            .map(|p| {
                let (cap, fr) = (figure(p, "capacity_bytes"), figure(p, "free_bytes"));
                if p.node.state.is_placed() {
                    capacity += cap.unwrap_or(0);
                    free += fr.unwrap_or(0);
                }
                json!({
                    "id": p.node.id, "addr": p.node.addr, "state": p.node.state.name(),
                    "weight": p.node.weight, "healthy": p.health.is_ok(),
                    "error": p.health.as_ref().err(), "capacity_bytes": cap, "free_bytes": fr,
                    "blocks": figure(p, "blocks"),
                })
            })
            .collect();
        let status = self.cell.status();
        let body = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "replicas": self.config.replicas,
            "write_quorum": self.config.write_quorum,
            "map_revision": map.as_ref().map(|m| m.revision),
            "etcd": {
                "state": status.name(),
                "for_seconds": status.since().elapsed().as_secs(),
                "error": status.error(),
            },
            "capacity_bytes": capacity,
            "free_bytes": free,
            "nodes": nodes,
            "gateway": self.metrics.snapshot(),
        });
        let text = serde_json::to_string_pretty(&body).expect("JSON of plain values");
        reply::body(StatusCode::OK, "application/json", Bytes::from(text))
    }

    /// Prometheus text format: the gateway's own counters and the map (no live node probes).
    pub(super) fn prometheus(&self) -> Reply {
        let m = &self.metrics;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let requests: Vec<_> = METHODS
            .iter()
            .zip(&m.requests)
            .map(|(n, c)| (*n, load(c)))
            .collect();
        family(
            &mut out,
            "requests_total",
            "counter",
            "Requests by method.",
            "method",
            &requests,
        );
        let classes: Vec<_> = STATUS_CLASSES
            .iter()
            .zip(&m.responses)
            .map(|(n, c)| (*n, load(c)))
            .collect();
        family(
            &mut out,
            "responses_total",
            "counter",
            "Responses by status class.",
            "class",
            &classes,
        );
        let etcd_up = u64::from(matches!(self.cell.status(), EtcdStatus::Connected { .. }));
        let revision = self.cell.map().map_or(0, |m| m.revision.max(0) as u64);
        let single = [
            (
                "put_quorum_failures_total",
                "counter",
                "PUTs refused for lack of W acknowledgements.",
                load(&m.quorum_failures),
            ),
            (
                "read_fallbacks_total",
                "counter",
                "GETs served by a node after the first.",
                load(&m.read_fallbacks),
            ),
            (
                "corrupt_replies_total",
                "counter",
                "Node answers whose bytes failed the SHA-256.",
                load(&m.corrupt_replies),
            ),
            (
                "node_errors_total",
                "counter",
                "Failed node requests.",
                load(&m.node_errors),
            ),
            (
                "etcd_up",
                "gauge",
                "1 when etcd answers and the map is watched.",
                etcd_up,
            ),
            (
                "map_revision",
                "gauge",
                "etcd revision of the map in use.",
                revision,
            ),
        ];
        for (name, kind, help, value) in single {
            family(&mut out, name, kind, help, "", &[("", value)]);
        }
        reply::body(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(out),
        )
    }
}

/// One metric family: HELP and TYPE, then its samples (unlabelled when `label` is empty).
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    samples: &[(&str, u64)],
) {
    let _ = writeln!(
        out,
        "# HELP buddy_cluster_{name} {help}\n# TYPE buddy_cluster_{name} {kind}"
    );
    for (value_of_label, value) in samples {
        if label.is_empty() {
            let _ = writeln!(out, "buddy_cluster_{name} {value}");
        } else {
            let _ = writeln!(
                out,
                "buddy_cluster_{name}{{{label}=\"{value_of_label}\"}} {value}"
            );
        }
    }
}
