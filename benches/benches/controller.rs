//! One controller cycle of N messages over the real libmdbx store (`server::mdbx::MdbxStore`),
//! the server's only metadata path: the batch is decoded into one read view and one write
//! transaction, committed (durably in `full`), and its replies land in the outbox.
//!
//! - `occupy/<N>/<durability>`: the cycles of N `Occupy` messages (N new 4 KiB blocks under
//!   random hashes; a full-durability cycle logs at most 256 of them in one record) — what N
//!   concurrent PUTs cost the controller. The slots are reserved by an untimed
//!   `Allocate` cycle first, and the blocks deleted again by an untimed `Release` cycle after,
//!   so the index stays at its preloaded size.
//! - `view_lookup/<N>`: what replaced the controller's `get_address` cycle: a worker's index
//!   view (`MdbxView`) renewed, N lookups of stored hashes, released, over an index of
//!   `PRELOAD` blocks (what one `serve_reads` turn with N queued GETs costs the index).
//!
//! The data file's fdatasync is not part of it (`sync_data` does nothing, `write_log` only
//! counts): that is the disk's cost, measured by `buddy-bench`. Nor are the checkpoints (the
//! libmdbx sync runs in the background in the server): they run untimed between cycles.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant as StdInstant};

use criterion::{BenchmarkId, Criterion};
use engine::buddy::Slot;
use engine::controller::{
    Controller, ControllerConfig, ControllerIo, CycleOutcome, Durability, SyncError,
};
use engine::message::{ToController, ToWorker, ALLOCATE_COUNT_MAX};
use engine::meta::{IndexView, MetaStore};
use engine::size_class::SizeClass;
use engine::{BlockHash, Instant};
use server::mdbx::MdbxStore;

#[macro_use]
mod common;

const CAPACITY: u64 = 4 << 30;
const MAP_MAX: u64 = 4 << 30;
/// Blocks in the index before measuring, so its B-tree has a realistic depth.
const PRELOAD: usize = 100_000;
/// The log region (64 MiB, the server's default).
const LOG_SECTORS: u64 = 16 * 1024;

struct NoSync {
    start: StdInstant,
    checkpoint_wanted: bool,
}

impl ControllerIo for NoSync {
    fn sync_data(&mut self) -> Result<(), SyncError> {
        Ok(())
    }
    fn write_log(&mut self, _sector: u64, bytes: &[u8]) -> Result<(), SyncError> {
        black_box(bytes);
        Ok(())
    }
    fn begin_checkpoint(&mut self) {
        self.checkpoint_wanted = true;
    }
    fn now(&mut self) -> Instant {
        Instant(self.start.elapsed().as_nanos() as u64)
    }
}

struct Bench {
    dir: PathBuf,
    controller: Controller<MdbxStore>,
    sync: server::mdbx::IndexSync,
    io: NoSync,
    request: u64,
    /// xorshift state for hashes no earlier iteration used.
    x: u64,
}

