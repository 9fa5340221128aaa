//! The fake clock: virtual nanoseconds, handed to the engine as `now`.
//!
//! Fault model: none of its own — time only moves when the scheduler has nothing left to do at
//! the current instant, and then it jumps straight to the earliest deadline anyone announced
//! (a worker's or the controller's `poll_timeout`, a completion's due time, a client's timer, a
//! stalled queue thawing). Work itself takes no virtual time, except a controller cycle (its
//! seeded cost plus its fdatasync's disk latency). So timeouts fire exactly when due, a run
//! covers minutes of virtual time in a fraction of a second, and a state machine that keeps
//! asking for work at one instant shows up as a livelock instead of hiding in wall time.

/// Virtual time in nanoseconds; never goes back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    now: u64,
}

impl Clock {
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Jumps forward to `t` (a deadline strictly after now).
    pub fn advance_to(&mut self, t: u64) {
        assert!(
            t > self.now,
            "the clock only moves forward: {t} after {}",
            self.now
        );
        self.now = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "only moves forward")]
    fn time_never_goes_back() {
        let mut c = Clock::default();
        c.advance_to(5);
        assert_eq!(c.now(), 5);
        c.advance_to(5);
    }
}
