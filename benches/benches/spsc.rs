//! The rtrb SPSC queue as the server uses it (64-byte frames): push/pop on one thread, a
//! cross-thread round trip (latency), and cross-thread throughput one frame at a time and in
//! chunks. The cross-thread cases spin (yielding after a while, so a busy machine does not turn
//! a wait into a whole time slice) on both cores of this machine while they run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use engine::message::{Frame, FRAME_BYTES};

#[macro_use]
mod common;

const CAP: usize = 1024;

/// Spin briefly, then give the core away: on 2 shared cores pure spinning can starve the peer.
struct Backoff(u32);

impl Backoff {
    fn new() -> Backoff {
        Backoff(0)
    }
    fn wait(&mut self) {
        self.0 += 1;
        if self.0 < 200 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc");
    let frame: Frame = [7u8; FRAME_BYTES];

    let (mut p, mut q) = rtrb::RingBuffer::<Frame>::new(CAP);
    g.bench_function("push_pop/same_thread", |b| {
        b.iter(|| {
            p.push(black_box(frame)).unwrap();
            black_box(q.pop().unwrap());
        })
    });

    // Round trip: push to an echo thread, spin until the echo comes back.
    g.bench_function("round_trip/two_threads", |b| {
        b.iter_custom(|iters| {
            let (mut to_p, mut to_c) = rtrb::RingBuffer::<Frame>::new(CAP);
            let (mut back_p, mut back_c) = rtrb::RingBuffer::<Frame>::new(CAP);
            let echo = std::thread::spawn(move || {
                let mut backoff = Backoff::new();
                for _ in 0..iters {
                    let f = loop {
                        if let Ok(f) = to_c.pop() {
                            break f;
                        }
                        backoff.wait();
                    };
                    backoff.reset();
                    while back_p.push(f).is_err() {
                        backoff.wait();
                    }
                }
            });
            let start = Instant::now();
            let mut backoff = Backoff::new();
            for _ in 0..iters {
                to_p.push(frame).unwrap();
                loop {
                    if let Ok(f) = back_c.pop() {
                        black_box(f);
                        break;
                    }
                    backoff.wait();
                }
                backoff.reset();
            }
            let t = start.elapsed();
            echo.join().unwrap();
            t
        })
    });

    const N: u64 = 1 << 14;
    g.throughput(Throughput::Elements(N));
    g.bench_function("throughput/one_at_a_time", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += transfer(N, false);
            }
            total
        })
    });
    g.bench_function("throughput/chunks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += transfer(N, true);
            }
            total
        })
    });
    g.finish();
}

/// Moves `n` frames from this thread to a consumer thread; the time until the consumer has all.
fn transfer(n: u64, chunked: bool) -> Duration {
    let (mut p, mut c) = rtrb::RingBuffer::<Frame>::new(CAP);
    let consumer = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut sum = 0u64;
        let mut backoff = Backoff::new();
        while got < n {
            if chunked {
                let k = c.slots();
                if k == 0 {
                    backoff.wait();
                    continue;
                }
                backoff.reset();
                let chunk = c.read_chunk(k).unwrap();
                for f in chunk.into_iter() {
                    sum = sum.wrapping_add(f[0] as u64);
                }
                got += k as u64;
            } else {
                match c.pop() {
                    Ok(f) => {
                        sum = sum.wrapping_add(f[0] as u64);
                        got += 1;
                        backoff.reset();
                    }
                    Err(_) => backoff.wait(),
                }
            }
        }
        (Instant::now(), sum)
    });
    let start = Instant::now();
    let mut sent = 0u64;
    let mut frame: Frame = [0u8; FRAME_BYTES];
    let mut backoff = Backoff::new();
    while sent < n {
        if chunked {
            let k = p.slots().min((n - sent) as usize);
            if k == 0 {
                backoff.wait();
                continue;
            }
            backoff.reset();
            let mut chunk = p.write_chunk_uninit(k).unwrap();
            let (a, b) = chunk.as_mut_slices();
            for s in a.iter_mut().chain(b.iter_mut()) {
                frame[0] = sent as u8;
                s.write(frame);
            }
            // SAFETY: every slot of both slices was written above.
            unsafe { chunk.commit_all() };
            sent += k as u64;
        } else if p.push(frame).is_ok() {
            sent += 1;
            frame[0] = sent as u8;
            backoff.reset();
        } else {
            backoff.wait();
        }
    }
    let (done, sum) = consumer.join().unwrap();
    black_box(sum);
    done - start
}

quick_main!(bench);
