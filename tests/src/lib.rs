//! The differential test (issue 16): one deterministic request script, played against the
//! engine under the simulator (faults off: `sim::scripted`) and against the real
//! `buddy-blocks` binary on 127.0.0.1 with a temporary data directory; the answers must be
//! identical. It proves the simulator tests the program that ships, and catches bugs that live
//! only in one driver (the io_uring server's or the simulator's).
//!
//! Owns: the node configuration both sides get ([`NodeConfig`]), the script ([`script`]), the
//! real side ([`real`], [`binary`]) and the rules of comparison ([`compare`]). Never does:
//! judge an answer on its own: only the two sides' agreement is checked here (the server's
//! black-box tests and the simulator's oracles judge answers against SPEC).
//!
//! How to run it: `cargo test -p difftest` (it builds `buddy-blocks` if it is missing next to
//! the test; `BUDDY_BLOCKS_BIN` names another binary).

pub mod binary;
pub mod compare;
pub mod real;
pub mod script;

use std::time::Duration;

use sim::harness::HarnessConfig;

/// The configuration both sides run: what matters to answers is set explicitly on both, the
/// rest are the defaults the two share (16 KiB heads, 4 MiB buffer memory, crc32c, full
/// durability with the index made durable in the background).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub workers: usize,
    pub capacity_mib: u64,
    pub pool_targets: [u16; 8],
    pub auth_token: &'static str,
    pub request_timeout: Duration,
}

/// The class labels of `--pool-target`, smallest first.
const CLASS_LABELS: [&str; 8] = ["4k", "8k", "16k", "32k", "64k", "128k", "256k", "512k"];

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            workers: 2,
            capacity_mib: 16,
            pool_targets: [2, 2, 2, 1, 1, 1, 1, 1],
            auth_token: "diff-token-7",
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl NodeConfig {
    /// A one-second request timeout, for the script that waits it out
    /// ([`script::timeouts`]).
    /// A 2 MiB data file (four of the largest slots), one worker, empty pools: the
    /// full store's script ([`script::full_store`]).
    pub fn full_store() -> NodeConfig {
        NodeConfig {
            workers: 1,
            capacity_mib: 2,
            pool_targets: [0; 8],
            ..NodeConfig::default()
        }
    }

    pub fn short_timeouts() -> NodeConfig {
        NodeConfig {
            request_timeout: Duration::from_secs(1),
            ..NodeConfig::default()
        }
    }
}

impl NodeConfig {
    /// The simulator's configuration.
    pub fn harness(&self) -> HarnessConfig {
        HarnessConfig {
            workers: self.workers,
            capacity_bytes: self.capacity_mib << 20,
            pool_targets: self.pool_targets,
            auth_token: Some(self.auth_token.as_bytes().to_vec()),
            request_timeout: self.request_timeout,
            ..HarnessConfig::default()
        }
    }

    /// The flags of `buddy-blocks serve` (besides `--listen` and `--data-dir`).
    pub fn serve_args(&self) -> Vec<String> {
        assert!(self.request_timeout.subsec_nanos() == 0, "whole seconds");
        let pools: Vec<String> = CLASS_LABELS
            .iter()
            .zip(self.pool_targets)
            .map(|(label, n)| format!("{label}={n}"))
            .collect();
        let args = [
            ("--workers", self.workers.to_string()),
            ("--capacity", format!("{}MiB", self.capacity_mib)),
            ("--pool-target", pools.join(",")),
            ("--auth-token", self.auth_token.to_string()),
            (
                "--request-timeout",
                format!("{}s", self.request_timeout.as_secs()),
            ),
            ("--durability", "full".to_string()),
            ("--verify-reads", "crc32c".to_string()),
            ("--map-size", "256MiB".to_string()),
            ("--log-level", "warn".to_string()),
        ];
        args.into_iter()
            .flat_map(|(f, v)| [f.to_string(), v])
            .collect()
    }
}
