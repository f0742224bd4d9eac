//! Identifiers that appear in every header (PROTOCOL.md §2, §3).

use std::fmt;

/// A node's peer id: the first 16 bytes of BLAKE3 of its Ed25519 public key (PROTOCOL.md §2).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerId(pub [u8; 16]);

impl PeerId {
    /// The all-zero id, allowed as a recipient only where the recipient's key is unknown (§3).
    pub const ZERO: PeerId = PeerId([0; 16]);

    /// True for the all-zero id.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Parses 32 lowercase or uppercase hex digits.
    pub fn from_hex(text: &str) -> Option<PeerId> {
        let bytes = text.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (byte, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
            let [high, low] = *pair else { return None };
            let high = char::from(high).to_digit(16)?;
            let low = char::from(low).to_digit(16)?;
            // Two hex digits: at most 0xff.
            *byte = u8::try_from(high.saturating_mul(16).saturating_add(low)).ok()?;
        }
        Some(PeerId(id))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// A channel id, `c1 << 16 | c2` (PROTOCOL.md §3, §6); 0 is the default channel.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct ChannelId(pub u32);

impl ChannelId {
    /// The default channel, which carries handshakes and channel establishment.
    pub const DEFAULT: ChannelId = ChannelId(0);

    /// Joins the initiator's half `c1` and the responder's half `c2`.
    pub fn new(c1: u16, c2: u16) -> ChannelId {
        ChannelId((u32::from(c1) << 16) | u32::from(c2))
    }

    /// The initiator's half.
    pub fn c1(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The responder's half.
    pub fn c2(self) -> u16 {
        self.0 as u16
    }

    /// True for channel 0.
    pub fn is_default(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.c1(), self.c2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PeerId([0xab; 16]);
        assert_eq!(PeerId::from_hex(&id.to_string()), Some(id));
        assert_eq!(PeerId::from_hex("zz"), None);
        assert_eq!(PeerId::from_hex(&"g".repeat(32)), None);
    }

    #[test]
    fn channel_halves() {
        let c = ChannelId::new(0x1234, 0x8001);
        assert_eq!((c.c1(), c.c2()), (0x1234, 0x8001));
        assert_eq!(c.0, 0x1234_8001);
        assert!(!c.is_default());
    }
}
