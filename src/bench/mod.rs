//! Benchmark, load and probe tooling that drives a node from outside: `weft bench` (the bulk
//! transfer in [`bulk`], the many-peer load, ping-pong, flood, soak and hostile runs in [`load`],
//! quinn-perf's figures read by [`quinn`] to set beside them) and the blocking [`Pinger`] behind
//! `weft ping`.
//!
//! It sits above [`crate::engine`] and beside [`crate::node`]: it uses the engine's sockets and
//! the sans-IO endpoint, and nothing below it imports it. Only the command line, tests and
//! benches reach it.

// Benchmark tooling: its arithmetic is over the node's own counts, never a peer's numbers.
#[allow(clippy::arithmetic_side_effects)]
pub mod bulk;
// Benchmark tooling: its arithmetic is over the node's own counts, never a peer's numbers.
pub mod json;
#[allow(clippy::arithmetic_side_effects)]
pub mod load;
mod pinger;
pub mod quinn;

pub use pinger::{Pinger, Reply, session_kind_name};
