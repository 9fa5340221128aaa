//! `buddy-blocks`: the content-addressed block server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use server::check::Repair;
use server::config::{self, Raw, ServeConfig};
use server::store::Access;

#[derive(Parser)]
#[command(
    name = "buddy-blocks",
    version,
    about = "Content-addressed block storage server: \
    PUT blocks of up to 512 KiB, GET/HEAD/DELETE them by SHA-256."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (works with no flags in a fresh directory).
    Serve(Box<ServeArgs>),
    /// Offline audit of a data directory: re-hash every block, check the accounting.
    Check(CheckArgs),
}

#[derive(Args, Default)]
struct ServeArgs {
    /// Address to listen on; every worker binds it with SO_REUSEPORT [default: 127.0.0.1:10001]
    #[arg(long)]
    listen: Option<String>,
    /// Directory of the data file and the index [default: ./buddy-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Data file size, e.g. 64MiB, 1GiB; rounded down to a multiple of 512 KiB; a larger value
    /// on a later start grows the file, a smaller one is refused [default: 1GiB]
    #[arg(long)]
    capacity: Option<String>,
    /// Write-ahead log region of a new or upgraded store, e.g. 64MiB: a multiple of 4 KiB, at
    /// least 64 KiB; an existing store keeps its own (another value is refused) [default: 64MiB]
    #[arg(long)]
    log_size: Option<String>,
    /// Worker threads [default: available cores]
    #[arg(long)]
    workers: Option<String>,
    /// full: a write is acknowledged once on stable storage (one fdatasync per batch covers the
    /// blocks and the batch's log record); relaxed: no fsync, survives a process crash only
    /// [default: full]
    #[arg(long)]
    durability: Option<String>,
    /// Check bytes before serving them: crc32c, sha256 or off [default: crc32c]
    #[arg(long)]
    verify_reads: Option<String>,
    /// Bearer token required for PUT and DELETE
    #[arg(long, env = "BUDDY_BLOCKS_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// TOML file with any of these settings (keys use `_` for `-`); flags override it
    #[arg(long)]
    config: Option<PathBuf>,
    /// Reserved slots each worker keeps ready per class
    /// [default: 4k=10,8k=10,16k=10,32k=5,64k=5,128k=3,256k=2,512k=2]
    #[arg(long)]
    pool_target: Option<String>,
    /// Log filter (RUST_LOG syntax; RUST_LOG overrides) [default: info]
    #[arg(long)]
    log_level: Option<String>,
    /// Log format: text or json [default: text]
    #[arg(long)]
    log_format: Option<String>,
    /// Connections per worker; beyond it: 503 and close [default: 4096]
    #[arg(long)]
    max_connections: Option<String>,
    /// Largest request head; beyond it: 431 [default: 16KiB]
    #[arg(long)]
    max_header_bytes: Option<String>,
    /// I/O buffers each worker's requests may hold at once: read buffers of GETs of blocks over
    /// 8 KiB, buffered bodies, upload pieces; beyond it a GET waits (then 503) and an upload
    /// waits, then goes on in small pieces. Bounds the server's memory under many large
    /// requests [default: 4MiB]
    #[arg(long)]
    buffer_memory: Option<String>,
    /// First byte to last byte of a request; beyond it: 408 [default: 10s]
    #[arg(long)]
    request_timeout: Option<String>,
    /// Idle time of a keep-alive connection before it is closed [default: 60s]
    #[arg(long)]
    idle_timeout: Option<String>,
    /// How long shutdown waits for requests in progress [default: 10s]
    #[arg(long)]
    drain_timeout: Option<String>,
    /// How long a flush, the controller or a reply from it may stall before /health answers
    /// 503 and the log says so [default: 3s]
    #[arg(long)]
    stall_limit: Option<String>,
    /// Controller's minimum time between batches [default: 100us]
    #[arg(long)]
    cycle_interval: Option<String>,
    /// Largest size the index (libmdbx map) may grow to [default: 64GiB]
    #[arg(long)]
    map_size: Option<String>,
    /// Background scrub: pause between blocks re-hashed, or off [default: off]
    #[arg(long)]
    scrub_interval: Option<String>,
    /// Print the effective configuration as TOML and exit
    #[arg(long)]
    print_config: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// The data directory to audit (no server may be running on it)
    #[arg(long, default_value = "./buddy-data")]
    data_dir: PathBuf,
    /// Drop index entries whose bytes are corrupt (listing them) and free their slots
    #[arg(long, conflicts_with = "read_only")]
    repair: bool,
    /// Open nothing for writing: audit a read-only copy of a data directory (a snapshot, a
    /// read-only mount). Without it, `check` opens the index read-write and exclusively
    #[arg(long)]
    read_only: bool,
    /// Largest size the index map may have [default: 64GiB]
    #[arg(long, default_value = "64GiB")]
    map_size: String,
}

