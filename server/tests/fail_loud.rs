//! Fail loud (issue 15): a stalled disk gets `503`s by the request timeout and an unhealthy
//! `/health`, not hung requests; HTTP/1.0 keep-alive is acknowledged; a failed verification
//! is logged; slow uploaders do not hold up other clients' PUTs.
//!
//! The stalled disk is the real thing as far as the server can tell: the test holds the
//! server's `controller` thread (the one that runs a batch's fdatasync of the data file) with
//! ptrace at the entry of its next fdatasync, so the flush it began never returns, exactly as
//! with a disk that stopped answering; the rest of the process runs on.

mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::*;

/// The thread ids of the server's threads named `name`.
fn threads_named(pid: i32, name: &str) -> Vec<i32> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's tasks") {
        let path = entry.expect("task entry").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let tid = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
            tids.push(tid);
        }
    }
    tids
}

/// One thread of another process held stopped with ptrace at the entry of a system call
/// (the rest of the process runs on); resumed when dropped. Must be dropped on the thread that
/// made it (ptrace's rule).
struct Stopped(i32);

impl Stopped {
    /// Traces `tid` from system call to system call until it enters `fdatasync`, and holds it
    /// there: the flush it is about to run has begun for the server (the watchdog has its
    /// start time) and never ends. Panics after `limit` without one.
    fn at_next_fdatasync(tid: i32, limit: Duration) -> Stopped {
        let deadline = Instant::now() + limit;
        // SAFETY: ptrace requests on a thread of our own child process; `status` and `info`
        // are locals the kernel writes.
        unsafe {
            let seized = libc::ptrace(
                libc::PTRACE_SEIZE,
                tid,
                0,
                libc::PTRACE_O_TRACESYSGOOD as libc::c_long,
            );
            assert_eq!(
                seized,
                0,
                "PTRACE_SEIZE: {}",
                std::io::Error::last_os_error()
            );
            let stopped = Stopped(tid);
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0);
            let mut signal = 0;
            loop {
                let mut status = 0;
                let waited = libc::waitpid(tid, &mut status, libc::__WALL);
                assert_eq!(waited, tid, "waitpid: {}", std::io::Error::last_os_error());
                assert!(
                    libc::WIFSTOPPED(status),
                    "the controller thread ended: {status:#x}"
                );
                let sig = libc::WSTOPSIG(status);
                if sig == libc::SIGTRAP | 0x80 {
                    let mut info: libc::ptrace_syscall_info = std::mem::zeroed();
                    let got = libc::ptrace(
                        libc::PTRACE_GET_SYSCALL_INFO,
                        tid,
                        std::mem::size_of::<libc::ptrace_syscall_info>(),
                        &mut info as *mut libc::ptrace_syscall_info,
                    );
                    assert!(
                        got > 0,
                        "PTRACE_GET_SYSCALL_INFO: {}",
                        std::io::Error::last_os_error()
                    );
                    if info.op == libc::PTRACE_SYSCALL_INFO_ENTRY
                        && info.u.entry.nr == libc::SYS_fdatasync as u64
                    {
                        return stopped;
                    }
                } else if status >> 16 == 0 && sig != libc::SIGTRAP && sig != libc::SIGSTOP {
                    // A signal for the thread: delivered when it resumes, not swallowed.
                    signal = sig;
                }
                assert!(Instant::now() < deadline, "no fdatasync within {limit:?}");
                let resumed = libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, signal as libc::c_long);
                assert_eq!(
                    resumed,
                    0,
                    "PTRACE_SYSCALL: {}",
                    std::io::Error::last_os_error()
                );
                signal = 0;
            }
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: detaching the thread this test seized (resumes it).
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.0, 0, 0) };
    }
}

#[test]
fn a_stalled_disk_gets_503_by_the_request_timeout_and_health_tells() {
    let s = Server::start(&[
        "--workers",
        "1",
        "--request-timeout",
        "2s",
        "--stall-limit",
        "1s",
    ]);
    let stored = body(1, 10_000);
    s.put_ok(&stored);
    s.assert_healthy();
    let tids = threads_named(s.pid(), "controller");
    assert_eq!(tids.len(), 1, "one controller thread");

    // A PUT needs the flush: it is answered 503 by its request timeout, the connection
    // stays usable, and /health on it says why. The PUT goes from another thread while this
    // one (the tracer) catches the controller entering the PUT's flush.
    let fresh = body(2, 10_000);
    let mut conn = s.conn();
    let started = Instant::now();
    let upload = std::thread::spawn({
        let fresh = fresh.clone();
        move || {
            let r = conn.request("PUT", "/block", &[], Some(&fresh));
            (r, started.elapsed(), conn)
        }
    });
    let stopped = Stopped::at_next_fdatasync(tids[0], Duration::from_secs(10));
    let (r, took, mut conn) = upload.join().expect("the PUT's thread");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("Retry-After").is_some(), "{r:?}");
    assert!(r.text().contains("may or may not be stored"), "{r:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "answered after {took:?}, not by the 2 s request timeout"
    );
    let h = conn.request("GET", "/health", &[], None);
    assert_eq!(h.status, 503, "{h:?}");
    assert!(h.text().contains("storage stalled"), "{h:?}");
    // Every worker's /health, /stats and /metrics say the same (the watchdog's verdict).
    let st = s.stats();
    assert_eq!(
        json_str(&st.raw, "health").as_deref(),
        Some("sync_stalled"),
        "{st:?}"
    );
    let m = s.request("GET", "/metrics", &[], None);
    assert!(m.text().contains("buddy_blocks_healthy 0"), "{}", m.text());
    // Reads wait on the same controller: answered by the timeout too, never hung.
    let started = Instant::now();
    let g = s.get(&sha256_hex(&stored));
    assert!(matches!(g.status, 200 | 503), "{g:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        s.log_text().contains("unhealthy"),
        "the stall is logged: {}",
        s.log_text()
    );

    drop(stopped);
    // The disk answers again: healthy, and the same PUT goes through.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = s.request("GET", "/health", &[], None);
        if h.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still unhealthy: {h:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = s.put(&fresh);
    assert!(matches!(r.status, 200 | 201), "{r:?}");
    s.assert_stored(&fresh);
    s.assert_stored(&stored);
    let log = s.log_text();
    assert_eq!(
        log.matches("unhealthy").count(),
        1,
        "the stall is logged once, not once per check: {log}"
    );
    assert!(log.contains("healthy again"), "{log}");
}

