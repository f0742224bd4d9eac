//! The code points of the wire (PROTOCOL.md §4, §7): message types with their framing, the
//! capability byte and the close reasons. Below both the message codec and ACK, which name them.

use super::ChannelId;

/// How a type's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// A fixed body length from the table; no length field.
    Fixed(usize),
    /// A `length` varint precedes the body.
    Var,
    /// The body runs to the end of the payload (PADDING, START_ENCRYPTION).
    Rest,
}

/// Declares [`MessageType`] from the table of PROTOCOL.md §4: variant, code, framing.
macro_rules! message_types {
    ($( $name:ident = $code:literal, $framing:expr, $doc:literal; )*) => {
        /// A message type code (PROTOCOL.md §4); `Unknown` keeps codes this version does not know.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum MessageType {
            $( #[doc = $doc] $name, )*
            /// A reserved or unknown code; it makes a packet invalid.
            Unknown(u64),
        }

        impl MessageType {
            /// The type's code on the wire.
            pub fn code(self) -> u64 {
                match self {
                    $( MessageType::$name => $code, )*
                    MessageType::Unknown(code) => code,
                }
            }

            /// How the type's body is delimited; `None` for an unknown code.
            pub(super) fn framing(self) -> Option<Framing> {
                match self {
                    $( MessageType::$name => Some($framing), )*
                    MessageType::Unknown(_) => None,
                }
            }
        }

        impl From<u64> for MessageType {
            fn from(code: u64) -> MessageType {
                match code {
                    $( $code => MessageType::$name, )*
                    other => MessageType::Unknown(other),
                }
            }
        }
    };
}

message_types! {
    Padding = 0x00, Framing::Rest, "Zero bytes to the end of the payload.";
    StartEncryption = 0x01, Framing::Rest, "The rest of the payload is ciphertext under new keys.";
    HandshakeInit = 0x02, Framing::Var, "First handshake message.";
    HandshakeResponse = 0x03, Framing::Var, "Responder's handshake message.";
    HandshakeCookie = 0x04, Framing::Fixed(36), "A cookie asked of an initiator.";
    HandshakeFinal = 0x05, Framing::Var, "Third handshake message (XX).";
    ChannelNew = 0x08, Framing::Fixed(18), "Opens a channel: the initiator's half.";
    ChannelAcknowledge = 0x09, Framing::Fixed(36), "The responder's half and cookie2.";
    ChannelFinalize = 0x0A, Framing::Fixed(21), "The initiator confirms a channel.";
    ChannelCookie = 0x0B, Framing::Fixed(17), "Confirms a channel on its own first packet.";
    ChannelClose = 0x0C, Framing::Fixed(5), "Closes a channel.";
    Data = 0x10, Framing::Var, "An application message.";
    DataFragment = 0x11, Framing::Var, "A piece of a big application message.";
    Ack = 0x12, Framing::Var, "Acknowledged packet ranges.";
    Window = 0x13, Framing::Var, "Flow-control credit.";
    Ping = 0x14, Framing::Fixed(8), "Keep-alive and round-trip probe.";
    PmtuProbe = 0x15, Framing::Var, "Zero bytes that fill a packet to a probed size.";
    Reset = 0x16, Framing::Fixed(1), "\"I hold no session for this packet\".";
    Pong = 0x17, Framing::Fixed(8), "The answer to a PING.";
}

impl MessageType {
    /// Whether this type may stand in a packet on `channel` (PROTOCOL.md §4, the table and the
    /// three rules of the default channel).
    pub fn allowed_on(self, channel: ChannelId, encrypted: bool) -> bool {
        use MessageType as T;
        let default = channel.is_default();
        match self {
            T::StartEncryption => default && !encrypted,
            // Handshake and channel establishment: default channel only.
            T::HandshakeInit | T::HandshakeResponse | T::HandshakeCookie | T::HandshakeFinal => {
                default
            }
            T::ChannelNew | T::ChannelAcknowledge | T::ChannelFinalize | T::Reset => default,
            // PROTOCOL.md §6: CHANNEL_COOKIE rides on the new channel's own first packet.
            T::ChannelCookie => !default,
            // The default channel is never acknowledged and carries no application data.
            T::Data | T::DataFragment | T::Ack | T::Window => !default,
            T::Padding | T::ChannelClose | T::Ping | T::PmtuProbe | T::Pong => true,
            T::Unknown(_) => false,
        }
    }

