//! Fail loud (issue 15, findings 1, 2, 5 and 9), against the real `buddy-blocks` binary: a data
//! directory whose index or data file is lost, truncated or foreign is refused with one clear
//! line and its blocks survive the restore; an old-format directory is upgraded; a port
//! another server holds is refused; the index truncated under a running server ends it with
//! a line; `check --read-only` audits a read-only copy; running out of file descriptors is
//! logged once.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CAPACITY: u64 = 32 << 20;
const TRAILER_BYTES: u64 = 4096;
/// The tests' `--log-size` (common/server.rs).
const LOG_BYTES: u64 = 4 << 20;

fn index_file(dir: &Path) -> PathBuf {
    dir.join("index.mdbx").join("mdbx.dat")
}

fn data_file(dir: &Path) -> PathBuf {
    dir.join("blocks.data")
}

/// Copies a data directory (files and one level of subdirectories).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A stopped server holding `n` blocks, with a backup of its directory beside it.
fn stored(n: u64, seed: u64) -> (Server, Vec<Vec<u8>>, PathBuf) {
    let mut s = Server::start(&[]);
    let blocks: Vec<Vec<u8>> = (0..n)
        .map(|i| body(seed + i, 1 + (i as usize * 37_000) % BLOCK_MAX))
        .collect();
    for b in &blocks {
        s.put_ok(b);
    }
    s.stop_ok();
    let backup = s.tmp_path().join("backup");
    copy_dir(&s.dir, &backup);
    (s, blocks, backup)
}

fn set_len(path: &Path, len: u64) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn restore(s: &Server, backup: &Path) {
    fs::remove_dir_all(&s.dir).unwrap();
    copy_dir(backup, &s.dir);
}

