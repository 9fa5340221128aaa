//! Loopback cluster tests with real processes: etcd, `buddy-blocks` nodes, a gateway, the CLI.
//!
//! Each test builds its own cluster (own etcd, own ports and directories), so they run in
//! parallel; nodes are small (64 MiB, one worker) to keep the whole run short on two cores.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const PREFIX: &str = "/test-cluster/";

/// PUTs `count` blocks of 100..4100 bytes through the gateway from 4 threads; every one must
/// be acknowledged (201). Returns hash -> bytes.
fn put_many(gateway: SocketAddr, seed: u64, count: u64) -> BTreeMap<String, Vec<u8>> {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut http = Http::connect(gateway).expect("gateway");
                let mut out = Vec::new();
                for i in (t..count).step_by(4) {
                    let bytes = body(seed + i, 100 + ((seed + i) * 7919 % 4000) as usize);
                    let r = http.request("PUT", "/block", &bytes).expect(201);
                    assert_eq!(r.text(), sha256_hex(&bytes));
                    out.push((r.text(), bytes));
                }
                out
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("PUT thread"))
        .collect()
}

/// Every block reads back through the gateway with its exact bytes.
fn assert_all_readable(gateway: SocketAddr, blocks: &BTreeMap<String, Vec<u8>>) {
    let blocks = Arc::new(
        blocks
            .iter()
            .map(|(h, b)| (h.clone(), b.clone()))
            .collect::<Vec<_>>(),
    );
    let threads: Vec<_> = (0..4usize)
        .map(|t| {
            let blocks = blocks.clone();
            std::thread::spawn(move || {
                let mut http = Http::connect(gateway).expect("gateway");
                for (hash, bytes) in blocks.iter().skip(t).step_by(4) {
                    let r = http
                        .request("GET", &format!("/block/{hash}"), &[])
                        .expect(200);
                    assert!(r.body == *bytes, "block {hash}: wrong bytes");
                }
            })
        })
        .collect();
    threads
        .into_iter()
        .for_each(|t| t.join().expect("GET thread"));
}

/// How many of `nodes` list each block.
fn copies(nodes: &[&Node]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in nodes {
        for (hash, _) in n.list_all() {
            *out.entry(hash).or_default() += 1;
        }
    }
    out
}

/// Waits (bounded) until every block has `want` copies over `nodes` (the third copy of a PUT
/// may still be on its way after the W=2 acknowledgement).
#[track_caller]
fn assert_copies(nodes: &[&Node], blocks: &BTreeMap<String, Vec<u8>>, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = copies(nodes);
        let wrong: Vec<_> = blocks
            .keys()
            .filter(|h| seen.get(*h).copied().unwrap_or(0) != want)
            .collect();
        let strays = seen.keys().filter(|h| !blocks.contains_key(*h)).count();
        if wrong.is_empty() && strays == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} blocks without exactly {want} copies (first: {:?} has {:?}); {strays} strays",
            wrong.len(),
            blocks.len(),
            wrong[0],
            seen.get(wrong[0])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn node_holds(node: &Node, hash: &str) -> bool {
    let r = node.http().request("HEAD", &format!("/block/{hash}"), &[]);
    assert!(
        r.status == 200 || r.status == 404,
        "HEAD on {}: {}",
        node.id,
        r.status
    );
    r.status == 200
}

