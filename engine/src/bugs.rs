//! Known bugs the simulator must be able to catch ("teeth", issue 4).
//!
//! Every switch is off unless the `sim-bugs` feature is compiled in *and* the simulator turns it
//! on. The server never enables the feature, so in production every accessor is `false` at
//! compile time.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// Acknowledge PUTs without making the data file durable first.
    pub ack_before_durable: bool,
    /// Leave last run's reservations allocated at startup (a leak).
    pub skip_reservation_recovery: bool,
    /// Reuse a freed slot at once, even while a GET may still be reading it.
    pub reuse_while_reading: bool,
    /// Drop a reply when the worker's queue is full instead of keeping it.
    pub drop_reply_when_full: bool,
    /// Free slots without merging buddies.
    pub skip_merge: bool,
    /// Free a released slot once every worker's reader horizon is one version short of the
    /// release: a view renewed just before the delete batch still maps the hash to the slot.
    pub reuse_before_views_end: bool,
    /// Ignore a failed data sync before a batch's commit: commit and acknowledge anyway.
    pub ack_after_failed_sync: bool,
    /// Drop the last entry of a full `GET /blocks` page: the page comes back short while more
    /// blocks are stored past the cursor.
    pub truncate_listing: bool,
    /// Report the blocks' slot bytes as `data_bytes` (the sum of block lengths) in `/stats`.
    pub miscount_data_bytes: bool,
    /// Commit (and publish to the views) a batch before its flush, not after: when the flush
    /// fails, a GET may report a block a power loss then takes.
    pub show_before_durable: bool,
    /// Accept a bearer token that is only a prefix of the right one (the comparison stops at
    /// the given token's length).
    pub token_prefix_accepted: bool,
    /// Refuse a request head of exactly `max_header_bytes` with 431 (the limit is exclusive).
    pub head_limit_exclusive: bool,
    /// Answer a GET `500` when a read of its block comes back short, instead of reading the
    /// rest (the fault is the short transfer, not an I/O error).
    pub short_read_fails: bool,
    /// After a streamed upload's piece is written, do not go on with the bytes already
    /// received: the upload resumes only when more arrive, so a client that sent its whole
    /// body waits for its request timeout (a 408 the client did not cause).
    pub stall_stream_after_write: bool,
    /// Full durability: begin the data file's flush before the batch's log record is written,
    /// and acknowledge when that flush returns (it does not cover the record).
    pub ack_before_log_durable: bool,
    /// Free log space when a checkpoint is *requested*, not when it returns: a power loss
    /// during the checkpoint replays over overwritten records.
    pub reuse_log_before_checkpoint: bool,
    /// Replay a log record whose body checksum fails (the ops that still decode) and apply the
    /// last record without checking that its blocks are on disk (`wal::recover`).
    pub replay_torn_record: bool,
    /// Leave the largest class out of `/stats`'s `free_slots` (the loop over the classes stops
    /// one short), so its free slots read 0.
    pub miscount_free_slots: bool,
    /// Retry a failed read once (fine), but a retry that succeeds leaves the worker's
    /// read-error flag set: the next read that succeeds on that worker, whichever GET it
    /// serves, is answered `500`. That `500` has no fault on its own I/O, and the fault behind
    /// it answered nothing (its retry succeeded): a global count of faults explains it away.
    pub stale_read_error: bool,
}

impl Bugs {
    pub const NONE: Bugs = Bugs {
        ack_before_durable: false,
        skip_reservation_recovery: false,
        reuse_while_reading: false,
        drop_reply_when_full: false,
        skip_merge: false,
        reuse_before_views_end: false,
        ack_after_failed_sync: false,
        truncate_listing: false,
        miscount_data_bytes: false,
        show_before_durable: false,
        token_prefix_accepted: false,
        head_limit_exclusive: false,
        short_read_fails: false,
        stall_stream_after_write: false,
        ack_before_log_durable: false,
        reuse_log_before_checkpoint: false,
        replay_torn_record: false,
        miscount_free_slots: false,
        stale_read_error: false,
    };

    pub fn ack_before_durable(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.ack_before_durable
    }
    pub fn skip_reservation_recovery(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.skip_reservation_recovery
    }
    pub fn reuse_while_reading(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.reuse_while_reading
    }
    pub fn drop_reply_when_full(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.drop_reply_when_full
    }
    pub fn skip_merge(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.skip_merge
    }
    pub fn reuse_before_views_end(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.reuse_before_views_end
    }
    pub fn ack_after_failed_sync(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.ack_after_failed_sync
    }
    pub fn truncate_listing(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.truncate_listing
    }
    pub fn miscount_data_bytes(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.miscount_data_bytes
    }
    pub fn show_before_durable(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.show_before_durable
    }
    pub fn token_prefix_accepted(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.token_prefix_accepted
    }
    pub fn head_limit_exclusive(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.head_limit_exclusive
    }
    pub fn short_read_fails(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.short_read_fails
    }
    pub fn stall_stream_after_write(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.stall_stream_after_write
    }
    pub fn ack_before_log_durable(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.ack_before_log_durable
    }
    pub fn reuse_log_before_checkpoint(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.reuse_log_before_checkpoint
    }
    pub fn replay_torn_record(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.replay_torn_record
    }
    pub fn miscount_free_slots(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.miscount_free_slots
    }
    pub fn stale_read_error(&self) -> bool {
        cfg!(feature = "sim-bugs") && self.stale_read_error
    }
}
