//! The command line's changes to a seed's drawn options: fewer clients, workers or crashes, a
//! smaller data file, knobs zeroed; and the metadata store a run uses. `--shrink` searches over
//! the cuts, and a shrunk run's reproduce line carries them (`--clients`, `--workers`,
//! `--crashes`, `--capacity-mib`, `--zero`, `--store`).
//!
//! Owns: [`Overrides`] (applying them to drawn [`Options`], writing them as flags), [`Knob`]
//! (every probability or weight that can be zeroed, by name) and [`RunSize`] (how big a run
//! is, to say that a shrunk one is no bigger). Never does: draw options (`options.rs`) or run
//! anything. Invariant: an override only ever shrinks a run: a count is cut to at most what
//! the seed drew (never raised), a knob is only ever set to zero, the request mix keeps its
//! PUTs and GETs, a run keeps at least one client and one worker. The one change that is not a
//! cut, `--store`, picks the store, and makes the run one either store can run: it drops the
//! planned power losses (a libmdbx store models none; a cut again), so `--store mem` and
//! `--store mdbx` of one seed differ only in the store and must give the same trace hash.

use std::collections::BTreeSet;

use crate::options::{CrashKind, Options, StoreKind};

/// Smallest data file an override may ask for (a few of the largest slots).
pub const CAPACITY_MIB_MIN: u64 = 2;

/// What the command line changes in a seed's drawn options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// At most this many simulated clients (at least 1).
    pub clients: Option<usize>,
    /// At most this many workers (at least 1).
    pub workers: Option<usize>,
    /// Only the first this many planned crashes.
    pub crashes: Option<usize>,
    /// At most this data file, in MiB (at least [`CAPACITY_MIB_MIN`]).
    pub capacity_mib: Option<u64>,
    /// Knobs set to zero.
    pub zeroed: BTreeSet<Knob>,
    /// The metadata store, whatever the seed drew, with no planned power loss (`--store`).
    pub store: Option<StoreKind>,
}

/// A fault probability, a workload probability or a weight of the request mix.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Knob {
    Eagain,
    Short,
    FileEio,
    BitFlip,
    StickyRead,
    Misdirect,
    ConnReset,
    AcceptError,
    QueueStall,
    SyncFail,
    CommitFail,
    Pipeline,
    Duplicate,
    Hot,
    Large,
    Fragment,
    SlowClient,
    Vanish,
    Close,
    DiskTail,
    ViewHold,
    PutHash,
    Head,
    Delete,
    Range,
    Bad,
    Misc,
}

impl Knob {
    /// Every knob, faults first.
    pub const ALL: [Knob; 27] = [
        Knob::Eagain,
        Knob::Short,
        Knob::FileEio,
        Knob::BitFlip,
        Knob::StickyRead,
        Knob::Misdirect,
        Knob::ConnReset,
        Knob::AcceptError,
        Knob::QueueStall,
        Knob::SyncFail,
        Knob::CommitFail,
        Knob::Pipeline,
        Knob::Duplicate,
        Knob::Hot,
        Knob::Large,
        Knob::Fragment,
        Knob::SlowClient,
        Knob::Vanish,
        Knob::Close,
        Knob::DiskTail,
        Knob::ViewHold,
        Knob::PutHash,
        Knob::Head,
        Knob::Delete,
        Knob::Range,
        Knob::Bad,
        Knob::Misc,
    ];