    /// True for the messages of the handshake (§5), which a zero-recipient packet may carry
    /// only behind a kind-2 HANDSHAKE_INIT.
    pub fn is_handshake(self) -> bool {
        matches!(
            self,
            MessageType::HandshakeInit
                | MessageType::HandshakeResponse
                | MessageType::HandshakeCookie
                | MessageType::HandshakeFinal
        )
    }
}

/// A channel's capability byte (PROTOCOL.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u8);

impl Capabilities {
    /// No capability: plain UDP semantics.
    pub const NONE: Capabilities = Capabilities(0);
    /// Lost messages are resent.
    pub const RESEND: Capabilities = Capabilities(1);
    /// Messages are delivered in order.
    pub const ORDERED: Capabilities = Capabilities(2);
    /// The channel closes on a loss it cannot repair.
    pub const CLOSE_ON_LOSS: Capabilities = Capabilities(4);

    /// Capabilities from their byte; `None` if a bit other than 0..=2 is set.
    pub fn from_bits(bits: u8) -> Option<Capabilities> {
        (bits & !0x07 == 0).then_some(Capabilities(bits))
    }

    /// The capability byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// True if every capability of `other` is set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The capabilities of both.
    pub fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, other: Capabilities) -> Capabilities {
        self.union(other)
    }
}

/// Why a channel closes (CHANNEL_CLOSE; codes fixed in docs/WIRE.md).
///
/// `From<u8>` is the canonical constructor: `Unknown(n)` with a known `n` encodes as that code
/// and parses back as the named variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// 0: the application closed it.
    Normal,
    /// 1: the peer does not support the requested capabilities.
    Unsupported,
    /// 2: the connection reset timeout expired (§7.7).
    Timeout,
    /// 3: a loss that the channel's mode does not tolerate.
    Loss,
    /// 4: the channel was idle too long.
    Idle,
    /// 5: the node shuts down.
    Shutdown,
    /// 6: the node refused the channel (policy, limits).
    Refused,
    /// 7: the peer broke the protocol on the channel (data past any credit advertised).
    Protocol,
    /// Any other code, kept for counting.
    Unknown(u8),
}

impl From<u8> for CloseReason {
    fn from(code: u8) -> CloseReason {
        match code {
            0 => CloseReason::Normal,
            1 => CloseReason::Unsupported,
            2 => CloseReason::Timeout,
            3 => CloseReason::Loss,
            4 => CloseReason::Idle,
            5 => CloseReason::Shutdown,
            6 => CloseReason::Refused,
            7 => CloseReason::Protocol,
            other => CloseReason::Unknown(other),
        }
    }
}

impl From<CloseReason> for u8 {
    fn from(reason: CloseReason) -> u8 {
        match reason {
            CloseReason::Normal => 0,
            CloseReason::Unsupported => 1,
            CloseReason::Timeout => 2,
            CloseReason::Loss => 3,
            CloseReason::Idle => 4,
            CloseReason::Shutdown => 5,
            CloseReason::Refused => 6,
            CloseReason::Protocol => 7,
            CloseReason::Unknown(code) => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_round_trip() {
        for code in 0..0x100u64 {
            let kind = MessageType::from(code);
            assert_eq!(kind.code(), code);
            let reserved = matches!(code, 0x06..=0x07 | 0x0d..=0x0f | 0x18..);
            assert_eq!(
                matches!(kind, MessageType::Unknown(_)),
                reserved,
                "{code:#x}"
            );
        }
    }

    #[test]
    fn capabilities_reject_high_bits() {
        assert_eq!(Capabilities::from_bits(7).map(|c| c.bits()), Some(7));
        assert!(Capabilities::from_bits(8).is_none());
        let c = Capabilities::RESEND | Capabilities::CLOSE_ON_LOSS;
        assert!(c.contains(Capabilities::RESEND) && !c.contains(Capabilities::ORDERED));
    }

    #[test]
    fn close_reason_codes() {
        for code in 0..=255u8 {
            assert_eq!(u8::from(CloseReason::from(code)), code);
        }
        assert_eq!(CloseReason::from(6), CloseReason::Refused);
        assert_eq!(CloseReason::from(7), CloseReason::Protocol);
        assert_eq!(CloseReason::from(8), CloseReason::Unknown(8));
    }
}