impl Bench {
    fn new(durability: Durability) -> Bench {
        let dir = std::env::temp_dir().join(format!(
            "buddy-bench-controller-{}-{:?}",
            std::process::id(),
            durability
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = MdbxStore::open(&dir, MAP_MAX).expect("open libmdbx");
        let sync = store.index_sync();
        let controller = Controller::open(
            store,
            ControllerConfig {
                capacity_bytes: CAPACITY,
                workers: 1,
                cycle_interval: Duration::ZERO,
                durability,
                node_id: 1,
                log_sectors: LOG_SECTORS,
                run_id: 1,
                checkpoint_interval: engine::controller::CHECKPOINT_INTERVAL,
                bugs: engine::bugs::Bugs::NONE,
            },
        )
        .expect("open controller");
        let mut b = Bench {
            dir,
            controller,
            sync,
            io: NoSync {
                start: StdInstant::now(),
                checkpoint_wanted: false,
            },
            request: 0,
            x: 0x9e37_79b9_7f4a_7c15,
        };
        // Preload in batches of 1,000 (the controller's batch bound is larger).
        let mut left = PRELOAD;
        while left > 0 {
            let n = left.min(1000);
            let _ = b.put(n);
            left -= n;
        }
        b
    }

    fn hash(&mut self) -> BlockHash {
        let mut h = [0u8; 32];
        for chunk in h.chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            chunk.copy_from_slice(&self.x.to_le_bytes());
        }
        BlockHash(h)
    }

    fn next_request(&mut self) -> u64 {
        self.request += 1;
        self.request
    }

    /// Cycles until the inbox is empty (a full-durability cycle takes what one log record
    /// holds).
    fn cycle(&mut self) -> Vec<ToWorker> {
        let mut out = Vec::new();
        while self.controller.inbox_len() > 0 {
            let now = self.io.now();
            let outcome = self.controller.run_cycle(now, &mut self.io);
            assert!(matches!(outcome, CycleOutcome::Ran { .. }), "{outcome:?}");
            self.controller.drain_outbox(0, |m| {
                out.push(*m);
                true
            });
            assert!(!self.controller.is_failed());
        }
        out
    }

    /// A checkpoint if the controller wants one: untimed, as the server's runs in the
    /// background.
    fn checkpoint(&mut self) {
        let now = self.io.now();
        self.controller.poll_checkpoint(now, &mut self.io);
        if std::mem::take(&mut self.io.checkpoint_wanted) {
            let result = self.sync.sync();
            self.controller.checkpoint_done(result, Duration::ZERO);
        }
    }

    /// Reserves `n` 4 KiB slots (one cycle).
    fn reserve(&mut self, n: usize) -> Vec<Slot> {
        let mut slots = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let count = left.min(ALLOCATE_COUNT_MAX as usize) as u16;
            let request = self.next_request();
            self.controller.handle_message(ToController::Allocate {
                worker: 0,
                request,
                class: SizeClass::MIN,
                count,
            });
            left -= count as usize;
        }
        for m in self.cycle() {
            if let ToWorker::Allocated { slot, .. } = m {
                slots.push(slot);
            }
        }
        assert_eq!(slots.len(), n, "capacity for the benchmark");
        slots
    }

    /// Stores `n` new blocks in one cycle after an untimed reservation; returns their hashes and
    /// the time of the occupy cycle alone.
    fn put(&mut self, n: usize) -> (Vec<BlockHash>, Duration) {
        let slots = self.reserve(n);
        let mut hashes = Vec::with_capacity(n);
        for slot in slots {
            let hash = self.hash();
            let request = self.next_request();
            self.controller.handle_message(ToController::Occupy {
                worker: 0,
                request,
                hash,
                slot,
                len: 4096,
                crc32c: 0,
            });
            hashes.push(hash);
        }
        let t = StdInstant::now();
        let replies = self.cycle();
        let spent = t.elapsed();
        self.checkpoint();
        let stored = replies
            .iter()
            .filter(|m| matches!(m, ToWorker::Occupied { .. }))
            .count();
        assert_eq!(stored, n);
        (hashes, spent)
    }

    fn delete(&mut self, hashes: &[BlockHash]) {
        for &hash in hashes {
            let request = self.next_request();
            self.controller.handle_message(ToController::Release {
                worker: 0,
                request,
                hash,
            });
        }
        let replies = self.cycle();
        assert_eq!(replies.len(), hashes.len());
        self.checkpoint();
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("controller");
    for durability in [Durability::Relaxed, Durability::Full] {
        let mut b = Bench::new(durability);
        for n in [1usize, 64, 512] {
            g.throughput(criterion::Throughput::Elements(n as u64));
            g.bench_function(
                BenchmarkId::new(format!("occupy/{}", durability.as_str()), n),
                |bencher| {
                    bencher.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let (hashes, spent) = b.put(n);
                            total += spent;
                            b.delete(&hashes);
                        }
                        total
                    })
                },
            );
        }
    }
    // Lookups in a worker's view: read only, so durability does not matter.
    let mut b = Bench::new(Durability::Relaxed);
    let (stored, _) = b.put(4096);
    let mut view = b.controller.store().view().expect("a view");
    let mut i = 0usize;
    for n in [1usize, 64, 512] {
        g.throughput(criterion::Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("view_lookup", n), |bencher| {
            bencher.iter(|| {
                let stamp = view.renew().expect("renew");
                for _ in 0..n {
                    let entry = black_box(view.get(&stored[i % stored.len()]).expect("get"));
                    assert!(entry.is_some_and(|e| stamp.shows(&e)));
                    i += 1;
                }
                view.release();
            })
        });
    }
    drop(view);
    g.finish();
}

quick_main!(bench);
