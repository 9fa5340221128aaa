//! The worker's own index view (issue 17): every request that reads the index (GET and HEAD
//! of a block, `GET /blocks`, `POST /blocks/missing`, the dedup check of a PUT out of space)
//! looks it up here, on the worker's thread, with no hop through the controller; and the reader
//! horizon that keeps a slot from being reused while a view that still maps a hash to it is in
//! use (SPEC guarantee 4).
//!
//! Owns: the lookup queue (`queue_lookup`), [`Worker::serve_reads`] (renew, answer every queued
//! lookup, release), the view's state ([`ViewState`]), the reads in flight by view version
//! (`begin_read`/`end_read`), and the horizon (`horizon`, `report_horizon`, `horizon_wanted`).
//! Every answer shows only what the view shows ([`ViewStamp::shows`]: durable entries).
//!
//! The horizon is the lowest of: the version of every view a read in flight came from, the
//! version of the view held open, and `floor` (every view renewed from now on has at least this
//! version: the last renew's version, or a `HorizonWanted` version, which the controller sends
//! only once that commit is visible). Invariants: the horizon never goes back; reports go out
//! only while the controller wants a higher one. Must never: renew a view in use, or keep one
//! open in the server across a wait (the driver passes [`AfterServing::Release`]).

use super::*;
use crate::meta::{IndexEntry, IndexView, ViewStamp};

/// Whether the worker's view is open, and at what version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ViewState {
    Released,
    Open(ViewStamp),
}

/// What [`Worker::serve_reads`] does with the view once the queued lookups are answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AfterServing {
    /// Release it (the server, always: a view is never held across a wait).
    Release,
    /// Keep it open for the next call (the simulator, to hold old views across steps).
    Hold,
}

/// The lookups waiting for the view, and the reads that keep a view version in use.
pub(super) struct ReadHorizon {
    /// Requests in `Stage::Lookup`, in arrival order (an entry whose request has moved on is
    /// skipped).
    pub(super) lookups: VecDeque<ConnRef>,
    pub(super) view: ViewState,
    /// Reads of slots looked up in a view of version `v`, counted by `v`.
    pub(super) in_flight: BTreeMap<u64, u32>,
    /// Every view renewed from now on has at least this version.
    pub(super) floor: u64,
    /// The highest horizon the controller asked for (`HorizonWanted`).
    pub(super) wanted: u64,
    /// The horizon last reported to the controller.
    pub(super) reported: u64,
}

impl ReadHorizon {
    pub(super) fn new() -> ReadHorizon {
        ReadHorizon {
            lookups: VecDeque::new(),
            view: ViewState::Released,
            in_flight: BTreeMap::new(),
            floor: 0,
            wanted: 0,
            reported: 0,
        }
    }
}

/// The entry of `hash` if the view may report it as stored (durable: [`ViewStamp::shows`]).
pub(super) fn shown(
    view: &impl IndexView,
    stamp: ViewStamp,
    hash: &BlockHash,
) -> Result<Option<IndexEntry>, MetaError> {
    Ok(view.get(hash)?.filter(|e| stamp.shows(e)))
}

impl Worker {
    /// Input: the worker's index view. Answers every request waiting for a lookup (those
    /// queued meanwhile by pipelined requests too) from one snapshot, renewed unless the last
    /// call held it. Call once per loop turn, after `handle_message`/`handle_completion` and
    /// before draining `poll_io`; the server passes [`AfterServing::Release`].
    pub fn serve_reads(&mut self, now: Instant, view: &mut impl IndexView, after: AfterServing) {
        self.now_seen = self.now_seen.max(now);
        if !self.reads.lookups.is_empty() {
            match self.open_view(view) {
                Ok(stamp) => self.answer_lookups(now, view, stamp),
                Err(e) => self.fail_lookups(now, &e),
            }
        }
        if after == AfterServing::Release {
            if let ViewState::Open(_) = self.reads.view {
                view.release();
                self.reads.view = ViewState::Released;
            }
        }
    }

    /// Whether lookups wait for [`Worker::serve_reads`] (the driver must not sleep meanwhile).
    pub fn reads_waiting(&self) -> bool {
        !self.reads.lookups.is_empty()
    }

    /// The request waits for `lookup` in the next `serve_reads`.
    pub(super) fn queue_lookup(&mut self, r: ConnRef, lookup: Lookup) {
        let active = self.active_mut(r);
        let fits = matches!(
            (&lookup, active.route),
            (Lookup::Block, Route::GetBlock { .. })
                | (Lookup::Dedup { .. }, Route::PutBlock { .. })
                | (Lookup::PreCheck { .. }, Route::PutBlock { .. })
                | (Lookup::Missing { .. }, Route::Missing)
                | (Lookup::List { .. }, Route::List)
        );
        assert!(fits, "a lookup of its request's route");
        assert!(!active.stage.is_lookup(), "one lookup per request");
        active.stage = Stage::Lookup(lookup);
        self.reads.lookups.push_back(r);
    }

    fn open_view(&mut self, view: &mut impl IndexView) -> Result<ViewStamp, MetaError> {
        if let ViewState::Open(stamp) = self.reads.view {
            return Ok(stamp);
        }
        let stamp = view.renew()?;
        assert!(
            stamp.version >= self.reads.floor,
            "a view renewed after HorizonWanted({}) is older ({})",
            self.reads.floor,
            stamp.version
        );
        self.reads.floor = stamp.version;
        self.reads.view = ViewState::Open(stamp);
        Ok(stamp)
    }

