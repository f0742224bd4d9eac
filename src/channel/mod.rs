//! Channels (PROTOCOL.md §6–§7): the sans-IO endpoint, channel establishment and reliability.

pub mod cookie;
mod endpoint;
pub mod reliability;
pub mod stats;

pub use endpoint::{Endpoint, EndpointConfig, Event, Transmit};
pub use stats::{StatEntry, StatKind, Stats};
