//! The knobs: what a scripted test or scenario sets on a [`World`](super::World) to steer a run
//! beyond its drawn [`Options`](crate::options::Options).
//!
//! Owns: every test-only switch of the world, in one place. Never does: change what a seeded
//! run does; with [`Knobs::default`] the world runs exactly as the seed says. Invariant: a
//! knob only parks, holds or fails something the fault model could also park, slow down or
//! fail, so a scripted test never reaches a state a seed could not.

/// Test switches of a world (all off by default, except restarting a latched controller).
#[derive(Clone, Debug)]
pub struct Knobs {
    /// The clock does not jump past this (scripted tests step "until quiet").
    pub time_limit: Option<u64>,
    /// Park every ReadAt until `World::release_held`.
    pub hold_reads: bool,
    /// Park every WriteAt until `World::release_held`.
    pub hold_writes: bool,
    /// A checkpoint in flight does not finish while set.
    pub hold_checkpoint: bool,
    /// The next checkpoint fails.
    pub fail_next_checkpoint: bool,
    /// Restart the node when its controller latches failed (off in scripted tests).
    pub restart_on_latch: bool,
    /// Scheduler steps without progress before the run fails as a livelock (a test lowers it
    /// to see the watchdog strike; it only ever ends a run earlier).
    pub watchdog_steps: u64,
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            time_limit: None,
            hold_reads: false,
            hold_writes: false,
            hold_checkpoint: false,
            fail_next_checkpoint: false,
            restart_on_latch: true,
            watchdog_steps: super::watchdog::STEPS_WITHOUT_PROGRESS_MAX,
        }
    }
}
