//! Durability: the modes, the pure plan that decides how a batch is made durable, and the
//! latch.
//!
//! Owns the decision, not the I/O: [`DurabilityPolicy::plan`] is a pure function of the mode,
//! the bug switches, the batch's content and whether a periodic durable commit is due;
//! `Controller::apply_in_txn` (batch.rs) follows the plan step by step. Must never sync, commit
//! or read a clock itself.
//!
//! Full durability (issue 18): a batch that promises something (a stored block, a deletion) is
//! written as one record into the log region of the data file, and ONE flush of the data file
//! makes its blocks and its record durable; the index is then committed non-durably and made
//! durable later by a checkpoint (`log.rs`). Relaxed: no record, no flush per batch, a durable
//! commit (data file synced first) once per [`RELAXED_SYNC_INTERVAL`].
//!
//! Invariants of every plan (checked by `CommitPlan::check` and the tests below):
//! - a durable index never points at data that is not durable: a durable commit syncs the data
//!   file first (relaxed), and full mode never commits durably in a cycle (checkpoints run
//!   over commits made after their flush);
//! - in full mode (without the `ack_before_durable` bug) a batch that promises something is
//!   logged and flushed before it is committed and answered.

use std::time::Duration;

use crate::meta::MetaStore;

use super::batch::BatchError;
use super::driver::SyncError;
use super::{Controller, ControllerStats};

/// In relaxed mode, the longest time between durable commits (bounds index growth, see
/// `apply_in_txn`).
pub const RELAXED_SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Durability {
    /// One fdatasync of the data file (blocks and log record) before any PUT or DELETE is
    /// acknowledged.
    Full,
    /// No fsync: survives a process crash, not power loss.
    Relaxed,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Relaxed => "relaxed",
        }
    }
}

/// Everything the durability decision depends on except the batch: fixed for a run (the mode
/// and the bug switches).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DurabilityPolicy {
    pub mode: Durability,
    /// The known bug (simulator teeth): acknowledge PUTs and DELETEs with no record and no
    /// flush at all.
    pub ack_before_durable: bool,
    /// The known bug: begin the data file's flush before the batch's record is written, and
    /// acknowledge when that flush returns (it does not cover the record).
    pub ack_before_log_durable: bool,
}

/// What a batch's write transaction did, as far as durability cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BatchContent {
    /// It stored at least one new block (not a duplicate): data a PUT's answer promises.
    pub stored: bool,
    /// It deleted at least one block: a DELETE's answer promises it is gone.
    pub released: bool,
    /// An allocation came back short while released slots wait for a durable commit.
    pub short_while_undurable: bool,
}

/// Whether, and why, the data file is synced before the commit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DataSync {
    /// No sync.
    None,
    /// Full mode: the one flush, covering the stored blocks' bytes and the batch's log
    /// record. Timed as the batch's sync (`last_sync_ns`), before the commit's clock starts.
    ForLogRecord,
    /// Relaxed mode's periodic durable commit: the durable index must not point at data that
    /// is not durable. Part of the commit's time.
    ForDurableIndex,
}

/// How the transaction is committed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Commit {
    /// Visible, survives a process crash; a power loss rolls it back to the last durable
    /// commit (full mode: the log replays it).
    NonDurable,
    /// Durable when the commit returns.
    Durable,
}

impl Commit {
    pub fn is_durable(self) -> bool {
        self == Commit::Durable
    }
}

/// Whether the batch writes a log record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Logging {
    None,
    /// One record of the batch's stored blocks and deletions, before the flush.
    Record,
}

/// How one batch is made durable: the cycle follows it in this order (record, data sync,
/// commit, answers).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommitPlan {
    pub logging: Logging,
    pub data_sync: DataSync,
    pub commit: Commit,
}

impl DurabilityPolicy {
    /// Whether to begin the data file's flush before the transaction. Only the
    /// `ack_before_log_durable` bug does, in full mode: a flush begun before the record is
    /// written does not cover it.
    pub fn begins_data_sync(&self, promises: bool) -> bool {
        self.mode == Durability::Full
            && promises
            && self.ack_before_log_durable
            && !self.ack_before_durable
    }

    /// The plan for a batch with this content. `durable_commit_due` (relaxed mode): no durable
    /// commit since `open`, or none for `RELAXED_SYNC_INTERVAL` (a store may not reuse pages
    /// freed after its last durable commit, so one commit a second is made durable anyway;
    /// full mode's checkpoints do that).
    pub fn plan(&self, content: BatchContent, durable_commit_due: bool) -> CommitPlan {
        let plan = match self.mode {
            Durability::Full => {
                // Only index changes a client was promised (stored blocks, deletions) are
                // logged; reservations alone return to free at the next start anyway.
                let promised = content.stored || content.released;
                if promised && !self.ack_before_durable {
                    CommitPlan {
                        logging: Logging::Record,
                        data_sync: DataSync::ForLogRecord,
                        commit: Commit::NonDurable,
                    }
                } else {
                    CommitPlan {
                        logging: Logging::None,
                        data_sync: DataSync::None,
                        commit: Commit::NonDurable,
                    }
                }
            }
            Durability::Relaxed => {
                // Released slots wait for a durable commit: when space runs short, make this
                // one durable rather than let PUTs wait up to the interval.
                let periodic = durable_commit_due || content.short_while_undurable;
                CommitPlan {
                    logging: Logging::None,
                    data_sync: if periodic {
                        DataSync::ForDurableIndex
                    } else {
                        DataSync::None
                    },
                    commit: if periodic {
                        Commit::Durable
                    } else {
                        Commit::NonDurable
                    },
                }
            }
        };
        plan.check(self, content);
        plan
    }
}

