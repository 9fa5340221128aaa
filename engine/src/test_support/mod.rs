//! Test support shared by the engine's own tests, the fuzz targets, the simulator, the server's
//! black-box tests and the load generator: one copy of each test-side idea.
//!
//! Compiled for the engine's unit tests and behind the `test-support` cargo feature; production
//! builds of the server never need it. It must never be used by the engine's own logic (only by
//! tests and test drivers), and never reads a clock or OS randomness.
//!
//! - [`allocator_model`]: the buddy allocator run next to a page-bitmap model (the proptests in
//!   `buddy/tests.rs` and `fuzz/fuzz_targets/allocator_ops.rs`).
//! - [`http_response`]: the one HTTP/1.1 response parser of the simulator's clients, the server's
//!   black-box tests and the benchmarks' load generator.
//! - [`synthetic_log`]: a write-ahead log made up on read, to time recovery of large logs.

pub mod allocator_model;
pub mod http_response;
pub mod synthetic_log;
