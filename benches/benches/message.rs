//! Message codec: encode and decode of the frames the SPSC queues carry.

use std::hint::black_box;

use criterion::Criterion;
use engine::buddy::Slot;
use engine::hash::BlockHash;
use engine::message::{OccupyOutcome, ToController, ToWorker};
use engine::size_class::SizeClass;

#[macro_use]
mod common;

fn bench(c: &mut Criterion) {
    let hash = BlockHash::of(b"a block");
    let slot = Slot {
        offset: 7 * 65536,
        class: SizeClass::new(4).unwrap(),
    };
    let occupy = ToController::Occupy {
        worker: 1,
        request: 123_456,
        hash,
        slot,
        len: 60_000,
        crc32c: 0xdead_beef,
    };
    let allocated = ToWorker::Allocated { request: 99, slot };
    let occupied = ToWorker::Occupied {
        request: 5,
        outcome: OccupyOutcome::Stored,
    };
    let mut g = c.benchmark_group("message");
    g.bench_function("encode/occupy", |b| b.iter(|| black_box(&occupy).encode()));
    let f = occupy.encode();
    g.bench_function("decode/occupy", |b| {
        b.iter(|| ToController::decode(black_box(&f)).unwrap())
    });
    g.bench_function("encode/allocated", |b| {
        b.iter(|| black_box(&allocated).encode())
    });
    let f = allocated.encode();
    g.bench_function("decode/allocated", |b| {
        b.iter(|| ToWorker::decode(black_box(&f)).unwrap())
    });
    let f = occupied.encode();
    g.bench_function("roundtrip/occupied", |b| {
        b.iter(|| ToWorker::decode(&black_box(&occupied).encode()).unwrap())
    });
    g.bench_function("decode/occupied", |b| {
        b.iter(|| ToWorker::decode(black_box(&f)).unwrap())
    });
    g.finish();
}

quick_main!(bench);
