//! The oracle's model of acknowledged state: per address, what a correct server must hold.
//!
//! Content addressing makes the bytes of an address a fixed fact (`contents`); the model only
//! tracks whether each address is stored. Per address it keeps:
//! - `state`: `Present` or `Absent` when certain, `Uncertain` when the server may hold either
//!   (a write whose outcome the client never learned, a crash in the middle of writes, power
//!   loss in relaxed durability);
//! - `in_flight`: writes sent and not yet answered, and `tainted`: writes whose client gave up
//!   (they may still take effect until the next crash ends every hidden write);
//! - `version`: bumped when any write to the address starts or ends, so a request can tell
//!   whether it overlapped another.
//!
//! A request's result is checked against the model only when it is certain: nothing else was
//! in flight or tainted on that address during its whole life. An acknowledged write that did
//! not overlap another sets the state; a read that did not overlap a write resolves an
//! `Uncertain` state. Nothing in here looks inside the engine.
//!
//! Observed durability: where reads show only durable blocks ([`ReadsShow::Durable`], the
//! durability `full`), a read that reported a block stored while no DELETE of it was pending
//! proves the block durable, whether or not its PUT was ever answered: until a DELETE of it
//! starts (`seen_durable`), a crash must keep it (the model makes it certainly `Present`).

use std::collections::BTreeMap;

use engine::hash::BlockHash;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Known {
    Present,
    Absent,
    Uncertain,
}

#[derive(Clone, Debug)]
pub struct AddrState {
    pub state: Known,
    pub in_flight: u32,
    pub tainted: u32,
    pub version: u64,
    /// Index into `Model::contents` when the model knows the bytes of this address.
    pub content: Option<usize>,
    /// The stored copy may have been damaged by an injected fault (a misdirected write, power
    /// loss in relaxed durability) since it was last written: a read may fail verification.
    pub maybe_corrupt: bool,
    /// DELETEs of this address in flight or abandoned (tainted) now.
    pub deletes_pending: u32,
    /// Bumped when a DELETE of this address starts.
    pub delete_epoch: u64,
    /// A read reported the block stored, no DELETE pending, and no DELETE started since: with
    /// [`ReadsShow::Durable`] it must survive a crash.
    pub seen_durable: bool,
}

/// What a read that reports a block stored proves about its durability.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ReadsShow {
    /// Reads may show committed blocks that a power loss can still take (relaxed durability).
    #[default]
    Committed,
    /// Reads show only durable blocks (durability `full`: the views' durable watermark).
    Durable,
}

/// Which kind of write a ticket stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WriteOp {
    Put,
    Delete,
}

/// Taken when a write starts; handed back when it ends.
#[derive(Clone, Copy, Debug)]
pub struct WriteTicket {
    pub hash: BlockHash,
    pub op: WriteOp,
    version: u64,
    others_at_start: bool,
}

/// Taken when a read starts.
#[derive(Clone, Copy, Debug)]
pub struct ReadTicket {
    pub hash: BlockHash,
    version: u64,
    state: Known,
    certain_at_start: bool,
    /// The stored copy was possibly damaged when the read started.
    pub maybe_corrupt: bool,
    /// No DELETE was pending when the read started; `delete_epoch` then.
    delete_free_at_start: bool,
    delete_epoch: u64,
}

/// How a write ended, as far as the client knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WriteEnd {
    /// Acknowledged: the address is now `Present` (PUT 2xx) or `Absent` (DELETE 204/404).
    Effect(Known),
    /// Refused: nothing was done.
    NoEffect,
    /// No answer (connection lost, client gave up): may or may not take effect, until the next
    /// crash.
    Unknown,
    /// No answer, and the node that held it is gone (a crash): it did or did not happen.
    LostInCrash,
}

