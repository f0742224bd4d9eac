//! Why a packet or message was rejected, and where (PROTOCOL.md §9: dropped and counted per reason).

use std::fmt;

/// Declares [`ErrorKind`] from one table: variant, metric label, description.
macro_rules! error_kinds {
    ($( $name:ident => $reason:literal, $desc:literal; )*) => {
        /// What made a packet, a message or an emit invalid; each kind has its own metric label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $( #[doc = $desc] $name, )*
        }

        impl ErrorKind {
            /// Every kind, in table order (to pre-register metric labels).
            pub const ALL: &'static [ErrorKind] = &[$( ErrorKind::$name, )*];

            /// The snake_case label under which a dropped packet is counted.
            pub fn reason(&self) -> &'static str {
                match self {
                    $( ErrorKind::$name => $reason, )*
                }
            }

            fn description(&self) -> &'static str {
                match self {
                    $( ErrorKind::$name => $desc, )*
                }
            }
        }
    };
}

error_kinds! {
    UnknownVersion => "unknown_version", "the version nibble is not 1";
    ReservedFlag => "reserved_flag", "the reserved flag 0x8 is set";
    EncryptedNotSequenced => "encrypted_not_sequenced", "ENCRYPTED without SEQUENCED";
    UnsequencedChannel => "unsequenced_channel", "a non-default channel packet without SEQUENCED";
    SequencedWithoutStartEncryption => "sequenced_without_start_encryption",
        "an unencrypted default-channel packet is SEQUENCED iff it carries START_ENCRYPTION";
    ZeroSender => "zero_sender", "the sender peer id is all zero";
    ZeroRecipient => "zero_recipient",
        "an all-zero recipient on a packet that is neither a kind-2 INIT nor a kind-0 first packet";
    Truncated => "truncated", "the header or a message runs past the end of the packet";
    NoMessage => "no_message", "the payload holds no message";
    NonMinimalVarint => "non_minimal_varint", "a varint is not minimally encoded";
    VarintOverflow => "varint_overflow", "a varint is longer than 10 bytes or exceeds u64";
    UnknownMessageType => "unknown_message_type", "an unknown or reserved message type";
    NonzeroPadding => "nonzero_padding", "a padding byte is not zero";
    WrongChannel => "wrong_channel", "a message that is not allowed on this packet's channel";
    HandshakeInitNotFirst => "handshake_init_not_first",
        "HANDSHAKE_INIT is not the first message of its packet";
    ChannelCookieNotFirst => "channel_cookie_not_first",
        "CHANNEL_COOKIE is not the first message of its packet";
    StartEncryptionMisplaced => "start_encryption_misplaced",
        "START_ENCRYPTION does not directly follow HANDSHAKE_RESPONSE or HANDSHAKE_FINAL";
    BadHandshakeKind => "bad_handshake_kind", "a HANDSHAKE_INIT kind outside 1..=3";
    BadCookieLength => "bad_cookie_length", "a HANDSHAKE_INIT cookie length other than 0 or 16";
    BadCapabilities => "bad_capabilities", "capability bits other than 0..=2 are set";
    ZeroChannelHalf => "zero_channel_half", "a channel id half that must not be zero is zero";
    BadAck => "bad_ack", "ACK ranges underflow, overrun their count or exceed the largest";
    BadFragment => "bad_fragment", "a DATA_FRAGMENT outside its message's total length";
    NonzeroProbe => "nonzero_probe", "a PMTU_PROBE body byte is not zero";
    EncryptedTooShort => "encrypted_too_short", "ciphertext shorter than the AEAD tag";
    LengthOverrun => "length_overrun", "a field runs past the end of its message";
    TrailingBytes => "trailing_bytes", "a message's length leaves bytes that no field uses";
    BufferTooSmall => "buffer_too_small", "the output buffer is too small";
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A rejected packet: the kind of fault and the byte offset in the packet where it starts.
///
/// For emit errors the offset is where the message being written starts in the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct WireError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Byte offset in the packet of the field or message at fault.
    pub offset: usize,
}

impl WireError {
    /// An error of `kind` at `offset`.
    pub fn new(kind: ErrorKind, offset: usize) -> WireError {
        WireError { kind, offset }
    }

    /// The same error seen from a buffer that starts `base` bytes earlier.
    pub(super) fn shifted(self, base: usize) -> WireError {
        WireError {
            kind: self.kind,
            offset: self.offset.saturating_add(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reasons_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for kind in ErrorKind::ALL {
            let reason = kind.reason();
            assert!(seen.insert(reason), "duplicate reason {reason}");
            assert!(reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        assert_eq!(seen.len(), 28);
    }

    #[test]
    fn display_names_the_offset() {
        let e = WireError::new(ErrorKind::Truncated, 37);
        assert_eq!(
            e.to_string(),
            "the header or a message runs past the end of the packet at byte 37"
        );
    }
}
