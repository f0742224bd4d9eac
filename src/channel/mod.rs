//! Channels (PROTOCOL.md §6–§7): the sans-IO endpoint, channel establishment and reliability.
//!
//! Clippy's `arithmetic_side_effects` is denied here: peers choose many of the numbers.
#![deny(clippy::arithmetic_side_effects)]

pub mod admission;
mod config;
mod connection;
pub mod cookie;
mod deadlines;
mod endpoint;
mod events;
mod outgoing;
mod owed;
mod payload;
pub mod pool;
pub mod reliability;
mod seal;
mod state;

pub use config::EndpointConfig;
pub(crate) use connection::later;
pub use endpoint::{ChannelCounts, HeapReport, LocalIdentity, PeerSnapshot};
pub use endpoint::{Endpoint, PeerInfo};
pub use events::{ChannelHandle, Event, OpenError, SendError, Transmit};
pub use outgoing::LentDatagram;
pub(crate) use payload::Datagram;
pub use payload::{Lendable, Payload};
pub use pool::BufferPool;
