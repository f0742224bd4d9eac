//! The I/O engine (PROTOCOL.md §12): sockets, the clock and the loop that drives the sans-IO core.
//!
//! For now a single-threaded mio loop ([`Driver`]) runs a node, and a small blocking loop
//! ([`Pinger`]) runs `weft ping`; the sharded engine of §12 will replace the first.

mod driver;
mod pinger;

pub use driver::{Driver, PUBLISH_INTERVAL, ShutdownHandle};
pub use pinger::{Pinger, Reply};