#[test]
fn http10_keep_alive_is_acknowledged_and_kept() {
    let s = Server::start(&[]);
    let stored = body(3, 1000);
    let hash = s.put_ok(&stored);
    let mut conn = s.conn();
    for _ in 0..2 {
        let req = format!("GET /block/{hash} HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        conn.send(req.as_bytes());
        let r = conn.read_response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"), "{r:?}");
        assert_eq!(r.body, stored);
    }
    // Without it, HTTP/1.0 closes, and says so.
    conn.send(format!("GET /block/{hash} HTTP/1.0\r\n\r\n").as_bytes());
    let r = conn.read_response(false);
    assert!(r.says_close(), "{r:?}");
    assert!(conn.closed_within(Duration::from_secs(2)));
    // HTTP/1.1 keeps its connections without a header.
    let r = s.get(&hash);
    assert_eq!(r.header("Connection"), None, "{r:?}");
}

#[test]
fn a_failed_verification_is_logged_with_the_hash() {
    let s = Server::start(&["--workers", "1"]);
    let stored = body(4, 20_000);
    let hash = s.put_ok(&stored);
    // Find the block's bytes in the data file and damage one of them.
    let data = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(s.dir.join("blocks.data"))
        .unwrap();
    let len = data.metadata().unwrap().len();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = None;
    let mut offset = 0;
    while offset < len && at.is_none() {
        let n = data.read_at(&mut buf, offset).unwrap();
        at = find(&buf[..n], &stored[..64]).map(|i| offset + i as u64);
        offset += n as u64;
    }
    let at = at.expect("the block's bytes are in the data file");
    data.write_all_at(&[stored[100] ^ 0xff], at + 100).unwrap();
    for _ in 0..3 {
        assert_eq!(s.get(&hash).status, 500);
    }
    let log = s.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("fail verification"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once a second at most: {log}");
    assert!(
        lines[0].contains(&hash) && lines[0].contains("crc32c"),
        "{}",
        lines[0]
    );
    assert_eq!(json_u64(&s.stats().raw, "corrupt_blocks_detected"), Some(3));
}

#[test]
fn slow_uploaders_do_not_hold_up_other_puts() {
    let s = Server::start(&["--workers", "1", "--request-timeout", "30s"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..40)
        .map(|i| {
            let addr = s.addr;
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                let head = format!("PUT /block HTTP/1.1\r\nContent-Length: 100000\r\n\r\n{i}");
                c.write_all(head.as_bytes()).unwrap();
                let started = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(20)
                {
                    std::thread::sleep(Duration::from_millis(100));
                    if c.write_all(b"x").is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for seed in 0..3 {
        let b = body(100 + seed, 100_000);
        let started = Instant::now();
        s.put_ok(&b);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "a normal PUT behind 40 slow uploads took {took:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in slow {
        t.join().unwrap();
    }
    s.assert_healthy();
}

/// Fail fast (house rule; issue 14's panic finding): a panic on the controller or on a worker
/// ends the process at once (before, a dead controller left the workers answering `/health`
/// `ok` while every write waited for it), with the panic in the log; the restart is clean and
/// every acknowledged block is there.
#[test]
fn a_panic_on_any_thread_stops_the_process_at_once_and_it_restarts_clean() {
    use std::os::unix::process::ExitStatusExt;
    for kind in ["controller", "worker"] {
        let triggers = tempfile::tempdir().unwrap();
        let dir = triggers.path().to_str().unwrap().to_string();
        let mut s = Server::start_with_env(&[], &[("BUDDY_BLOCKS_TEST_PANIC_DIR", &dir)]);
        let blocks: Vec<Vec<u8>> = (0..20).map(|i| body(500 + i, 3000 + i as usize)).collect();
        for b in &blocks {
            s.put_ok(b);
        }
        let trigger = triggers.path().join(kind);
        std::fs::write(&trigger, b"").unwrap();
        let started = Instant::now();
        let status = s.wait_exit(Duration::from_secs(5));
        let took = started.elapsed();
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{kind}: {status}");
        assert!(
            took < Duration::from_secs(1),
            "{kind}: exited after {took:?}"
        );
        let log = s.log_text();
        assert!(
            log.contains("panic: ") && log.contains("test-only panic trigger"),
            "{kind}: {log}"
        );
        std::fs::remove_file(&trigger).unwrap();
        s.restart();
        for b in &blocks {
            s.assert_stored(b);
        }
        s.assert_healthy();
    }
}
