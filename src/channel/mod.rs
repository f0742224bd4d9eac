//! Channels (PROTOCOL.md §6–§7): the sans-IO endpoint, channel establishment and reliability.
//!
//! Clippy's `arithmetic_side_effects` is denied here: peers choose many of the numbers.
#![deny(clippy::arithmetic_side_effects)]

pub mod admission;
mod connection;
pub mod cookie;
mod deadlines;
mod endpoint;
mod outgoing;
pub mod pool;
pub mod reliability;
mod seal;
mod state;

pub(crate) use connection::later;
pub use endpoint::{ChannelCounts, HeapReport, PeerSnapshot};
pub use endpoint::{
    ChannelHandle, Endpoint, EndpointConfig, Event, OpenError, PeerInfo, SendError, Transmit,
};
pub use pool::BufferPool;