    /// The name `--zero` takes.
    pub fn name(self) -> &'static str {
        match self {
            Knob::Eagain => "eagain",
            Knob::Short => "short",
            Knob::FileEio => "file_eio",
            Knob::BitFlip => "bit_flip",
            Knob::StickyRead => "sticky_read",
            Knob::Misdirect => "misdirect",
            Knob::ConnReset => "conn_reset",
            Knob::AcceptError => "accept_error",
            Knob::QueueStall => "queue_stall",
            Knob::SyncFail => "sync_fail",
            Knob::CommitFail => "commit_fail",
            Knob::Pipeline => "pipeline",
            Knob::Duplicate => "duplicate",
            Knob::Hot => "hot",
            Knob::Large => "large",
            Knob::Fragment => "fragment",
            Knob::SlowClient => "slow_client",
            Knob::Vanish => "vanish",
            Knob::Close => "close",
            Knob::DiskTail => "disk_tail",
            Knob::ViewHold => "view_hold",
            Knob::PutHash => "mix_put_hash",
            Knob::Head => "mix_head",
            Knob::Delete => "mix_delete",
            Knob::Range => "mix_range",
            Knob::Bad => "mix_bad",
            Knob::Misc => "mix_misc",
        }
    }

    pub fn by_name(name: &str) -> Option<Knob> {
        Knob::ALL.into_iter().find(|k| k.name() == name)
    }

    /// An injected fault (the rest shape the workload).
    pub fn is_fault(self) -> bool {
        self <= Knob::CommitFail
    }

    /// The knob's place in the options.
    fn slot(self, o: &mut Options) -> Slot<'_> {
        let f = &mut o.faults;
        match self {
            Knob::Eagain => Slot::P(&mut f.eagain),
            Knob::Short => Slot::P(&mut f.short),
            Knob::FileEio => Slot::P(&mut f.file_eio),
            Knob::BitFlip => Slot::P(&mut f.bit_flip),
            Knob::StickyRead => Slot::P(&mut f.sticky_read),
            Knob::Misdirect => Slot::P(&mut f.misdirect),
            Knob::ConnReset => Slot::P(&mut f.conn_reset),
            Knob::AcceptError => Slot::P(&mut f.accept_error),
            Knob::QueueStall => Slot::P(&mut f.queue_stall),
            Knob::SyncFail => Slot::P(&mut f.sync_fail),
            Knob::CommitFail => Slot::P(&mut f.commit_fail),
            Knob::Pipeline => Slot::P(&mut o.pipeline_p),
            Knob::Duplicate => Slot::P(&mut o.duplicate_p),
            Knob::Hot => Slot::P(&mut o.hot_p),
            Knob::Large => Slot::P(&mut o.large_p),
            Knob::Fragment => Slot::P(&mut o.fragment_p),
            Knob::SlowClient => Slot::P(&mut o.slow_client_p),
            Knob::Vanish => Slot::P(&mut o.vanish_p),
            Knob::Close => Slot::P(&mut o.close_p),
            Knob::DiskTail => Slot::P(&mut o.disk_tail_p),
            Knob::ViewHold => Slot::P(&mut o.view_hold_p),
            Knob::PutHash => Slot::W(&mut o.mix.put_hash),
            Knob::Head => Slot::W(&mut o.mix.head),
            Knob::Delete => Slot::W(&mut o.mix.delete),
            Knob::Range => Slot::W(&mut o.mix.range),
            Knob::Bad => Slot::W(&mut o.mix.bad),
            Knob::Misc => Slot::W(&mut o.mix.misc),
        }
    }

    /// The knob is not zero in `opts`.
    pub fn is_set(self, opts: &Options) -> bool {
        let mut o = opts.clone();
        match self.slot(&mut o) {
            Slot::P(p) => *p > 0.0,
            Slot::W(w) => *w > 0,
        }
    }

    fn zero(self, opts: &mut Options) {
        match self.slot(opts) {
            Slot::P(p) => *p = 0.0,
            Slot::W(w) => *w = 0,
        }
    }
}

