//! The controller: the only owner of the metadata store and the allocator.
//!
//! One cycle (seed plan, steps 0-11): pause if less than the cycle interval has passed since the
//! last run; take every message the driver drained from the worker queues; split them by kind;
//! answer get_address and list at once from a read view; then one write transaction with
//! release -> allocate -> occupy -> return; make the data file durable (through the driver);
//! commit; queue the remaining replies. Replies wait in per-worker outboxes until the driver
//! can push them; a full worker queue delays a reply, never drops it.
//!
//! Isolation (SPEC guarantee 4) is deferred reuse: a released slot stays in quarantine until
//! every worker has reported (`ReaderHorizon`) that it has finished with every address reply
//! sent to it up to the cycle of the release (replies are numbered per worker in sending order;
//! a reply is finished when the read it led to completes). Quarantined bytes count as free.
//!
//! After any store or sync error the controller latches failed (as redb does): it never retries
//! a failed fsync, answers every further write with an I/O error, and the operator restarts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::buddy::{BuddyAllocator, Slot};
use crate::bugs::Bugs;
use crate::clock::Instant;
use crate::hash::BlockHash;
use crate::message::{
    ErrorCode, Location, OccupyOutcome, ReleaseOutcome, RequestId, ToController, ToWorker,
    WorkerId, ALLOCATE_COUNT_MAX,
};
use crate::meta::{Header, IndexEntry, MetaError, MetaRead, MetaStore, MetaTxn, FORMAT_VERSION};
use crate::size_class::{SizeClass, CLASS_COUNT, SLOT_MAX_BYTES};

/// Default pause between cycles (seed: 100 us).
pub const CYCLE_INTERVAL_DEFAULT: Duration = Duration::from_micros(100);
/// In relaxed mode, the longest time between durable commits (bounds index growth, see
/// `apply_in_txn`).
pub const RELAXED_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Most workers one controller serves (worker ids are a u8).
pub const WORKERS_MAX: usize = 64;
/// Most messages handled in one cycle; the rest wait for the next.
pub const BATCH_MESSAGES_MAX: usize = 65_536;

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

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub capacity_bytes: u64,
    pub workers: usize,
    pub cycle_interval: Duration,
    pub durability: Durability,
    /// Used only when the store is created.
    pub node_id: u64,
    pub bugs: Bugs,
}

/// What the controller needs from its driver besides the store.
pub trait ControllerIo {
    /// Make every completed write to the data file durable (fdatasync). After
    /// [`ControllerIo::begin_sync_data`], waits for that sync instead (its result).
    fn sync_data(&mut self) -> Result<(), String>;
    /// Start making every write completed so far durable, in the background, so that the sync
    /// overlaps the batch's index work; `sync_data` then waits for it. A driver that cannot
    /// sync in the background does nothing here (and syncs in `sync_data`).
    fn begin_sync_data(&mut self) {}
    /// Whether this driver makes the index durable in the background (`begin_durable`). Then a
    /// full-durability batch, once its data is durable (`sync_data`), is committed non-durably
    /// (visible, and it survives a process crash), its answers to PUTs and DELETEs are held,
    /// and the controller goes on answering reads while the driver syncs the index; it commits
    /// nothing more until [`Controller::durable_done`].
    fn durable_in_background(&self) -> bool {
        false
    }
    /// Starts making the index's last commit durable, in the background; the driver then
    /// calls [`Controller::durable_done`] with the outcome. Only called when
    /// `durable_in_background` is true, and never while an earlier one is pending.
    fn begin_durable(&mut self) {
        unreachable!("begin_durable on a driver that does not sync in the background");
    }
    /// The current time, for latency figures only (never for decisions).
    fn now(&mut self) -> Instant;
}

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
}

/// Figures for /stats and /metrics. All byte figures satisfy
/// `free_bytes + reserved_bytes + used_bytes == capacity_bytes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerStats {
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    pub reserved_bytes: u64,
    pub used_bytes: u64,
    pub quarantined_bytes: u64,
    pub blocks: u64,
    pub data_bytes: u64,
    pub free_slots: [u64; CLASS_COUNT],
    pub reserved_slots: [u64; CLASS_COUNT],
    pub cycles: u64,
    pub commits: u64,
    pub commit_seq: u64,
    pub last_batch_messages: u64,
    pub max_batch_messages: u64,
    pub messages_total: u64,
    pub allocations: u64,
    pub last_commit_ns: u64,
    pub max_commit_ns: u64,
    pub total_commit_ns: u64,
    pub last_sync_ns: u64,
    pub total_sync_ns: u64,
    pub pauses: u64,
    pub outbox_waiting: u64,
    pub failed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CycleOutcome {
    /// Less than the cycle interval since the last run: call again at `until`.
    Paused { until: Instant },
    /// Nothing to do.
    Idle,
    /// A cycle ran over this many messages.
    Ran { messages: usize },
}