impl CommitPlan {
    /// The invariants of the module doc.
    fn check(&self, policy: &DurabilityPolicy, content: BatchContent) {
        match policy.mode {
            Durability::Relaxed => {
                assert_eq!(self.logging, Logging::None, "relaxed: no log records");
                assert_eq!(
                    self.commit.is_durable(),
                    self.data_sync == DataSync::ForDurableIndex,
                    "relaxed: a durable commit syncs the data first, and only it does"
                );
            }
            Durability::Full => {
                assert_eq!(self.commit, Commit::NonDurable, "full: checkpoints only");
                assert_eq!(
                    self.logging == Logging::Record,
                    self.data_sync == DataSync::ForLogRecord,
                    "full: a record is flushed, and only a record needs a flush"
                );
                if !policy.ack_before_durable && (content.stored || content.released) {
                    assert_eq!(self.logging, Logging::Record, "full: promises are logged");
                }
            }
        }
    }
}

/// Why the controller latched failed: it answers every further write with an I/O error until
/// the operator restarts it.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum LatchCause {
    #[error(transparent)]
    Batch(BatchError),
    #[error("checkpoint of the index: {0}")]
    Checkpoint(SyncError),
}

/// A latched failure: its cause, and the cause's text (what `failure` reports).
#[derive(Debug)]
pub(super) struct Latched {
    pub(super) cause: LatchCause,
    pub(super) text: String,
}

impl Latched {
    /// Latches `failed` (field by field, for callers that hold a read view of the store).
    pub(super) fn latch(
        failed: &mut Option<Latched>,
        stats: &mut ControllerStats,
        cause: LatchCause,
    ) {
        if failed.is_none() {
            let text = cause.to_string();
            *failed = Some(Latched { cause, text });
            stats.failed = true;
        }
        assert!(stats.failed);
    }
}

impl<M: MetaStore> Controller<M> {
    /// Latches failed on the first error (later ones are consequences).
    pub(super) fn latch(&mut self, cause: LatchCause) {
        Latched::latch(&mut self.failed, &mut self.stats, cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: DurabilityPolicy = DurabilityPolicy {
        mode: Durability::Full,
        ack_before_durable: false,
        ack_before_log_durable: false,
    };
    const RELAXED: DurabilityPolicy = DurabilityPolicy {
        mode: Durability::Relaxed,
        ..FULL
    };
    const STORED: BatchContent = BatchContent {
        stored: true,
        released: false,
        short_while_undurable: false,
    };
    const RELEASED: BatchContent = BatchContent {
        stored: false,
        released: true,
        short_while_undurable: false,
    };
    const GRANTS_ONLY: BatchContent = BatchContent {
        stored: false,
        released: false,
        short_while_undurable: false,
    };

    fn plan(logging: Logging, data_sync: DataSync, commit: Commit) -> CommitPlan {
        CommitPlan {
            logging,
            data_sync,
            commit,
        }
    }

    #[test]
    fn full_logs_and_flushes_promises_once_and_never_commits_durably() {
        let logged = plan(Logging::Record, DataSync::ForLogRecord, Commit::NonDurable);
        for due in [false, true] {
            assert_eq!(FULL.plan(STORED, due), logged);
            assert_eq!(FULL.plan(RELEASED, due), logged);
            // Nothing promised: no record, no flush, nothing to wait for.
            assert_eq!(
                FULL.plan(GRANTS_ONLY, due),
                plan(Logging::None, DataSync::None, Commit::NonDurable)
            );
        }
        assert!(
            !FULL.begins_data_sync(true),
            "the flush must cover the record"
        );
    }

    #[test]
    fn relaxed_commits_non_durably_and_syncs_data_before_each_durable_commit() {
        for content in [STORED, RELEASED, GRANTS_ONLY] {
            assert_eq!(
                RELAXED.plan(content, false),
                plan(Logging::None, DataSync::None, Commit::NonDurable)
            );
            assert_eq!(
                RELAXED.plan(content, true),
                plan(Logging::None, DataSync::ForDurableIndex, Commit::Durable),
                "{content:?}"
            );
        }
        let pressed = BatchContent {
            short_while_undurable: true,
            ..GRANTS_ONLY
        };
        assert_eq!(
            RELAXED.plan(pressed, false),
            plan(Logging::None, DataSync::ForDurableIndex, Commit::Durable),
            "space is short: released slots need a durable commit"
        );
        assert!(!RELAXED.begins_data_sync(true));
    }

    #[test]
    fn the_bugs_skip_the_record_or_begin_the_flush_before_it() {
        let no_flush = DurabilityPolicy {
            ack_before_durable: true,
            ..FULL
        };
        assert_eq!(
            no_flush.plan(STORED, false),
            plan(Logging::None, DataSync::None, Commit::NonDurable)
        );
        let early = DurabilityPolicy {
            ack_before_log_durable: true,
            ..FULL
        };
        assert!(early.begins_data_sync(true) && !early.begins_data_sync(false));
        assert_eq!(
            early.plan(STORED, false),
            plan(Logging::Record, DataSync::ForLogRecord, Commit::NonDurable)
        );
    }

    #[test]
    fn every_input_gives_a_plan_that_keeps_the_invariants() {
        for mode in [Durability::Full, Durability::Relaxed] {
            for bits in 0u8..64 {
                let policy = DurabilityPolicy {
                    mode,
                    ack_before_durable: bits & 16 != 0,
                    ack_before_log_durable: bits & 32 != 0,
                };
                let content = BatchContent {
                    stored: bits & 1 != 0,
                    released: bits & 2 != 0,
                    short_while_undurable: bits & 4 != 0,
                };
                // `plan` asserts the invariants itself.
                let p = policy.plan(content, bits & 8 != 0);
                if mode == Durability::Full {
                    assert_eq!(p.commit, Commit::NonDurable);
                }
            }
        }
    }
}