#[derive(Debug, Default)]
pub struct Model {
    pub addrs: BTreeMap<BlockHash, AddrState>,
    pub contents: Vec<(BlockHash, Vec<u8>)>,
    /// Violations of a certain expectation found by `end_write`.
    pub violations: Vec<String>,
    /// Answers checked against a certain state (reads, and writes' claims about the prior state).
    pub checked_reads: u64,
    pub checked_writes: u64,
    /// What a read reporting a block stored proves (set from the run's durability).
    pub reads_show: ReadsShow,
    /// Blocks a crash had to keep because a read had reported them durable.
    pub kept_as_seen: u64,
    /// A read reported stored a block whose PUT is still in flight, since the scheduler last
    /// looked (the `AfterReadBeforeAck` crash point).
    pub read_before_ack: bool,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// A model for a run whose reads show `reads_show`.
    pub fn showing(reads_show: ReadsShow) -> Model {
        Model {
            reads_show,
            ..Model::default()
        }
    }

    /// Registers content (idempotent); returns its index.
    pub fn add_content(&mut self, bytes: Vec<u8>) -> usize {
        let hash = BlockHash::of(&bytes);
        if let Some(i) = self.addrs.get(&hash).and_then(|a| a.content) {
            return i;
        }
        let index = self.contents.len();
        self.contents.push((hash, bytes));
        let entry = self.entry(hash);
        entry.content = Some(index);
        index
    }

    pub fn content_of(&self, hash: &BlockHash) -> Option<&[u8]> {
        let i = self.addrs.get(hash)?.content?;
        Some(&self.contents[i].1)
    }

    pub fn entry(&mut self, hash: BlockHash) -> &mut AddrState {
        self.addrs.entry(hash).or_insert(AddrState {
            state: Known::Absent,
            in_flight: 0,
            tainted: 0,
            version: 0,
            content: None,
            maybe_corrupt: false,
            deletes_pending: 0,
            delete_epoch: 0,
            seen_durable: false,
        })
    }

    pub fn state(&self, hash: &BlockHash) -> Known {
        self.addrs.get(hash).map_or(Known::Absent, |a| a.state)
    }

    /// A PUT of `hash` starts.
    pub fn begin_write(&mut self, hash: BlockHash) -> WriteTicket {
        self.begin(hash, WriteOp::Put)
    }

    /// A DELETE of `hash` starts: from here on a read's report of the block proves nothing
    /// about a later crash, until a read with no DELETE pending reports it again.
    pub fn begin_delete(&mut self, hash: BlockHash) -> WriteTicket {
        self.begin(hash, WriteOp::Delete)
    }

    fn begin(&mut self, hash: BlockHash, op: WriteOp) -> WriteTicket {
        let a = self.entry(hash);
        let others_at_start = a.in_flight > 0 || a.tainted > 0;
        a.in_flight += 1;
        a.version += 1;
        if op == WriteOp::Delete {
            a.deletes_pending += 1;
            a.delete_epoch += 1;
            a.seen_durable = false;
        }
        WriteTicket {
            hash,
            op,
            version: a.version,
            others_at_start,
        }
    }

    /// Ends a write. For an acknowledged effect without overlap, `expect_prior` is checked: a
    /// PUT answered 201 claims the address was absent, 200 that it was present; a DELETE
    /// answered 204 that it was present, 404 that it was absent.
    pub fn end_write(&mut self, t: WriteTicket, end: WriteEnd, claims_prior: Option<Known>) {
        let a = self
            .addrs
            .get_mut(&t.hash)
            .expect("write ticket for a known address");
        assert!(a.in_flight >= 1);
        a.in_flight -= 1;
        // An abandoned DELETE stays pending (it may still take effect) until the next crash.
        if t.op == WriteOp::Delete && end != WriteEnd::Unknown {
            assert!(a.deletes_pending >= 1);
            a.deletes_pending -= 1;
        }
        let overlapped = t.others_at_start || a.version != t.version || a.tainted > 0;
        a.version += 1;
        match end {
            WriteEnd::Effect(state) => {
                assert_ne!(state, Known::Uncertain);
                if overlapped {
                    a.state = Known::Uncertain;
                    return;
                }
                if let Some(prior) = claims_prior {
                    if a.state != Known::Uncertain {
                        self.checked_writes += 1;
                    }
                    if a.state != Known::Uncertain && a.state != prior {
                        self.violations.push(format!(
                            "{}: answer implies the address was {prior:?} but the model says \
                             {:?}",
                            t.hash, a.state
                        ));
                    }
                }
                a.state = state;
            }
            WriteEnd::NoEffect => {}
            WriteEnd::Unknown => {
                a.tainted += 1;
                a.state = Known::Uncertain;
            }
            WriteEnd::LostInCrash => a.state = Known::Uncertain,
        }
    }

