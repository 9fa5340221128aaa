//! The server process under test: start `buddy-blocks serve` on a free port with a temporary
//! data directory, wait until it answers, restart, signal, kill -9, and the one-call
//! PUT/GET/HEAD/DELETE helpers on top of [`super::Conn`]. Dropping a [`Server`] kills its process.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::*;

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
    ("--log-size", "4MiB"),
    ("--workers", "2"),
    ("--log-level", "info"),
    ("--map-size", "256MiB"),
];

pub(super) fn with_defaults(args: &[&str]) -> Vec<String> {
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
