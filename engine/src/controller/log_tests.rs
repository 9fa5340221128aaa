//! The controller's write-ahead log end to end, over an in-memory data file (live and durable
//! images, like the page cache and the disk) and `MemStore`: one record and one flush per
//! promising batch, no durable commit in a cycle, recovery after a power loss, writes that wait
//! for log space, checkpoints that free it, and a failed checkpoint's latch.

use std::time::Duration;

use crate::buddy::Slot;
use crate::bugs::Bugs;
use crate::clock::Instant;
use crate::hash::BlockHash;
use crate::message::{OccupyOutcome, ReleaseOutcome, ToController, ToWorker};
use crate::meta::{CrashKind, MemStore, MetaRead, MetaStore, SharedImage};
use crate::size_class::SizeClass;
use crate::wal::{self, BlockReader, LogDisk, WalIoError, SECTOR_BYTES};

use super::{Controller, ControllerConfig, ControllerIo, Durability, SyncError};

const CAPACITY: u64 = 4 << 20;

/// The data file: slots `[0, CAPACITY)`, then the log region.
struct File {
    live: Vec<u8>,
    durable: Vec<u8>,
    log_sectors: u64,
}

struct Io {
    file: File,
    now: u64,
    syncs: u32,
    log_writes: u32,
    checkpoints_begun: u32,
    fail_next_sync: bool,
}

impl ControllerIo for Io {
    fn sync_data(&mut self) -> Result<(), SyncError> {
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(SyncError::Io("EIO".into()));
        }
        self.syncs += 1;
        self.file.durable.clone_from(&self.file.live);
        Ok(())
    }
    fn write_log(&mut self, sector: u64, bytes: &[u8]) -> Result<(), SyncError> {
        assert!((bytes.len() as u64).is_multiple_of(SECTOR_BYTES));
        assert!(sector + bytes.len() as u64 / SECTOR_BYTES <= self.file.log_sectors);
        let at = (CAPACITY + sector * SECTOR_BYTES) as usize;
        self.file.live[at..at + bytes.len()].copy_from_slice(bytes);
        self.log_writes += 1;
        Ok(())
    }
    fn begin_checkpoint(&mut self) {
        self.checkpoints_begun += 1;
    }
    fn now(&mut self) -> Instant {
        self.now += 1_000;
        Instant(self.now)
    }
}

impl LogDisk for File {
    fn log_sectors(&self) -> u64 {
        self.log_sectors
    }
    fn read_log(&mut self, sector: u64, out: &mut [u8]) -> Result<(), WalIoError> {
        let at = (CAPACITY + sector * SECTOR_BYTES) as usize;
        out.copy_from_slice(&self.live[at..at + out.len()]);
        Ok(())
    }
}

struct Blocks<'a>(&'a [u8]);

impl BlockReader for Blocks<'_> {
    fn read_block(&mut self, slot: Slot, out: &mut [u8]) -> Result<(), WalIoError> {
        let at = slot.offset as usize;
        out.copy_from_slice(&self.0[at..at + out.len()]);
        Ok(())
    }
}

fn config(log_sectors: u64, run_id: u64) -> ControllerConfig {
    ControllerConfig {
        capacity_bytes: CAPACITY,
        workers: 1,
        cycle_interval: Duration::ZERO,
        durability: Durability::Full,
        node_id: 7,
        log_sectors,
        run_id,
        checkpoint_interval: super::CHECKPOINT_INTERVAL,
        bugs: Bugs::NONE,
    }
}

struct Rig {
    c: Controller<MemStore>,
    io: Io,
    image: SharedImage,
    request: u64,
    run: u64,
}

impl Rig {
    fn new(log_sectors: u64) -> Rig {
        let store = MemStore::new();
        let image = store.image();
        let c = Controller::open(store, config(log_sectors, 1)).expect("open");
        let len = (CAPACITY + log_sectors * SECTOR_BYTES) as usize;
        let io = Io {
            file: File {
                live: vec![0; len],
                durable: vec![0; len],
                log_sectors,
            },
            now: 0,
            syncs: 0,
            log_writes: 0,
            checkpoints_begun: 0,
            fail_next_sync: false,
        };
        Rig {
            c,
            io,
            image,
            request: 0,
            run: 1,
        }
    }

    /// Runs cycles until the controller is idle, then returns every reply.
    fn settle(&mut self) -> Vec<ToWorker> {
        let mut out = Vec::new();
        for _ in 0..100 {
            let now = self.io.now();
            let ran = self.c.run_cycle(now, &mut self.io);
            self.c.drain_outbox(0, |r| {
                out.push(*r);
                true
            });
            self.c.check_invariants();
            if !matches!(ran, super::CycleOutcome::Ran { .. }) {
                break;
            }
        }
        out
    }

