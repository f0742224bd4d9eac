//! The packet header (PROTOCOL.md §3).

use std::fmt;
use std::ops::BitOr;

use super::cursor::{Reader, Writer};
use super::{ChannelId, ErrorKind, HEADER_LEN, PeerId, SEQUENCED_HEADER_LEN, VERSION, WireError};

/// Byte offsets of the header fields (PROTOCOL.md §3).
pub(super) mod field {
    /// Version (high nibble) and flags (low nibble).
    pub(in crate::wire) const VERSION_FLAGS: usize = 0;
    /// Sender peer id.
    pub(in crate::wire) const SENDER: usize = 1;
    /// Recipient peer id.
    pub(in crate::wire) const RECIPIENT: usize = 17;
    /// Channel id; the sequence number, when SEQUENCED, follows at 37.
    pub(in crate::wire) const CHANNEL: usize = 33;
}

/// The four flag bits of byte 0 (PROTOCOL.md §3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const EMPTY: Flags = Flags(0);
    /// The payload is AEAD ciphertext followed by a tag; the header is the associated data.
    pub const ENCRYPTED: Flags = Flags(0x1);
    /// A 4-byte sequence number follows the channel id.
    pub const SEQUENCED: Flags = Flags(0x2);
    /// Which of a peer's two sessions keyed this packet (PROTOCOL.md §5).
    pub const KEY_PHASE: Flags = Flags(0x4);
    /// Reserved: senders never set it, receivers drop packets that do. Exists for tests.
    pub const RESERVED: Flags = Flags(0x8);

    /// Flags from the low nibble; `None` if a high bit is set.
    pub fn from_bits(bits: u8) -> Option<Flags> {
        (bits <= 0xf).then_some(Flags(bits))
    }

    /// The flag bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// True if every flag of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags of both.
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// These flags without those of `other`.
    pub fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        self.union(other)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::ENCRYPTED, "ENCRYPTED"),
            (Flags::SEQUENCED, "SEQUENCED"),
            (Flags::KEY_PHASE, "KEY_PHASE"),
            (Flags::RESERVED, "RESERVED"),
        ];
        f.write_str("Flags(")?;
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// A parsed packet header.
///
/// `flags` contains SEQUENCED exactly when `sequence` is `Some`: [`Header::parse`] guarantees it
/// and [`Header::emit`] writes the flag from `sequence`, whatever `flags` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The flag bits.
    pub flags: Flags,
    /// Who sent the packet.
    pub sender: PeerId,
    /// Who it is for; all zero only where §3 allows it.
    pub recipient: PeerId,
    /// The channel the packet's messages belong to.
    pub channel: ChannelId,
    /// The per-channel sequence number (the AEAD nonce), when SEQUENCED.
    pub sequence: Option<u32>,
}

impl Header {
    /// Parses and checks a header at the start of `buf`; returns it and its length.
    ///
    /// Checks the version, the reserved flag, that ENCRYPTED and non-default channels are
    /// SEQUENCED, a non-zero sender, and that an all-zero recipient appears only on an
    /// unencrypted default-channel packet (the payload rules of §3 are [`super::Packet`]'s).
    pub fn parse(buf: &[u8]) -> Result<(Header, usize), WireError> {
        let mut r = Reader::new(buf, 0, ErrorKind::Truncated);
        let first = r.u8()?;
        // PROTOCOL.md §3: unknown version or reserved bit → drop; no feature negotiation.
        if first >> 4 != VERSION {
            return Err(WireError::new(
                ErrorKind::UnknownVersion,
                field::VERSION_FLAGS,
            ));
        }
        let flags = Flags(first & 0x0f);
        if flags.contains(Flags::RESERVED) {
            return Err(WireError::new(
                ErrorKind::ReservedFlag,
                field::VERSION_FLAGS,
            ));
        }
        let sequenced = flags.contains(Flags::SEQUENCED);
        // PROTOCOL.md §3: ENCRYPTED without SEQUENCED is invalid (the number is the nonce).
        if flags.contains(Flags::ENCRYPTED) && !sequenced {
            return Err(WireError::new(
                ErrorKind::EncryptedNotSequenced,
                field::VERSION_FLAGS,
            ));
        }
        let sender = PeerId(*r.array()?);
        let recipient = PeerId(*r.array()?);
        let channel = ChannelId(r.u32()?);
        let header = Header {
            flags,
            sender,
            recipient,
            channel,
            sequence: None,
        };
        header.check_fields()?;
        let sequence = if sequenced { Some(r.u32()?) } else { None };
        let header = Header { sequence, ..header };
        Ok((header, header.len()))
    }

    /// The checks of [`Header::parse`] past byte 0, in field order.
    fn check_fields(&self) -> Result<(), WireError> {
        if self.sender.is_zero() {
            return Err(WireError::new(ErrorKind::ZeroSender, field::SENDER));
        }
        // PROTOCOL.md §3: the all-zero recipient exceptions are unencrypted default-channel
        // packets only; the rest of that rule needs the payload.
        if self.recipient.is_zero()
            && (self.flags.contains(Flags::ENCRYPTED) || !self.channel.is_default())
        {
            return Err(WireError::new(ErrorKind::ZeroRecipient, field::RECIPIENT));
        }
        // PROTOCOL.md §3: every packet on a non-default channel is SEQUENCED.
        if !self.channel.is_default() && !self.flags.contains(Flags::SEQUENCED) {
            return Err(WireError::new(
                ErrorKind::UnsequencedChannel,
                field::CHANNEL,
            ));
        }
        Ok(())
    }

