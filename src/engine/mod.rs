//! The I/O engine (PROTOCOL.md §12): sockets, the clock and the loops that drive the sans-IO core.
//!
//! [`Engine`] runs a node as thread-per-core shards on one SO_REUSEPORT port with batched
//! `recvmmsg`/`sendmmsg` I/O; [`Driver`] is the original single-threaded mio loop, and
//! [`Pinger`] a small blocking loop for `weft ping`.

mod driver;
pub mod load;
mod pinger;
mod shard;
mod sharded;
mod sys;
mod worker;

pub use driver::{Driver, PUBLISH_INTERVAL};
pub use pinger::{Pinger, Reply};
pub use shard::{ShardStats, owner_of};
pub use sharded::{Engine, EngineConfig, ShutdownHandle, default_shards, merged_endpoint_stats};
pub use worker::{Delivery, Replier, ReplyError, WorkerLink, run_echo_worker};
