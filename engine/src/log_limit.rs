//! A rate limit for log lines that a burst could repeat thousands of times a second (failed
//! verifications, accept errors): at most one line per interval, and the next line says how
//! many were held back.
//!
//! Owns: only the decision "log this one now?". Must never: drop the event itself: counters
//! count every occurrence; only the log line is limited.

use std::time::Duration;

use crate::clock::Instant;

#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    /// No line before this.
    next: Instant,
    /// Occurrences not logged since the last line.
    held_back: u64,
}

impl LogLimit {
    pub const fn new(interval: Duration) -> LogLimit {
        LogLimit {
            interval,
            next: Instant::ZERO,
            held_back: 0,
        }
    }

    /// `Some(held back before this one)` when this occurrence is to be logged, else `None`.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if now < self.next {
            self.held_back += 1;
            return None;
        }
        self.next = now + self.interval;
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_counts_the_rest() {
        let mut limit = LogLimit::new(Duration::from_secs(1));
        let t0 = Instant::ZERO + Duration::from_secs(5);
        assert_eq!(limit.allow(t0), Some(0));
        for ms in 1..=999 {
            assert_eq!(limit.allow(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(999));
        assert_eq!(limit.allow(t0 + Duration::from_secs(3)), Some(0));
    }
}
