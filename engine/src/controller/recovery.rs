//! Opening the store: header checks, the allocator rebuilt from the index (through the one
//! index audit), last run's reservations returned to free.
//!
//! Must never: serve an index whose blocks overlap or lie past the capacity, or shrink the
//! capacity; in relaxed mode it must not commit durably (the last run's newest entries may
//! point at data it never synced).

use std::collections::VecDeque;

use crate::buddy::{BuddyAllocator, Slot};
use crate::clock::Instant;
use crate::message::WorkerId;
use crate::meta::{Header, LogState, MetaError, MetaRead, MetaStore, MetaTxn, FORMAT_VERSION};
use crate::size_class::SLOT_MAX_BYTES;
use crate::wal::{LogPos, LOG_SECTORS_MIN};

use super::audit::audit_index;
use super::log::Log;
use super::reserved::Reserved;
use super::{Controller, ControllerConfig, ControllerStats, Durability, WORKERS_MAX};

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("data directory has format version {found}; this build reads version {expected}")]
    Version { found: u32, expected: u32 },
    #[error(
        "capacity {requested} bytes is smaller than the stored capacity {stored} bytes; \
         shrinking is not supported"
    )]
    Shrink { requested: u64, stored: u64 },
    #[error("capacity must be a positive multiple of 512 KiB, got {0}")]
    BadCapacity(u64),
    #[error("index is inconsistent: {0}")]
    Inconsistent(String),
    #[error("the index has no write-ahead log record (its format-{0} header must come with one)")]
    NoLogState(u32),
    #[error(
        "the log region has {configured} sectors but the index records {stored}; \
         the data file's layout and the index disagree"
    )]
    LogRegion { configured: u64, stored: u64 },
}

impl<M: MetaStore> Controller<M> {
    /// Opens the store: checks the header, rebuilds the allocator from the index, grows the
    /// capacity if asked, and returns every reservation left by the previous run to free. An
    /// existing store's log must have been replayed first (`wal::recover`): the log is taken
    /// as empty from its `LogState::next` on. A new store gets a `LogState` of
    /// `config.log_sectors` with `config.run_id`.
    pub fn open(store: M, config: ControllerConfig) -> Result<Controller<M>, OpenError> {
        assert!(
            config.workers >= 1 && config.workers <= WORKERS_MAX,
            "{}",
            config.workers
        );
        if config.capacity_bytes == 0 || !config.capacity_bytes.is_multiple_of(SLOT_MAX_BYTES) {
            return Err(OpenError::BadCapacity(config.capacity_bytes));
        }
        assert!(
            config.log_sectors >= LOG_SECTORS_MIN,
            "{}",
            config.log_sectors
        );
        let (header, allocator, stats, stale, log_state) = {
            let read = store.read()?;
            let stored = read.header()?;
            let header = match stored {
                Some(h) if h.format_version != FORMAT_VERSION => {
                    return Err(OpenError::Version {
                        found: h.format_version,
                        expected: FORMAT_VERSION,
                    })
                }
                Some(h) if h.capacity_bytes > config.capacity_bytes => {
                    return Err(OpenError::Shrink {
                        requested: config.capacity_bytes,
                        stored: h.capacity_bytes,
                    })
                }
                Some(h) => Header {
                    capacity_bytes: config.capacity_bytes,
                    ..h
                },
                None => Header {
                    format_version: FORMAT_VERSION,
                    capacity_bytes: config.capacity_bytes,
                    node_id: config.node_id,
                    commit_seq: 0,
                },
            };
            let log_state = match (stored, read.log_state()?) {
                (None, _) => LogState {
                    log_sectors: config.log_sectors,
                    next: LogPos { seq: 1, sector: 0 },
                    run_id: config.run_id,
                },
                (Some(h), None) => return Err(OpenError::NoLogState(h.format_version)),
                (Some(h), Some(state)) => {
                    if state.log_sectors != config.log_sectors {
                        return Err(OpenError::LogRegion {
                            configured: config.log_sectors,
                            stored: state.log_sectors,
                        });
                    }
                    if h.capacity_bytes != config.capacity_bytes {
                        // The region moved to `[C', C' + L)` with the trailer; it is empty
                        // (replayed before open).
                        LogState {
                            next: LogPos {
                                sector: 0,
                                ..state.next
                            },
                            ..state
                        }
                    } else {
                        state
                    }
                }
            };
            let (allocator, stats, stale) = rebuild_allocator(&read, header.capacity_bytes)?;
            (header, allocator, stats, stale, log_state)
        };
        let mut controller = Controller {
            store,
            header,
            allocator,
            reserved: Reserved::default(),
            quarantine: VecDeque::new(),
            undurable: Vec::new(),
            horizon: vec![0; config.workers],
            horizon_asked: vec![0; config.workers],
            inbox: Vec::new(),
            writes_pending: None,
            outbox: (0..config.workers).map(|_| VecDeque::new()).collect(),
            last_run: None,
            last_durable_commit: Instant::ZERO,
            durable_commit_due: config.durability == Durability::Relaxed,
            log: Log::new(log_state, header.node_id, header.commit_seq),
            failed: None,
            stats,
            config,
        };
        controller.recover_reservations(&stale, &log_state)?;
        if controller.config.durability == Durability::Full {
            // That commit was durable: no checkpoint is owed yet.
            controller.log.durable_through(controller.header.commit_seq);
        }
        // Everything committed is durable at open (the driver syncs the data before it opens
        // the index, and the store syncs at open): views may show all of it.
        controller
            .store
            .publish_durable(controller.header.commit_seq);
        // The known bug of `BuddyAllocator` is switched on through the same `bugs` config as
        // the controller's own (sim-bugs builds only).
        #[cfg(feature = "sim-bugs")]
        controller
            .allocator
            .inject_skip_merge(controller.config.bugs.skip_merge());
        controller.check_invariants();
        Ok(controller)
    }