pub struct Controller<M: MetaStore> {
    store: M,
    config: ControllerConfig,
    header: Header,
    allocator: BuddyAllocator,
    /// Slots held by worker pools (or by PUTs in flight), by offset.
    reserved: Reserved,
    /// Released slots waiting for readers, with the per-worker count of address replies sent
    /// up to their release.
    quarantine: VecDeque<(Vec<u64>, Slot)>,
    /// Released slots the durable index may still point at (relaxed mode: the release was
    /// committed, not yet durably): they join the quarantine at the next durable commit, so a
    /// power loss that brings a deleted block back finds its bytes intact, not a reused slot.
    undurable: Vec<(Vec<u64>, Slot)>,
    /// Per worker: every address reply numbered below this is finished.
    horizon: Vec<u64>,
    /// Per worker: address replies sent so far (numbered 1..=this).
    addresses_sent: Vec<u64>,
    epoch: u64,
    inbox: Vec<ToController>,
    /// The batch between `start_cycle` and `finish_cycle`.
    writes_pending: Option<Vec<ToController>>,
    outbox: Vec<VecDeque<ToWorker>>,
    last_run: Option<Instant>,
    last_durable_commit: Instant,
    /// Relaxed mode, since `open`: no durable commit yet. The last run's non-durable deletes
    /// are committed but not durable, so the first write batch (before any slot is handed out)
    /// syncs the data file and commits durably.
    durable_commit_due: bool,
    /// A batch committed non-durably whose durability the driver is making in the background
    /// (`ControllerIo::begin_durable`): its replies, held until `durable_done`. Meanwhile
    /// only reads are answered; writes wait in the inbox.
    awaiting_durable: Option<Vec<(WorkerId, ToWorker)>>,
    /// The blocks that batch stored: reads answer them "not found" until they are durable, so
    /// that nothing a GET, HEAD, listing or `missing` reports as stored can be lost (a client
    /// that sees a block may skip its own upload).
    awaiting_stored: BTreeSet<BlockHash>,
    failed: Option<String>,
    stats: ControllerStats,
}

/// Replies held until the batch commits.
struct Pending {
    replies: Vec<(WorkerId, ToWorker)>,
    /// Slots to free once committed (duplicates, returns).
    free_after_commit: Vec<Slot>,
    /// Slots to quarantine once committed (releases).
    quarantine_after_commit: Vec<Slot>,
    needs_sync: bool,
    /// The commit was durable.
    durable: bool,
    /// The commit was non-durable and the driver makes it durable in the background.
    durable_in_background: bool,
    /// Blocks the batch stored (new ones, not duplicates).
    stored: Vec<BlockHash>,
    /// An allocate request of the batch was granted fewer slots than it asked for.
    short: bool,
    /// In-memory changes made before the commit, undone if the batch fails.
    undo: Vec<Undo>,
}

/// One in-memory change of a batch that a failed commit must take back.
enum Undo {
    /// A slot taken from the allocator (and perhaps reserved) for an allocate request.
    Allocated(Slot),
    /// A reservation dropped by an occupy or a return.
    Unreserved(Slot, WorkerId),
}

