//! The progress watchdog: every seed ends. A livelock or a busy loop (actors stepping forever,
//! at one instant or with the clock creeping on) becomes a liveness failure with its reproduce
//! line within seconds of wall time, instead of running until CI's time limit.
//!
//! Owns: the count of scheduler steps since the workload last made progress (a request issued,
//! answered or given up on by its client, or a phase of the run begun) and its limit. Never
//! does: decide what runs (the [`scheduler`](super::scheduler) does) or look at an actor.
//! Invariant: `steps_since_progress <= limit` while the run goes on; the largest gap seen is
//! kept for the summary so the limit can be set from measurements.

/// Scheduler steps without progress before the run counts as a livelock (the default of
/// `Knobs::watchdog_steps`). Passing seeds 1..=200 take at most ~6,000 steps between two
/// progress marks (`Summary::steps_without_progress_max`); the simulator runs ~10,000-200,000
/// steps per second, so a livelock ends within seconds.
pub const STEPS_WITHOUT_PROGRESS_MAX: u64 = 100_000;

/// What counts as progress: the workload's request counters (issued, answered, unanswered) and
/// the number of phases begun.
pub(super) type ProgressMark = (u64, u64, u64, u64);

/// The watchdog's state.
#[derive(Debug, Default)]
pub(super) struct Watchdog {
    /// The mark at the last progress.
    mark: ProgressMark,
    /// Steps since the mark last changed.
    steps_since_progress: u64,
    /// The largest such gap of the run.
    pub(super) steps_without_progress_max: u64,
}

impl Watchdog {
    /// Counts one step with the workload at `mark`. `Err(steps)` once more than `limit` steps
    /// went by without the mark changing.
    pub(super) fn observe(&mut self, mark: ProgressMark, limit: u64) -> Result<(), u64> {
        assert!(limit > 0, "a watchdog limit of zero steps");
        assert!(
            self.steps_since_progress <= limit,
            "the watchdog kept counting after it struck"
        );
        if mark != self.mark {
            self.mark = mark;
            self.steps_since_progress = 0;
            return Ok(());
        }
        self.steps_since_progress += 1;
        self.steps_without_progress_max = self
            .steps_without_progress_max
            .max(self.steps_since_progress);
        if self.steps_since_progress > limit {
            return Err(self.steps_since_progress);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watchdog strikes on the first step past its limit without progress, and any change
    /// of the mark resets it.
    #[test]
    fn strikes_after_limit_steps_without_progress() {
        let mut w = Watchdog::default();
        for _ in 0..3 {
            assert_eq!(w.observe((0, 0, 0, 0), 3), Ok(()));
        }
        assert_eq!(
            w.observe((1, 0, 0, 0), 3),
            Ok(()),
            "progress resets the count"
        );
        for _ in 0..3 {
            assert_eq!(w.observe((1, 0, 0, 0), 3), Ok(()));
        }
        assert_eq!(w.observe((1, 0, 0, 0), 3), Err(4));
        assert_eq!(w.steps_without_progress_max, 4);
    }
}
