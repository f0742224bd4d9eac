//! Packets and messages on the wire (PROTOCOL.md §3, §4).

mod ids;

pub use ids::{ChannelId, PeerId};