    pub(super) fn recover_reservations(
        &mut self,
        stale: &[(Slot, WorkerId)],
        log_state: &LogState,
    ) -> Result<(), OpenError> {
        let bug = self.config.bugs.skip_reservation_recovery();
        if bug {
            // The bug: last run's pool slots stay allocated and are never given back.
            for (slot, _) in stale {
                let _ = self.allocator.mark_allocated(*slot);
            }
        }
        let mut txn = self.store.begin()?;
        if !bug {
            txn.clear_reservations()?;
        }
        self.header.commit_seq += 1;
        txn.set_header(&self.header)?;
        txn.set_log_state(log_state)?;
        // In relaxed mode the last run's newest entries may point at data it never synced: a
        // durable commit here would make them survive a power loss over lost bytes. Relaxed mode
        // makes the index durable only in `apply_in_txn`, after syncing the data file.
        txn.commit(self.config.durability == Durability::Full)?;
        Ok(())
    }
}

/// Rebuilds the allocator from the index (through the one audit, [`audit_index`]), with the
/// counters /stats reports and the last run's reservations. An index with a problem in its
/// blocks is refused (`OpenError::Inconsistent`, naming the first).
#[allow(clippy::type_complexity)]
pub(super) fn rebuild_allocator(
    read: &impl MetaRead,
    capacity_bytes: u64,
) -> Result<(BuddyAllocator, ControllerStats, Vec<(Slot, WorkerId)>), OpenError> {
    let audit = audit_index(read, capacity_bytes, |_, _| {})?;
    if let Some(problem) = audit.block_problem() {
        return Err(OpenError::Inconsistent(problem.to_string()));
    }
    let stats = ControllerStats {
        blocks: audit.blocks,
        used_bytes: audit.used_bytes,
        data_bytes: audit.data_bytes,
        ..ControllerStats::default()
    };
    Ok((audit.allocator, stats, audit.reservations))
}
