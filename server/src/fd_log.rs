//! Saying once that accept(2) is failing for want of file descriptors.
//!
//! A worker whose accepts fail with `EMFILE` (this process's descriptor limit) or `ENFILE` (the
//! system's) retries every few milliseconds (the engine's accept retry), so logging each
//! failure would write hundreds of lines a second. [`FdLog`] logs the first failure of a burst
//! with what to do, once more per [`REPEAT_EVERY`] while it lasts, and one line when accepts
//! succeed again. Owns only that state; must never change how the worker accepts.

use std::time::{Duration, Instant};

use engine::io::Errno;

/// While a burst lasts, it is logged again this often (with the count so far).
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);
/// `ENFILE`: the system-wide table of open files is full.
const ENFILE: Errno = Errno(23);

/// Whether the worker can currently get descriptors for new connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Descriptors {
    Available,
    Exhausted {
        since: Instant,
        logged_at: Instant,
        failures: u64,
    },
}

/// One worker's record of descriptor exhaustion.
#[derive(Debug)]
pub struct FdLog {
    worker: usize,
    pub state: Descriptors,
}

/// What [`FdLog::on_accept`] logged (for tests).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Logged {
    Nothing,
    Exhausted,
    StillExhausted,
    Recovered,
}

impl FdLog {
    pub fn new(worker: usize) -> FdLog {
        FdLog {
            worker,
            state: Descriptors::Available,
        }
    }

    /// Takes the result of one accept.
    pub fn on_accept(&mut self, now: Instant, result: Result<u64, Errno>) -> Logged {
        let worker = self.worker;
        let out_of_fds = match result {
            Ok(_) => false,
            Err(e) if e == Errno::EMFILE || e == ENFILE => true,
            // Other errors (an aborted connection, a cancel) neither start nor end a burst.
            Err(_) => return Logged::Nothing,
        };
        match (self.state, out_of_fds) {
            (Descriptors::Available, false) => Logged::Nothing,
            (Descriptors::Available, true) => {
                let which = match result {
                    Err(ENFILE) => "ENFILE: the system's table of open files is full",
                    _ => "EMFILE: this process reached its limit of open files",
                };
                tracing::warn!(
                    worker,
                    "cannot accept connections: out of file descriptors ({which}; \
                     `ulimit -n` is {}); new connections wait in the listen backlog. Raise the \
                     limit (`ulimit -n`, LimitNOFILE= under systemd) or lower --max-connections",
                    soft_limit()
                );
                self.state = Descriptors::Exhausted {
                    since: now,
                    logged_at: now,
                    failures: 1,
                };
                Logged::Exhausted
            }
            (
                Descriptors::Exhausted {
                    since,
                    logged_at,
                    failures,
                },
                true,
            ) => {
                let failures = failures + 1;
                let repeat = now.duration_since(logged_at) >= REPEAT_EVERY;
                if repeat {
                    tracing::warn!(
                        worker,
                        failures,
                        for_s = now.duration_since(since).as_secs(),
                        "still out of file descriptors: raise `ulimit -n` or lower \
                         --max-connections"
                    );
                }
                self.state = Descriptors::Exhausted {
                    since,
                    logged_at: if repeat { now } else { logged_at },
                    failures,
                };
                if repeat {
                    Logged::StillExhausted
                } else {
                    Logged::Nothing
                }
            }
            (
                Descriptors::Exhausted {
                    since, failures, ..
                },
                false,
            ) => {
                tracing::info!(
                    worker,
                    failures,
                    for_ms = now.duration_since(since).as_millis() as u64,
                    "accepting connections again: file descriptors are available"
                );
                self.state = Descriptors::Available;
                Logged::Recovered
            }
        }
    }
}

/// This process's soft limit of open files.
fn soft_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into a live local.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc == 0 {
        limit.rlim_cur
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_once_then_its_end() {
        let mut log = FdLog::new(0);
        let t0 = Instant::now();
        assert_eq!(log.on_accept(t0, Ok(7)), Logged::Nothing);
        assert_eq!(log.on_accept(t0, Err(Errno::EMFILE)), Logged::Exhausted);
        for i in 1..1000 {
            let t = t0 + Duration::from_millis(10 * i);
            assert_eq!(log.on_accept(t, Err(Errno::EMFILE)), Logged::Nothing);
        }
        // Other errors neither start nor end a burst.
        assert_eq!(log.on_accept(t0, Err(Errno::ECONNABORTED)), Logged::Nothing);
        assert_eq!(log.on_accept(t0, Ok(8)), Logged::Recovered);
        assert_eq!(log.on_accept(t0, Err(ENFILE)), Logged::Exhausted);
        let later = t0 + REPEAT_EVERY;
        assert_eq!(log.on_accept(later, Err(ENFILE)), Logged::StillExhausted);
        assert_eq!(log.on_accept(later, Err(ENFILE)), Logged::Nothing);
        assert_eq!(log.on_accept(later, Ok(9)), Logged::Recovered);
        assert_eq!(log.state, Descriptors::Available);
    }
}