/// The main failure story: 2,000 acknowledged blocks survive `kill -9` of a node (reads,
/// writes, listing and missing go on, a DELETE is refused with nothing deleted), and after the
/// dead node is replaced
/// (add, drain, repair, remove, repair) every block has three copies again.
#[test]
fn a_dead_node_loses_nothing_and_repair_restores_three_copies() {
    let etcd = Etcd::start();
    let (mut n1, n2, n3) = (Node::start("n1"), Node::start("n2"), Node::start("n3"));
    add_active(&etcd, PREFIX, &[&n1, &n2, &n3]);
    let gw = Gateway::start(&etcd, PREFIX);
    let mut blocks = put_many(gw.addr, 1, 2000);
    assert_eq!(blocks.len(), 2000);
    assert_copies(&[&n1, &n2, &n3], &blocks, 3);

    n1.proc.kill9();
    assert_all_readable(gw.addr, &blocks);
    let stats = gw.http().request("GET", "/stats", &[]).expect(200).text();
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    let fallbacks = stats["gateway"]["read_fallbacks"].as_u64().unwrap_or(0);
    assert!(
        fallbacks > 0,
        "reads never fell back past the dead node: {stats}"
    );
    blocks.extend(put_many(gw.addr, 100_000, 200)); // W=2 of the two left
    let victim = blocks.keys().next().unwrap().clone();
    let r = gw
        .http()
        .request("DELETE", &format!("/block/{victim}"), &[])
        .expect(503);
    assert!(r.text().contains("nothing was"), "{}", r.text());
    assert!(
        node_holds(&n2, &victim) && node_holds(&n3, &victim),
        "a refused DELETE deleted"
    );
    let unknown = sha256_hex(b"never stored");
    gw.http()
        .request("GET", &format!("/block/{unknown}"), &[])
        .expect(404);
    let listing = gw
        .http()
        .request("GET", "/blocks?limit=10000", &[])
        .expect(200);
    assert_eq!(listing.header("x-buddy-unlisted-nodes"), Some("n1"));
    assert_eq!(
        parse_listing(&listing.text()).len(),
        blocks.len(),
        "listing without n1"
    );
    let ask: String = blocks.keys().take(100).map(|h| format!("{h}\n")).collect();
    let missing = gw
        .http()
        .request("POST", "/blocks/missing", ask.as_bytes())
        .expect(200);
    assert_eq!(
        missing.text(),
        "",
        "blocks on W live replicas are not missing"
    );
    let health = gw.http().request("GET", "/health", &[]).expect(200);
    assert!(
        health.text().starts_with("degraded") && health.text().contains("n1"),
        "{}",
        health.text()
    );

    let n4 = Node::start("n4");
    let weight = NODE_CAPACITY_BYTES.to_string();
    cli_ok(
        &etcd,
        PREFIX,
        &[
            "node",
            "add",
            "n4",
            &n4.addr.to_string(),
            "--weight",
            &weight,
        ],
    );
    cli_ok(&etcd, PREFIX, &["node", "drain", "n1"]);
    let first = cli(&etcd, PREFIX, &["repair", "--node-timeout-ms", "2000"]);
    let report = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        !first.status.success(),
        "a pass that cannot list n1 must say so: {report}"
    );
    assert!(
        report.contains("unlisted_nodes=n1") && report.contains("under_replicated=0"),
        "{report}"
    );
    cli_ok(&etcd, PREFIX, &["node", "remove", "n1", "--force"]);
    let second = cli_ok(&etcd, PREFIX, &["repair"]);
    assert!(
        second.contains("copies_made=0") && second.contains("activated n4"),
        "{second}"
    );
    let list = cli_ok(&etcd, PREFIX, &["node", "list"]);
    assert!(
        list.contains("n1 ") && list.contains("removed") && list.contains("n4"),
        "{list}"
    );

    assert_copies(&[&n2, &n3, &n4], &blocks, 3);
    assert_all_readable(gw.addr, &blocks);
}

/// Draining a node and repairing moves every block it held onto the other nodes and empties
/// it; only then may it be removed without --force. DELETE with every node up removes the
/// block everywhere and repair does not bring it back; the merged listing and
/// `POST /blocks/missing` answer for the whole cluster.
#[test]
fn drain_repair_remove_and_cluster_wide_delete() {
    let etcd = Etcd::start();
    let nodes: Vec<Node> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| Node::start(id))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    add_active(&etcd, PREFIX, &refs);
    let gw = Gateway::start(&etcd, PREFIX);
    let mut blocks = put_many(gw.addr, 7, 1000);
    assert_copies(&refs, &blocks, 3);
    let on_d = nodes[3].list_all().len();
    assert!(
        on_d > 500 && on_d < 1000,
        "d holds {on_d} of 1000 with R=3 over 4 equal nodes"
    );

    let deleted: Vec<String> = blocks.keys().take(10).cloned().collect();
    for hash in &deleted {
        gw.http()
            .request("DELETE", &format!("/block/{hash}"), &[])
            .expect(204);
        gw.http()
            .request("GET", &format!("/block/{hash}"), &[])
            .expect(404);
        assert!(
            refs.iter().all(|n| !node_holds(n, hash)),
            "{hash} left on a node"
        );
        blocks.remove(hash);
    }

    cli_ok(&etcd, PREFIX, &["node", "drain", "d"]);
    let refused = cli(&etcd, PREFIX, &["node", "remove", "d"]);
    assert!(
        !refused.status.success(),
        "removing a node that holds blocks must be refused"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("still holds blocks"));
    let report = cli_ok(
        &etcd,
        PREFIX,
        &[
            "repair",
            "--concurrency",
            "2",
            "--max-bytes-per-sec",
            "50000000",
        ],
    );
    assert!(report.contains("copies_failed=0"), "{report}");
    assert!(
        nodes[3].list_all().is_empty(),
        "repair left blocks on the drained node: {report}"
    );
    cli_ok(&etcd, PREFIX, &["node", "remove", "d"]);
    assert_copies(&refs[..3], &blocks, 3);
    assert_all_readable(gw.addr, &blocks);

    let listed = parse_listing(
        &gw.http()
            .request("GET", "/blocks?limit=10000", &[])
            .expect(200)
            .text(),
    );
    let listed: Vec<String> = listed.into_iter().map(|(h, _)| h).collect();
    assert_eq!(
        listed,
        blocks.keys().cloned().collect::<Vec<_>>(),
        "merged listing"
    );
    let page = parse_listing(
        &gw.http()
            .request("GET", &format!("/blocks?after={}&limit=5", listed[9]), &[])
            .expect(200)
            .text(),
    );
    assert_eq!(
        page.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
        listed[10..15].to_vec()
    );
    let ask = format!("{}\n{}\n", listed[0], deleted[0]);
    let missing = gw
        .http()
        .request("POST", "/blocks/missing", ask.as_bytes())
        .expect(200);
    assert_eq!(missing.text(), format!("{}\n", deleted[0]));
}