impl ServeArgs {
    fn raw(&self) -> Raw {
        let mut raw = Raw::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                raw.insert(k.to_string(), v.clone());
            }
        };
        put("listen", &self.listen);
        put(
            "data_dir",
            &self.data_dir.as_ref().map(|p| p.display().to_string()),
        );
        put("capacity", &self.capacity);
        put("log_size", &self.log_size);
        put("workers", &self.workers);
        put("durability", &self.durability);
        put("verify_reads", &self.verify_reads);
        put("auth_token", &self.auth_token);
        put("pool_target", &self.pool_target);
        put("log_level", &self.log_level);
        put("log_format", &self.log_format);
        put("max_connections", &self.max_connections);
        put("max_header_bytes", &self.max_header_bytes);
        put("buffer_memory", &self.buffer_memory);
        put("request_timeout", &self.request_timeout);
        put("idle_timeout", &self.idle_timeout);
        put("drain_timeout", &self.drain_timeout);
        put("stall_limit", &self.stall_limit);
        put("cycle_interval", &self.cycle_interval);
        put("map_size", &self.map_size);
        put("scrub_interval", &self.scrub_interval);
        raw
    }
}

fn init_logging(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},libmdbx=warn")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => config::read_file(path)?,
        None => Raw::new(),
    };
    let config: ServeConfig = config::resolve(&args.raw(), &file)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    init_logging(
        &config.log_level,
        config.log_format == config::LogFormat::Json,
    );
    server::fail_fast::install_hook();
    server::serve::run(config)
}

fn check(args: CheckArgs) -> anyhow::Result<bool> {
    init_logging("warn", false);
    let map_size = config::parse_size(&args.map_size)?;
    let repair = match args.repair {
        true => Repair::DropCorrupt,
        false => Repair::No,
    };
    let access = match args.read_only {
        true => Access::ReadOnly,
        false => Access::ReadWrite,
    };
    let report = server::check::run(&args.data_dir, map_size, repair, access)?;
    println!("data directory: {}", args.data_dir.display());
    println!("capacity_bytes: {}", report.capacity_bytes);
    println!("blocks: {}", report.blocks);
    println!("data_bytes: {}", report.data_bytes);
    println!("used_bytes: {}", report.used_bytes);
    println!(
        "reservations (returned to free at next start): {}",
        report.reservations
    );
    println!(
        "log_pending_records (replayed at the next start): {}",
        report.log_pending_records
    );
    for hash in &report.corrupt {
        println!("corrupt: {hash}");
    }
    for p in &report.problems {
        println!("problem: {p}");
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    if args.repair {
        println!("repaired (index entries dropped): {}", report.repaired);
    }
    let clean = report.is_clean();
    println!("{}", if clean { "OK" } else { "PROBLEMS FOUND" });
    Ok(clean)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args).map(|_| true),
        Command::Check(args) => check(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("buddy-blocks: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
