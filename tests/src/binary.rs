//! Where the real `buddy-blocks` binary is: `BUDDY_BLOCKS_BIN` if set, else next to this test
//! in the target directory (`target/<profile>/buddy-blocks`), built with cargo when missing.
//!
//! Owns: finding (and at most once per process, building) the binary. Never does: start it
//! (that is [`crate::real`]). A binary found next to the test is whatever the last build of
//! the workspace left there: `cargo test --workspace` (CI) builds it with the server's own
//! tests; a lone `cargo test -p difftest` after a server change should run
//! `cargo build -p server` first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serializes the lookup (and the build) between the test threads of one process.
static LOOKUP: Mutex<()> = Mutex::new(());

/// The binary to run.
pub fn buddy_blocks() -> PathBuf {
    if let Some(path) = std::env::var_os("BUDDY_BLOCKS_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BUDDY_BLOCKS_BIN: no file at {}",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/difftest-xxxx -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test runs from target/<profile>/deps");
    let bin = profile_dir.join("buddy-blocks");
    let _guard = LOOKUP.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.is_file() {
        build(profile_dir);
    }
    assert!(bin.is_file(), "no buddy-blocks at {}", bin.display());
    bin
}

fn build(profile_dir: &Path) {
    let target_dir = profile_dir
        .parent()
        .expect("a target directory above the profile's");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
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
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building buddy-blocks failed");
}
