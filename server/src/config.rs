//! Configuration: command-line flags over a TOML file over embedded defaults.
//!
//! Every setting has one name. On the command line it is `--name-with-dashes`; in the TOML file
//! it is `name_with_underscores` (SPEC). Values are parsed by the same functions from either
//! source, so `capacity = "1GiB"` and `--capacity 1GiB` mean the same.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use engine::controller::{Durability, CYCLE_INTERVAL_DEFAULT};
use engine::pool::{POOL_TARGET_DEFAULT, POOL_TARGET_MAX};
use engine::size_class::{SizeClass, CLASS_COUNT, SLOT_MAX_BYTES};
use engine::worker::{VerifyReads, BUFFER_BUDGET_MIN_BYTES};

/// The effective configuration of `serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub capacity_bytes: u64,
    /// The write-ahead log's region of a new (or upgraded) store; whole 4 KiB sectors.
    pub log_bytes: u64,
    pub workers: usize,
    pub durability: Durability,
    pub verify_reads: VerifyReads,
    pub auth_token: Option<String>,
    pub pool_target: [u16; CLASS_COUNT],
    pub log_level: String,
    pub log_format: LogFormat,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub buffer_memory: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub stall_limit: Duration,
    pub cycle_interval: Duration,
    pub map_size: u64,
    pub scrub_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every key, its default (as text) and its help line: the single source for flags, file keys,
/// `--print-config` and the README table.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "listen",
        "127.0.0.1:10001",
        "address to listen on (every worker binds it, SO_REUSEPORT)",
    ),
    (
        "data_dir",
        "./buddy-data",
        "directory of the data file and the index",
    ),
    (
        "capacity",
        "1GiB",
        "data file size; rounded down to a multiple of 512 KiB",
    ),
    (
        "log_size",
        "64MiB",
        "write-ahead log region of a new or upgraded store (multiple of 4 KiB, at least \
         64 KiB); an existing store keeps its own",
    ),
    (
        "workers",
        "<cores>",
        "worker threads (default: available cores)",
    ),
    (
        "durability",
        "full",
        "full: fsync before acknowledging; relaxed: survive process crash",
    ),
    (
        "verify_reads",
        "crc32c",
        "check bytes before serving: crc32c, sha256 or off",
    ),
    (
        "auth_token",
        "",
        "bearer token required for PUT and DELETE (empty: none)",
    ),
    (
        "pool_target",
        "4k=10,8k=10,16k=10,32k=5,64k=5,128k=3,256k=2,512k=2",
        "reserved slots each worker keeps ready, per class",
    ),
    (
        "log_level",
        "info",
        "tracing filter (RUST_LOG syntax; RUST_LOG overrides)",
    ),
    ("log_format", "text", "text or json"),
    (
        "max_connections",
        "4096",
        "connections per worker; beyond: 503 and close",
    ),
    (
        "max_header_bytes",
        "16KiB",
        "largest request head; beyond: 431",
    ),
    (
        "buffer_memory",
        "4MiB",
        "I/O buffers each worker's requests may hold at once (GETs of blocks over 8 KiB, \
         uploads); beyond it they wait, uploads then go on in small pieces",
    ),
    (
        "request_timeout",
        "10s",
        "first byte to last byte of a request; beyond: 408",
    ),
    (
        "idle_timeout",
        "60s",
        "keep-alive connection idle time before closing",
    ),
    (
        "drain_timeout",
        "10s",
        "how long shutdown waits for requests in progress",
    ),
    (
        "stall_limit",
        "3s",
        "how long storage may stall (a flush, the controller, a reply) before /health says 503",
    ),
    (
        "cycle_interval",
        "100us",
        "controller's minimum time between batches",
    ),
    (
        "map_size",
        "64GiB",
        "largest size the index (libmdbx map) may grow to",
    ),
    (
        "scrub_interval",
        "off",
        "background scrub: pause between blocks re-hashed, or off",
    ),
];

/// Raw settings from one source: key -> text value.
pub type Raw = BTreeMap<String, String>;

/// Reads a TOML config file into raw settings, rejecting unknown keys.
pub fn read_file(path: &std::path::Path) -> Result<Raw> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    let mut raw = Raw::new();
    for (key, value) in table {
        if !SETTINGS.iter().any(|(k, _, _)| *k == key) {
            bail!("config file {}: unknown key `{key}`", path.display());
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Table(t) if key == "pool_target" => t
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                .collect::<Vec<_>>()
                .join(","),
            other => bail!(
                "config file {}: `{key}` has an unsupported value {other}",
                path.display()
            ),
        };
        raw.insert(key, text);
    }
    Ok(raw)
}

