//! buddy-blocks' engine: every piece of logic, and no I/O.
//!
//! This crate does no networking, no file access and no threading, and reads no clock and no OS
//! randomness. Its state machines take input through `handle_*` methods (with `now` as an
//! argument), emit output as data through `poll_*`/`drain_*` methods, and say when they next
//! want to run through `poll_timeout`. Two drivers run it: the server (real io_uring, rtrb,
//! libmdbx) and the simulator (fakes under one seeded scheduler). See DESIGN.md.

pub mod buddy;
pub mod bugs;
pub mod cid;
pub mod clock;
pub mod controller;
pub mod gateway;
pub mod hash;
pub mod health;
pub mod http;
pub mod io;
pub mod log_limit;
pub mod message;
pub mod meta;
pub mod pool;
pub mod size_class;
pub mod stats;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod wal;
pub mod worker;

pub use clock::Instant;
pub use hash::BlockHash;
pub use size_class::SizeClass;
