//! The worker's configuration: limits and timeouts a driver sets once, at construction.
//!
//! Owns: [`WorkerConfig`] (with its defaults), [`VerifyReads`], and the rule that sizes
//! `pool_bytes_max` from the capacity ([`pool_bytes_max`], which every driver calls).
//! Invariants: `Worker::new` asserts what a configuration must satisfy (a budget of at least
//! [`BUFFER_BUDGET_MIN_BYTES`] that holds a buffered body and an upload's lane side by side).
//! Must never: hold state that changes while the worker runs.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VerifyReads {
    Crc32c,
    Sha256,
    Off,
}

impl VerifyReads {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyReads::Crc32c => "crc32c",
            VerifyReads::Sha256 => "sha256",
            VerifyReads::Off => "off",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub id: WorkerId,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a PUT waits for a pool slot before 503.
    pub slot_wait_limit: Duration,
    pub verify_reads: VerifyReads,
    pub auth_token: Option<Vec<u8>>,
    pub pool_targets: [u16; CLASS_COUNT],
    /// Bound on what adaptive pool targets may hold in reserve (bytes, all classes).
    pub pool_bytes_max: u64,
    /// Largest single receive.
    pub recv_chunk_bytes: usize,
    /// Bound on the bytes of large I/O buffers the worker's requests hold at once: GET read
    /// buffers of blocks over 8 KiB, buffered bodies, and upload pieces with their receive
    /// buffers (at most half of it). A GET or buffered body beyond it waits (FIFO, up to
    /// `slot_wait_limit`, then 503); an upload waits as long, then goes on in small pieces.
    /// It also bounds the idle buffers kept.
    pub buffer_budget_bytes: usize,
    /// How long a request may wait for the controller before `/health` says storage stalled
    /// (the request itself is answered `503` at its request timeout).
    pub stall_limit: Duration,
    /// Known bugs the simulator may switch on (`crate::bugs`; all off in the server).
    pub bugs: crate::bugs::Bugs,
}

/// Most bytes one worker's adaptive pools may hold in reserve, whatever the capacity.
pub const POOL_BYTES_MAX_CAP: u64 = 64 << 20;

/// `WorkerConfig::pool_bytes_max` for `workers` workers over a data file of `capacity_bytes`:
/// together the adaptive pools park at most an eighth of the capacity, one worker at most
/// [`POOL_BYTES_MAX_CAP`]. The server and the simulator both configure their workers with it,
/// so the simulated pools are bounded as the real ones.
pub fn pool_bytes_max(capacity_bytes: u64, workers: usize) -> u64 {
    assert!(workers >= 1, "at least one worker");
    let bytes = (capacity_bytes / 8 / workers as u64).min(POOL_BYTES_MAX_CAP);
    debug_assert!(bytes * workers as u64 <= capacity_bytes / 8);
    bytes
}

/// The smallest `buffer_budget_bytes`: a buffered body and an upload's lane side by side.
pub const BUFFER_BUDGET_MIN_BYTES: usize = 1 << 20;

impl WorkerConfig {
    pub fn new(id: WorkerId) -> WorkerConfig {
        WorkerConfig {
            id,
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            slot_wait_limit: Duration::from_secs(5),
            verify_reads: VerifyReads::Crc32c,
            auth_token: None,
            pool_targets: crate::pool::POOL_TARGET_DEFAULT,
            pool_bytes_max: POOL_BYTES_MAX_CAP,
            recv_chunk_bytes: 64 * 1024,
            buffer_budget_bytes: 4 << 20,
            stall_limit: crate::health::STALL_LIMIT_DEFAULT,
            bugs: crate::bugs::Bugs::NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pools together park at most an eighth of the data file, one worker at most the cap.
    #[test]
    fn pool_bytes_max_is_an_eighth_of_the_capacity_shared_by_the_workers_and_capped() {
        const MIB: u64 = 1 << 20;
        assert_eq!(pool_bytes_max(64 * MIB, 8), MIB);
        assert_eq!(pool_bytes_max(8 * MIB, 1), MIB);
        assert_eq!(pool_bytes_max(1 << 40, 4), POOL_BYTES_MAX_CAP);
        for workers in 1..=64 {
            let capacity = 96 * MIB;
            assert!(pool_bytes_max(capacity, workers) * workers as u64 <= capacity / 8);
        }
    }
}