/// Builds the effective configuration: `flags` over `file` over defaults.
pub fn resolve(flags: &Raw, file: &Raw) -> Result<ServeConfig> {
    let get = |key: &str| -> Option<&str> {
        flags.get(key).or_else(|| file.get(key)).map(String::as_str)
    };
    let text = |key: &str| -> &str {
        get(key).unwrap_or_else(|| {
            SETTINGS
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, d, _)| *d)
                .expect("known key")
        })
    };
    let ctx = |key: &'static str| move || format!("invalid value for {key}");
    let workers = match get("workers") {
        Some(w) => w
            .parse::<usize>()
            .ok()
            .filter(|&n| (1..=64).contains(&n))
            .ok_or_else(|| anyhow!("workers must be 1..=64, got {w}"))?,
        None => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(64),
    };
    let capacity = parse_size(text("capacity")).with_context(ctx("capacity"))?;
    let capacity_bytes = capacity - capacity % SLOT_MAX_BYTES;
    if capacity_bytes < SLOT_MAX_BYTES {
        bail!("capacity must be at least 512KiB, got {}", text("capacity"));
    }
    let log_bytes = parse_size(text("log_size")).with_context(ctx("log_size"))?;
    if !crate::trailer::log_bytes_valid(log_bytes) {
        bail!(
            "log_size must be a multiple of 4KiB and at least {}KiB, got {}",
            engine::wal::LOG_SECTORS_MIN * 4,
            text("log_size")
        );
    }
    let auth_token = get("auth_token")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let scrub_interval = match text("scrub_interval") {
        "off" | "" | "0" => None,
        s => Some(parse_duration(s).with_context(ctx("scrub_interval"))?),
    };
    let config = ServeConfig {
        listen: text("listen").parse().with_context(ctx("listen"))?,
        data_dir: PathBuf::from(text("data_dir")),
        capacity_bytes,
        log_bytes,
        workers,
        durability: parse_durability(text("durability"))?,
        verify_reads: parse_verify_reads(text("verify_reads"))?,
        auth_token,
        pool_target: parse_pool_target(text("pool_target"))?,
        log_level: text("log_level").to_string(),
        log_format: match text("log_format") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log_format must be text or json, got {other}"),
        },
        max_connections: parse_count(text("max_connections"), 1, 1 << 20)
            .with_context(ctx("max_connections"))?,
        max_header_bytes: parse_size(text("max_header_bytes"))
            .ok()
            .filter(|&n| (1024..=1 << 20).contains(&n))
            .ok_or_else(|| anyhow!("max_header_bytes must be 1KiB..=1MiB"))?
            as usize,
        buffer_memory: parse_size(text("buffer_memory"))
            .ok()
            .filter(|&n| (BUFFER_BUDGET_MIN_BYTES as u64..=1 << 40).contains(&n))
            .ok_or_else(|| anyhow!("buffer_memory must be at least 1MiB"))?
            as usize,
        request_timeout: parse_duration(text("request_timeout"))
            .with_context(ctx("request_timeout"))?,
        idle_timeout: parse_duration(text("idle_timeout")).with_context(ctx("idle_timeout"))?,
        drain_timeout: parse_duration(text("drain_timeout")).with_context(ctx("drain_timeout"))?,
        stall_limit: parse_duration(text("stall_limit")).with_context(ctx("stall_limit"))?,
        cycle_interval: parse_duration(text("cycle_interval"))
            .with_context(ctx("cycle_interval"))?,
        map_size: parse_size(text("map_size")).with_context(ctx("map_size"))?,
        scrub_interval,
    };
    if config.request_timeout.is_zero()
        || config.idle_timeout.is_zero()
        || config.stall_limit.is_zero()
    {
        bail!("timeouts must be positive");
    }
    let _ = CYCLE_INTERVAL_DEFAULT;
    Ok(config)
}

impl ServeConfig {
    /// The effective configuration as TOML (for `--print-config`).
    pub fn to_toml(&self) -> String {
        let pool: Vec<String> = SizeClass::ALL
            .iter()
            .map(|c| format!("{}={}", c.label(), self.pool_target[c.index()]))
            .collect();
        let scrub = self
            .scrub_interval
            .map_or("off".to_string(), format_duration);
        format!(
            "listen = \"{}\"\ndata_dir = \"{}\"\ncapacity = \"{}\"\nlog_size = {}\nworkers = {}\n\
             durability = \"{}\"\nverify_reads = \"{}\"\nauth_token = \"{}\"\n\
             pool_target = \"{}\"\nlog_level = \"{}\"\nlog_format = \"{}\"\n\
             max_connections = {}\nmax_header_bytes = {}\nbuffer_memory = {}\n\
             request_timeout = \"{}\"\n\
             idle_timeout = \"{}\"\ndrain_timeout = \"{}\"\nstall_limit = \"{}\"\ncycle_interval = \"{}\"\n\
             map_size = {}\nscrub_interval = \"{}\"\n",
            self.listen,
            self.data_dir.display(),
            self.capacity_bytes,
            self.log_bytes,
            self.workers,
            self.durability.as_str(),
            self.verify_reads.as_str(),
            if self.auth_token.is_some() {
                "<set>"
            } else {
                ""
            },
            pool.join(","),
            self.log_level,
            if self.log_format == LogFormat::Json {
                "json"
            } else {
                "text"
            },
            self.max_connections,
            self.max_header_bytes,
            self.buffer_memory,
            format_duration(self.request_timeout),
            format_duration(self.idle_timeout),
            format_duration(self.drain_timeout),
            format_duration(self.stall_limit),
            format_duration(self.cycle_interval),
            self.map_size,
            scrub,
        )
    }
}

