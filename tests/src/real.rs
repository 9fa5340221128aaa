//! The real side: `buddy-blocks serve` on a free 127.0.0.1 port with a temporary data
//! directory, and a client that plays [`Step`]s over TCP exactly as the simulator's scripted
//! node does (same pieces, same pauses, the same parser for what comes back).
//!
//! Owns: the server process (killed and reaped on drop; its log kept in the temporary
//! directory and returned by [`RealNode::log`]) and one `TcpStream` per script connection.
//! Never does: compare answers. Invariants: a step's answers are read until all it waits for
//! have come, the server closed, or [`ANSWER_WAIT`] passed; a connection the server closed is
//! forgotten, so the script's next step on that name opens a new one (as the simulator does).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sim::scripted::{Answer, Step, CLOSE_WAIT};

use crate::NodeConfig;

/// Longest wait for a step's answers (every answer of the script comes in milliseconds, or
/// after a pause the step itself takes).
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// Time between two pieces of a step, so that the server reads them apart.
const PIECE_GAP: Duration = Duration::from_millis(2);
/// How long a connection must stay silent after its answers to count as open.
const OPEN_PROBE: Duration = Duration::from_millis(20);
/// Longest wait for a started server to accept connections.
const START_WAIT: Duration = Duration::from_secs(20);

pub struct RealNode {
    child: Child,
    addr: SocketAddr,
    tmp: tempfile::TempDir,
    conns: BTreeMap<usize, TcpStream>,
}

impl RealNode {
    /// Starts `bin serve` with the configuration's flags and waits until it accepts.
    pub fn start(bin: &std::path::Path, cfg: &NodeConfig) -> RealNode {
        let tmp = tempfile::Builder::new()
            .prefix("difftest")
            .tempdir()
            .expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(tmp.path().join("server.log")).expect("log file");
        let child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(cfg.serve_args())
            .env_remove("RUST_LOG")
            .env_remove("BUDDY_BLOCKS_AUTH_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("buddy-blocks starts");
        let mut node = RealNode {
            child,
            addr,
            tmp,
            conns: BTreeMap::new(),
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_WAIT;
        while TcpStream::connect(self.addr).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("buddy-blocks exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "buddy-blocks did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("server.log")).unwrap_or_default()
    }

    /// Plays one step and returns what came back on its connection.
    pub fn play(&mut self, step: &Step) -> Answer {
        let addr = self.addr;
        let stream = self.conns.entry(step.conn).or_insert_with(|| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s
        });
        std::thread::sleep(step.pause);
        for (i, piece) in step.pieces.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(PIECE_GAP);
            }
            // A server that answered early and closed refuses the rest: what it answered
            // is read below.
            if stream.write_all(piece).is_err() {
                break;
            }
        }
        let answer = read_answer(stream, &step.heads);
        if answer.closed {
            self.conns.remove(&step.conn);
        }
        answer
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the step's answers are in (or the server closed, or [`ANSWER_WAIT`]), then
/// whether the connection is closed: waiting up to [`CLOSE_WAIT`] when an answer announced
/// the close, else probing for [`OPEN_PROBE`] (an unannounced close shows too).
fn read_answer(stream: &mut TcpStream, heads: &[bool]) -> Answer {
    let mut bytes = Vec::new();
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut closed = read_until(stream, &mut bytes, deadline, |b| {
        let a = Answer::parse(b, heads, false);
        a.error.is_some() || (a.responses.len() >= heads.len() && a.leftover_bytes == 0)
    });
    if !closed {
        let announced = Answer::parse(&bytes, heads, false)
            .responses
            .iter()
            .any(|r| r.says_close());
        let wait = if announced { CLOSE_WAIT } else { OPEN_PROBE };
        closed = read_until(stream, &mut bytes, Instant::now() + wait, |_| false);
    }
    Answer::parse(&bytes, heads, closed)
}

/// Reads into `bytes` until `done(bytes)`, the deadline, or the end of the stream; returns
/// whether the stream ended (EOF or reset).
fn read_until(
    stream: &mut TcpStream,
    bytes: &mut Vec<u8>,
    deadline: Instant,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    while !done(bytes) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}
