//! The fakes: everything outside the engine that the server's driver gets from the operating
//! system, made deterministic and seeded.
//!
//! - [`clock`]: virtual time that only moves when the scheduler jumps it to the next deadline;
//! - [`disk`]: the data file (slots, then the write-ahead log's region), with a live and a
//!   durable image per sector, two-halved fdatasyncs and power-loss semantics;
//! - [`log_region`]: the disk as the log's reader and writer (`engine::wal::LogDisk`,
//!   `BlockReader`, the controller's `write_log`);
//! - [`net`]: the network between simulated clients and the workers' sockets;
//! - [`queue`]: the bounded frame queues between workers and controller (back-pressure,
//!   stalls);
//! - [`ring`]: one worker's io_uring: an in-flight table completing operations after seeded
//!   latencies, with the injected faults its module doc lists.
//!
//! Owns: the fake resources and their fault model. Never does: schedule actors, decide what a
//! correct answer is (the oracle's job), or read a wall clock or OS randomness. A fake depends
//! only on other fakes, the options and the engine's I/O types.

pub mod clock;
pub mod disk;
pub mod log_region;
pub mod net;
pub mod queue;
pub mod ring;
