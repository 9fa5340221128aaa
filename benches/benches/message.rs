//! Message codec: encode and decode of the frames the SPSC queues carry.

use std::hint::black_box;

use criterion::Criterion;
use engine::buddy::Slot;
use engine::hash::BlockHash;
use engine::message::{Location, OccupyOutcome, ToController, ToWorker};
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
    let address = ToWorker::Address {
        request: 99,
        location: Some(Location {
            slot,
            len: 60_000,
            crc32c: 0xdead_beef,
        }),
    };
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
    g.bench_function("encode/address", |b| {
        b.iter(|| black_box(&address).encode())
    });
    let f = address.encode();
    g.bench_function("decode/address", |b| {
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
