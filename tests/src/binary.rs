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
    // The test runs as target/<profile>/deps/differential-xxxx.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .ancestors()
        .nth(2)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("buddy-blocks");
    let _one_at_a_time = LOOKUP.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.is_file() {
        build(profile_dir);
    }
    assert!(bin.is_file(), "no buddy-blocks at {}", bin.display());
    bin
}

/// `cargo build` of the server's binary into the target directory the test runs from, in the
/// test's own profile (`debug` is cargo's `dev`).
fn build(profile_dir: &Path) {
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(named) => named,
    };
    let target_dir = profile_dir
        .parent()
        .expect("a target directory above the profile's");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--bin",
            "buddy-blocks",
            "-p",
            "server",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(built, "cargo could not build buddy-blocks ({profile})");
}
