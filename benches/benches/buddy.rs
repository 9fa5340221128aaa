//! Buddy allocator: allocate/free pairs on a 4 GiB allocator that already holds many slots.

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::Criterion;
use engine::buddy::BuddyAllocator;
use engine::size_class::SizeClass;

#[macro_use]
mod common;

const CAPACITY: u64 = 4 << 30;

/// An allocator with `live` slots of mixed classes allocated, so the trees are not trivial.
fn populated(live: usize) -> (BuddyAllocator, VecDeque<engine::buddy::Slot>) {
    let mut a = BuddyAllocator::new(CAPACITY);
    let mut slots = VecDeque::new();
    for i in 0..live {
        let class = SizeClass::ALL[i % 8];
        slots.push_back(a.allocate(class).expect("space"));
    }
    // Free every third so free lists of every class are populated and fragmented.
    let mut kept = VecDeque::new();
    for (i, s) in slots.into_iter().enumerate() {
        if i % 3 == 0 {
            a.free(s).expect("allocated");
        } else {
            kept.push_back(s);
        }
    }
    (a, kept)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("buddy");
    for class in [SizeClass::MIN, SizeClass::new(4).unwrap(), SizeClass::MAX] {
        let (mut a, _) = populated(20_000);
        g.bench_function(format!("allocate_free/{}k", class.bytes() / 1024), |b| {
            b.iter(|| {
                let s = a.allocate(black_box(class)).expect("space");
                a.free(black_box(s)).expect("allocated");
            })
        });
    }
    // Steady state with splits and merges: allocate a random class, free the oldest live slot.
    let (mut a, mut live) = populated(20_000);
    let mut x: u64 = 0x1234_5678;
    g.bench_function("allocate_free/mixed_fifo", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let class = SizeClass::ALL[(x % 8) as usize];
            let s = a.allocate(class).expect("space");
            live.push_back(s);
            let old = live.pop_front().expect("live");
            a.free(old).expect("allocated");
        })
    });
    g.finish();
}

quick_main!(bench);
