//! buddy-bench's command line (clap): target, mix, sizes, connections, duration, output.

use benches::body::BodyMode;
use benches::spec::Target;
use clap::Parser;

pub(crate) const ABOUT: &str = "HTTP load generator for buddy-blocks (and any WebDAV file server)";

pub(crate) const LONG_ABOUT: &str = "\
HTTP load generator for buddy-blocks (and any WebDAV file server, so the same client measures \
buddy-blocks and its peer).

Each connection is one OS thread with a blocking keep-alive TCP connection: it sends a request, \
reads the whole response, checks it and sends the next (one request in flight per connection). \
Every PUT carries a body no earlier PUT of the run carried (dedup cannot help); every returned \
hash and every GET/HEAD answer is verified (status, length, SHA-256 of the bytes). Latency is \
measured from the first byte written to the last byte read.

Phases: connect, preload (PUT --preload blocks that GET/HEAD/DELETE then use; not measured), \
warm-up (--warmup; not measured), then the measured part (--duration, or --requests). The \
report gives req/s, MB/s (body bytes moved), p50/p90/p99/p99.9/max latency per operation and \
overall, errors, the client's own CPU time (getrusage) and, with --server-pid, the server's CPU \
time (/proc/PID/stat) and RSS, plus the whole machine's busy cores (/proc/stat) so that load \
from other processes shows.

Targets:
  buddy   PUT /block (expects 201 and the 64-hex SHA-256 as body), GET|HEAD|DELETE /block/<hash>
  webdav  PUT|GET|HEAD|DELETE <url-prefix>/<hash> (PUT expects 201 or 204; DELETE 204 or 200)

Examples:
  buddy-bench --url http://127.0.0.1:10001 --mix put --size 4k -c 64 --duration 5s
  buddy-bench --mix get=90,put=10 --size mixed -c 16 --json --server-pid $(pidof buddy-blocks)
  buddy-bench --target webdav --url http://127.0.0.1:8080 --mix get --size 512k -c 1

Exit status: 0 when every request succeeded, 2 when any failed or failed verification, 1 on a \
usage or setup error.";

#[derive(Parser, Debug)]
#[command(name = "buddy-bench", version, about = ABOUT, long_about = LONG_ABOUT)]
pub(crate) struct Args {
    /// Server base URL: http://HOST:PORT[/PREFIX] (the prefix is used by --target webdav).
    #[arg(long, default_value = "http://127.0.0.1:10001")]
    pub(crate) url: String,

    /// Request shapes: `buddy` (/block, /block/<hash>) or `webdav` (/<hash> under the URL).
    #[arg(long, value_enum, default_value_t = Target::Buddy)]
    pub(crate) target: Target,

    /// Operations: `put`, `get`, `head`, `delete`, or weights such as `get=90,put=10`.
    #[arg(long, default_value = "put")]
    pub(crate) mix: String,

    /// Block sizes: `4k`, `64k`, `512k`, any byte count up to 512k (`1000`, `12k`), `mixed`
    /// (4k=70,64k=20,512k=10) or weights such as `4k=50,512k=50`.
    #[arg(long, default_value = "4k")]
    pub(crate) size: String,

    /// Keep-alive connections, one thread each.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub(crate) connections: usize,

    /// Length of the measured part (`5s`, `500ms`, `1m`); ignored when --requests is given.
    #[arg(short = 'd', long, default_value = "5s")]
    pub(crate) duration: String,

    /// Measure exactly this many requests (shared by all connections) instead of a duration.
    #[arg(short = 'n', long)]
    pub(crate) requests: Option<u64>,

    /// Unmeasured load before the measured part (`1s`, `0s`).
    #[arg(short = 'w', long, default_value = "1s")]
    pub(crate) warmup: String,

    /// Blocks to PUT before the run for GET/HEAD/DELETE to use (not measured). Default: 1000
    /// when the mix has get, head or delete, else 0. With both reads and deletes in the mix, half
    /// are read and half are deleted; a connection with nothing left to delete PUTs instead.
    #[arg(long)]
    pub(crate) preload: Option<usize>,

    /// Connections used by the preload (its own, closed before the run). Default: the larger of
    /// --connections and 16, so a 1-connection GET run does not wait for 1000 sequential
    /// durable PUTs.
    #[arg(long)]
    pub(crate) preload_connections: Option<usize>,

    /// PUT bodies: `unique-tail` (a random run-wide prefix plus a unique random tail of 16..79
    /// bytes, so the client hashes only the tail from a cached SHA-256 midstate and checks GET
    /// bodies with a memcmp: cheap on the shared cores) or `random` (every byte fresh from the
    /// PRNG and hashed in full: heavier on the client).
    #[arg(long, value_enum, default_value_t = BodyMode::UniqueTail)]
    pub(crate) body: BodyMode,

    /// PRNG seed (bodies, op and size choice). Default: from the clock, so reruns against the same
    /// store do not repeat bodies.
    #[arg(long)]
    pub(crate) seed: Option<u64>,

    /// PIDs of the server's processes (comma separated, e.g. nginx's workers) whose CPU time and
    /// RSS to report.
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,

    /// Print one JSON object (one line) on stdout; the human summary goes to stderr.
    #[arg(long)]
    pub(crate) json: bool,

    /// Extra KEY=VALUE fields copied into the JSON object (repeatable), e.g. `--tag server=nginx`.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub(crate) tags: Vec<String>,

    /// Per-request socket timeout: a response slower than this counts as an error.
    #[arg(long, default_value = "30s")]
    pub(crate) timeout: String,
}
