//! Sessions and encryption (PROTOCOL.md §2, §5): identities, peer records, the handshake kinds,
//! per-channel keys, mac1 and handshake cookies, the replay window, and per-peer session slots.
//! Everything here is sans-IO: time, randomness and bytes come from the caller.
//!
//! Clippy's `arithmetic_side_effects` is denied here: peers choose many of the numbers.
#![deny(clippy::arithmetic_side_effects)]

pub mod dh;
pub mod handshake;
mod identity;
pub mod keys;
pub mod mac;
mod noise;
pub mod rate;
pub mod record;
// The file is named after the spec's term; the parent module is the layer.
#[allow(clippy::module_inception)]
pub mod session;
pub mod table;
pub mod window;

pub use handshake::{
    Established, HandshakeError, HandshakeIdentity, HandshakeKind, Initiator, PendingResponder,
    Response, Role, Tai64N, TimestampTable, respond,
};
pub use identity::{Identity, peer_id_of};
pub use keys::{ChannelCrypto, ChannelKeys, OpenError, PacketKey, ReplayWindow};
pub use mac::{
    Admission, CookieCheck, HandshakeRateLimiter, InitDecision, InitGate, LoadPolicy, Mac1Key,
    RotatingSecret, init_echo,
};
pub use rate::{RateRefusal, SourceRateLimiter, TokenRate};
pub use record::{PeerRecord, RecordError};
pub use session::{
    KeyPhase, RekeyPolicy, ReplaceError, Session, SessionSlot, crossing_winner, may_replace,
};
pub use table::{Prefix, Refusal, SessionTable, SourceCaps, prefix_of};
