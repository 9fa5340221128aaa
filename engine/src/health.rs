//! Whether the node can serve as promised: the verdict behind `GET /health` (`200 ok` or `503`
//! with one line), the `health` of /stats and `buddy_blocks_healthy` of /metrics.
//!
//! Owns: the reasons a node is unhealthy ([`Unhealthy`]), the watchdog rule that turns what a
//! driver observes ([`Observations`]: when the controller last made progress, since when a
//! storage sync has been running, since when the oldest data-file read or write has been in
//! flight, since when the oldest request has waited for the controller, a latched storage
//! error) into a verdict ([`verdict`]), and the change detector that says
//! when to log ([`Watchdog`]) so that a stall is logged once, not once per check.
//!
//! Must never: read a clock, look at files or threads, or decide anything about requests: it
//! only names the state. Workers answer their waiting requests by their own deadlines.
//!
//! Invariants: the verdict is a pure function of its observations; the most severe reason
//! wins (a latched storage error, then a stalled flush, a stalled data-file read or write, a
//! stalled controller, a stalled reply, then shutdown), so the operator sees the cause that needs action first.

use std::time::Duration;

use crate::clock::Instant;

/// Default for how long storage may stall before the node says it is unhealthy.
pub const STALL_LIMIT_DEFAULT: Duration = Duration::from_secs(3);

/// Why the node cannot serve as promised, most severe first.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Unhealthy {
    /// A storage error latched the controller: every write fails until a restart.
    StorageFailed { cause: String },
    /// A flush of the data file or the index has been running for this long (ranked before
    /// the controller's stall: a controller waiting for a flush is its consequence).
    SyncStalled { waited: Duration },
    /// A worker's read or write of the data file has been in flight for this long (the
    /// request waiting on it cannot be answered before the kernel hands its buffer back).
    DiskStalled { waited: Duration },
    /// The controller thread has not made progress for this long (blocked in a commit, or in
    /// the disk under it).
    ControllerStalled { waited: Duration },
    /// The oldest request waiting for the controller has waited this long.
    RepliesStalled { waited: Duration },
    /// SIGTERM or SIGINT: draining, then exiting.
    ShuttingDown,
}

impl Unhealthy {
    /// A stable machine-readable name (/stats `health`, the log's `reason` field).
    pub fn code(&self) -> &'static str {
        match self {
            Unhealthy::StorageFailed { .. } => "storage_failed",
            Unhealthy::SyncStalled { .. } => "sync_stalled",
            Unhealthy::DiskStalled { .. } => "disk_stalled",
            Unhealthy::ControllerStalled { .. } => "controller_stalled",
            Unhealthy::RepliesStalled { .. } => "replies_stalled",
            Unhealthy::ShuttingDown => "shutting_down",
        }
    }

    /// One line for `/health`: what is wrong and what to do.
    pub fn reason(&self) -> String {
        match self {
            Unhealthy::StorageFailed { cause } => format!(
                "storage failed: {cause}; writes fail until the server is restarted \
                 (fix the cause, restart, then run `buddy-blocks check` if in doubt)"
            ),
            Unhealthy::ControllerStalled { waited } => format!(
                "storage stalled: the controller has made no progress for {} ms \
                 (a flush or commit is not returning; check the disk: dmesg, iostat)",
                waited.as_millis()
            ),
            Unhealthy::SyncStalled { waited } => format!(
                "storage stalled: a flush to disk has been running for {} ms \
                 (check the disk: dmesg, iostat)",
                waited.as_millis()
            ),
            Unhealthy::DiskStalled { waited } => format!(
                "storage stalled: a read or write of the data file has been in flight for {} ms \
                 (check the disk: dmesg, iostat)",
                waited.as_millis()
            ),
            Unhealthy::RepliesStalled { waited } => format!(
                "storage stalled: a request has waited {} ms for the index \
                 (check the disk: dmesg, iostat)",
                waited.as_millis()
            ),
            Unhealthy::ShuttingDown => "shutting down".to_string(),
        }
    }

    /// Severity rank: lower is more severe.
    fn rank(&self) -> u8 {
        match self {
            Unhealthy::StorageFailed { .. } => 0,
            Unhealthy::SyncStalled { .. } => 1,
            Unhealthy::DiskStalled { .. } => 2,
            Unhealthy::ControllerStalled { .. } => 3,
            Unhealthy::RepliesStalled { .. } => 4,
            Unhealthy::ShuttingDown => 5,
        }
    }
}

/// What a driver observed at `now`.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    pub now: Instant,
    /// The last time the controller finished a loop turn (it turns at least every 100 ms when
    /// idle); `None` where there is no controller thread to watch (the simulator).
    pub controller_beat: Option<Instant>,
    /// Since when the oldest flush in flight has been running.
    pub sync_since: Option<Instant>,
    /// Since when the oldest data-file read or write of any worker has been in flight.
    pub oldest_file_op_since: Option<Instant>,
    /// Since when the oldest request waiting for the controller has waited.
    pub oldest_wait_since: Option<Instant>,
    /// The latched storage error, in words.
    pub storage_failure: Option<String>,
    pub shutting_down: bool,
}