    fn answer_lookups(&mut self, now: Instant, view: &impl IndexView, stamp: ViewStamp) {
        while let Some(r) = self.reads.lookups.pop_front() {
            let Some(lookup) = self.take_lookup(r) else {
                continue;
            };
            match lookup {
                Lookup::Block => {
                    let Route::GetBlock { hash, .. } = self.active_mut(r).route else {
                        unreachable!("queue_lookup checked the route")
                    };
                    match shown(view, stamp, &hash) {
                        Ok(found) => {
                            let location = found.map(|e| Location {
                                slot: e.slot,
                                len: e.len,
                                crc32c: e.crc32c,
                            });
                            self.on_address(now, r, location, stamp.version);
                        }
                        Err(e) => self.respond_view_error(now, r, &e),
                    }
                }
                Lookup::Dedup { hash } => match shown(view, stamp, &hash) {
                    Ok(found) => self.on_dedup_checked(now, r, hash, found.is_some()),
                    Err(e) => self.respond_view_error(now, r, &e),
                },
                Lookup::PreCheck { hash, reader } => match shown(view, stamp, &hash) {
                    Ok(found) => self.on_prechecked(now, r, hash, reader, found.is_some()),
                    Err(e) => self.respond_view_error(now, r, &e),
                },
                Lookup::Missing { hashes } => self.answer_missing(now, r, view, stamp, hashes),
                Lookup::List { after, limit } => {
                    self.answer_list(now, r, view, stamp, after.as_ref(), limit)
                }
            }
        }
    }

    fn fail_lookups(&mut self, now: Instant, e: &MetaError) {
        while let Some(r) = self.reads.lookups.pop_front() {
            if self.take_lookup(r).is_some() {
                self.respond_view_error(now, r, e);
            }
        }
    }

    /// Takes the lookup a queued request waits for (its stage is `Responded` until the answer
    /// moves it on), if it still waits for one.
    fn take_lookup(&mut self, r: ConnRef) -> Option<Lookup> {
        let active = conn_at(&mut self.conns.entries, r)?.active.as_mut()?;
        match active.stage.take() {
            Stage::Lookup(lookup) => Some(lookup),
            other => {
                active.stage = other;
                None
            }
        }
    }

    pub(super) fn respond_view_error(&mut self, now: Instant, r: ConnRef, e: &MetaError) {
        tracing::error!(error = %e, "reading the index view failed (answered 500)");
        let method = self.active_mut(r).head.method;
        let reason = "reading the index failed";
        self.respond_error(now, r, method, Status::INTERNAL_SERVER_ERROR, reason);
    }

    /// A read of a slot looked up in a view of `version` begins.
    pub(super) fn begin_read(&mut self, version: u64) {
        debug_assert!(
            version >= self.reads.reported,
            "a read from a view below the horizon"
        );
        *self.reads.in_flight.entry(version).or_insert(0) += 1;
    }

    pub(super) fn end_read(&mut self, version: u64) {
        let count = self
            .reads
            .in_flight
            .get_mut(&version)
            .unwrap_or_else(|| panic!("a read of view {version} was in flight"));
        *count -= 1;
        if *count == 0 {
            self.reads.in_flight.remove(&version);
        }
    }

    /// The controller wants a horizon of at least `version` (commit `version` is visible).
    pub(super) fn horizon_wanted(&mut self, version: u64) {
        self.reads.floor = self.reads.floor.max(version);
        self.reads.wanted = self.reads.wanted.max(version);
    }

    /// No view older than this is in use, nor will be renewed.
    pub(super) fn horizon(&self) -> u64 {
        let reads = self.reads.in_flight.keys().next().copied();
        let open = match self.reads.view {
            ViewState::Open(stamp) => Some(stamp.version),
            ViewState::Released => None,
        };
        [reads, open]
            .into_iter()
            .flatten()
            .fold(self.reads.floor, u64::min)
    }

    pub(super) fn report_horizon(&mut self) {
        let h = self.horizon();
        if h > self.reads.reported && self.reads.reported < self.reads.wanted {
            self.reads.reported = h;
            let worker = self.config.id;
            self.link
                .out
                .push_back(ToController::ReaderHorizon { worker, version: h });
        }
    }

    /// The horizon never goes back; each version in flight has reads; every request waiting
    /// for a lookup is queued; a verified re-upload holds no budget.
    pub(super) fn check_reader_horizon(&self) {
        assert!(
            self.horizon() >= self.reads.reported,
            "the reader horizon never goes back"
        );
        assert!(self.reads.in_flight.values().all(|&n| n > 0));
        let reading = self
            .conns
            .entries
            .iter()
            .flatten()
            .filter_map(|c| c.active.as_ref())
            .filter(|a| {
                matches!(
                    a.stage,
                    Stage::Read { .. }
                        | Stage::WaitBuffer {
                            need: BufferNeed::Read { .. },
                            ..
                        }
                )
            })
            .count();
        let counted: u32 = self.reads.in_flight.values().sum();
        assert_eq!(
            reading, counted as usize,
            "every read in flight counts once"
        );
        for (index, conn) in self.conns.entries.iter().enumerate() {
            let Some(conn) = conn else { continue };
            match conn.active.as_ref().map(|a| &a.stage) {
                Some(Stage::Lookup(_)) => {
                    let r = ConnRef {
                        index,
                        generation: conn.generation,
                    };
                    assert!(
                        self.reads.lookups.contains(&r),
                        "a lookup waits in the queue"
                    );
                }
                Some(Stage::Verify(_)) => {
                    assert!(conn.grant.is_none(), "a verified body holds no budget")
                }
                _ => {}
            }
        }
    }
}