/// With etcd killed, the gateway keeps the last map: reads and writes go on, /health says
/// degraded with etcd unreachable, /stats says unreachable.
#[test]
fn etcd_down_keeps_the_last_map() {
    let mut etcd = Etcd::start();
    let nodes: Vec<Node> = ["x", "y", "z"].iter().map(|id| Node::start(id)).collect();
    add_active(&etcd, PREFIX, &nodes.iter().collect::<Vec<_>>());
    let gw = Gateway::start(&etcd, PREFIX);
    let mut blocks = put_many(gw.addr, 55, 100);

    etcd.proc.kill9();
    let deadline = Instant::now() + Duration::from_secs(15);
    let health = loop {
        let r = gw.http().request("GET", "/health", &[]);
        if r.text().contains("etcd unreachable") {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "health never noticed etcd is gone: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(health.text().starts_with("degraded"), "{}", health.text());
    let stats = gw.http().request("GET", "/stats", &[]).expect(200).text();
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(stats["etcd"]["state"], "unreachable", "{stats}");
    assert_eq!(
        stats["capacity_bytes"].as_u64(),
        Some(3 * NODE_CAPACITY_BYTES),
        "{stats}"
    );

    blocks.extend(put_many(gw.addr, 99_000, 200));
    assert_all_readable(gw.addr, &blocks);
    let refs: Vec<&Node> = nodes.iter().collect();
    assert_copies(&refs, &blocks, 3);
}

/// The gateway's request checks: a body that does not hash to the path is 422 and stored
/// nowhere, a body over 512 KiB is 413, bad addresses 400, HEAD gives the length, a Range
/// gives a 206 of verified bytes.
#[test]
fn gateway_request_checks() {
    let etcd = Etcd::start();
    let nodes: Vec<Node> = ["p", "q"].iter().map(|id| Node::start(id)).collect();
    add_active(&etcd, PREFIX, &nodes.iter().collect::<Vec<_>>());
    let gw = Gateway::start(&etcd, PREFIX);
    let mut http = gw.http();
    let bytes = body(3, 5000);
    let hash = sha256_hex(&bytes);
    let other = sha256_hex(b"other");
    http.request("PUT", &format!("/block/{other}"), &bytes)
        .expect(422);
    assert!(nodes.iter().all(|n| !node_holds(n, &hash)));
    http.request("PUT", &format!("/block/{hash}"), &bytes)
        .expect(201);
    http.request("PUT", "/block", &bytes).expect(200);
    // Refused from the header alone: the client never sends the body.
    let too_long = [("Content-Length", "524289")];
    let r = http
        .request_with("PUT", "/block", &too_long, &[])
        .expect(413);
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "the body was left unread"
    );
    let mut http = gw.http();
    // Refusals and bodiless routes read what was sent, so the connection stays usable: a
    // large body left unread made hyper close it under the next request.
    let big = body(4, 300_000);
    http.request("PUT", "/stats", &big).expect(405);
    http.request("PUT", "/block/nothex", &big).expect(400);
    http.request("POST", "/nothing", &big).expect(404);
    http.request("GET", "/health", &big).expect(200);
    http.request("GET", "/block/nothex", &[]).expect(400);
    http.request("GET", &format!("/block/{other}"), &[])
        .expect(404);
    let head = http
        .request("HEAD", &format!("/block/{hash}"), &[])
        .expect(200);
    assert_eq!(head.header("content-length"), Some("5000"));
    let range = http
        .request_with(
            "GET",
            &format!("/block/{hash}"),
            &[("Range", "bytes=10-19")],
            &[],
        )
        .expect(206);
    assert_eq!(range.body, bytes[10..20]);
    let metrics = http.request("GET", "/metrics", &[]).expect(200).text();
    assert!(
        metrics.contains("buddy_cluster_requests_total{method=\"PUT\"} 6"),
        "{metrics}"
    );
}

/// Tokens: the gateway refuses writes without its own token (401, nothing stored) and passes
/// the nodes' token on, so a cluster of nodes started with --auth-token works.
#[test]
fn tokens_guard_writes_and_reach_the_nodes() {
    let etcd = Etcd::start();
    let token = ["--auth-token", "node-secret"];
    let nodes: Vec<Node> = ["s", "t"]
        .iter()
        .map(|id| Node::start_with(id, &token))
        .collect();
    add_active(&etcd, PREFIX, &nodes.iter().collect::<Vec<_>>());
    let flags = [
        "--node-auth-token",
        "node-secret",
        "--auth-token",
        "gw-secret",
    ];
    let gw = Gateway::start_with(&etcd, PREFIX, &flags);
    let bytes = body(11, 3000);
    let hash = sha256_hex(&bytes);
    nodes[0].http().request("PUT", "/block", &bytes).expect(401); // the nodes do check
    let mut http = gw.http();
    let r = http.request("PUT", "/block", &bytes).expect(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let wrong = [("Authorization", "Bearer gw-secreT")];
    http.request_with("DELETE", &format!("/block/{hash}"), &wrong, &[])
        .expect(401);
    assert!(
        nodes.iter().all(|n| !node_holds(n, &hash)),
        "a refused PUT was stored"
    );
    let ok = [("Authorization", "Bearer gw-secret")];
    let r = http.request_with("PUT", "/block", &ok, &bytes).expect(201);
    assert_eq!(r.text(), hash);
    assert!(
        nodes.iter().all(|n| node_holds(n, &hash)),
        "not on both nodes"
    );
    http.request("GET", &format!("/block/{hash}"), &[])
        .expect(200); // reads need no token
    http.request_with("DELETE", &format!("/block/{hash}"), &ok, &[])
        .expect(204);
    assert!(
        nodes.iter().all(|n| !node_holds(n, &hash)),
        "the DELETE did not reach the nodes"
    );
}

/// Two background repair loops (`repair --every 1`, an etcd lock per pass) fill a joining node
/// and activate it; after one loop is killed with -9 (its lease frees the lock if it held it)
/// the other still empties a drained node.
#[test]
fn repair_loops_fill_and_drain_under_a_lock() {
    let etcd = Etcd::start();
    let (j, k, l) = (Node::start("j"), Node::start("k"), Node::start("l"));
    add_active(&etcd, PREFIX, &[&j, &k, &l]);
    let gw = Gateway::start(&etcd, PREFIX);
    let blocks = put_many(gw.addr, 4242, 300);
    let logs = tempfile::tempdir().expect("tempdir");
    let mut first = repair_loop(&etcd, PREFIX, "repair-1", logs.path());
    let _second = repair_loop(&etcd, PREFIX, "repair-2", logs.path());

    let m = Node::start("m");
    let weight = NODE_CAPACITY_BYTES.to_string();
    cli_ok(
        &etcd,
        PREFIX,
        &["node", "add", "m", &m.addr.to_string(), "--weight", &weight],
    );
    eventually(
        Duration::from_secs(30),
        "m activated by a repair loop",
        || {
            let list = cli_ok(&etcd, PREFIX, &["node", "list"]);
            list.lines()
                .any(|line| line.starts_with("m ") && line.contains(" active "))
        },
    );
    assert_copies(&[&j, &k, &l, &m], &blocks, 3);

    first.kill9();
    cli_ok(&etcd, PREFIX, &["node", "drain", "m"]);
    eventually(
        Duration::from_secs(40),
        "m emptied by the surviving loop",
        || m.list_all().is_empty(),
    );
    assert_copies(&[&j, &k, &l], &blocks, 3);
    assert_all_readable(gw.addr, &blocks);
}

/// SIGTERM: the gateway stops accepting, closes an idle keep-alive connection at once, and
/// exits 0 well before its 10 s drain limit.
#[test]
fn sigterm_stops_the_gateway_cleanly() {
    let etcd = Etcd::start();
    let nodes: Vec<Node> = ["u", "v"].iter().map(|id| Node::start(id)).collect();
    add_active(&etcd, PREFIX, &nodes.iter().collect::<Vec<_>>());
    let mut gw = Gateway::start(&etcd, PREFIX);
    let mut idle = gw.http();
    idle.request("PUT", "/block", &body(5, 1000)).expect(201);
    let started = Instant::now();
    gw.proc.terminate();
    let status = gw.proc.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        idle.try_request("GET", "/health", &[]).is_err(),
        "the idle connection stayed open"
    );
}