/// `serve` refuses `dir` at once, non-zero, with one line containing every word of `words`.
#[track_caller]
fn assert_refused(dir: &Path, words: &[&str]) {
    let started = Instant::now();
    let out = run_serve_expecting_refusal(dir, &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "serve did not refuse:\n{text}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "slow refusal:\n{text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{text}"));
    for word in words {
        assert!(line.contains(word), "{word:?} missing from {line:?}");
    }
    assert!(!stderr.contains("ready"), "{text}");
    let check = run_check(dir, false);
    assert!(
        !check.status.success(),
        "check passed:\n{}",
        output_text(&check)
    );
}

#[track_caller]
fn assert_all_stored(s: &mut Server, blocks: &[Vec<u8>]) {
    s.restart();
    for b in blocks {
        s.assert_stored(b);
    }
    assert_eq!(s.stats().blocks, blocks.len() as u64);
    s.stop_ok();
}

#[test]
fn a_lost_or_truncated_index_is_refused_and_the_blocks_survive_its_restore() {
    let (mut s, blocks, backup) = stored(12, 100);
    let damages = [
        (None, "missing"),
        (Some(0), "empty"),
        (Some(4096), "truncated"),
        (Some(8192), "truncated"),
    ];
    for (truncate_to, what) in damages {
        match truncate_to {
            None => fs::remove_dir_all(s.dir.join("index.mdbx")).unwrap(),
            Some(len) => set_len(&index_file(&s.dir), len),
        }
        assert_refused(&s.dir, &[what, "index", "backup", "cannot be rebuilt"]);
        restore(&s, &backup);
    }
    assert_all_stored(&mut s, &blocks);
}

#[test]
fn a_missing_truncated_or_foreign_data_file_is_refused() {
    let (mut s, blocks, backup) = stored(6, 200);
    fs::remove_file(data_file(&s.dir)).unwrap();
    assert_refused(
        &s.dir,
        &["blocks.data is missing", "records stored blocks", "Restore"],
    );
    restore(&s, &backup);
    for len in [0, CAPACITY / 2, CAPACITY + 100, CAPACITY + LOG_BYTES] {
        set_len(&data_file(&s.dir), len);
        assert_refused(&s.dir, &["blocks.data", "truncated", "Restore"]);
        restore(&s, &backup);
    }
    // Same capacity, another store: its node id is not this index's.
    let other = Server::start(&[]);
    fs::copy(data_file(&other.dir), data_file(&s.dir)).unwrap();
    assert_refused(
        &s.dir,
        &["blocks.data", "belongs to another store", "node id"],
    );
    restore(&s, &backup);
    assert_all_stored(&mut s, &blocks);
}

#[test]
fn a_fresh_directory_gets_a_trailer_which_moves_to_the_end_when_it_grows() {
    let mut s = Server::start(&[]);
    let len = || fs::metadata(data_file(&s.dir)).unwrap().len();
    assert_eq!(len(), CAPACITY + LOG_BYTES + TRAILER_BYTES);
    let tail = fs::read(data_file(&s.dir)).unwrap();
    let at = (CAPACITY + LOG_BYTES) as usize;
    assert_eq!(&tail[at..at + 8], b"BUDDYDAT");
    let b = body(300, 5000);
    s.put_ok(&b);
    s.stop_ok();
    s.restart_with(&["--capacity", "48MiB"]);
    assert_eq!(
        fs::metadata(data_file(&s.dir)).unwrap().len(),
        (48 << 20) + LOG_BYTES + TRAILER_BYTES
    );
    s.assert_stored(&b);
    s.stop_ok();
}

#[test]
fn a_different_log_size_on_an_existing_store_is_refused_with_the_size_to_use() {
    let (mut s, blocks, _) = stored(3, 450);
    let out = run_serve_expecting_refusal(&s.dir, &["--log-size", "8MiB"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("not supported: start with --log-size 4194304"),
        "{text}"
    );
    assert_all_stored(&mut s, &blocks);
}

#[test]
fn a_second_server_on_the_same_port_is_refused_and_the_first_keeps_serving() {
    let s = Server::start(&[]);
    let other = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        &s.addr.to_string(),
        "--capacity",
        "4MiB",
    ])
    .arg("--data-dir")
    .arg(other.path().join("data"));
    let out = run_bounded(cmd, Duration::from_secs(5));
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("already in use by another process"), "{text}");
    assert!(
        !other.path().join("data").join("blocks.data").exists(),
        "{text}"
    );
    for i in 0..20 {
        let b = body(500 + i, 3000);
        s.put_ok(&b);
        s.assert_stored(&b);
    }
}

#[test]
fn of_two_servers_started_at_once_on_one_port_exactly_one_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let spawn = |name: &str| {
        Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &listen,
                "--capacity",
                "4MiB",
                "--workers",
                "1",
            ])
            .arg("--data-dir")
            .arg(tmp.path().join(name))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut servers = [spawn("a"), spawn("b")];
    std::thread::sleep(Duration::from_secs(3));
    let mut refused = Vec::new();
    for child in &mut servers {
        if child.try_wait().unwrap().is_some() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            refused.push(err);
        }
    }
    for child in &mut servers {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("already in use"), "{}", refused[0]);
}

