//! `buddy-blocks serve`: startup, threads, shutdown.
//!
//! Startup (DESIGN.md): open the data directory ([`crate::store`]: refuse a lost, damaged or
//! foreign index or data file; create, upgrade or grow it), open the controller (which returns
//! reservations to free and rebuilds the allocator), then start the controller thread, then the
//! workers (their pools fill through the ordinary refill path). The main thread then runs the
//! watchdog (`watchdog.rs`: /health's verdict) until SIGTERM/SIGINT: workers stop accepting and
//! drain (bounded by the drain timeout), the controller finishes its last batch, libmdbx is
//! closed, exit 0.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use engine::controller::{Controller, ControllerConfig};
use engine::message::Frame;
use engine::meta::MetaStore;
use engine::stats::StatsSnapshot;
use engine::worker::{Worker, WorkerConfig};

use crate::config::ServeConfig;
use crate::control::{self, ControllerLinks};
use crate::ring::{Driver, WorkerLinks};
use crate::shared::Shared;
use crate::store::{self, Opened};
use crate::{datafile, net, watchdog};

/// Frames per queue direction per worker.
pub const QUEUE_FRAMES: usize = 16 * 1024;
/// listen(2) backlog per worker.
const LISTEN_BACKLOG: i32 = 1024;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread spawned after), so that
/// only `wait_for_signal` sees them.
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zeroed set; pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

pub fn run(config: ServeConfig) -> Result<()> {
    let signals = block_signals();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // Before anything in the data directory is created or changed, and again right before
    // the workers bind, to keep the window another process could slip into small; the claim
    // closes it for other buddy-blocks servers (held until the process exits).
    let _claim = net::claim_listen_address(config.listen).map_err(|e| taken(config.listen, e))?;
    refuse_taken_port(config.listen)?;
    crate::sigbus::install(&config.data_dir);
    datafile::sync_before_open(&config.data_dir)?;
    let wanted = store::Wanted {
        capacity_bytes: config.capacity_bytes,
        log_bytes: config.log_bytes,
        map_size_bytes: config.map_size,
    };
    let Opened {
        store,
        data,
        header,
        layout,
        run_id,
    } = store::open_for_serving(&config.data_dir, wanted)?;
    // A growth that an earlier start began (the data file already larger than asked) is
    // finished at the data file's capacity, so the index and the log region agree with it.
    let config = ServeConfig {
        capacity_bytes: layout.capacity_bytes,
        ..config
    };
    let controller = Controller::open(
        store,
        ControllerConfig {
            capacity_bytes: layout.capacity_bytes,
            workers: config.workers,
            cycle_interval: config.cycle_interval,
            durability: config.durability,
            node_id: header.node_id,
            log_sectors: layout.log_sectors(),
            run_id,
            checkpoint_interval: engine::controller::CHECKPOINT_INTERVAL,
            bugs: engine::bugs::Bugs::NONE,
        },
    )
    .map_err(|e| anyhow::anyhow!("opening {}: {e}", config.data_dir.display()))?;
    // One index view per worker, made before the store moves to the controller thread.
    let views = (0..config.workers)
        .map(|_| controller.store().view())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("opening the workers' index views: {e}"))?;
    let stats = controller.stats();
    tracing::info!(
        version = VERSION,
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        capacity_bytes = config.capacity_bytes,
        durability = config.durability.as_str(),
        verify_reads = config.verify_reads.as_str(),
        workers = config.workers,
        blocks = stats.blocks,
        auth = config.auth_token.is_some(),
        "buddy-blocks starting"
    );
    let template = StatsSnapshot {
        version: VERSION,
        durability: config.durability.as_str(),
        verify_reads: config.verify_reads.as_str(),
        controller: stats,
        workers: vec![Default::default(); config.workers],
        ..Default::default()
    };
    let shared = Arc::new(Shared::new(
        config.workers,
        config.drain_timeout,
        template.clone(),
    ));
    let (controller_links, worker_halves) = make_queues(config.workers)?;
    let wakes: Vec<Arc<OwnedFd>> = controller_links
        .iter()
        .map(|l| Arc::clone(&l.wake))
        .collect();
    let data_fd = data.as_raw_fd();
    let direct_file =
        crate::direct_write::open(&data).context("opening the data file for direct writes")?;
    refuse_taken_port(config.listen)?;
    let listeners = (0..config.workers)
        .map(|_| net::listener(config.listen, LISTEN_BACKLOG))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("listening on {}", config.listen))?;
    let scrub = config.scrub_interval.map(control::Scrub::new);
    let controller_thread = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("controller".into())
            .spawn(move || {
                control::run(
                    controller,
                    controller_links,
                    data,
                    layout,
                    shared,
                    template,
                    scrub,
                )
            })?
    };
    let mut workers = Vec::new();
    for (id, (((to_controller, from_controller, wake), listener), view)) in worker_halves
        .into_iter()
        .zip(listeners)
        .zip(views)
        .enumerate()
    {
        let links = WorkerLinks {
            to_controller,
            from_controller,
            wake,
            controller: controller_thread.thread().clone(),
        };
        let worker = Worker::new(worker_config(&config, id as u8));
        let shared = Arc::clone(&shared);
        let direct_file = direct_file.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                let result = Driver::new(
                    worker,
                    view,
                    links,
                    listener,
                    data_fd,
                    direct_file.clone(),
                    Arc::clone(&shared),
                )
                .and_then(Driver::run);
                if let Err(e) = &result {
                    tracing::error!(worker = id, "worker stopped: {e:#}");
                }
                shared.workers_running.fetch_sub(1, Ordering::AcqRel);
                result
            })?;
        workers.push(handle);
    }
    tracing::info!(listen = %config.listen, "ready");
    let sig = watchdog::run_until_signal(&signals, &shared, config.stall_limit, &config.data_dir);
    tracing::info!(signal = sig, "shutting down: draining requests in progress");
    shared.shutdown.store(true, Ordering::Release);
    control::wake_all(&wakes);
    let mut failed = false;
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            _ => failed = true,
        }
    }
    controller_thread.thread().unpark();
    let controller = controller_thread
        .join()
        .map_err(|_| anyhow::anyhow!("controller panicked"))?;
    let failure = controller.failure().map(str::to_string);
    drop(controller);
    tracing::info!("index closed; bye");
    if let Some(f) = failure {
        bail!("the controller latched a storage error: {f}");
    }
    if failed {
        bail!("a worker stopped with an error");
    }
    Ok(())
}