    fn next_request(&mut self) -> u64 {
        self.request += 1;
        self.request
    }

    /// A PUT as a worker makes it: allocate, write the bytes, occupy. Returns the hash and the
    /// occupy's answer (`None`: no answer yet).
    fn put(&mut self, data: &[u8]) -> (BlockHash, Option<ToWorker>) {
        let request = self.next_request();
        self.c.handle_message(ToController::Allocate {
            worker: 0,
            request,
            class: SizeClass::MIN,
            count: 1,
        });
        let slot = self
            .settle()
            .into_iter()
            .find_map(|r| match r {
                ToWorker::Allocated { slot, .. } => Some(slot),
                _ => None,
            })
            .expect("a slot");
        let at = slot.offset as usize;
        self.io.file.live[at..at + data.len()].copy_from_slice(data);
        let hash = BlockHash::of(data);
        self.c.handle_message(ToController::Occupy {
            worker: 0,
            request,
            hash,
            slot,
            len: data.len() as u32,
            crc32c: crc32c::crc32c(data),
        });
        let answer = self
            .settle()
            .into_iter()
            .find(|r| matches!(r, ToWorker::Occupied { .. } | ToWorker::Error { .. }));
        (hash, answer)
    }

    fn delete(&mut self, hash: BlockHash) -> Vec<ToWorker> {
        let request = self.next_request();
        self.c.handle_message(ToController::Release {
            worker: 0,
            request,
            hash,
        });
        self.settle()
    }

    fn finish_checkpoint(&mut self, ok: bool) {
        assert!(self.c.checkpoint_in_flight());
        if ok {
            let mut img = self.image.lock().unwrap();
            img.durable = (*img.committed).clone();
        }
        let result: Result<(), SyncError> = if ok {
            Ok(())
        } else {
            Err(SyncError::Io("EIO".into()))
        };
        self.c.checkpoint_done(result, Duration::from_millis(1));
    }

    /// A power loss: the index keeps its durable image, the file what was synced. Then a start
    /// as the drivers do it: recovery, then `open`.
    fn power_loss_and_restart(self) -> Rig {
        let Rig {
            c,
            mut io,
            image,
            run,
            ..
        } = self;
        let log_sectors = io.file.log_sectors;
        drop(c);
        MemStore::crash(&image, CrashKind::PowerLoss);
        io.file.live.clone_from(&io.file.durable);
        let mut store = MemStore::open(image.clone());
        let blocks = io.file.live.clone();
        let recovered = wal::recover(
            &mut store,
            &mut io.file,
            &mut Blocks(&blocks),
            run + 1,
            crate::bugs::Bugs::NONE,
        )
        .expect("recover");
        let c = Controller::open(store, config(log_sectors, 999)).expect("open");
        assert_eq!(recovered.run_id, run + 1);
        Rig {
            c,
            io,
            image,
            request: 0,
            run: run + 1,
        }
    }

    fn stored(&self, hash: &BlockHash) -> bool {
        let read = self.c.store().read().unwrap();
        read.get(hash).unwrap().is_some()
    }
}

fn block(i: u32) -> Vec<u8> {
    let mut b = vec![0u8; 100 + i as usize % 1000];
    b[..4].copy_from_slice(&i.to_le_bytes());
    b
}

#[test]
fn a_put_is_one_record_and_one_flush_and_never_a_durable_commit() {
    let mut rig = Rig::new(64);
    let durable_commits = |rig: &Rig| rig.image.lock().unwrap().durable.clone();
    let before = durable_commits(&rig);
    let (hash, answer) = rig.put(&block(1));
    assert!(matches!(
        answer,
        Some(ToWorker::Occupied {
            outcome: OccupyOutcome::Stored,
            ..
        })
    ));
    assert_eq!((rig.io.log_writes, rig.io.syncs), (1, 1));
    assert!(rig.stored(&hash));
    assert!(
        durable_commits(&rig) == before,
        "the index is made durable only by a checkpoint"
    );
    // A duplicate promises nothing new: no record, no flush.
    let (_, answer) = rig.put(&block(1));
    assert!(matches!(
        answer,
        Some(ToWorker::Occupied {
            outcome: OccupyOutcome::Duplicate,
            ..
        })
    ));
    assert_eq!((rig.io.log_writes, rig.io.syncs), (1, 1));
    let stats = rig.c.stats();
    assert_eq!((stats.log_records, stats.log_records_written), (1, 1));
}

