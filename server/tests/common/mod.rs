//! Shared helpers for the black-box tests: start the real `buddy-blocks` binary on a free
//! 127.0.0.1 port with a temporary data directory, talk raw HTTP/1.1 to it, generate
//! deterministic bodies, and read /stats.
//!
//! Every test starts its own server, so tests run in parallel.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_buddy-blocks");
pub const BLOCK_MAX: usize = 512 * 1024;
/// How long a client waits for any single answer before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

// -----------------------------------------------------------------------------------------
// Ports.

/// Ports handed out in this test process. The server binds with SO_REUSEPORT, so two servers
/// on one port would silently share connections: never hand the same port out twice.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

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

// -----------------------------------------------------------------------------------------
// Bodies and hashes.

/// xorshift64*: deterministic bytes without OS randomness.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` deterministic pseudo-random bytes for `seed`.
pub fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Rng::new(seed).fill(&mut out);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Slot bytes a block of `len` bytes occupies: the smallest power of two >= 4 KiB holding it.
pub fn slot_bytes(len: usize) -> u64 {
    (len.max(4096) as u64).next_power_of_two()
}

// -----------------------------------------------------------------------------------------
// Responses.

#[derive(Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    /// The body is shown only in part: assertion messages stay readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(120)];
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body_start", &String::from_utf8_lossy(shown))
            .finish()
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The response announces that the server closes the connection after it.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Response {
        assert_eq!(
            self.status,
            status,
            "unexpected response: {} {:?}",
            self.status,
            self.text()
        );
        self
    }
}

// -----------------------------------------------------------------------------------------
// A raw HTTP/1.1 client connection.

pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    /// Writes raw bytes.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("sending to the server");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response; `head_request` when it answers a HEAD (no body follows).
    #[track_caller]
    pub fn read_response(&mut self, head_request: bool) -> Response {
        match self.try_read_response(head_request) {
            Ok(r) => r,
            Err(e) => panic!(
                "reading a response: {e} (buffered: {:?})",
                self.buffered_text()
            ),
        }
    }

    fn buffered_text(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)]).into_owned()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn fill_exact(&mut self, want: usize) -> io::Result<()> {
        while self.buf.len() < want {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed mid-response",
                ));
            }
        }
        Ok(())
    }

    pub fn try_read_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let response = self.read_one(head_request)?;
            if response.status != 100 {
                return Ok(response);
            }
        }
    }

    fn read_one(&mut self, head_request: bool) -> io::Result<Response> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    if self.buf.is_empty() {
                        "closed before a response"
                    } else {
                        "closed mid-head"
                    },
                ));
            }
        };
        let head = String::from_utf8(self.buf[..head_end - 4].to_vec())
            .map_err(|_| bad("response head is not UTF-8".into()))?;
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header {line:?}")))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut response = Response {
            version,
            status,
            headers,
            body: Vec::new(),
        };
        let no_body =
            head_request || (100..200).contains(&status) || status == 204 || status == 304;
        if no_body {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            response.body = self.read_chunked()?;
        } else if let Some(cl) = response.header("content-length") {
            let n: usize = cl
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {cl:?}")))?;
            self.fill_exact(n)?;
            response.body = self.buf.drain(..n).collect();
        } else {
            while self.fill()? > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if self.fill()? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            break i;
                        }
                        if self.fill()? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(out);
                    }
                }
            }
            self.fill_exact(size + 2)?;
            out.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// Sends one request and reads its response. `Content-Length` is added when a body is
    /// given and the headers do not frame it themselves.
    #[track_caller]
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.send(&request_bytes(method, path, headers, body));
        self.read_response(method == "HEAD")
    }

    /// Whether the server closes the connection (EOF or reset) within `within`, reading and
    /// discarding anything that still arrives.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Nothing unread arrived and the connection is still open after `wait`.
    pub fn is_quiet_for(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream
            .set_read_timeout(Some(wait))
            .expect("set_read_timeout");
        let mut b = [0u8; 1];
        let quiet = match self.stream.read(&mut b) {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        self.stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        quiet
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The bytes of one request. Adds `Host`, and `Content-Length` for a body unless the headers
/// already carry `Content-Length` or `Transfer-Encoding`.
pub fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if let Some(b) = body {
        if !framed {
            out.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    out
}

/// `body` in chunked transfer coding, cut into chunks of the given sizes (cycled).
pub fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// -----------------------------------------------------------------------------------------
// /stats.

#[derive(Debug, Clone)]
pub struct Stats {
    pub capacity: u64,
    pub free: u64,
    pub reserved: u64,
    pub used: u64,
    pub blocks: u64,
    pub data_bytes: u64,
    pub raw: String,
}

/// The first number after `"key":` in a JSON text (the required keys come first, at the top
/// level).
pub fn json_u64(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat)? + pat.len();
    let digits: String = json[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The string after `"key":` in a JSON text.
pub fn json_str(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat)? + pat.len();
    let rest = json[at..].trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

impl Stats {
    pub fn parse(raw: String) -> Stats {
        let get = |k: &str| json_u64(&raw, k).unwrap_or_else(|| panic!("/stats lacks {k}: {raw}"));
        Stats {
            capacity: get("capacity_bytes"),
            free: get("free_bytes"),
            reserved: get("reserved_bytes"),
            used: get("used_bytes"),
            blocks: get("blocks"),
            data_bytes: get("data_bytes"),
            raw,
        }
    }

    #[track_caller]
    pub fn assert_identity(&self) {
        assert_eq!(
            self.free + self.reserved + self.used,
            self.capacity,
            "free + reserved + used != capacity: {self:?}"
        );
    }
}

// -----------------------------------------------------------------------------------------
// The server process.

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub addr: SocketAddr,
    /// The data directory.
    pub dir: PathBuf,
    tmp: tempfile::TempDir,
    args: Vec<String>,
    /// Extra environment for the process.
    env: Vec<(String, String)>,
    log: PathBuf,
    starts: u32,
}

/// Flags every test server gets unless the test passes its own value.
const DEFAULTS: &[(&str, &str)] = &[
    ("--capacity", "32MiB"),
    ("--workers", "2"),
    ("--log-level", "info"),
    ("--map-size", "256MiB"),
];

fn with_defaults(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for (flag, value) in DEFAULTS {
        if !args.contains(flag) {
            all.push(flag.to_string());
            all.push(value.to_string());
        }
    }
    all.extend(args.iter().map(|s| s.to_string()));
    all
}

impl Server {
    /// One worker with the smallest `--buffer-memory` (1 MiB: one large buffer at a time),
    /// holding `n` distinct 512 KiB blocks (seeds from `seed`), which it returns.
    pub fn small_buffer_memory(n: u64, seed: u64) -> (Server, Vec<Vec<u8>>) {
        let args = [
            "--workers",
            "1",
            "--buffer-memory",
            "1MiB",
            "--capacity",
            "64MiB",
        ];
        let s = Server::start(&args);
        let stored: Vec<Vec<u8>> = (0..n).map(|i| body(seed + i, BLOCK_MAX)).collect();
        for b in &stored {
            s.put_ok(b);
        }
        (s, stored)
    }

    /// Starts a server with the default test flags plus `args` (which override them).
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::Builder::new()
            .prefix("buddy-blocks-test")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().join("data");
        Server::start_on(tmp, dir, args)
    }

    /// Starts a server with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::Builder::new()
            .prefix("buddy-blocks-test")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().join("data");
        Server::start_on_with_env(tmp, dir, args, env)
    }

    /// Starts a server on an existing data directory (kept by `tmp`).
    pub fn start_on(tmp: tempfile::TempDir, dir: PathBuf, args: &[&str]) -> Server {
        Server::start_on_with_env(tmp, dir, args, &[])
    }

    fn start_on_with_env(
        tmp: tempfile::TempDir,
        dir: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let port = free_port();
        let all = with_defaults(args);
        let log = tmp.path().join("server.log");
        let mut server = Server {
            child: None,
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            tmp,
            args: all,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log,
            starts: 0,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.dir)
            .args(&self.args)
            .env_remove("RUST_LOG")
            .env_remove("BUDDY_BLOCKS_AUTH_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning buddy-blocks");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("running")
                .try_wait()
                .expect("try_wait")
            {
                self.child = None;
                panic!(
                    "buddy-blocks exited during startup ({status}); log:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in time; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same data directory, port and flags.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// Starts the server again on the same data directory and port with other flags.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.args = with_defaults(args);
        self.launch();
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child process.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits for the process to exit (kills it and fails after `within`).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                self.wait_port_released();
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "server did not exit within {within:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A killed process's io_uring is torn down after the process is reaped, and until then
    /// its SO_REUSEPORT listeners still take (and then reset) connections: a server restarted
    /// at once would share the port with them. Wait until the port can be bound exclusively.
    fn wait_port_released(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpListener::bind(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {} still bound after the exit",
                self.port
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(20))
    }

    /// SIGTERM and require a clean exit.
    #[track_caller]
    pub fn stop_ok(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "server exited with {status}; log:\n{}",
            self.log_text()
        );
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self.wait_exit(Duration::from_secs(10));
        assert!(!status.success());
    }

    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn tmp_path(&self) -> &Path {
        self.tmp.path()
    }

    // ---- requests on a fresh connection each ----

    #[track_caller]
    pub fn conn(&self) -> Conn {
        Conn::connect(self.addr).expect("connecting to the server")
    }

    #[track_caller]
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.conn().request(method, path, headers, body)
    }

    #[track_caller]
    pub fn put(&self, body: &[u8]) -> Response {
        self.request("PUT", "/block", &[], Some(body))
    }

    /// PUT and require 201 or 200 with the right hash; returns the hash.
    #[track_caller]
    pub fn put_ok(&self, body: &[u8]) -> String {
        let r = self.put(body);
        assert!(
            r.status == 201 || r.status == 200,
            "PUT: {} {:?}",
            r.status,
            r.text()
        );
        let hash = sha256_hex(body);
        assert_eq!(r.text(), hash);
        hash
    }

    #[track_caller]
    pub fn get(&self, hash: &str) -> Response {
        self.request("GET", &format!("/block/{hash}"), &[], None)
    }

    #[track_caller]
    pub fn head(&self, hash: &str) -> Response {
        self.request("HEAD", &format!("/block/{hash}"), &[], None)
    }

    #[track_caller]
    pub fn delete(&self, hash: &str) -> Response {
        self.request("DELETE", &format!("/block/{hash}"), &[], None)
    }

    /// GET and require exactly `body`.
    #[track_caller]
    pub fn assert_stored(&self, body: &[u8]) {
        let hash = sha256_hex(body);
        let r = self.get(&hash);
        assert_eq!(r.status, 200, "GET {hash}: {:?}", r.text());
        assert!(
            r.body == body,
            "GET {hash}: {} bytes differ from the {} stored",
            r.body.len(),
            body.len()
        );
    }

    #[track_caller]
    pub fn stats(&self) -> Stats {
        let r = self.request("GET", "/stats", &[], None);
        assert_eq!(r.status, 200);
        Stats::parse(r.text())
    }

    /// /health answers `ok` and the accounting identity holds.
    #[track_caller]
    pub fn assert_healthy(&self) {
        let r = self.request("GET", "/health", &[], None);
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        self.stats().assert_identity();
    }

    /// Polls /stats until `pred` holds (the controller publishes after each cycle).
    #[track_caller]
    pub fn wait_stats(&self, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {s:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every stored block as (hash, len), paging through GET /blocks.
    #[track_caller]
    pub fn list_all(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        loop {
            let path = match out.last() {
                Some((h, _)) => format!("/blocks?after={h}&limit=1000"),
                None => "/blocks?limit=1000".to_string(),
            };
            let r = self.request("GET", &path, &[], None);
            assert_eq!(r.status, 200, "{path}: {:?}", r.text());
            let page = parse_listing(&r.text());
            let n = page.len();
            out.extend(page);
            if n < 1000 {
                return out;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- server log ({}) ----\n{}", self.addr, self.log_text());
        }
    }
}

/// Parses `<hash> <len>` lines.
#[track_caller]
pub fn parse_listing(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .map(|line| {
            let (h, n) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad listing line {line:?}"));
            assert_eq!(h.len(), 64, "bad listing line {line:?}");
            (
                h.to_string(),
                n.parse()
                    .unwrap_or_else(|_| panic!("bad listing line {line:?}")),
            )
        })
        .collect()
}

/// Runs `buddy-blocks check` on a data directory.
pub fn run_check(dir: &Path, repair: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("check")
        .arg("--data-dir")
        .arg(dir)
        .arg("--map-size")
        .arg("256MiB");
    if repair {
        cmd.arg("--repair");
    }
    run_bounded(cmd, Duration::from_secs(60))
}

/// Runs `buddy-blocks serve` with `args` where it is expected to refuse to start; a server
/// that starts anyway is killed after a few seconds (and the test sees it succeed).
pub fn run_serve_expecting_refusal(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir)
        .args(with_defaults(args));
    run_bounded(cmd, Duration::from_secs(5))
}

/// Runs a command to completion, killing it after `limit` (then its status is a failure
/// by signal, or success if it was a server that would have kept running: see the callers).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .env_remove("RUST_LOG")
        .env_remove("BUDDY_BLOCKS_AUTH_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning buddy-blocks");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collecting output");
        }
        if Instant::now() >= deadline {
            // Still running: it did not refuse. Stop it cleanly so its status says success.
            // SAFETY: kill(2) on the pid of our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            return child.wait_with_output().expect("collecting output");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn output_text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
