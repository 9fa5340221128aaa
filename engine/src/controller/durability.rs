//! Durability: the modes, the pure plan that decides how a batch is made durable, the latch,
//! and the outcome of the index's background sync.
//!
//! Owns the decision, not the I/O: [`DurabilityPolicy::plan`] is a pure function of the mode,
//! the driver's capability, the batch's content and whether a periodic durable commit is due;
//! `Controller::apply_in_txn` (batch.rs) follows the plan step by step. Must never sync, commit
//! or read a clock itself.
//!
//! Invariants of every plan (checked by `CommitPlan::check` and the tests below):
//! - a durable index never points at data that is not durable: a durable commit in relaxed mode
//!   syncs the data file first, and in full mode the data of stored blocks is synced first;
//! - in full mode (without the `ack_before_durable` bug) a batch that promises something (a
//!   stored block, a deletion) is made durable before its answers go out;
//! - answers wait for the index's background sync exactly when the commit is made durable in
//!   the background.

use std::time::Duration;

use crate::message::{ErrorCode, ToWorker};
use crate::meta::MetaStore;

use super::batch::BatchError;
use super::driver::SyncError;
use super::{is_promise, Controller, ControllerStats};

/// In relaxed mode, the longest time between durable commits (bounds index growth, see
/// `apply_in_txn`).
pub const RELAXED_SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Durability {
    /// fdatasync of the data file and a durable commit before any PUT is acknowledged.
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

/// Where the driver makes the index durable ([`super::ControllerIo::index_durability`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IndexDurability {
    /// A durable commit syncs the index on the controller's thread, inside the cycle.
    InCycle,
    /// The driver syncs the index after a non-durable commit on another thread
    /// (`begin_durable`, then [`Controller::durable_done`]).
    InBackground,
}

/// Everything the durability decision depends on except the batch: fixed for a run (the bug
/// switch) or for a cycle (the driver's capability).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DurabilityPolicy {
    pub mode: Durability,
    pub index: IndexDurability,
    /// The known bug (simulator teeth): acknowledge PUTs and DELETEs before they are durable.
    pub ack_before_durable: bool,
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
    /// Full mode: the stored blocks' bytes must be durable before the index says they are
    /// stored. Timed as the batch's sync (`last_sync_ns`), before the commit's clock starts.
    ForStoredBlocks,
    /// Relaxed mode's periodic durable commit: the durable index must not point at data that
    /// is not durable. Part of the commit's time.
    ForDurableIndex,
}

/// How the transaction is committed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Commit {
    /// Visible, survives a process crash, not a power loss.
    NonDurable,
    /// Durable when the commit returns.
    Durable,
    /// Committed non-durably; the driver then makes it durable in the background
    /// (`begin_durable`), and no further write commits until [`Controller::durable_done`].
    DurableInBackground,
}

impl Commit {
    /// The commit will be durable (now or after the background sync).
    pub fn is_durable(self) -> bool {
        !matches!(self, Commit::NonDurable)
    }
}

/// When the answers that promise something (a PUT's `Occupied`, a DELETE's `Released`) go out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answers {
    /// With the commit.
    AtCommit,
    /// Once the index's background sync succeeded (turned into I/O errors if it failed).
    AfterIndexSync,
}

/// How one batch is made durable: the cycle follows it in this order (data sync, commit,
/// answers).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommitPlan {
    pub data_sync: DataSync,
    pub commit: Commit,
    pub answers: Answers,
}

impl DurabilityPolicy {
    /// Whether to start the data file's sync in the background before the transaction: every
    /// `Occupy` of the batch was sent after its data write completed, so a sync started now
    /// covers them all while the controller does the index work.
    pub fn begins_data_sync(&self, occupies: bool) -> bool {
        self.mode == Durability::Full && occupies && !self.ack_before_durable
    }

