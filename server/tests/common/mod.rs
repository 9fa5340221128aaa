//! Shared helpers for the black-box tests: start the real `buddy-blocks` binary on a free
//! 127.0.0.1 port with a temporary data directory, talk raw HTTP/1.1 to it, generate
//! deterministic bodies, and read /stats.
//!
//! Every test starts its own server, so tests run in parallel.

#![allow(dead_code)]

mod conn;
mod data;
mod process;
mod server;
mod stats;

pub use conn::*;
pub use data::*;
pub use process::*;
pub use server::*;
pub use stats::*;

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_buddy-blocks");
pub const BLOCK_MAX: usize = 512 * 1024;
/// How long a client waits for any single answer before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

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