#[test]
fn acknowledged_puts_and_deletes_survive_a_power_loss_through_the_log() {
    let mut rig = Rig::new(64);
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for i in 0..20 {
        let (hash, answer) = rig.put(&block(i));
        assert!(matches!(answer, Some(ToWorker::Occupied { .. })));
        if i % 3 == 0 {
            let replies = rig.delete(hash);
            assert!(replies.iter().any(|r| matches!(
                r,
                ToWorker::Released {
                    outcome: ReleaseOutcome::Deleted,
                    ..
                }
            )));
            gone.push(hash);
        } else {
            kept.push(hash);
        }
    }
    // No checkpoint ran: the durable index is empty, every promise is in the log.
    assert_eq!(rig.io.checkpoints_begun, 0);
    let rig = rig.power_loss_and_restart();
    for hash in &kept {
        assert!(rig.stored(hash), "acknowledged PUT lost");
    }
    for hash in &gone {
        assert!(!rig.stored(hash), "acknowledged DELETE undone");
    }
    assert_eq!(rig.c.stats().blocks, kept.len() as u64);
    rig.c.check_against_store();
}

#[test]
fn writes_wait_for_log_space_and_a_returned_checkpoint_frees_it() {
    let mut rig = Rig::new(16);
    let mut hashes = Vec::new();
    // Each PUT is one record of one sector: after 15 the log is full.
    for i in 0..15 {
        let (hash, answer) = rig.put(&block(i));
        assert!(answer.is_some(), "PUT {i} answered");
        hashes.push(hash);
        let now = rig.io.now();
        rig.c.poll_checkpoint(now, &mut rig.io);
        if rig.c.checkpoint_in_flight() {
            break;
        }
    }
    assert!(
        rig.c.checkpoint_in_flight(),
        "half full: a checkpoint begins"
    );
    // Fill the rest while the checkpoint runs: the log fills and writes wait.
    let mut waiting = None;
    for i in 100..120 {
        let (hash, answer) = rig.put(&block(i));
        if answer.is_none() {
            waiting = Some(hash);
            break;
        }
        hashes.push(hash);
    }
    let waiting = waiting.expect("the log filled up");
    assert!(rig.c.stats().log_full_waits >= 1);
    assert_eq!(
        rig.c.poll_timeout(),
        None,
        "nothing to do until the checkpoint"
    );
    rig.finish_checkpoint(true);
    let replies = rig.settle();
    assert!(replies
        .iter()
        .any(|r| matches!(r, ToWorker::Occupied { .. })));
    assert!(rig.stored(&waiting));
    // The rest of the log is freed by the next checkpoint.
    let now = rig.io.now();
    rig.c.poll_checkpoint(now, &mut rig.io);
    rig.finish_checkpoint(true);
    assert_eq!(rig.c.stats().checkpoints, 2);
    hashes.push(waiting);
    let rig = rig.power_loss_and_restart();
    for hash in &hashes {
        assert!(rig.stored(hash));
    }
}

#[test]
fn a_checkpoint_is_due_an_interval_after_the_last_commit() {
    let mut rig = Rig::new(256);
    rig.put(&block(1));
    let now = rig.io.now();
    rig.c.poll_checkpoint(now, &mut rig.io);
    assert!(!rig.c.checkpoint_in_flight(), "not due yet");
    let deadline = rig.c.poll_timeout().expect("a checkpoint deadline");
    rig.c.poll_checkpoint(deadline, &mut rig.io);
    assert!(rig.c.checkpoint_in_flight());
    rig.finish_checkpoint(true);
    assert_eq!(rig.c.poll_timeout(), None, "nothing committed since");
    assert_eq!(rig.c.stats().log_records, 0);
}

#[test]
fn a_failed_flush_or_checkpoint_latches_and_answers_io_errors() {
    let mut rig = Rig::new(64);
    rig.io.fail_next_sync = true;
    let (hash, answer) = rig.put(&block(1));
    assert!(matches!(answer, Some(ToWorker::Error { .. })));
    assert!(rig.c.is_failed() && !rig.stored(&hash));

    let mut rig = Rig::new(64);
    let (kept, _) = rig.put(&block(2));
    let deadline = rig.c.poll_timeout().expect("deadline");
    rig.c.poll_checkpoint(deadline, &mut rig.io);
    rig.finish_checkpoint(false);
    assert!(rig.c.is_failed());
    // The acknowledged block is in the log: the next start replays it.
    let rig = rig.power_loss_and_restart();
    assert!(rig.stored(&kept));
}
