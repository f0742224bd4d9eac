//! Packets and messages on the wire (PROTOCOL.md §3, §4).
//!
//! Zero-copy views over a received datagram: [`Packet::parse`] checks a header and, for an
//! unencrypted packet, every rule of the message sequence, after which [`Packet::messages`]
//! iterates [`Message`]s that borrow from the datagram and cannot fail. Parsing never panics
//! and never allocates. [`PacketWriter`] builds packets in a caller's buffer under the same
//! rules. Every rejection names an [`ErrorKind`] (a metric label) and the byte it starts at.
//! Choices where PROTOCOL.md is silent are in `docs/WIRE.md`.
//!
//! Every number in a packet is chosen by its sender: arithmetic in this module is checked,
//! saturating or (where wrapping is meant, and commented) wrapping; clippy's
//! `arithmetic_side_effects` is denied here.
#![deny(clippy::arithmetic_side_effects)]

mod ack;
mod codes;
mod cursor;
mod emit;
mod error;
mod header;
mod ids;
mod message;
mod packet;
pub mod varint;

pub use ack::{Ack, AckIter, AckRanges, Pairs, ack_encoded_len, emit_ack};
pub use codes::{Capabilities, CloseReason, MessageType};
pub use emit::{data_encoded_len, emit_ack_fitting, emit_pmtu_probe_filling, fragment_encoded_len};
pub use error::{ErrorKind, WireError};
pub use header::{Flags, Header};
pub use ids::{ChannelId, PeerId};
pub use message::Message;
pub use packet::{Messages, Packet, PacketWriter, parse_payload};

/// The protocol version in the header's high nibble.
pub const VERSION: u8 = 1;
/// The default and minimum path MTU: bytes of UDP payload (PROTOCOL.md §3).
pub const DEFAULT_MTU: usize = 1200;
/// Header length without a sequence number.
pub const HEADER_LEN: usize = 37;
/// Header length with a sequence number (flag SEQUENCED).
pub const SEQUENCED_HEADER_LEN: usize = 41;
/// Length of the AEAD tag after an ENCRYPTED payload.
pub const TAG_LEN: usize = 16;