    /// The plan for a batch with this content. `durable_commit_due`: no durable commit since
    /// `open` in relaxed mode, or none for `RELAXED_SYNC_INTERVAL` (a store may not reuse pages
    /// freed after its last durable commit, so one commit a second is made durable anyway).
    pub fn plan(&self, content: BatchContent, durable_commit_due: bool) -> CommitPlan {
        let full = self.mode == Durability::Full;
        let honest = !self.ack_before_durable;
        // Only index changes a client was promised (stored blocks, deletions) need a durable
        // commit; reservations alone return to free at the next start anyway.
        let promised = content.stored || content.released;
        let for_promises = full && promised && honest;
        // Released slots wait for a durable commit (relaxed mode): when space runs short, make
        // this one durable rather than let PUTs wait up to the interval.
        let periodic = !for_promises && (durable_commit_due || content.short_while_undurable);
        let data_sync = if full && content.stored && honest {
            DataSync::ForStoredBlocks
        } else if periodic && !full {
            DataSync::ForDurableIndex
        } else {
            DataSync::None
        };
        let background =
            for_promises && full && self.index == IndexDurability::InBackground && honest;
        let commit = match (for_promises || periodic, background) {
            (false, _) => Commit::NonDurable,
            (true, false) => Commit::Durable,
            (true, true) => Commit::DurableInBackground,
        };
        let answers = match commit {
            Commit::DurableInBackground => Answers::AfterIndexSync,
            Commit::NonDurable | Commit::Durable => Answers::AtCommit,
        };
        let plan = CommitPlan {
            data_sync,
            commit,
            answers,
        };
        plan.check(self, content);
        plan
    }
}

impl CommitPlan {
    /// The invariants of the module doc.
    fn check(&self, policy: &DurabilityPolicy, content: BatchContent) {
        let full = policy.mode == Durability::Full;
        let honest = !policy.ack_before_durable;
        if !full {
            assert_eq!(
                self.commit.is_durable(),
                self.data_sync == DataSync::ForDurableIndex,
                "relaxed: a durable commit syncs the data first, and only it does"
            );
        }
        if full && honest && content.stored {
            assert_eq!(self.data_sync, DataSync::ForStoredBlocks);
        }
        if full && honest && (content.stored || content.released) {
            assert!(self.commit.is_durable(), "full: promises are made durable");
        }
        assert_eq!(
            self.answers == Answers::AfterIndexSync,
            self.commit == Commit::DurableInBackground
        );
    }
}