/// The verdict: `None` is healthy.
pub fn verdict(obs: &Observations, stall_limit: Duration) -> Option<Unhealthy> {
    assert!(!stall_limit.is_zero(), "a zero stall limit would flap");
    let age = |since: Instant| obs.now.saturating_since(since);
    let stalled = |since: Option<Instant>| since.map(age).filter(|w| *w >= stall_limit);
    let candidates = [
        obs.storage_failure
            .clone()
            .map(|cause| Unhealthy::StorageFailed { cause }),
        stalled(obs.sync_since).map(|waited| Unhealthy::SyncStalled { waited }),
        stalled(obs.oldest_file_op_since).map(|waited| Unhealthy::DiskStalled { waited }),
        stalled(obs.controller_beat).map(|waited| Unhealthy::ControllerStalled { waited }),
        stalled(obs.oldest_wait_since).map(|waited| Unhealthy::RepliesStalled { waited }),
        obs.shutting_down.then_some(Unhealthy::ShuttingDown),
    ];
    candidates.into_iter().flatten().min_by_key(Unhealthy::rank)
}

/// Remembers the last verdict's kind so a driver logs changes, not every check.
#[derive(Default, Debug)]
pub struct Watchdog {
    last: Option<&'static str>,
}

/// What changed since the last check.
#[derive(Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// Unhealthy now, for a reason it was not before.
    Entered(&'a Unhealthy),
    /// Healthy again after `was`.
    Recovered {
        was: &'static str,
    },
    Unchanged,
}

impl Watchdog {
    pub fn update<'a>(&mut self, verdict: Option<&'a Unhealthy>) -> Change<'a> {
        let code = verdict.map(Unhealthy::code);
        if code == self.last {
            return Change::Unchanged;
        }
        let was = std::mem::replace(&mut self.last, code);
        match (verdict, was) {
            (Some(v), _) => Change::Entered(v),
            (None, Some(was)) => Change::Recovered { was },
            (None, None) => unreachable!("equal codes returned above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(3);

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    #[test]
    fn healthy_when_everything_moves() {
        let obs = Observations {
            now: at(100),
            controller_beat: Some(at(100)),
            sync_since: Some(at(99)),
            oldest_wait_since: Some(at(98)),
            ..Default::default()
        };
        assert_eq!(verdict(&obs, LIMIT), None);
    }

    #[test]
    fn each_stall_is_named_at_the_limit_and_not_before() {
        let mut obs = Observations {
            now: at(10),
            controller_beat: Some(at(8)),
            ..Default::default()
        };
        assert_eq!(verdict(&obs, LIMIT), None);
        obs.controller_beat = Some(at(7));
        assert_eq!(
            verdict(&obs, LIMIT),
            Some(Unhealthy::ControllerStalled {
                waited: Duration::from_secs(3)
            })
        );
        let sync = Observations {
            now: at(10),
            sync_since: Some(at(1)),
            ..Default::default()
        };
        assert_eq!(verdict(&sync, LIMIT).unwrap().code(), "sync_stalled");
        let replies = Observations {
            now: at(10),
            oldest_wait_since: Some(at(2)),
            ..Default::default()
        };
        assert_eq!(verdict(&replies, LIMIT).unwrap().code(), "replies_stalled");
        let disk = Observations {
            now: at(10),
            oldest_file_op_since: Some(at(7)),
            oldest_wait_since: Some(at(1)),
            ..Default::default()
        };
        let v = verdict(&disk, LIMIT).unwrap();
        assert_eq!(
            v.code(),
            "disk_stalled",
            "ranked before the replies it holds up"
        );
        assert!(v.reason().contains("3000 ms"), "{}", v.reason());
    }

    #[test]
    fn the_most_severe_reason_wins() {
        let obs = Observations {
            now: at(10),
            controller_beat: Some(at(1)),
            sync_since: Some(at(1)),
            storage_failure: Some("No space left on device".into()),
            shutting_down: true,
            ..Default::default()
        };
        let v = verdict(&obs, LIMIT).unwrap();
        assert_eq!(v.code(), "storage_failed");
        assert!(v.reason().contains("No space left"), "{}", v.reason());
        let stopping = Observations {
            now: at(10),
            shutting_down: true,
            ..Default::default()
        };
        assert_eq!(verdict(&stopping, LIMIT), Some(Unhealthy::ShuttingDown));
    }

    #[test]
    fn the_watchdog_reports_changes_once() {
        let mut w = Watchdog::default();
        assert_eq!(w.update(None), Change::Unchanged);
        let stalled = Unhealthy::ControllerStalled {
            waited: Duration::from_secs(4),
        };
        assert_eq!(w.update(Some(&stalled)), Change::Entered(&stalled));
        let longer = Unhealthy::ControllerStalled {
            waited: Duration::from_secs(9),
        };
        assert_eq!(w.update(Some(&longer)), Change::Unchanged);
        let failed = Unhealthy::StorageFailed { cause: "x".into() };
        assert_eq!(w.update(Some(&failed)), Change::Entered(&failed));
        assert_eq!(
            w.update(None),
            Change::Recovered {
                was: "storage_failed"
            }
        );
    }
}
