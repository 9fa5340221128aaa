//! Real IPFS client code, written by others, against the real binary: the JavaScript libraries
//! pinned in `tests/ipfs/package-lock.json` (ipfs-unixfs-importer and -exporter, multiformats,
//! @ipld/car, blockstore-core) chunk a 3 MiB file into UnixFS DAGs (CIDv1 raw leaves, CIDv0),
//! store every block through `/ipfs/{cid}` and `/block`, read both files back through
//! `/ipfs/` verifying every block against its CID, and parse CAR responses
//! (`tests/ipfs/roundtrip.mjs` says exactly what it checks).
//!
//! Needs Node.js and npm (`bash ci/setup.sh test` installs them; `cargo xtask test` runs it
//! first): without them this test fails, it does not skip. `npm ci` runs when `node_modules`
//! is missing or was installed from another lock file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Blocks of the two DAGs of a 3 MiB file at 256 KiB chunks: 12 leaves and a root, twice
/// (raw leaves and dag-pb leaves have different CIDs and bytes).
const DAG_BLOCKS: u64 = 2 * 13;
const NPM_CI_LIMIT: Duration = Duration::from_secs(300);
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("ipfs")
}

/// Fails the test, loudly, when a tool is missing.
fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is not installed: the IPFS client tests need Node.js and npm \
         (run `bash ci/setup.sh test`, or `cargo xtask test`, which does)"
    );
}

/// `npm ci` unless `node_modules` was installed from exactly this `package-lock.json`.
fn install_pinned_libraries(dir: &Path) {
    let lock = std::fs::read(dir.join("package-lock.json")).expect("package-lock.json");
    let want = sha256_hex(&lock);
    let stamp = dir.join("node_modules").join(".buddy-blocks-lock-sha256");
    if std::fs::read_to_string(&stamp).is_ok_and(|have| have == want) {
        return;
    }
    let mut npm = Command::new("npm");
    npm.current_dir(dir)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    let out = run_bounded(npm, NPM_CI_LIMIT);
    assert!(
        out.status.success(),
        "npm ci failed:\n{}",
        output_text(&out)
    );
    std::fs::write(&stamp, want).expect("writing the install stamp");
}

#[test]
fn unixfs_files_round_trip_through_the_gateway_with_js_ipfs_libraries() {
    require("node");
    require("npm");
    let dir = client_dir();
    install_pinned_libraries(&dir);
    let token = "ipfs-client-token";
    let s = Server::start(&["--auth-token", token, "--capacity", "64MiB"]);
    let mut node = Command::new("node");
    node.current_dir(&dir)
        .args(["--import", "./polyfill.mjs", "roundtrip.mjs"])
        .env("BUDDY_URL", format!("http://{}", s.addr))
        .env("BUDDY_TOKEN", token);
    let out = run_bounded(node, SCRIPT_LIMIT);
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "the IPFS client script failed:\n{text}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in ["CIDv1 raw leaves: bafy", "CIDv0 dag-pb leaves: Qm", "ok: "] {
        assert!(stdout.contains(line), "{line:?} missing:\n{text}");
    }
    let stats = s.stats();
    assert_eq!(
        stats.blocks, DAG_BLOCKS,
        "every block of both DAGs stored once"
    );
    stats.assert_identity();
    s.assert_healthy();
}