    pub fn begin_read(&mut self, hash: BlockHash) -> ReadTicket {
        let a = self.entry(hash);
        ReadTicket {
            hash,
            version: a.version,
            state: a.state,
            certain_at_start: a.in_flight == 0 && a.tainted == 0,
            maybe_corrupt: a.maybe_corrupt,
            delete_free_at_start: a.deletes_pending == 0,
            delete_epoch: a.delete_epoch,
        }
    }

    /// Read tickets for every address past `after` (all of them when `None`) that no write is
    /// touching now: the ones a listing from `after` may be judged on (`GET /blocks`).
    pub fn begin_reads_after(&mut self, after: Option<&BlockHash>) -> Vec<ReadTicket> {
        let quiet: Vec<BlockHash> = self
            .addrs
            .iter()
            .filter(|(h, a)| after.is_none_or(|x| *h > x) && a.in_flight == 0 && a.tainted == 0)
            .map(|(h, _)| *h)
            .collect();
        quiet.into_iter().map(|h| self.begin_read(h)).collect()
    }

    /// An injected fault may have damaged the stored copy of `hash`.
    pub fn mark_corrupt(&mut self, hash: BlockHash) {
        self.entry(hash).maybe_corrupt = true;
    }

    /// Whether the stored copy of `hash` may be damaged now.
    pub fn maybe_corrupt(&self, hash: &BlockHash) -> bool {
        self.addrs.get(hash).is_some_and(|a| a.maybe_corrupt)
    }

    /// A PUT answered 201 wrote a fresh copy.
    pub fn fresh_copy(&mut self, hash: &BlockHash) {
        if let Some(a) = self.addrs.get_mut(hash) {
            a.maybe_corrupt = false;
        }
    }

    /// The state a read may be checked against (`Uncertain` if it overlapped a write).
    pub fn read_expectation(&self, t: &ReadTicket) -> Known {
        let a = &self.addrs[&t.hash];
        if t.certain_at_start && a.version == t.version && a.in_flight == 0 && a.tainted == 0 {
            t.state
        } else {
            Known::Uncertain
        }
    }

    /// A read that overlapped nothing observed `state`: the model learns it. A read that saw
    /// the block stored with no DELETE pending during its life marks it seen durable (where
    /// reads show only durable blocks), even if it overlapped a PUT.
    pub fn observe(&mut self, t: &ReadTicket, state: Known) {
        assert_ne!(state, Known::Uncertain);
        if state == Known::Present && self.reads_show == ReadsShow::Durable {
            let a = self
                .addrs
                .get_mut(&t.hash)
                .expect("read ticket for a known address");
            if t.delete_free_at_start && a.deletes_pending == 0 && a.delete_epoch == t.delete_epoch
            {
                a.seen_durable = true;
                self.read_before_ack |= a.in_flight > 0;
            }
        }
        if self.read_expectation(t) == Known::Uncertain {
            let a = self
                .addrs
                .get_mut(&t.hash)
                .expect("read ticket for a known address");
            let quiet =
                a.version == t.version && t.certain_at_start && a.in_flight == 0 && a.tainted == 0;
            if quiet {
                a.state = state;
            }
        }
    }

    /// A crash ended every hidden write. With `forget`, every certain state becomes uncertain
    /// (power loss in relaxed durability: unsynced acknowledgements may be lost).
    ///
    /// A block a read reported durable (`seen_durable`, no DELETE started since) survives any
    /// crash: it becomes certainly `Present`, whatever became of its PUTs' answers. An
    /// abandoned DELETE ends here too (it did or did not happen). A present block whose copy
    /// may be damaged (`maybe_corrupt`) becomes uncertain: the log's replay may drop it.
    pub fn crash(&mut self, forget: bool) {
        for a in self.addrs.values_mut() {
            if a.tainted > 0 {
                a.tainted = 0;
                a.version += 1;
                a.state = Known::Uncertain;
            }
            if forget && a.state != Known::Uncertain {
                a.state = Known::Uncertain;
                a.version += 1;
            }
            a.deletes_pending = 0;
            if a.seen_durable {
                assert_eq!(a.in_flight, 0, "the crash ended every write first");
                if a.state != Known::Present {
                    self.kept_as_seen += 1;
                }
                a.state = Known::Present;
                a.version += 1;
            }
            if a.maybe_corrupt && a.state == Known::Present {
                // Recovery verifies the blocks of the log's last record and drops those whose
                // bytes do not hash to their address (issue 18): a damaged copy may vanish.
                a.state = Known::Uncertain;
                a.version += 1;
            }
        }
    }