    /// Checks that this header, once emitted, passes [`Header::parse`].
    pub fn validate(&self) -> Result<(), WireError> {
        let flags = self.wire_flags();
        if flags.contains(Flags::RESERVED) {
            return Err(WireError::new(
                ErrorKind::ReservedFlag,
                field::VERSION_FLAGS,
            ));
        }
        if flags.contains(Flags::ENCRYPTED) && !flags.contains(Flags::SEQUENCED) {
            return Err(WireError::new(
                ErrorKind::EncryptedNotSequenced,
                field::VERSION_FLAGS,
            ));
        }
        Header { flags, ..*self }.check_fields()
    }

    /// The flags as emitted: SEQUENCED follows `sequence`.
    fn wire_flags(&self) -> Flags {
        match self.sequence {
            Some(_) => self.flags.union(Flags::SEQUENCED),
            None => self.flags.difference(Flags::SEQUENCED),
        }
    }

    /// True if the payload is ciphertext.
    pub fn is_encrypted(&self) -> bool {
        self.flags.contains(Flags::ENCRYPTED)
    }

    /// The encoded length: [`HEADER_LEN`], or [`SEQUENCED_HEADER_LEN`] with a sequence number.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        match self.sequence {
            Some(_) => SEQUENCED_HEADER_LEN,
            None => HEADER_LEN,
        }
    }

    /// The recipient of a packet this node built, and whether its payload is sealed, read in
    /// place without checking the rest: for counting what the node sends (`weft status`), so
    /// never for input from the network, which [`Header::parse`] checks whole.
    pub fn peek_recipient(packet: &[u8]) -> Option<(PeerId, bool)> {
        const RECIPIENT: std::ops::Range<usize> = 17..33;
        let flags = Flags(packet.first()? & 0x0f);
        let recipient = PeerId(packet.get(RECIPIENT)?.try_into().ok()?);
        Some((recipient, flags.contains(Flags::ENCRYPTED)))
    }

    /// Writes the header as it is (no checks but space, so tests can build bad packets);
    /// returns its length. [`super::PacketWriter::new`] checks it first.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(buf);
        w.u8(VERSION << 4 | self.wire_flags().bits())?;
        w.put(&self.sender.0)?;
        w.put(&self.recipient.0)?;
        w.u32(self.channel.0)?;
        if let Some(sequence) = self.sequence {
            w.u32(sequence)?;
        }
        Ok(w.written())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(channel: u32, sequence: Option<u32>) -> Header {
        Header {
            flags: Flags::EMPTY,
            sender: PeerId([1; 16]),
            recipient: PeerId([2; 16]),
            channel: ChannelId(channel),
            sequence,
        }
    }

    #[test]
    fn round_trip_with_and_without_sequence() {
        for h in [header(0, None), header(0x0001_0002, Some(7))] {
            let mut buf = [0u8; 64];
            let n = h.emit(&mut buf).unwrap();
            assert_eq!(n, h.len());
            let (parsed, len) = Header::parse(&buf[..n]).unwrap();
            assert_eq!(len, n);
            assert_eq!(parsed.sequence, h.sequence);
            assert_eq!(
                parsed.flags.contains(Flags::SEQUENCED),
                h.sequence.is_some()
            );
            assert_eq!((parsed.sender, parsed.recipient), (h.sender, h.recipient));
        }
    }

    #[test]
    fn peek_recipient_reads_what_emit_wrote() {
        let mut h = header(0x0001_0002, Some(7));
        let mut buf = [0u8; 64];
        let n = h.emit(&mut buf).unwrap();
        assert_eq!(
            Header::peek_recipient(&buf[..n]),
            Some((h.recipient, false))
        );
        h.flags = Flags::ENCRYPTED;
        let n = h.emit(&mut buf).unwrap();
        assert_eq!(Header::peek_recipient(&buf[..n]), Some((h.recipient, true)));
        assert_eq!(Header::peek_recipient(&buf[..32]), None);
    }

    #[test]
    fn emit_sets_sequenced_from_sequence() {
        let mut h = header(0, None);
        h.flags = Flags::SEQUENCED | Flags::KEY_PHASE;
        let mut buf = [0u8; 64];
        h.emit(&mut buf).unwrap();
        assert_eq!(buf[0], 0x14);
        h.flags = Flags::EMPTY;
        h.sequence = Some(1);
        h.emit(&mut buf).unwrap();
        assert_eq!(buf[0], 0x12);
    }

    #[test]
    fn short_buffers() {
        let h = header(5 << 16 | 1, Some(9));
        let mut buf = [0u8; 64];
        let n = h.emit(&mut buf).unwrap();
        for cut in 0..n {
            let e = Header::parse(&buf[..cut]).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Truncated, "cut at {cut}");
        }
        assert_eq!(
            h.emit(&mut buf[..n - 1]).unwrap_err().kind,
            ErrorKind::BufferTooSmall
        );
    }

    #[test]
    fn validate_mirrors_parse() {
        let mut h = header(1, None);
        assert_eq!(
            h.validate().unwrap_err().kind,
            ErrorKind::UnsequencedChannel
        );
        h.sequence = Some(0);
        assert_eq!(h.validate(), Ok(()));
        h.flags = Flags::RESERVED;
        assert_eq!(h.validate().unwrap_err().kind, ErrorKind::ReservedFlag);
        let mut h = header(0, None);
        h.flags = Flags::ENCRYPTED;
        assert_eq!(
            h.validate().unwrap_err().kind,
            ErrorKind::EncryptedNotSequenced
        );
    }
}
