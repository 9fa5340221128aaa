//! The etcd lock of the repair loop, against a real etcd: holders never overlap, and a waiter
//! that cannot get the lock in time is told it is busy.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster::membership::{Locked, Membership};
use common::Etcd;

const PREFIX: &str = "/lock-test/";
const LEASE: Duration = Duration::from_secs(10);

/// Three contenders, three turns each, every turn 100 ms inside the lock: at most one is ever
/// inside, and all nine turns run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_never_overlap() {
    let etcd = Etcd::start();
    let inside = Arc::new(AtomicUsize::new(0));
    let most_inside = Arc::new(AtomicUsize::new(0));
    let turns = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut m = Membership::connect(std::slice::from_ref(&etcd.url), PREFIX)
            .await
            .expect("etcd");
        let (inside, most_inside, turns) = (inside.clone(), most_inside.clone(), turns.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let work = async {
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most_inside.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    turns.fetch_add(1, Ordering::SeqCst);
                };
                let wait = Duration::from_secs(20);
                let locked = m.with_lock("t", LEASE, wait, work).await.expect("lock");
                assert!(
                    matches!(locked, Locked::Done(())),
                    "waited 20 s for a 100 ms holder"
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("contender");
    }
    assert_eq!(turns.load(Ordering::SeqCst), 9);
    assert_eq!(most_inside.load(Ordering::SeqCst), 1, "two holders at once");
}

/// While one holds the lock for 2 s, another waiting 300 ms gets `Busy` and its work never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_wait_is_busy() {
    let etcd = Etcd::start();
    let mut a = Membership::connect(std::slice::from_ref(&etcd.url), PREFIX)
        .await
        .expect("etcd");
    let mut b = a.clone();
    let holder = tokio::spawn(async move {
        let work = tokio::time::sleep(Duration::from_secs(2));
        a.with_lock("t", LEASE, Duration::from_secs(5), work)
            .await
            .expect("lock")
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    let work = async move {
        ran2.fetch_add(1, Ordering::SeqCst);
    };
    let got = b
        .with_lock("t", LEASE, Duration::from_millis(300), work)
        .await
        .expect("lock");
    assert!(matches!(got, Locked::Busy));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(matches!(holder.await.expect("holder"), Locked::Done(())));
}
