//! Engine scenarios on the scripted harness (N workers, one controller, in-memory queues,
//! `MemStore`, fake ring/disk/clock, no faults), regressions for engine bugs the simulator found,
//! and a few fixed seeds of the full simulator; one module per theme.

mod budget;
mod common;
mod durability;
mod health;
mod isolation;
mod relaxed;
mod requests;
mod seeds;
mod shutdown;
mod space;
