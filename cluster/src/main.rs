//! `buddy-cluster`: the command line of the cluster (docs/cluster.md).
//!
//! Owns argument parsing, logging and the runtime; each command is a few calls into the
//! library. Operator mistakes (a bad id, an illegal state change, removing a node that still
//! holds blocks) are refused with one clear line and exit status 1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use cluster::block_hash;
use cluster::gateway::{Gateway, GatewayConfig};
use cluster::map_watch::{self, MapCell};
use cluster::membership::{Locked, Membership};
use cluster::node_client::NodeClient;
use cluster::node_map::{NodeEntry, NodeState};
use cluster::placement::{Placement, REPLICAS_MAX};
use cluster::repair::{self, RepairOptions};

/// Lease of the repair loop's lock: a loop that dies frees it within this time.
const REPAIR_LEASE: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    version,
    about = "A cluster of buddy-blocks nodes: membership in etcd, gateway, repair"
)]
struct Cli {
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "BUDDY_CLUSTER_ETCD",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    etcd: Vec<String>,
    /// Key prefix of this cluster in etcd (ends with '/').
    #[arg(long, default_value = "/buddy-cluster/", global = true)]
    prefix: String,
    /// Bearer token sent to the nodes (those started with --auth-token need it for writes).
    #[arg(
        long,
        env = "BUDDY_CLUSTER_NODE_AUTH_TOKEN",
        global = true,
        hide_env_values = true
    )]
    node_auth_token: Option<String>,
    /// Log filter (error, warn, info, debug, or a tracing directive).
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add, drain, activate, remove or list nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Run a gateway: the node HTTP API in front of the cluster.
    Serve(ServeArgs),
    /// Copy missing replicas and remove extra ones, one pass over every node's listing.
    Repair(RepairArgs),
    /// Print the nodes a block is placed on, in read order.
    Placement {
        hash: String,
        #[command(flatten)]
        replication: Replication,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Add a node (state joining, or active with --active).
    Add {
        id: String,
        /// host:port of the node's HTTP API.
        addr: String,
        /// Share of blocks; default: the node's capacity_bytes from its /stats.
        #[arg(long)]
        weight: Option<u64>,
        /// Start as active instead of joining.
        #[arg(long)]
        active: bool,
    },
    /// Stop placing blocks on a node; repair moves its blocks away.
    Drain { id: String },
    /// Make a joining or draining node a full member.
    Activate { id: String },
    /// Remove a drained node (refused while it still holds blocks, unless --force).
    Remove {
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// Change a node's weight.
    SetWeight { id: String, weight: u64 },
    /// List the nodes.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone, Copy)]
struct Replication {
    /// R: copies of each block. Every gateway and repair of a cluster must use the same R.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Deadline of each request to a node, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    node_timeout_ms: u64,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:10100")]
    listen: SocketAddr,
    #[command(flatten)]
    replication: Replication,
    /// W: node acknowledgements before a PUT is acknowledged (1..=R).
    #[arg(long, default_value_t = 2)]
    write_quorum: usize,
    /// Deadline of a whole client request, in milliseconds.
    #[arg(long, default_value_t = 20_000)]
    request_timeout_ms: u64,
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Clients' PUTs and DELETEs need `Authorization: Bearer <token>` (401 otherwise).
    #[arg(long, env = "BUDDY_CLUSTER_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Runtime threads (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct RepairArgs {
    #[command(flatten)]
    replication: Replication,
    /// Copies in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Block bytes copied per second at most.
    #[arg(long)]
    max_bytes_per_sec: Option<u64>,
    /// Leave joining nodes joining even after a clean pass.
    #[arg(long)]
    no_activate: bool,
    /// Run a pass every SECONDS until stopped, holding the etcd lock `<prefix>locks/repair`
    /// during each pass, so that of several such loops only one works at a time.
    #[arg(long, value_name = "SECONDS")]
    every: Option<u64>,
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let threads = match &cli.command {
        Command::Serve(args) => args.threads,
        _ => Some(2),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime.enable_all().build().expect("the tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("buddy-cluster: {e:#}");
        std::process::exit(1);
    }
}

impl Replication {
    fn check(&self) -> anyhow::Result<()> {
        if !(1..=REPLICAS_MAX).contains(&self.replicas) {
            bail!("--replicas {}: use 1 to {REPLICAS_MAX}", self.replicas);
        }
        if self.node_timeout_ms == 0 {
            bail!("--node-timeout-ms must be positive");
        }
        Ok(())
    }

    fn client(&self, token: Option<&str>) -> anyhow::Result<NodeClient> {
        let timeout = Duration::from_millis(self.node_timeout_ms);
        NodeClient::new(timeout, token).map_err(anyhow::Error::msg)
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let token = cli.node_auth_token.as_deref();
    match cli.command {
        Command::Node(cmd) => {
            let mut etcd = Membership::connect(&cli.etcd, &cli.prefix).await?;
            let client =
                NodeClient::new(Duration::from_secs(5), token).map_err(anyhow::Error::msg)?;
            node_command(&mut etcd, &client, cmd).await
        }
        Command::Serve(args) => {
            let client = args.replication.client(token)?;
            serve(cli.etcd, cli.prefix, client, args).await
        }
        Command::Repair(args) => {
            let mut etcd = Membership::connect(&cli.etcd, &cli.prefix).await?;
            let client = args.replication.client(token)?;
            repair_command(&mut etcd, &client, args).await
        }
        Command::Placement { hash, replication } => {
            replication.check()?;
            let hash = block_hash::parse(&hash)?;
            let map = Membership::connect(&cli.etcd, &cli.prefix)
                .await?
                .load()
                .await?;
            let placement = Placement::new(&map, replication.replicas);
            let replicas = placement.replicas(&hash);
            println!("map revision {}", map.revision);
            for node in placement.read_order(&hash) {
                let role = if replicas.iter().any(|r| r.id == node.id) {
                    "replica"
                } else {
                    "other"
                };
                println!("{} {} {} {role}", node.id, node.addr, node.state.name());
            }
            Ok(())
        }
    }
}

async fn node_command(
    etcd: &mut Membership,
    client: &NodeClient,
    cmd: NodeCommand,
) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Add {
            id,
            addr,
            weight,
            active,
        } => {
            let weight = match weight {
                Some(w) => w,
                None => capacity_of(client, &addr).await?,
            };
            let state = if active {
                NodeState::Active
            } else {
                NodeState::Joining
            };
            let entry = NodeEntry {
                id,
                addr,
                state,
                weight,
            };
            let revision = etcd.add(&entry).await?;
            println!(
                "added {} ({}, weight {}) at revision {revision}",
                entry.id,
                state.name(),
                weight
            );
        }
        NodeCommand::Drain { id } => print_entry(&etcd.set_state(&id, NodeState::Draining).await?),
        NodeCommand::Activate { id } => print_entry(&etcd.set_state(&id, NodeState::Active).await?),
        NodeCommand::Remove { id, force } => {
            let map = etcd.load().await?;
            let Some(node) = map.get(&id) else {
                bail!("no node {id:?} in the cluster")
            };
            if !force {
                let held = client.list(&node.addr, None, 1).await.with_context(|| {
                    format!("node {id:?} cannot be listed to prove it is empty (or --force)")
                })?;
                if !held.is_empty() {
                    bail!("node {id:?} still holds blocks: drain it, run repair (or --force)");
                }
            }
            print_entry(&etcd.set_state(&id, NodeState::Removed).await?);
        }
        NodeCommand::SetWeight { id, weight } => print_entry(
            &etcd
                .update(&id, |e| {
                    e.weight = weight;
                    Ok(())
                })
                .await?,
        ),
        NodeCommand::List { json } => {
            let map = etcd.load().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(map.nodes())?);
            } else {
                println!("map revision {}", map.revision);
                map.nodes().iter().for_each(print_entry);
            }
        }
    }
    Ok(())
}

fn print_entry(n: &NodeEntry) {
    println!("{} {} {} weight={}", n.id, n.addr, n.state.name(), n.weight);
}

async fn capacity_of(client: &NodeClient, addr: &str) -> anyhow::Result<u64> {
    let stats = client
        .stats(addr)
        .await
        .with_context(|| format!("asking {addr} for its capacity (or give --weight)"))?;
    match stats["capacity_bytes"].as_u64() {
        Some(c) if c > 0 => Ok(c),
        _ => bail!("{addr}: /stats has no positive capacity_bytes (give --weight)"),
    }
}

async fn serve(
    etcd: Vec<String>,
    prefix: String,
    client: NodeClient,
    args: ServeArgs,
) -> anyhow::Result<()> {
    args.replication.check()?;
    let replicas = args.replication.replicas;
    if !(1..=replicas).contains(&args.write_quorum) {
        bail!(
            "--write-quorum {}: use 1 to --replicas ({replicas})",
            args.write_quorum
        );
    }
    if !prefix.ends_with('/') {
        bail!("the etcd prefix {prefix:?} must end with '/'");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let cell = MapCell::default();
    tokio::spawn(map_watch::run(etcd.clone(), prefix.clone(), cell.clone()));
    let config = GatewayConfig {
        replicas,
        write_quorum: args.write_quorum,
        request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
        max_connections: args.max_connections.max(1),
        auth_token: args.auth_token.clone(),
    };
    let gateway = Gateway::new(config, cell, client);
    let write_quorum = args.write_quorum;
    tracing::info!(listen = %args.listen, ?etcd, %prefix, replicas, write_quorum, "ready");
    gateway.serve(listener, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn repair_command(
    etcd: &mut Membership,
    client: &NodeClient,
    args: RepairArgs,
) -> anyhow::Result<()> {
    args.replication.check()?;
    if args.concurrency == 0 || args.max_bytes_per_sec == Some(0) || args.every == Some(0) {
        bail!("--concurrency, --max-bytes-per-sec and --every must be positive");
    }
    let Some(every) = args.every.map(Duration::from_secs) else {
        return repair_pass(etcd, client, &args).await;
    };
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (mut locker, mut worker) = (etcd.clone(), etcd.clone());
        let pass = repair_pass(&mut worker, client, &args);
        let locked = locker.with_lock("repair", REPAIR_LEASE, every, pass);
        tokio::select! {
            outcome = locked => match outcome {
                Ok(Locked::Done(Ok(()))) => {}
                Ok(Locked::Done(Err(e))) | Err(e) => eprintln!("repair: {e:#}"),
                Ok(Locked::Busy) => eprintln!("repair: another repair holds the lock"),
            },
            _ = &mut shutdown => return Ok(()),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}

/// One repair pass over the current map; an error when it could not finish everything.
async fn repair_pass(
    etcd: &mut Membership,
    client: &NodeClient,
    args: &RepairArgs,
) -> anyhow::Result<()> {
    let map = etcd.load().await?;
    let options = RepairOptions {
        replicas: args.replication.replicas,
        concurrency: args.concurrency,
        max_bytes_per_sec: args.max_bytes_per_sec,
    };
    eprintln!(
        "repair: map revision {}, {} members, R={}",
        map.revision,
        map.members().count(),
        options.replicas
    );
    let started = Instant::now();
    let mut shown = Instant::now();
    let report = repair::repair(&map, client, &options, |r| {
        if shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            eprintln!(
                "repair: {} blocks seen, {} copied ({} bytes), {} extra removed, {} failed",
                r.blocks_seen,
                r.copies_made,
                r.bytes_copied,
                r.extra_copies_removed,
                r.copies_failed
            );
        }
    })
    .await;
    let r = &report;
    println!(
        "blocks_seen={} copies_made={} bytes_copied={} copies_failed={} \
         extra_copies_removed={} under_replicated={} unlisted_nodes={} seconds={:.1}",
        r.blocks_seen,
        r.copies_made,
        r.bytes_copied,
        r.copies_failed,
        r.extra_copies_removed,
        r.under_replicated,
        r.unlisted_nodes.join(","),
        started.elapsed().as_secs_f64()
    );
    if !report.is_clean() {
        bail!("repair incomplete: run it again once the failing nodes answer");
    }
    if !args.no_activate {
        for node in map.nodes().iter().filter(|n| n.state == NodeState::Joining) {
            // Only if still joining: an operator may have drained it while repair ran.
            let now = etcd
                .update(&node.id, |e| {
                    if e.state == NodeState::Joining {
                        e.state = NodeState::Active;
                    }
                    Ok(())
                })
                .await?;
            if now.state == NodeState::Active {
                println!("activated {} (repair filled it)", node.id);
            }
        }
    }
    Ok(())
}
