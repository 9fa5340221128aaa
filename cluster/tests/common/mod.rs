//! Real processes on loopback for the cluster tests: an etcd, `buddy-blocks` nodes, a
//! `buddy-cluster` gateway and CLI, plus a small blocking HTTP/1.1 client.
//!
//! Every process gets free 127.0.0.1 ports and a temporary directory, and is killed when its
//! handle drops, so tests run in parallel. Every wait has a deadline.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const CLUSTER_BIN: &str = env!("CARGO_BIN_EXE_buddy-cluster");
/// How long any single answer or start-up may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);
/// Node capacity: small, so a data file is quick to create.
pub const NODE_CAPACITY: &str = "64MiB";
pub const NODE_CAPACITY_BYTES: u64 = 64 << 20;

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port nobody in this test process got before (nodes bind with SO_REUSEPORT).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding port 0")
            .port();
        let mut ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if ports.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes (xorshift64*), `len` of them.
pub fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

// -----------------------------------------------------------------------------------------
// The node binary.

static BUILD: Mutex<()> = Mutex::new(());

/// `buddy-blocks` next to this test's target directory; built once if missing (so that
/// `cargo test -p cluster` works alone).
pub fn node_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/cluster-xxxx -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("buddy-blocks");
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "server",
            "--bin",
            "buddy-blocks",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for buddy-blocks");
        assert!(status.success(), "building buddy-blocks failed");
    }
    assert!(bin.exists(), "no buddy-blocks at {}", bin.display());
    bin
}

// -----------------------------------------------------------------------------------------
// Processes.

/// A child process killed (SIGKILL) and reaped on drop, its stderr in a log file.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (through kill(1): no libc in this crate).
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for the process to exit by itself within `within`; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {within:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("running");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("{} exited ({status}); log:\n{}", self.name, self.log_text());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: String = log
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            eprintln!("---- {} log (tail) ----\n{tail}", self.name);
        }
    }
}

/// Waits until `ready` says yes, failing after `WAIT` (with `proc`'s log).
fn wait_until(proc: &mut Proc, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready() {
        proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "{what} not ready; log:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Etcd {
    pub proc: Proc,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("buddy-cluster-etcd")
            .tempdir()
            .expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg("t")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&url)
            .arg("--advertise-client-urls")
            .arg(&url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("t={peer_url}"))
            .env_remove("ETCD_UNSUPPORTED_ARCH");
        let mut proc = Proc::spawn("etcd", cmd, dir.path().join("etcd.log"));
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse().unwrap();
        wait_until(&mut proc, "etcd", || {
            Http::connect(addr).ok().is_some_and(|mut h| {
                h.try_request("GET", "/health", &[])
                    .is_ok_and(|r| r.text().contains("true"))
            })
        });
        Etcd {
            proc,
            url,
            _dir: dir,
        }
    }
}

pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn start(id: &str) -> Node {
        Node::start_with(id, &[])
    }

    /// A node with extra `buddy-blocks serve` flags.
    pub fn start_with(id: &str, extra: &[&str]) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("buddy-cluster-node")
            .tempdir()
            .expect("tempdir");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(node_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--capacity",
                NODE_CAPACITY,
                "--workers",
                "1",
                "--map-size",
                "256MiB",
            ])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("BUDDY_BLOCKS_AUTH_TOKEN");
        let mut proc = Proc::spawn(id, cmd, dir.path().join("node.log"));
        wait_until(&mut proc, id, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Node {
            id: id.to_string(),
            addr,
            proc,
            _dir: dir,
        }
    }

    pub fn http(&self) -> Http {
        Http::connect(self.addr).expect("connecting to a node")
    }

    /// Every (hash, length) the node lists.
    pub fn list_all(&self) -> Vec<(String, u64)> {
        let mut http = self.http();
        let (mut out, mut after) = (Vec::new(), String::new());
        loop {
            let path = if after.is_empty() {
                "/blocks?limit=10000".to_string()
            } else {
                format!("/blocks?after={after}&limit=10000")
            };
            let r = http.request("GET", &path, &[]).expect(200);
            let page = parse_listing(&r.text());
            match page.last() {
                Some(last) => after = last.0.clone(),
                None => return out,
            }
            out.extend(page);
        }
    }
}