    /// Addresses whose state is certain and quiet.
    pub fn certain(&self) -> impl Iterator<Item = (&BlockHash, Known)> + '_ {
        self.addrs
            .iter()
            .filter(|(_, a)| a.in_flight == 0 && a.tainted == 0 && a.state != Known::Uncertain)
            .map(|(h, a)| (h, a.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_put_then_overlapping_delete_is_uncertain_then_resolved_by_a_read() {
        let mut m = Model::new();
        let i = m.add_content(b"abc".to_vec());
        let h = m.contents[i].0;
        let t = m.begin_write(h);
        m.end_write(t, WriteEnd::Effect(Known::Present), Some(Known::Absent));
        assert_eq!(m.state(&h), Known::Present);
        let put = m.begin_write(h);
        let del = m.begin_write(h);
        m.end_write(del, WriteEnd::Effect(Known::Absent), Some(Known::Present));
        m.end_write(put, WriteEnd::Effect(Known::Present), Some(Known::Present));
        assert_eq!(m.state(&h), Known::Uncertain);
        let r = m.begin_read(h);
        assert_eq!(m.read_expectation(&r), Known::Uncertain);
        m.observe(&r, Known::Absent);
        assert_eq!(m.state(&h), Known::Absent);
        assert!(m.violations.is_empty());
    }

    #[test]
    fn a_wrong_claim_without_overlap_is_a_violation() {
        let mut m = Model::new();
        let i = m.add_content(b"x".to_vec());
        let h = m.contents[i].0;
        let t = m.begin_write(h);
        m.end_write(t, WriteEnd::Effect(Known::Present), Some(Known::Present));
        assert_eq!(m.violations.len(), 1);
    }

    #[test]
    fn an_abandoned_write_taints_until_a_crash() {
        let mut m = Model::new();
        let i = m.add_content(b"y".to_vec());
        let h = m.contents[i].0;
        let t = m.begin_write(h);
        m.end_write(t, WriteEnd::Unknown, None);
        let r = m.begin_read(h);
        m.observe(&r, Known::Absent);
        assert_eq!(
            m.state(&h),
            Known::Uncertain,
            "a tainted address is not learned"
        );
        m.crash(false);
        let r = m.begin_read(h);
        m.observe(&r, Known::Absent);
        assert_eq!(m.state(&h), Known::Absent);
    }

    /// A PUT whose answer a crash takes, after a read reported its block stored meanwhile.
    fn seen_then_put_lost(reads_show: ReadsShow, forget: bool) -> (Model, BlockHash) {
        let mut m = Model::showing(reads_show);
        let i = m.add_content(b"seen".to_vec());
        let h = m.contents[i].0;
        let put = m.begin_write(h);
        let r = m.begin_read(h);
        m.observe(&r, Known::Present);
        m.end_write(put, WriteEnd::LostInCrash, None);
        m.crash(forget);
        (m, h)
    }

    #[test]
    fn a_block_a_read_reported_survives_a_crash_unless_a_delete_started_since() {
        let (mut m, h) = seen_then_put_lost(ReadsShow::Durable, false);
        assert!(
            m.read_before_ack,
            "the PUT was unanswered when the read reported the block"
        );
        assert_eq!(m.state(&h), Known::Present, "seen durable: kept");
        let del = m.begin_delete(h);
        m.end_write(del, WriteEnd::Unknown, None);
        m.crash(false);
        assert_eq!(m.state(&h), Known::Uncertain, "a DELETE started since");
    }

    #[test]
    fn reads_that_show_committed_blocks_prove_nothing_about_a_crash() {
        let (m, h) = seen_then_put_lost(ReadsShow::Committed, true);
        assert_eq!(m.state(&h), Known::Uncertain);
    }
}
