//! Issue 6: no heap allocation per request on a worker's hot path.
//!
//! A counting global allocator charges every allocation made while the engine's worker code runs
//! (`sim::probe` marks those stretches in the simulator's world) and nothing else. After a
//! warm-up that fills the worker's buffer pools, keep-alive rounds of PUT, GET, HEAD, GET with
//! `If-None-Match` and DELETE at 4 KiB, 64 KiB and 512 KiB must allocate nothing in the worker.
//!
//! With `HOT_PATH_ALLOC_BACKTRACE=1` the test prints the engine call sites of the allocations it
//! counts, with how often each allocated (to find what allocates).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use engine::hash::BlockHash;
use sim::harness::{Harness, HarnessConfig};
use sim::http_client::{self, Style};
use sim::probe;

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static WANT_TRACES: AtomicBool = AtomicBool::new(false);

impl Counting {
    fn note(&self, size: usize) {
        if ARMED.load(Ordering::Relaxed) && probe::in_worker() {
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(size as u64, Ordering::Relaxed);
            if n < 10_000 && WANT_TRACES.load(Ordering::Relaxed) {
                probe::outside_worker(|| {
                    // The innermost frames of the engine: where it allocated.
                    let bt = std::backtrace::Backtrace::force_capture().to_string();
                    let lines: Vec<&str> = bt.lines().collect();
                    let mut site = Vec::new();
                    for (i, l) in lines.iter().enumerate() {
                        if l.contains("engine::") && site.len() < 2 {
                            let at = lines.get(i + 1).map_or("", |a| a.trim());
                            site.push(format!("{} {at}", l.trim()));
                        }
                    }
                    TRACES
                        .lock()
                        .unwrap()
                        .push(format!("{size:>7} bytes: {}", site.join(" <- ")));
                });
            }
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn content(len: usize, tag: u64) -> Vec<u8> {
    let mut x = tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One keep-alive round on `conn`: PUT, GET, HEAD, conditional GET, DELETE of a new block.
fn round(h: &mut Harness, conn: u64, len: usize, tag: u64) {
    let body = content(len, tag);
    let hash = BlockHash::of(&body);
    let style = Style::default();
    let path = http_client::hash_path(&hash, &style);
    let etag = vec![format!("If-None-Match: \"{}\"", hash.to_hex())];
    let requests: [(Vec<u8>, bool, u16); 5] = [
        (http_client::put(&body, None, &style, None), false, 201),
        (
            http_client::bodyless("GET", &path, &style, None, &[]),
            false,
            200,
        ),
        (
            http_client::bodyless("HEAD", &path, &style, None, &[]),
            true,
            200,
        ),
        (
            http_client::bodyless("GET", &path, &style, None, &etag),
            false,
            304,
        ),
        (
            http_client::bodyless("DELETE", &path, &style, None, &[]),
            false,
            204,
        ),
    ];
    for (bytes, head, status) in requests {
        h.send(conn, &bytes);
        h.run_until_quiet();
        let r = h.responses(conn, head);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].status,
            status,
            "{}",
            String::from_utf8_lossy(&bytes[..20])
        );
        if status == 200 && !head {
            assert_eq!(r[0].body, body);
        }
    }
}

#[test]
fn keep_alive_requests_do_not_allocate_in_the_worker() {
    WANT_TRACES.store(
        std::env::var_os("HOT_PATH_ALLOC_BACKTRACE").is_some(),
        Ordering::Relaxed,
    );
    let mut h = Harness::new(HarnessConfig {
        capacity_bytes: 64 << 20,
        ..HarnessConfig::default()
    });
    let conn = h.connect(0);
    h.run_until_quiet();
    let sizes = [4096usize, 65536, 524288, 1, 4097];
    // Warm-up: buffer pools, slot pools, the connection's buffers reach their working sizes.
    let mut tag = 0;
    for _ in 0..4 {
        for &len in &sizes {
            tag += 1;
            round(&mut h, conn, len, tag);
        }
    }
    let rounds = 20;
    ARMED.store(true, Ordering::SeqCst);
    for _ in 0..rounds {
        for &len in &sizes {
            tag += 1;
            round(&mut h, conn, len, tag);
        }
    }
    ARMED.store(false, Ordering::SeqCst);
    let requests = rounds * sizes.len() as u64 * 5;
    let count = COUNT.load(Ordering::SeqCst);
    let bytes = BYTES.load(Ordering::SeqCst);
    let mut sites = std::collections::BTreeMap::<String, u64>::new();
    for t in TRACES.lock().unwrap().iter() {
        *sites.entry(t.clone()).or_default() += 1;
    }
    for (site, n) in &sites {
        eprintln!("{n:>5} x {site}");
    }
    assert_eq!(
        count, 0,
        "the worker allocated {count} times ({bytes} bytes) over {requests} keep-alive \
         requests; run with HOT_PATH_ALLOC_BACKTRACE=1 to see where"
    );
}