/// Why the controller latched failed: it answers every further write with an I/O error until
/// the operator restarts it.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum LatchCause {
    #[error(transparent)]
    Batch(BatchError),
    #[error("making a batch durable: {0}")]
    Durable(SyncError),
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

    /// The outcome of `ControllerIo::begin_durable`, and how long it took. On success the
    /// batch's replies go out and its released slots join the quarantine. On failure the
    /// controller latches: the batch stays committed (visible, and it survives a process crash,
    /// not a power loss), but no PUT or DELETE of it is acknowledged: they get I/O errors.
    pub fn durable_done(&mut self, result: Result<(), impl Into<SyncError>>, took: Duration) {
        let replies = self
            .awaiting_durable
            .take()
            .expect("durable_done without a batch awaiting durability");
        assert!(self.writes_pending.is_none(), "durable_done inside a cycle");
        let ns = took.as_nanos() as u64;
        self.stats.last_sync_ns = ns;
        self.stats.total_sync_ns += ns;
        let ok = match result {
            Ok(()) => {
                // Nothing committed since that batch (writes wait): its seq is the header's.
                self.store.publish_durable(self.header.commit_seq);
                self.quarantine.extend(self.undurable.drain(..));
                self.want_horizons();
                true
            }
            Err(e) => {
                self.latch(LatchCause::Durable(e.into()));
                false
            }
        };
        for (worker, mut reply) in replies {
            if !ok {
                if let ToWorker::Occupied { request, .. } | ToWorker::Released { request, .. } =
                    reply
                {
                    reply = ToWorker::Error {
                        request,
                        code: ErrorCode::Io,
                    };
                }
            }
            assert!(
                !ok || is_promise(&reply),
                "only promises wait for durability"
            );
            self.outbox[worker as usize].push_back(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_IN_CYCLE: DurabilityPolicy = DurabilityPolicy {
        mode: Durability::Full,
        index: IndexDurability::InCycle,
        ack_before_durable: false,
    };
    const FULL_IN_BACKGROUND: DurabilityPolicy = DurabilityPolicy {
        index: IndexDurability::InBackground,
        ..FULL_IN_CYCLE
    };
    const RELAXED: DurabilityPolicy = DurabilityPolicy {
        mode: Durability::Relaxed,
        ..FULL_IN_CYCLE
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

    fn plan(data_sync: DataSync, commit: Commit, answers: Answers) -> CommitPlan {
        CommitPlan {
            data_sync,
            commit,
            answers,
        }
    }

    #[test]
    fn full_in_cycle_syncs_stored_data_and_commits_durably() {
        let p = FULL_IN_CYCLE.plan(STORED, false);
        let want = plan(
            DataSync::ForStoredBlocks,
            Commit::Durable,
            Answers::AtCommit,
        );
        assert_eq!(p, want);
        let p = FULL_IN_CYCLE.plan(RELEASED, false);
        assert_eq!(p, plan(DataSync::None, Commit::Durable, Answers::AtCommit));
    }

    #[test]
    fn full_in_background_holds_promises_until_the_index_sync() {
        let p = FULL_IN_BACKGROUND.plan(STORED, false);
        let want = plan(
            DataSync::ForStoredBlocks,
            Commit::DurableInBackground,
            Answers::AfterIndexSync,
        );
        assert_eq!(p, want);
        let p = FULL_IN_BACKGROUND.plan(RELEASED, true);
        let want = plan(
            DataSync::None,
            Commit::DurableInBackground,
            Answers::AfterIndexSync,
        );
        assert_eq!(p, want);
    }

    #[test]
    fn full_grants_alone_commit_non_durably_unless_the_periodic_commit_is_due() {
        for policy in [FULL_IN_CYCLE, FULL_IN_BACKGROUND] {
            let p = policy.plan(GRANTS_ONLY, false);
            assert_eq!(
                p,
                plan(DataSync::None, Commit::NonDurable, Answers::AtCommit)
            );
            // Due: durable in the cycle (nothing promised, nothing to hold), no data sync.
            let p = policy.plan(GRANTS_ONLY, true);
            assert_eq!(p, plan(DataSync::None, Commit::Durable, Answers::AtCommit));
        }
    }

    #[test]
    fn relaxed_commits_non_durably_and_syncs_data_before_each_durable_commit() {
        for index in [IndexDurability::InCycle, IndexDurability::InBackground] {
            let policy = DurabilityPolicy { index, ..RELAXED };
            for content in [STORED, RELEASED, GRANTS_ONLY] {
                let p = policy.plan(content, false);
                assert_eq!(
                    p,
                    plan(DataSync::None, Commit::NonDurable, Answers::AtCommit)
                );
                let p = policy.plan(content, true);
                let want = plan(
                    DataSync::ForDurableIndex,
                    Commit::Durable,
                    Answers::AtCommit,
                );
                assert_eq!(p, want, "{content:?}");
            }
            let pressed = BatchContent {
                short_while_undurable: true,
                ..GRANTS_ONLY
            };
            let p = policy.plan(pressed, false);
            let want = plan(
                DataSync::ForDurableIndex,
                Commit::Durable,
                Answers::AtCommit,
            );
            assert_eq!(
                p, want,
                "space is short: released slots need a durable commit"
            );
        }
    }

    #[test]
    fn ack_before_durable_skips_every_sync_but_keeps_the_periodic_commit() {
        for base in [FULL_IN_CYCLE, FULL_IN_BACKGROUND] {
            let bug = DurabilityPolicy {
                ack_before_durable: true,
                ..base
            };
            assert!(!bug.begins_data_sync(true));
            let p = bug.plan(STORED, false);
            assert_eq!(
                p,
                plan(DataSync::None, Commit::NonDurable, Answers::AtCommit)
            );
            // The bug as it always was: the periodic commit is durable over unsynced data.
            let p = bug.plan(STORED, true);
            assert_eq!(p, plan(DataSync::None, Commit::Durable, Answers::AtCommit));
        }
    }

    #[test]
    fn the_background_data_sync_starts_for_occupies_in_full_mode_only() {
        assert!(FULL_IN_CYCLE.begins_data_sync(true));
        assert!(FULL_IN_BACKGROUND.begins_data_sync(true));
        assert!(!FULL_IN_CYCLE.begins_data_sync(false));
        assert!(!RELAXED.begins_data_sync(true));
    }

    #[test]
    fn every_input_gives_a_plan_that_keeps_the_invariants() {
        let modes = [Durability::Full, Durability::Relaxed];
        let indexes = [IndexDurability::InCycle, IndexDurability::InBackground];
        for (mode, index, bug, bits) in modes.into_iter().flat_map(|m| {
            indexes.into_iter().flat_map(move |i| {
                [false, true]
                    .into_iter()
                    .flat_map(move |b| (0u8..16).map(move |bits| (m, i, b, bits)))
            })
        }) {
            let policy = DurabilityPolicy {
                mode,
                index,
                ack_before_durable: bug,
            };
            let content = BatchContent {
                stored: bits & 1 != 0,
                released: bits & 2 != 0,
                short_while_undurable: bits & 4 != 0,
            };
            // `plan` asserts the invariants itself.
            let p = policy.plan(content, bits & 8 != 0);
            if p.commit == Commit::DurableInBackground {
                assert_eq!(index, IndexDurability::InBackground);
                assert_eq!(mode, Durability::Full);
            }
        }
    }
}