pub fn parse_listing(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .map(|l| {
            let (h, n) = l.split_once(' ').expect("listing line");
            (h.to_string(), n.parse().expect("listing length"))
        })
        .collect()
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts `buddy-cluster serve` and waits until its /health says it takes writes.
    pub fn start(etcd: &Etcd, prefix: &str) -> Gateway {
        Gateway::start_with(etcd, prefix, &[])
    }

    /// A gateway with extra flags (global ones first, e.g. `--node-auth-token`, are fine too).
    pub fn start_with(etcd: &Etcd, prefix: &str, extra: &[&str]) -> Gateway {
        let dir = tempfile::Builder::new()
            .prefix("buddy-cluster-gw")
            .tempdir()
            .expect("tempdir");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(CLUSTER_BIN);
        cmd.args([
            "--etcd",
            &etcd.url,
            "--prefix",
            prefix,
            "serve",
            "--threads",
            "2",
        ])
        .arg("--listen")
        .arg(addr.to_string())
        .args(["--node-timeout-ms", "3000"])
        .args(extra);
        let mut proc = Proc::spawn("gateway", cmd, dir.path().join("gateway.log"));
        wait_until(&mut proc, "gateway", || {
            Http::connect(addr).ok().is_some_and(|mut h| {
                h.try_request("GET", "/health", &[])
                    .is_ok_and(|r| r.status == 200)
            })
        });
        Gateway {
            addr,
            proc,
            _dir: dir,
        }
    }

    pub fn http(&self) -> Http {
        Http::connect(self.addr).expect("connecting to the gateway")
    }
}

/// Starts `buddy-cluster repair --every 1` (a background repair loop) as a process.
pub fn repair_loop(etcd: &Etcd, prefix: &str, name: &str, dir: &Path) -> Proc {
    let mut cmd = Command::new(CLUSTER_BIN);
    cmd.args([
        "--etcd", &etcd.url, "--prefix", prefix, "repair", "--every", "1",
    ]);
    Proc::spawn(name, cmd, dir.join(format!("{name}.log")))
}

/// Waits up to `within` for `done`, failing with `what`.
#[track_caller]
pub fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the `buddy-cluster` CLI against `etcd`; returns its output (any exit status).
pub fn cli(etcd: &Etcd, prefix: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(CLUSTER_BIN);
    cmd.args(["--etcd", &etcd.url, "--prefix", prefix])
        .args(args);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning buddy-cluster");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut child = child;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("buddy-cluster {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the CLI and fails the test unless it succeeds; returns stdout.
#[track_caller]
pub fn cli_ok(etcd: &Etcd, prefix: &str, args: &[&str]) -> String {
    let out = cli(etcd, prefix, args);
    assert!(
        out.status.success(),
        "buddy-cluster {args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Registers nodes as active members.
pub fn add_active(etcd: &Etcd, prefix: &str, nodes: &[&Node]) {
    for n in nodes {
        let weight = NODE_CAPACITY_BYTES.to_string();
        cli_ok(
            etcd,
            prefix,
            &[
                "node",
                "add",
                &n.id,
                &n.addr.to_string(),
                "--weight",
                &weight,
                "--active",
            ],
        );
    }
}

// -----------------------------------------------------------------------------------------
// A blocking HTTP/1.1 client (keep-alive, Content-Length bodies only).

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Response {
        assert_eq!(self.status, status, "unexpected answer: {:?}", self.text());
        self
    }
}

pub struct Http {
    reader: BufReader<TcpStream>,
}

impl Http {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
        stream.set_nodelay(true)?;
        Ok(Http {
            reader: BufReader::new(stream),
        })
    }

    #[track_caller]
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Response {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A request with extra headers (`Content-Length` is added unless given).
    #[track_caller]
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        self.send(method, path, &extra, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<Response> {
        self.send(method, path, "", body)
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        extra: &str,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let length = if extra.to_ascii_lowercase().contains("content-length") {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}{length}\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        self.read_response(method == "HEAD")
    }

    fn read_response(&mut self, head: bool) -> std::io::Result<Response> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| bad("header"))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = r
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap_or(0));
        if r.header("transfer-encoding").is_some() {
            return Err(bad("chunked answers are not expected"));
        }
        let mut body = vec![
            0u8;
            if head || status == 204 || status == 304 {
                0
            } else {
                len
            }
        ];
        self.reader.read_exact(&mut body)?;
        Ok(Response { body, ..r })
    }
}
