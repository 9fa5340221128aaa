//! Why a run failed: [`Failure`], one kind per exit code of `buddy-sim`.
//!
//! Owns: the failure kinds and their exit codes (1 crash, 2 liveness, 3 correctness and
//! recovery), which
//! `ci/sim.sh` and the README rely on. Never does: decide that something failed (the world,
//! the workload and the oracle do).

use std::fmt;

/// Why a run failed; each kind has its own exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A panic: an engine assertion or invariant check, or an engine crash.
    Crash(String),
    /// A request never answered, a drain that never finished, a livelock.
    Liveness(String),
    /// A wrong answer, lost or resurrected data, foreign bytes, a leak.
    Correctness(String),
    /// The write-ahead log's replay at start refused (`engine::wal::RecoverError`): the server
    /// would not start. A correctness failure (same exit code): the log or the index it
    /// replays into says something a correct engine never writes.
    Recovery(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Crash(_) => 1,
            Failure::Liveness(_) => 2,
            Failure::Correctness(_) | Failure::Recovery(_) => 3,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Crash(_) => "crash",
            Failure::Liveness(_) => "liveness",
            Failure::Correctness(_) => "correctness",
            Failure::Recovery(_) => "recovery",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Failure::Crash(m)
        | Failure::Liveness(m)
        | Failure::Correctness(m)
        | Failure::Recovery(m)) = self;
        write!(f, "{} failure: {m}", self.kind())
    }
}