fn refuse_taken_port(listen: std::net::SocketAddr) -> Result<()> {
    net::refuse_taken_port(listen).map_err(|e| taken(listen, e))
}

/// The refusal of a listen address another process holds (or any other error binding it).
fn taken(listen: std::net::SocketAddr, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "{listen} is already in use by another process (another buddy-blocks server?): \
             refusing to share it, since requests would alternate between two stores; stop \
             that process or choose another --listen"
        ),
        _ => anyhow::anyhow!("listening on {listen}: {e}"),
    }
}

type WorkerHalf = (rtrb::Producer<Frame>, rtrb::Consumer<Frame>, Arc<OwnedFd>);

fn make_queues(workers: usize) -> Result<(Vec<ControllerLinks>, Vec<WorkerHalf>)> {
    let mut controller_side = Vec::new();
    let mut worker_side = Vec::new();
    for _ in 0..workers {
        let (to_c, from_w) = rtrb::RingBuffer::<Frame>::new(QUEUE_FRAMES);
        let (to_w, from_c) = rtrb::RingBuffer::<Frame>::new(QUEUE_FRAMES);
        let wake = Arc::new(net::eventfd().context("creating an eventfd")?);
        controller_side.push(ControllerLinks {
            from_worker: from_w,
            to_worker: to_w,
            wake: Arc::clone(&wake),
        });
        worker_side.push((to_c, from_c, wake));
    }
    Ok((controller_side, worker_side))
}

fn worker_config(config: &ServeConfig, id: u8) -> WorkerConfig {
    let mut w = WorkerConfig::new(id);
    w.max_connections = config.max_connections;
    w.max_header_bytes = config.max_header_bytes;
    w.buffer_budget_bytes = config.buffer_memory;
    w.request_timeout = config.request_timeout;
    w.idle_timeout = config.idle_timeout;
    w.slot_wait_limit = config
        .request_timeout
        .min(std::time::Duration::from_secs(5));
    w.verify_reads = config.verify_reads;
    w.stall_limit = config.stall_limit;
    w.auth_token = config.auth_token.as_ref().map(|t| t.as_bytes().to_vec());
    w.pool_targets = config.pool_target;
    w.pool_bytes_max = engine::worker::pool_bytes_max(config.capacity_bytes, config.workers);
    w
}