pub fn parse_durability(s: &str) -> Result<Durability> {
    match s {
        "full" => Ok(Durability::Full),
        "relaxed" => Ok(Durability::Relaxed),
        other => bail!("durability must be full or relaxed, got {other}"),
    }
}

pub fn parse_verify_reads(s: &str) -> Result<VerifyReads> {
    match s {
        "crc32c" => Ok(VerifyReads::Crc32c),
        "sha256" => Ok(VerifyReads::Sha256),
        "off" => Ok(VerifyReads::Off),
        other => bail!("verify_reads must be crc32c, sha256 or off, got {other}"),
    }
}

fn parse_count(s: &str, min: usize, max: usize) -> Result<usize> {
    let n: usize = s.trim().parse().map_err(|_| anyhow!("not a number: {s}"))?;
    if n < min || n > max {
        bail!("{n} is outside {min}..={max}");
    }
    Ok(n)
}

/// Sizes: `4096`, `64k`, `64KiB`, `1M`, `1MiB`, `1GiB`, `1T` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| anyhow!("not a size: {s}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => bail!("unknown size unit `{other}` in {s}"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("size overflows: {s}"))
}

/// Durations: `100us`, `5ms`, `10s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| anyhow!("not a duration: {s}"))?;
    Ok(match unit.trim() {
        "ns" => Duration::from_nanos(n),
        "us" | "µs" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => bail!("unknown duration unit `{other}` in {s}"),
    })
}

fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1000) {
        format!("{}us", ns / 1000)
    } else {
        format!("{ns}ns")
    }
}

/// `4k=10,8k=10,...`: classes not named keep their defaults.
pub fn parse_pool_target(s: &str) -> Result<[u16; CLASS_COUNT]> {
    let mut out = POOL_TARGET_DEFAULT;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            anyhow!(
                "pool_target entry `{part}` \
            is not class=count"
            )
        })?;
        let class = SizeClass::from_label(k)
            .ok_or_else(|| anyhow!("pool_target: unknown class `{k}` (4k..512k)"))?;
        let n: u16 = v
            .trim()
            .parse()
            .map_err(|_| anyhow!("pool_target: bad count `{v}`"))?;
        if n > POOL_TARGET_MAX {
            bail!("pool_target: {n} is over the maximum {POOL_TARGET_MAX}");
        }
        out[class.index()] = n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let mut file = Raw::new();
        file.insert("capacity".into(), "64MiB".into());
        file.insert("workers".into(), "3".into());
        let mut flags = Raw::new();
        flags.insert("workers".into(), "2".into());
        let c = resolve(&flags, &file).unwrap();
        assert_eq!(c.capacity_bytes, 64 << 20);
        assert_eq!(c.workers, 2);
        assert_eq!(c.listen.to_string(), "127.0.0.1:10001");
        assert_eq!(c.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn sizes_durations_pools_parse() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12XB").is_err());
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        let p = parse_pool_target("4k=1,512KiB=7").unwrap();
        assert_eq!(p[0], 1);
        assert_eq!(p[7], 7);
        assert_eq!(p[1], POOL_TARGET_DEFAULT[1]);
        assert!(parse_pool_target("3k=1").is_err());
    }

    #[test]
    fn capacity_rounds_down_and_has_a_floor() {
        let mut flags = Raw::new();
        flags.insert("capacity".into(), "1000000".into());
        assert_eq!(
            resolve(&flags, &Raw::new()).unwrap().capacity_bytes,
            524_288
        );
        flags.insert("capacity".into(), "1000".into());
        assert!(resolve(&flags, &Raw::new()).is_err());
    }

    #[test]
    fn log_size_has_a_default_and_whole_sectors_and_a_floor() {
        let none = Raw::new();
        assert_eq!(resolve(&none, &none).unwrap().log_bytes, 64 << 20);
        let mut flags = Raw::new();
        flags.insert("log_size".into(), "1GiB".into());
        let c = resolve(&flags, &none).unwrap();
        assert_eq!(c.log_bytes, 1 << 30);
        assert!(c.to_toml().contains("log_size = 1073741824"));
        for bad in ["60KiB", "65537", "0"] {
            flags.insert("log_size".into(), bad.into());
            let e = resolve(&flags, &none).unwrap_err().to_string();
            assert!(
                e.contains("log_size must be a multiple of 4KiB"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn buffer_memory_has_a_default_and_a_floor() {
        let none = Raw::new();
        assert_eq!(resolve(&none, &none).unwrap().buffer_memory, 4 << 20);
        let mut flags = Raw::new();
        flags.insert("buffer_memory".into(), "16MiB".into());
        let c = resolve(&flags, &none).unwrap();
        assert_eq!(c.buffer_memory, 16 << 20);
        assert!(c.to_toml().contains("buffer_memory = 16777216"));
        flags.insert("buffer_memory".into(), "512KiB".into());
        let e = resolve(&flags, &none).unwrap_err().to_string();
        assert!(e.contains("buffer_memory must be at least 1MiB"), "{e}");
    }
}