/// Modification time and bytes of each file of a data directory.
fn snapshot(dir: &Path) -> Vec<(PathBuf, i64, Vec<u8>)> {
    [index_file(dir), data_file(dir)]
        .into_iter()
        .map(|p| {
            let m = fs::metadata(&p).unwrap();
            (
                p.clone(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn check_read_only_audits_a_copy_without_writing_to_it() {
    let (_s, blocks, backup) = stored(5, 600);
    let _ = fs::remove_file(backup.join("index.mdbx").join("mdbx.lck"));
    let before = snapshot(&backup);
    let out = run_check_read_only(&backup);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("blocks: {}", blocks.len())) && text.contains("OK"),
        "{text}"
    );
    assert!(
        snapshot(&backup) == before,
        "check --read-only changed a file"
    );
    // --repair needs a writable index.
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--read-only", "--repair", "--data-dir"])
        .arg(&backup);
    assert!(!run_bounded(cmd, Duration::from_secs(10)).status.success());
    let _ = fs::remove_file(backup.join("index.mdbx").join("mdbx.lck"));
    // On a read-only mount (where this machine allows a private mount namespace), `check`
    // opens nothing for writing, and without the flag it notices and audits read-only.
    let mount = backup.with_file_name("ro");
    fs::create_dir_all(&mount).unwrap();
    let script = format!(
        "mount --bind {b} {m} && mount -o remount,bind,ro {m} || exit 77; \
         {bin} check --read-only --data-dir {m} && {bin} check --data-dir {m}",
        b = backup.display(),
        m = mount.display(),
        bin = BIN
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let text = output_text(&out);
    if out.status.code() == Some(77) || text.contains("unshare:") {
        eprintln!("no private read-only mount here; the mount case was skipped:\n{text}");
        return;
    }
    assert!(out.status.success(), "{text}");
    assert!(text.contains("audited read-only"), "{text}");
    assert!(
        !backup.join("index.mdbx").join("mdbx.lck").exists(),
        "{text}"
    );
}

/// A server started by hand (the common `Server` cannot set a resource limit or report an
/// exit without waiting for it), with its log file.
struct Spawned {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    log: PathBuf,
}

impl Spawned {
    fn start(dir: &Path, args: &[&str], nofile_limit: Option<u64>) -> Spawned {
        let port = free_port();
        let log = dir.with_extension("log");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--workers",
            "1",
            "--capacity",
            "4MiB",
            "--map-size",
            "64MiB",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap());
        if let Some(n) = nofile_limit {
            // SAFETY: setrlimit(2) only, between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "not ready: {}",
                fs::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Spawned { child, addr, log }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_index_truncated_under_a_running_server_ends_it_with_a_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut s = Spawned::start(&dir, &[], None);
    let b = body(700, 10_000);
    let hash = Conn::connect(s.addr)
        .unwrap()
        .request("PUT", "/block", &[], Some(&b))
        .text();
    assert_eq!(hash, sha256_hex(&b));
    set_len(&index_file(&dir), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = None;
    while status.is_none() && Instant::now() < deadline {
        // Each request may be the one that touches the truncated mapping.
        if let Ok(mut c) = Conn::connect(s.addr) {
            c.set_read_timeout(Duration::from_millis(500));
            let req = request_bytes("GET", &format!("/block/{hash}"), &[], None);
            let _ = c.try_send(&req).and_then(|_| c.try_read_response(false));
            let req = request_bytes("PUT", "/block", &[], Some(&body(701, 100)));
            let _ = c.try_send(&req).and_then(|_| c.try_read_response(false));
        }
        std::thread::sleep(Duration::from_millis(50));
        status = s.child.try_wait().unwrap();
    }
    let log = s.log_text();
    let status = status.unwrap_or_else(|| panic!("it went on over a truncated index:\n{log}"));
    assert!(!status.success(), "{status}");
    assert!(log.contains("SIGBUS") && log.contains("truncated"), "{log}");
    assert!(log.contains("Restore index.mdbx from a backup"), "{log}");
    assert_refused(&dir, &["index", "backup"]);
}

#[test]
fn running_out_of_file_descriptors_is_logged_once_per_burst() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Spawned::start(&tmp.path().join("data"), &[], Some(48));
    let mut conns: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(s.addr).ok())
        .collect();
    assert!(conns.len() > 48, "{} connections", conns.len());
    std::thread::sleep(Duration::from_millis(1500));
    conns.clear();
    std::thread::sleep(Duration::from_millis(1500));
    let log = s.log_text();
    let exhausted = log.matches("out of file descriptors").count();
    assert_eq!(exhausted, 1, "{log}");
    assert!(
        log.contains("ulimit -n") && log.contains("--max-connections"),
        "{log}"
    );
    assert!(log.contains("accepting connections again"), "{log}");
}
