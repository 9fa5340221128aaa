//! buddy-blocks' server: the production driver of the engine (io_uring, rtrb, libmdbx, threads,
//! signals, CLI). The binary is `buddy-blocks` (src/main.rs); this library holds its parts so
//! tests and tools can reach them.

pub mod check;
pub mod checkpoint;
pub mod config;
pub mod control;
pub mod data_sync;
pub mod datafile;
pub mod direct_write;
pub mod fail_fast;
pub mod fd_log;
pub mod helper_thread;
pub mod identity;
pub mod log_file;
pub mod mdbx;
pub mod mdbx_raw;
pub mod mdbx_view;
pub mod net;
pub mod ring;
pub mod serve;
pub mod shared;
pub mod sigbus;
pub mod store;
pub mod trailer;
pub mod watchdog;