impl<M: MetaStore> Controller<M> {
    /// Opens the store: checks the header, rebuilds the allocator from the index, grows the
    /// capacity if asked, and returns every reservation left by the previous run to free.
    pub fn open(store: M, config: ControllerConfig) -> Result<Controller<M>, OpenError> {
        assert!(
            config.workers >= 1 && config.workers <= WORKERS_MAX,
            "{}",
            config.workers
        );
        if config.capacity_bytes == 0 || !config.capacity_bytes.is_multiple_of(SLOT_MAX_BYTES) {
            return Err(OpenError::BadCapacity(config.capacity_bytes));
        }
        let (header, allocator, stats, stale) = {
            let read = store.read()?;
            let header = match read.header()? {
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
            let (allocator, stats) = rebuild_allocator(&read, header.capacity_bytes)?;
            let stale = read.reservations()?;
            (header, allocator, stats, stale)
        };
        let mut controller = Controller {
            store,
            header,
            allocator,
            reserved: Reserved::default(),
            quarantine: VecDeque::new(),
            undurable: Vec::new(),
            horizon: vec![1; config.workers],
            addresses_sent: vec![0; config.workers],
            epoch: 0,
            inbox: Vec::new(),
            writes_pending: None,
            outbox: (0..config.workers).map(|_| VecDeque::new()).collect(),
            last_run: None,
            last_durable_commit: Instant::ZERO,
            durable_commit_due: config.durability == Durability::Relaxed,
            awaiting_durable: None,
            awaiting_stored: BTreeSet::new(),
            failed: None,
            stats,
            config,
        };
        controller.recover_reservations(&stale)?;
        // The known bug of `BuddyAllocator` is switched on through the same `bugs` config as
        // the controller's own (sim-bugs builds only).
        #[cfg(feature = "sim-bugs")]
        controller
            .allocator
            .inject_skip_merge(controller.config.bugs.skip_merge());
        controller.check_invariants();
        Ok(controller)
    }

    fn recover_reservations(&mut self, stale: &[(Slot, WorkerId)]) -> Result<(), OpenError> {
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
        // In relaxed mode the last run's newest entries may point at data it never synced: a
        // durable commit here would make them survive a power loss over lost bytes. Relaxed mode
        // makes the index durable only in `apply_in_txn`, after syncing the data file.
        txn.commit(self.config.durability == Durability::Full)?;
        Ok(())
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn store(&self) -> &M {
        &self.store
    }

    /// Consumes the controller, giving back its store (shutdown, crash tests).
    pub fn into_store(self) -> M {
        self.store
    }

    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Takes one message drained from a worker queue.
    pub fn handle_message(&mut self, message: ToController) {
        assert!(
            (message.worker() as usize) < self.config.workers,
            "{message:?}"
        );
        self.inbox.push(message);
    }

    /// Messages waiting for the next cycle.
    pub fn inbox_len(&self) -> usize {
        self.inbox.len()
    }

    /// When the controller next wants to run: `None` when idle (no messages waiting, or only
    /// writes that wait for the batch in flight to be durable).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.inbox.is_empty()
            || self.awaiting_durable.is_some() && !self.inbox.iter().any(is_read)
        {
            return None;
        }
        Some(match self.last_run {
            Some(t) => t + self.config.cycle_interval,
            None => Instant::ZERO,
        })
    }

    /// Runs one cycle if the pause has passed.
    pub fn run_cycle(&mut self, now: Instant, io: &mut impl ControllerIo) -> CycleOutcome {
        let outcome = self.start_cycle(now);
        if matches!(outcome, CycleOutcome::Ran { .. }) {
            self.finish_cycle(io);
        }
        outcome
    }

    /// Steps 0-5 of a cycle: the pause, the batch, and the answers to get_address and list
    /// (in the outboxes: the driver may push them before [`Controller::finish_cycle`], so GETs do
    /// not wait for the batch's fdatasync and commit). `Ran` must be followed by `finish_cycle`.
    pub fn start_cycle(&mut self, now: Instant) -> CycleOutcome {
        assert!(self.writes_pending.is_none(), "finish_cycle was not called");
        if let Some(last) = self.last_run {
            let until = last + self.config.cycle_interval;
            if now < until {
                self.stats.pauses += 1;
                return CycleOutcome::Paused { until };
            }
        }
        if self.inbox.is_empty() {
            return CycleOutcome::Idle;
        }
        let batch: Vec<ToController> = if self.awaiting_durable.is_some() {
            // Only reads until the batch in flight is durable; writes keep their order.
            if !self.inbox.iter().any(is_read) {
                return CycleOutcome::Idle;
            }
            let mut reads = Vec::new();
            self.inbox.retain(|m| {
                let read = is_read(m) && reads.len() < BATCH_MESSAGES_MAX;
                if read {
                    reads.push(*m);
                }
                !read
            });
            reads
        } else {
            let take = self.inbox.len().min(BATCH_MESSAGES_MAX);
            self.inbox.drain(..take).collect()
        };
        self.last_run = Some(now);
        self.stats.cycles += 1;
        self.stats.last_batch_messages = batch.len() as u64;
        self.stats.max_batch_messages = self.stats.max_batch_messages.max(batch.len() as u64);
        self.stats.messages_total += batch.len() as u64;
        let messages = batch.len();
        self.read_phase(&batch);
        self.writes_pending = Some(batch);
        CycleOutcome::Ran { messages }
    }

    /// Steps 6-10 of a cycle started by [`Controller::start_cycle`]: one write transaction,
    /// durable data, commit, replies.
    pub fn finish_cycle(&mut self, io: &mut impl ControllerIo) {
        let batch = self.writes_pending.take().expect("start_cycle ran a batch");
        let writes = batch.iter().any(|m| !is_read(m));
        if writes {
            self.write_batch(&batch, io);
        }
        if cfg!(debug_assertions) {
            self.check_invariants_cheap();
        }
    }

    fn read_phase(&mut self, batch: &[ToController]) {
        // Horizons first: they may let quarantined slots go before this cycle allocates.
        for m in batch {
            if let ToController::ReaderHorizon { worker, epoch } = *m {
                let h = &mut self.horizon[worker as usize];
                assert!(
                    epoch <= self.addresses_sent[worker as usize] + 1,
                    "horizon ahead of replies"
                );
                *h = (*h).max(epoch);
            }
        }
        self.release_quarantine();
        self.epoch += 1;
        self.answer_reads(batch);
    }

    /// Step 5: get_address and list from a read view of the committed state.
    fn answer_reads(&mut self, batch: &[ToController]) {
        let epoch = self.epoch;
        let read = match self.store.read() {
            Ok(r) => r,
            Err(e) => {
                // Field-level latch: `read` still borrows the store.
                if self.failed.is_none() {
                    self.failed = Some(format!("read view: {e}"));
                    self.stats.failed = true;
                }
                for m in batch {
                    if let ToController::GetAddress {
                        worker, request, ..
                    }
                    | ToController::List {
                        worker, request, ..
                    } = *m
                    {
                        self.outbox[worker as usize].push_back(ToWorker::Error {
                            request,
                            code: ErrorCode::Io,
                        });
                    }
                }
                return;
            }
        };
        let mut listed = Vec::new();
        for m in batch {
            match *m {
                ToController::GetAddress {
                    worker,
                    request,
                    hash,
                } => {
                    let found = match read.get(&hash) {
                        Ok(Some(_)) if self.awaiting_stored.contains(&hash) => Ok(None),
                        other => other,
                    };
                    let reply = match found {
                        Ok(found) => {
                            let location = found.map(|e| Location {
                                slot: e.slot,
                                len: e.len,
                                crc32c: e.crc32c,
                            });
                            ToWorker::Address {
                                request,
                                location,
                                epoch,
                            }
                        }
                        Err(_) => ToWorker::Error {
                            request,
                            code: ErrorCode::Io,
                        },
                    };
                    if matches!(reply, ToWorker::Address { .. }) {
                        self.addresses_sent[worker as usize] += 1;
                    }
                    self.outbox[worker as usize].push_back(reply);
                }
                ToController::List {
                    worker,
                    request,
                    after,
                    limit,
                } => {
                    listed.clear();
                    let out = &mut self.outbox[worker as usize];
                    // Blocks not yet durable are left out; ask for as many more.
                    let more = self.awaiting_stored.len();
                    let awaiting = &self.awaiting_stored;
                    match read.list(after.as_ref(), limit as usize + more, &mut listed) {
                        Ok(()) => {
                            listed.retain(|(hash, _)| !awaiting.contains(hash));
                            listed.truncate(limit as usize);
                            for (hash, e) in &listed {
                                out.push_back(ToWorker::ListItem {
                                    request,
                                    hash: *hash,
                                    len: e.len,
                                });
                            }
                            let count = listed.len() as u16;
                            out.push_back(ToWorker::ListDone { request, count });
                        }
                        Err(_) => out.push_back(ToWorker::Error {
                            request,
                            code: ErrorCode::Io,
                        }),
                    }
                }
                _ => {}
            }
        }
    }

    /// Steps 6-10: one write transaction, durable data, commit, replies.
    fn write_batch(&mut self, batch: &[ToController], io: &mut impl ControllerIo) {
        if self.failed.is_some() {
            self.fail_writes(batch);
            return;
        }
        let mut pending = Pending {
            replies: Vec::new(),
            free_after_commit: Vec::new(),
            quarantine_after_commit: Vec::new(),
            needs_sync: false,
            durable: false,
            durable_in_background: false,
            stored: Vec::new(),
            short: false,
            undo: Vec::new(),
        };
        match self.apply_in_txn(batch, &mut pending, io) {
            Ok(()) if pending.durable_in_background => {
                // Committed, not yet durable: what may be done now is done (freed slots
                // are free, released ones wait in `undurable`, slots handed to pools go out:
                // reservations are never promised). The answers to PUTs and DELETEs wait.
                let (held, now): (Vec<_>, Vec<_>) = std::mem::take(&mut pending.replies)
                    .into_iter()
                    .partition(|(_, r)| is_promise(r));
                pending.replies = now;
                self.awaiting_stored.extend(pending.stored.drain(..));
                self.finish_commit(pending);
                self.awaiting_durable = Some(held);
                io.begin_durable();
            }
            Ok(()) => self.finish_commit(pending),
            Err(e) => {
                // Nothing was committed: the allocator and the reservations go back to the
                // committed state, or the books (and the next cycle's check) would be wrong.
                self.undo(pending.undo);
                self.latch(e);
                self.fail_writes(batch);
            }
        }
    }

    fn undo(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Allocated(slot) => {
                    self.reserved.remove(&slot.offset);
                    self.allocator
                        .free(slot)
                        .expect("an undone allocation was allocated");
                }
                Undo::Unreserved(slot, worker) => {
                    let previous = self.reserved.insert(slot.offset, (slot, worker));
                    assert!(previous.is_none(), "an undone reservation was free");
                }
            }
        }
        debug_assert!(self
            .reserved
            .values()
            .all(|(s, _)| self.allocator.is_allocated(*s)));
    }

    fn apply_in_txn(
        &mut self,
        batch: &[ToController],
        pending: &mut Pending,
        io: &mut impl ControllerIo,
    ) -> Result<(), String> {
        let seq = self.header.commit_seq + 1;
        let full = self.config.durability == Durability::Full;
        let in_background =
            full && io.durable_in_background() && !self.config.bugs.ack_before_durable();
        // Every Occupy of the batch was sent after its data write completed, so a sync started
        // now covers them all: let it run while this thread does the index work.
        let occupies = batch
            .iter()
            .any(|m| matches!(m, ToController::Occupy { .. }));
        if full && occupies && !self.config.bugs.ack_before_durable() {
            io.begin_sync_data();
        }
        let mut txn = self.store.begin().map_err(|e| format!("begin: {e}"))?;
        let mut counts = Counts::default();
        let mut ctx = BatchCtx {
            allocator: &mut self.allocator,
            reserved: &mut self.reserved,
            seq,
            quarantined: !self.quarantine.is_empty() || !self.undurable.is_empty(),
            reclaim_sent: [0; WORKERS_MAX],
        };
        for m in batch {
            if let ToController::Release {
                worker,
                request,
                hash,
            } = *m
            {
                let outcome = ctx.release(&mut txn, hash, pending, &mut counts)?;
                pending
                    .replies
                    .push((worker, ToWorker::Released { request, outcome }));
            }
        }
        for m in batch {
            if let ToController::Allocate {
                worker,
                request,
                class,
                count,
            } = *m
            {
                ctx.allocate(&mut txn, worker, request, class, count, pending)?;
            }
        }
        for m in batch {
            if let ToController::Occupy {
                worker,
                request,
                hash,
                slot,
                len,
                crc32c,
            } = *m
            {
                let reply = ctx.occupy(
                    &mut txn,
                    worker,
                    request,
                    hash,
                    slot,
                    len,
                    crc32c,
                    pending,
                    &mut counts,
                )?;
                if let ToWorker::Occupied {
                    outcome: OccupyOutcome::Stored,
                    ..
                } = reply
                {
                    pending.stored.push(hash);
                }
                pending.replies.push((worker, reply));
            }
        }
        for m in batch {
            if let ToController::ReturnSlot {
                worker,
                request: _,
                slot,
            } = *m
            {
                ctx.return_slot(&mut txn, worker, slot, pending)?;
            }
        }
        let header = Header {
            commit_seq: seq,
            ..self.header
        };
        txn.set_header(&header)
            .map_err(|e| format!("header: {e}"))?;
        // The data first, in either way: a commit, even a non-durable one, may become durable
        // at any later sync of the index (libmdbx syncs at open and close too), so it must
        // never point at data that is not durable.
        if full && pending.needs_sync && !self.config.bugs.ack_before_durable() {
            let t0 = io.now();
            io.sync_data()
                .map_err(|e| format!("fdatasync of the data file: {e}"))?;
            let ns = io.now().saturating_since(t0).as_nanos() as u64;
            self.stats.last_sync_ns = ns;
            self.stats.total_sync_ns += ns;
        }
        // Only index changes a client was promised (stored blocks, deletions) need a durable
        // commit; reservations alone return to free at the next start anyway.
        let promised = pending.needs_sync || !pending.quarantine_after_commit.is_empty();
        let durable = full && promised && !self.config.bugs.ack_before_durable();
        let t0 = io.now();
        // A store may not reuse pages freed after its last durable commit (libmdbx in its
        // no-sync mode): in relaxed mode, still make one commit a second durable.
        let periodic = !durable
            && (self.durable_commit_due || t0 >= self.last_durable_commit + RELAXED_SYNC_INTERVAL);
        // Released slots wait for a durable commit (relaxed mode): when space runs short, make
        // this one durable rather than let PUTs wait up to the interval.
        let pressed = !durable && pending.short && !self.undurable.is_empty();
        let periodic = periodic || pressed;
        if periodic && !full {
            // The durable index must not point at data that is not durable (a power loss would
            // leave torn blocks under it): the relaxed mode's durable commit syncs first.
            io.sync_data()
                .map_err(|e| format!("fdatasync of the data file: {e}"))?;
        }
        let durable = durable || periodic;
        if durable {
            self.last_durable_commit = t0;
            self.durable_commit_due = false;
        }
        // In the background: the index's sync, after this commit (its data is durable above).
        let background = durable && in_background && promised;
        pending.durable = durable && !background;
        pending.durable_in_background = background;
        txn.commit(pending.durable)
            .map_err(|e| format!("commit: {e}"))?;
        let ns = io.now().saturating_since(t0).as_nanos() as u64;
        self.stats.last_commit_ns = ns;
        self.stats.max_commit_ns = self.stats.max_commit_ns.max(ns);
        self.stats.total_commit_ns += ns;
        self.stats.commits += 1;
        self.header = header;
        self.stats.blocks = (self.stats.blocks + counts.blocks_added) - counts.blocks_removed;
        self.stats.used_bytes = (self.stats.used_bytes + counts.used_added) - counts.used_removed;
        self.stats.data_bytes = (self.stats.data_bytes + counts.data_added) - counts.data_removed;
        Ok(())
    }

    fn finish_commit(&mut self, pending: Pending) {
        for slot in pending.free_after_commit {
            self.allocator
                .free(slot)
                .expect("a committed duplicate or return was allocated");
        }
        if pending.durable {
            self.quarantine.extend(self.undurable.drain(..));
        }
        for slot in pending.quarantine_after_commit {
            if self.config.bugs.reuse_while_reading() {
                self.allocator
                    .free(slot)
                    .expect("released slot was allocated");
            } else if pending.durable {
                self.quarantine
                    .push_back((self.addresses_sent.clone(), slot));
            } else {
                self.undurable.push((self.addresses_sent.clone(), slot));
            }
        }
        for (worker, reply) in pending.replies {
            self.outbox[worker as usize].push_back(reply);
        }
    }

    /// Answers every write of the batch with an I/O error (after a latch).
    fn fail_writes(&mut self, batch: &[ToController]) {
        for m in batch {
            let (worker, request) = match *m {
                // Not `AllocateDone` with nothing granted: that means "no space" (507),
                // and space is not what is missing.
                ToController::Allocate {
                    worker, request, ..
                }
                | ToController::Occupy {
                    worker, request, ..
                }
                | ToController::Release {
                    worker, request, ..
                } => (worker, request),
                _ => continue,
            };
            self.outbox[worker as usize].push_back(ToWorker::Error {
                request,
                code: ErrorCode::Io,
            });
        }
    }

    fn latch(&mut self, reason: String) {
        if self.failed.is_none() {
            self.failed = Some(reason);
            self.stats.failed = true;
        }
    }

    /// Why the controller latched failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// A batch is committed and its durability is being made in the background: the driver
    /// owes a [`Controller::durable_done`].
    pub fn awaits_durable(&self) -> bool {
        self.awaiting_durable.is_some()
    }

    /// The outcome of `ControllerIo::begin_durable`, and how long it took. On success the
    /// batch's replies go out and its released slots join the quarantine. On failure the
    /// controller latches: the batch stays committed (visible, and it survives a process crash,
    /// not a power loss), but no PUT or DELETE of it is acknowledged: they get I/O errors.
    pub fn durable_done(&mut self, result: Result<(), String>, took: Duration) {
        let replies = self
            .awaiting_durable
            .take()
            .expect("durable_done without a batch awaiting durability");
        self.awaiting_stored.clear();
        let ns = took.as_nanos() as u64;
        self.stats.last_sync_ns = ns;
        self.stats.total_sync_ns += ns;
        let ok = match result {
            Ok(()) => {
                self.quarantine.extend(self.undurable.drain(..));
                true
            }
            Err(e) => {
                self.latch(format!("making a batch durable: {e}"));
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

    fn release_quarantine(&mut self) {
        while let Some((sent, slot)) = self.quarantine.front() {
            let done = sent.iter().zip(self.horizon.iter()).all(|(s, h)| h > s);
            if !done {
                break;
            }
            let slot = *slot;
            self.quarantine.pop_front();
            self.allocator
                .free(slot)
                .expect("quarantined slot was allocated");
        }
    }

    /// Gives queued replies for `worker` to `push` until it refuses one (queue full).
    pub fn drain_outbox(&mut self, worker: WorkerId, mut push: impl FnMut(&ToWorker) -> bool) {
        let drop_when_full = self.config.bugs.drop_reply_when_full();
        let out = &mut self.outbox[worker as usize];
        while let Some(reply) = out.front() {
            if push(reply) {
                out.pop_front();
            } else {
                if drop_when_full {
                    out.pop_front();
                }
                break;
            }
        }
    }

    /// Replies waiting in all outboxes.
    pub fn outbox_len(&self) -> usize {
        self.outbox.iter().map(VecDeque::len).sum()
    }

    pub fn stats(&self) -> ControllerStats {
        let mut s = self.stats.clone();
        let quarantined: u64 = (self.quarantine.iter().chain(self.undurable.iter()))
            .map(|(_, slot)| slot.bytes())
            .sum();
        s.capacity_bytes = self.allocator.capacity_bytes();
        s.quarantined_bytes = quarantined;
        s.free_bytes = self.allocator.free_bytes() + quarantined;
        for class in SizeClass::ALL {
            s.free_slots[class.index()] = self.allocator.free_slots(class) as u64;
        }
        s.reserved_slots = self.reserved.slots;
        s.reserved_bytes = self.reserved.bytes;
        s.commit_seq = self.header.commit_seq;
        s.outbox_waiting = self.outbox_len() as u64;
        s
    }

    /// The accounting identity and the allocator's own invariants.
    pub fn check_invariants(&self) {
        self.allocator.check_invariants();
        self.check_invariants_cheap();
    }

    fn check_invariants_cheap(&self) {
        assert!(
            self.awaiting_durable.is_some() || self.awaiting_stored.is_empty(),
            "blocks are hidden from reads only while their batch is made durable"
        );
        let s = self.stats();
        let quarantined = s.quarantined_bytes;
        assert_eq!(
            self.allocator.allocated_bytes(),
            s.used_bytes + s.reserved_bytes + quarantined,
            "allocated bytes must be exactly used + reserved + quarantined"
        );
        assert_eq!(
            s.free_bytes + s.reserved_bytes + s.used_bytes,
            s.capacity_bytes,
            "SPEC accounting identity"
        );
        self.reserved.check_counts();
        for (offset, (slot, _)) in self.reserved.iter() {
            assert_eq!(*offset, slot.offset);
            debug_assert!(
                self.allocator.is_allocated(*slot),
                "reserved slot must be allocated"
            );
        }
    }

    /// Compares the counters with the store itself (after recovery, in the simulator).
    pub fn check_against_store(&self) {
        let read = self.store.read().expect("read view for the check");
        let mut blocks = 0u64;
        let mut used = 0u64;
        let mut data = 0u64;
        read.for_each_entry(&mut |_, e| {
            blocks += 1;
            used += e.slot.bytes();
            data += u64::from(e.len);
            assert!(
                self.allocator.is_allocated(e.slot),
                "indexed slot {:?} not allocated",
                e.slot
            );
        })
        .expect("index scan");
        assert_eq!(blocks, self.stats.blocks, "block count");
        assert_eq!(used, self.stats.used_bytes, "used bytes");
        assert_eq!(data, self.stats.data_bytes, "data bytes");
        let reservations = read.reservations().expect("reservations");
        assert_eq!(
            reservations.len(),
            self.reserved.len(),
            "persisted reservations"
        );
        self.check_invariants();
    }
}

/// An answer that tells a client its PUT or DELETE happened: sent only once durable.
fn is_promise(reply: &ToWorker) -> bool {
    matches!(reply, ToWorker::Occupied { .. } | ToWorker::Released { .. })
}

/// Answered from a read view, at the start of a cycle (and while a batch is made durable).
fn is_read(m: &ToController) -> bool {
    matches!(
        m,
        ToController::GetAddress { .. }
            | ToController::List { .. }
            | ToController::ReaderHorizon { .. }
    )
}

#[derive(Default)]
struct Counts {
    blocks_added: u64,
    blocks_removed: u64,
    used_added: u64,
    used_removed: u64,
    data_added: u64,
    data_removed: u64,
}

struct BatchCtx<'a> {
    allocator: &'a mut BuddyAllocator,
    reserved: &'a mut Reserved,
    seq: u64,
    /// Slots wait in quarantine (they will be free once readers finish).
    quarantined: bool,
    /// Workers sent a `Reclaim` in this batch (bit per worker id).
    reclaim_sent: [u8; WORKERS_MAX],
}

impl BatchCtx<'_> {
    fn release(
        &mut self,
        txn: &mut impl MetaTxn,
        hash: BlockHash,
        pending: &mut Pending,
        counts: &mut Counts,
    ) -> Result<ReleaseOutcome, String> {
        let Some(entry) = txn.get(&hash).map_err(|e| format!("get: {e}"))? else {
            return Ok(ReleaseOutcome::NotFound);
        };
        let existed = txn.delete(&hash).map_err(|e| format!("delete: {e}"))?;
        assert!(existed, "entry read in this transaction must exist");
        counts.blocks_removed += 1;
        counts.used_removed += entry.slot.bytes();
        counts.data_removed += u64::from(entry.len);
        pending.quarantine_after_commit.push(entry.slot);
        Ok(ReleaseOutcome::Deleted)
    }

    fn allocate(
        &mut self,
        txn: &mut impl MetaTxn,
        worker: WorkerId,
        request: RequestId,
        class: SizeClass,
        count: u16,
        pending: &mut Pending,
    ) -> Result<(), String> {
        assert!((1..=ALLOCATE_COUNT_MAX).contains(&count));
        let mut granted = 0u16;
        while granted < count {
            let Some(slot) = self.allocator.allocate(class) else {
                break;
            };
            pending.undo.push(Undo::Allocated(slot));
            txn.reserve(slot, worker)
                .map_err(|e| format!("reserve: {e}"))?;
            let previous = self.reserved.insert(slot.offset, (slot, worker));
            assert!(previous.is_none(), "fresh slot {slot:?} already reserved");
            pending
                .replies
                .push((worker, ToWorker::Allocated { request, slot }));
            granted += 1;
        }
        pending.short |= granted < count;
        if granted < count && (self.quarantined || !self.reserved.is_empty()) {
            // Space may come back: pools hand their slots in, the requester keeps waiting.
            self.send_reclaim(worker, class, pending);
        }
        pending.replies.push((
            worker,
            ToWorker::AllocateDone {
                request,
                class,
                requested: count,
                granted,
            },
        ));
        Ok(())
    }

    /// One `Reclaim { class }` per worker and class per batch: the requester must see one
    /// before each short `AllocateDone` of a class, or it would answer 507 too early.
    fn send_reclaim(&mut self, requester: WorkerId, class: SizeClass, pending: &mut Pending) {
        let mut targets = 1u64 << requester;
        for (w, &n) in self.reserved.per_worker.iter().enumerate() {
            if n > 0 {
                targets |= 1u64 << w;
            }
        }
        let bit = 1u8 << class.index();
        for w in 0..WORKERS_MAX as u8 {
            let sent = &mut self.reclaim_sent[w as usize];
            if targets & (1u64 << w) != 0 && *sent & bit == 0 {
                *sent |= bit;
                pending.replies.push((w, ToWorker::Reclaim { class }));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn occupy(
        &mut self,
        txn: &mut impl MetaTxn,
        worker: WorkerId,
        request: RequestId,
        hash: BlockHash,
        slot: Slot,
        len: u32,
        crc32c: u32,
        pending: &mut Pending,
        counts: &mut Counts,
    ) -> Result<ToWorker, String> {
        match self.reserved.get(&slot.offset) {
            Some((s, w)) if *s == slot && *w == worker => {}
            _ => {
                return Ok(ToWorker::Error {
                    request,
                    code: ErrorCode::InvalidSlot,
                })
            }
        }
        assert!(
            len >= 1 && u64::from(len) <= slot.bytes(),
            "decoder validated the length"
        );
        let unreserved = txn.unreserve(slot).map_err(|e| format!("unreserve: {e}"))?;
        assert!(unreserved, "in-memory and stored reservations agree");
        self.reserved.remove(&slot.offset);
        pending.undo.push(Undo::Unreserved(slot, worker));
        let existing = txn.get(&hash).map_err(|e| format!("get: {e}"))?;
        let outcome = if existing.is_some() {
            // Dedup: the bytes are stored already; the new slot was never visible to a reader.
            pending.free_after_commit.push(slot);
            OccupyOutcome::Duplicate
        } else {
            let entry = IndexEntry {
                slot,
                len,
                crc32c,
                flags: 0,
                commit_seq: self.seq,
            };
            txn.put(&hash, &entry).map_err(|e| format!("put: {e}"))?;
            counts.blocks_added += 1;
            counts.used_added += slot.bytes();
            counts.data_added += u64::from(len);
            pending.needs_sync = true;
            OccupyOutcome::Stored
        };
        Ok(ToWorker::Occupied { request, outcome })
    }

    fn return_slot(
        &mut self,
        txn: &mut impl MetaTxn,
        worker: WorkerId,
        slot: Slot,
        pending: &mut Pending,
    ) -> Result<(), String> {
        match self.reserved.get(&slot.offset) {
            Some((s, w)) if *s == slot && *w == worker => {}
            // A bogus return is a worker bug; ignoring it keeps the books straight.
            _ => return Ok(()),
        }
        let unreserved = txn.unreserve(slot).map_err(|e| format!("unreserve: {e}"))?;
        assert!(unreserved, "in-memory and stored reservations agree");
        self.reserved.remove(&slot.offset);
        pending.undo.push(Undo::Unreserved(slot, worker));
        pending.free_after_commit.push(slot);
        Ok(())
    }
}

/// Rebuilds the allocator from the index, with the counters /stats reports.
fn rebuild_allocator(
    read: &impl MetaRead,
    capacity_bytes: u64,
) -> Result<(BuddyAllocator, ControllerStats), OpenError> {
    let mut stats = ControllerStats::default();
    let mut slots = Vec::new();
    let mut problem: Option<String> = None;
    read.for_each_entry(&mut |hash, entry| {
        if problem.is_some() {
            return;
        }
        if entry.slot.end() > capacity_bytes {
            problem = Some(format!("{hash} points past the capacity"));
            return;
        }
        slots.push(entry.slot);
        stats.blocks += 1;
        stats.used_bytes += entry.slot.bytes();
        stats.data_bytes += u64::from(entry.len);
    })?;
    if let Some(p) = problem {
        return Err(OpenError::Inconsistent(p));
    }
    // One pass over the sorted slots (a million blocks in a fraction of a second); when the
    // index is inconsistent, marking slot by slot names the entry at fault.
    match BuddyAllocator::from_allocated(capacity_bytes, slots) {
        Ok(allocator) => Ok((allocator, stats)),
        Err(_) => {
            let mut allocator = BuddyAllocator::new(capacity_bytes);
            let mut problem: Option<String> = None;
            read.for_each_entry(&mut |hash, entry| {
                if problem.is_none() {
                    if let Err(e) = allocator.mark_allocated(entry.slot) {
                        problem = Some(format!("{hash} at {:?}: {e}", entry.slot));
                    }
                }
            })?;
            Err(OpenError::Inconsistent(problem.unwrap_or_else(|| {
                "the index's slots overlap (no single entry at fault)".to_string()
            })))
        }
    }
}

/// The reserved slots (handed to a worker's pool, not yet occupied or returned) by offset, with
/// running totals so that `stats` (every cycle) and `send_reclaim` need not walk the map.
#[derive(Debug)]
struct Reserved {
    map: BTreeMap<u64, (Slot, WorkerId)>,
    bytes: u64,
    slots: [u64; CLASS_COUNT],
    per_worker: [u32; WORKERS_MAX],
}

impl Default for Reserved {
    fn default() -> Reserved {
        Reserved {
            map: BTreeMap::new(),
            bytes: 0,
            slots: [0; CLASS_COUNT],
            per_worker: [0; WORKERS_MAX],
        }
    }
}

impl Reserved {
    fn insert(&mut self, offset: u64, entry: (Slot, WorkerId)) -> Option<(Slot, WorkerId)> {
        let previous = self.map.insert(offset, entry);
        if let Some(old) = previous {
            self.uncount(old);
        }
        self.bytes += entry.0.bytes();
        self.slots[entry.0.class.index()] += 1;
        self.per_worker[entry.1 as usize] += 1;
        previous
    }

    fn remove(&mut self, offset: &u64) -> Option<(Slot, WorkerId)> {
        let removed = self.map.remove(offset);
        if let Some(old) = removed {
            self.uncount(old);
        }
        removed
    }

    fn uncount(&mut self, (slot, worker): (Slot, WorkerId)) {
        self.bytes -= slot.bytes();
        self.slots[slot.class.index()] -= 1;
        self.per_worker[worker as usize] -= 1;
    }

    fn get(&self, offset: &u64) -> Option<&(Slot, WorkerId)> {
        self.map.get(offset)
    }

    fn values(&self) -> impl Iterator<Item = &(Slot, WorkerId)> {
        self.map.values()
    }

    fn iter(&self) -> impl Iterator<Item = (&u64, &(Slot, WorkerId))> {
        self.map.iter()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The running totals agree with the map.
    fn check_counts(&self) {
        let mut bytes = 0;
        let mut slots = [0u64; CLASS_COUNT];
        let mut per_worker = [0u32; WORKERS_MAX];
        for (slot, worker) in self.map.values() {
            bytes += slot.bytes();
            slots[slot.class.index()] += 1;
            per_worker[*worker as usize] += 1;
        }
        assert_eq!(bytes, self.bytes, "reserved bytes total");
        assert_eq!(slots, self.slots, "reserved slots per class");
        assert_eq!(per_worker, self.per_worker, "reserved slots per worker");
    }
}
