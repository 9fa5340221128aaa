//! The oracle: what a correct server must answer, and whether the stored state agrees with
//! what clients were told.
//!
//! - [`answer`]: one response against its request and the model (statuses, bodies, headers);
//! - [`listing`]: `POST /blocks/missing` and `GET /blocks` pages (order, completeness);
//! - [`figures`]: the stored-block figures of `/stats` and `/metrics` against the model;
//! - [`explain`]: the injected faults and damaged bytes that may explain an error answer;
//! - [`store`]: the index and the stored bytes against the model (after recovery, at the end).
//!
//! The model of acknowledged blocks itself is [`crate::model`]. Owns: every correctness
//! judgement the simulator makes outside the engine's own invariant checks. Never does: drive
//! the engine, draw randomness or schedule anything; it depends only on the model, the request
//! vocabulary ([`crate::request`]) and read access to the fakes.

pub mod answer;
pub mod explain;
pub mod figures;
pub mod listing;
pub mod store;
