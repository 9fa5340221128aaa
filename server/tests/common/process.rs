//! One-shot runs of the binary (`check`, a `serve` expected to refuse) with a time bound, and
//! reading their output and the block listing.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::server::with_defaults;
use super::{free_port, BIN};

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

/// Runs `buddy-blocks check --read-only` on `dir` (writes nothing).
pub fn run_check_read_only(dir: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--read-only", "--data-dir"]).arg(dir);
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