/// Where a knob lives: a probability or a weight of the mix.
enum Slot<'a> {
    P(&'a mut f64),
    W(&'a mut u32),
}

impl Overrides {
    /// Changes drawn options as the overrides say (each only ever shrinks them).
    pub fn apply(&self, opts: &mut Options) {
        let mix_before = opts.mix;
        if let Some(n) = self.clients {
            opts.clients = opts.clients.min(n.max(1));
        }
        if let Some(n) = self.workers {
            opts.workers = opts.workers.min(n.max(1));
        }
        if let Some(n) = self.crashes {
            opts.crashes.truncate(n);
        }
        if let Some(mib) = self.capacity_mib {
            let bytes = mib.max(CAPACITY_MIB_MIN) << 20;
            opts.capacity_bytes = opts.capacity_bytes.min(bytes);
        }
        for k in &self.zeroed {
            k.zero(opts);
        }
        if let Some(store) = self.store {
            opts.store = store;
            opts.crashes.retain(|p| p.kind == CrashKind::Process);
        }
        assert!(opts.store == StoreKind::Mem || opts.power_loss_free());
        assert!(opts.mix.put == mix_before.put && opts.mix.get == mix_before.get);
        assert!(opts.clients >= 1 && opts.workers >= 1 && opts.mix.total() > 0);
    }

    /// The overrides as command-line flags (each with a leading space; empty when none).
    pub fn flags(&self) -> String {
        let mut out = String::new();
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push_str(&format!(" --{name} {v}"));
            }
        };
        flag("clients", self.clients.map(|n| n.to_string()));
        flag("workers", self.workers.map(|n| n.to_string()));
        flag("crashes", self.crashes.map(|n| n.to_string()));
        flag("capacity-mib", self.capacity_mib.map(|n| n.to_string()));
        let zeroed: Vec<&str> = self.zeroed.iter().map(|k| k.name()).collect();
        flag("zero", (!zeroed.is_empty()).then(|| zeroed.join(",")));
        flag("store", self.store.map(|s| s.as_str().to_string()));
        out
    }

    /// The command line that replays `opts` (drawn, then these overrides applied).
    pub fn reproduce_line(&self, opts: &Options) -> String {
        format!("{}{}", opts.reproduce_line(), self.flags())
    }
}

/// Parses `--zero`'s list of knob names, separated by commas.
pub fn parse_zeroed(text: &str) -> Result<BTreeSet<Knob>, String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|name| {
            Knob::by_name(name).ok_or_else(|| {
                let all: Vec<&str> = Knob::ALL.iter().map(|k| k.name()).collect();
                format!("unknown knob `{name}` (one of {})", all.join(", "))
            })
        })
        .collect()
}

/// How big a run is: what shrinking reduces. One run is no bigger than another when each
/// figure is at most the other's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RunSize {
    pub requests: u64,
    pub crashes: usize,
    pub clients: usize,
    pub workers: usize,
    pub capacity_mib: u64,
    /// Faults and workload knobs that are not zero.
    pub knobs_set: usize,
}

impl RunSize {
    pub fn of(opts: &Options) -> RunSize {
        RunSize {
            requests: opts.requests,
            crashes: opts.crashes.len(),
            clients: opts.clients,
            workers: opts.workers,
            capacity_mib: opts.capacity_bytes >> 20,
            knobs_set: Knob::ALL.iter().filter(|k| k.is_set(opts)).count(),
        }
    }

    /// Each figure is at most `other`'s.
    pub fn no_bigger_than(&self, other: &RunSize) -> bool {
        self.requests <= other.requests
            && self.crashes <= other.crashes
            && self.clients <= other.clients
            && self.workers <= other.workers
            && self.capacity_mib <= other.capacity_mib
            && self.knobs_set <= other.knobs_set
    }
}

impl std::fmt::Display for RunSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests={} crashes={} clients={} workers={} capacity_mib={} knobs_set={}",
            self.requests,
            self.crashes,
            self.clients,
            self.workers,
            self.capacity_mib,
            self.knobs_set
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::bugs::Bugs;

    #[test]
    fn overrides_only_shrink_and_survive_their_flags() {
        let drawn = Options::draw(7, 500, Bugs::NONE, None);
        let over = Overrides {
            clients: Some(1),
            workers: Some(64),
            crashes: Some(0),
            capacity_mib: Some(1),
            zeroed: Knob::ALL.into_iter().collect(),
            store: None,
        };
        let mut o = drawn.clone();
        over.apply(&mut o);
        assert_eq!(
            (o.clients, o.workers, o.crashes.len()),
            (1, drawn.workers, 0)
        );
        assert_eq!(o.capacity_bytes, CAPACITY_MIB_MIN << 20);
        let size = RunSize::of(&o);
        assert_eq!(size.knobs_set, 0);
        assert!(size.no_bigger_than(&RunSize::of(&drawn)));
        let flags = over.flags();
        let zero = flags.split("--zero ").nth(1).expect("a --zero flag");
        assert_eq!(parse_zeroed(zero).expect("names parse"), over.zeroed);
        assert!(parse_zeroed("eagain,nope").is_err());
    }
}
