//! Stand-ins for `wire::Capabilities` and `wire::CloseReason` (same names and API as the wire
//! module's, /work/briefs/wire-api.md) until the wire module lands; then this file becomes
//! `pub use crate::wire::{Capabilities, CloseReason};`.

/// The capability byte of a channel (PROTOCOL.md §7).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Lost messages are resent.
    pub const RESEND: Capabilities = Capabilities(0x1);
    /// Messages are delivered in order.
    pub const ORDERED: Capabilities = Capabilities(0x2);
    /// The channel closes when a message is lost.
    pub const CLOSE_ON_LOSS: Capabilities = Capabilities(0x4);

    /// `None` if a bit other than the three defined ones is set.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !0x7 == 0 {
            Some(Capabilities(bits))
        } else {
            None
        }
    }

    /// The byte on the wire.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

/// Why a channel closed (CHANNEL_CLOSE reason byte).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Closed by the application.
    Normal,
    /// A capability or message the peer cannot handle.
    Unsupported,
    /// A timer ran out.
    Timeout,
    /// A message could not be delivered (PROTOCOL.md §7).
    Loss,
    /// Nothing heard for too long.
    Idle,
    /// The node is shutting down.
    Shutdown,
    /// The peer refused the channel.
    Refused,
    /// A code this version does not know.
    Unknown(u8),
}
