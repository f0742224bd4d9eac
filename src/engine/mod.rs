//! The I/O engine (PROTOCOL.md §12): sockets, the clock and the loops that drive the sans-IO core.
//!
//! [`Engine`] runs a node as thread-per-core shards on one SO_REUSEPORT port, each on io_uring
//! or on epoll with batched `recvmmsg`/`sendmmsg` ([`IoChoice`]). The benchmark, load and probe
//! tools that drive it from outside live in [`crate::bench`].
//!
//! Clippy's `arithmetic_side_effects` is denied here: peers choose many of the numbers.
#![deny(clippy::arithmetic_side_effects)]

mod backend;
mod bare;
mod epoll;
mod io;
mod shard;
mod sharded;
mod slabs;
pub(crate) mod sys;
mod uring;
mod worker;

pub use io::{IoChoice, UringRefused};
pub use shard::{ShardStats, owner_of};
pub use sharded::{Engine, EngineConfig, ShutdownHandle, default_shards, merged_endpoint_stats};

use crate::channel::{Endpoint, Event};
use std::time::Duration;

/// How often the engine hands its statistics to the metrics layer (PROTOCOL.md §12: about once a
/// second, never per packet).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Logs what a node without an application does not otherwise act on.
pub(crate) fn log_event(event: &Event) {
    match event {
        Event::Pong { peer, from, token } => {
            tracing::debug!(%peer, %from, token = ?token, "pong");
        }
        Event::ChannelOpened {
            peer,
            id,
            initiator,
            ..
        } => tracing::debug!(%peer, %id, initiator, "channel opened"),
        Event::OpenFailed { reason, .. } => tracing::debug!(?reason, "channel open failed"),
        Event::ChannelClosed {
            reason, by_peer, ..
        } => tracing::debug!(?reason, by_peer, "channel closed"),
        Event::SessionEstablished {
            peer,
            from,
            kind,
            initiator,
            ..
        // Per-session events are debug: a busy node starts thousands a second, and the node's
        // periodic INFO summary counts them (issue 13).
        } => tracing::debug!(%peer, %from, kind, initiator, "session established"),
        Event::SessionFailed {
            address, reason, ..
        } => tracing::debug!(%address, reason, "session failed"),
        // Messages go to workers (`crate::service`); a bare node logs nothing.
        Event::Message { .. } | Event::Skipped { .. } | Event::Progress { .. } => {}
    }
}

/// Tells the endpoint the wall-clock time: IK INITs carry it as TAI64N (PROTOCOL.md §5), and
/// only the engine may read a clock (STYLE.md 1).
pub(crate) fn tell_wall_clock(endpoint: &mut Endpoint) {
    if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        endpoint.set_unix_time(since_epoch.as_secs(), since_epoch.subsec_nanos());
    }
}
