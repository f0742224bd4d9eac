//! weft: a peer-to-peer packet engine.
//!
//! The modules follow the layers of PROTOCOL.md §1, bottom to top. Imports point down the stack
//! and never up (STYLE.md): [`wire`] knows nothing above it; [`session`] and [`channel`] are
//! sans-IO state machines fed `(now, from, bytes)`; [`engine`] owns sockets, threads and the
//! clock and drives the sans-IO core; [`service`] is the seam between the engine's shards and
//! the workers (echo, overlay, consensus) that never see the engine; [`node`] assembles a
//! runnable node from configuration. [`bench`] is the benchmark, load and probe tooling above
//! the engine. [`stats`], [`heap`] and [`handle`] are small leaves below every layer: any layer
//! may use them, they use none.

pub mod bench;
pub mod channel;
pub mod consensus;
pub mod engine;
pub mod handle;
// The allocator: sizes come from the program's own allocations, never a peer's numbers.
#[allow(clippy::arithmetic_side_effects)]
pub mod heap;
pub mod node;
pub mod overlay;
pub mod service;
pub mod session;
pub mod stats;
pub mod wire;
