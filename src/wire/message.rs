//! Messages: `type` varint, `length` varint for variable-length types, body (PROTOCOL.md §4).

use super::ack::{self, Ack};
use super::codes::{Capabilities, CloseReason, Framing, MessageType};
use super::cursor::{Reader, Writer};
use super::{ChannelId, ErrorKind, TAG_LEN, WireError, varint};

/// One message, as a zero-copy view: byte fields borrow from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Everything after the type byte (ciphertext ‖ tag under the new session's default-channel
    /// key); it ends the message sequence.
    StartEncryption {
        /// Ciphertext followed by the AEAD tag.
        ciphertext: &'a [u8],
    },
    /// The first handshake message (§5).
    HandshakeInit {
        /// Handshake kind, 1..=3.
        kind: u8,
        /// The initiator's session index.
        sender_index: u32,
        /// The Noise message.
        handshake: &'a [u8],
        /// MAC over the packet up to this field (zero for kind 2).
        mac1: &'a [u8; 16],
        /// The responder's cookie, on a retry.
        cookie: Option<&'a [u8; 16]>,
    },
    /// The responder's handshake message.
    HandshakeResponse {
        /// The responder's session index.
        sender_index: u32,
        /// The initiator's session index.
        receiver_index: u32,
        /// The Noise message.
        handshake: &'a [u8],
    },
    /// A cookie that the initiator must send back in its INIT.
    HandshakeCookie {
        /// The initiator's sender index.
        receiver_index: u32,
        /// The cookie.
        cookie: &'a [u8; 16],
        /// BLAKE3(body of the INIT it answers)[..16].
        echo: &'a [u8; 16],
    },
    /// The third message of XX.
    HandshakeFinal {
        /// The initiator's session index.
        sender_index: u32,
        /// The responder's session index.
        receiver_index: u32,
        /// The Noise message.
        handshake: &'a [u8],
    },
    /// Opens a channel (§6 step 1).
    ChannelNew {
        /// The initiator's half, non-zero.
        c1: u16,
        /// The initiator's cookie.
        cookie1: &'a [u8; 16],
    },
    /// The responder's answer (§6 step 2).
    ChannelAcknowledge {
        /// c1 ‖ c2, both non-zero.
        channel: ChannelId,
        /// cookie1 echoed.
        cookie1: &'a [u8; 16],
        /// The responder's cookie.
        cookie2: &'a [u8; 16],
    },
    /// The initiator confirms (§6 step 3).
    ChannelFinalize {
        /// c1 ‖ c2, both non-zero.
        channel: ChannelId,
        /// cookie2 echoed.
        cookie2: &'a [u8; 16],
        /// The channel's mode.
        capabilities: Capabilities,
    },
    /// Confirms a channel on its own first packet (§6 step 4).
    ChannelCookie {
        /// cookie2 echoed.
        cookie2: &'a [u8; 16],
        /// The channel's mode.
        capabilities: Capabilities,
    },
    /// Closes a channel.
    ChannelClose {
        /// The channel, both halves non-zero.
        channel: ChannelId,
        /// Why.
        reason: CloseReason,
    },
    /// An application message.
    Data {
        /// Per channel and direction, from 0.
        message_number: u64,
        /// The application bytes.
        payload: &'a [u8],
    },
    /// A piece of a big application message (§7.5).
    DataFragment {
        /// Per channel and direction, from 0.
        message_number: u64,
        /// The whole message's length, non-zero.
        total_length: u64,
        /// Where `bytes` start in the whole message.
        offset: u64,
        /// This piece.
        bytes: &'a [u8],
    },
    /// Acknowledged packet ranges (§7.1).
    Ack(Ack<'a>),
    /// Flow-control credit (§7.4).
    Window {
        /// Messages below this number may be sent.
        max_message: u64,
        /// Bound on the total length of messages 0..=m.
        max_bytes: u64,
    },
    /// Keep-alive and round-trip probe.
    Ping {
        /// Echoed by the PONG.
        token: &'a [u8; 8],
    },
    /// Fills a packet to a probed size (§7.6).
    PmtuProbe {
        /// Number of zero body bytes.
        len: usize,
    },
    /// "I hold no session for this packet".
    Reset {
        /// Reason code.
        reason: u8,
    },
    /// The answer to a PING.
    Pong {
        /// The PING's token.
        token: &'a [u8; 8],
    },
}

impl<'a> Message<'a> {
    /// This message's type.
    pub fn kind(&self) -> MessageType {
        match self {
            Message::StartEncryption { .. } => MessageType::StartEncryption,
            Message::HandshakeInit { .. } => MessageType::HandshakeInit,
            Message::HandshakeResponse { .. } => MessageType::HandshakeResponse,
            Message::HandshakeCookie { .. } => MessageType::HandshakeCookie,
            Message::HandshakeFinal { .. } => MessageType::HandshakeFinal,
            Message::ChannelNew { .. } => MessageType::ChannelNew,
            Message::ChannelAcknowledge { .. } => MessageType::ChannelAcknowledge,
            Message::ChannelFinalize { .. } => MessageType::ChannelFinalize,
            Message::ChannelCookie { .. } => MessageType::ChannelCookie,
            Message::ChannelClose { .. } => MessageType::ChannelClose,
            Message::Data { .. } => MessageType::Data,
            Message::DataFragment { .. } => MessageType::DataFragment,
            Message::Ack(_) => MessageType::Ack,
            Message::Window { .. } => MessageType::Window,
            Message::Ping { .. } => MessageType::Ping,
            Message::PmtuProbe { .. } => MessageType::PmtuProbe,
            Message::Reset { .. } => MessageType::Reset,
            Message::Pong { .. } => MessageType::Pong,
        }
    }

    /// Parses one message at the start of `buf`, checking its own fields but no packet-level
    /// rule (channel, order); returns it and its encoded length. Padding is not a message:
    /// a leading 0x00 is [`ErrorKind::NoMessage`].
    pub fn parse(buf: &'a [u8]) -> Result<(Message<'a>, usize), WireError> {
        decode(buf, 0)
    }

    /// The length of the body (after type and length fields).
    fn body_len(&self) -> usize {
        let v = varint::encoded_len;
        // A hand-built message may claim any length: sums saturate, and then do not fit.
        let sum = |parts: &[usize]| parts.iter().fold(0usize, |a, &b| a.saturating_add(b));
        match *self {
            Message::StartEncryption { ciphertext } => ciphertext.len(),
            Message::HandshakeInit {
                handshake, cookie, ..
            } => {
                let cookie_len = if cookie.is_some() { 16 } else { 0 };
                sum(&[
                    1 + 4 + 16 + 1,
                    v(handshake.len() as u64),
                    handshake.len(),
                    cookie_len,
                ])
            }
            Message::HandshakeResponse { handshake, .. }
            | Message::HandshakeFinal { handshake, .. } => handshake.len().saturating_add(8),
            Message::Data {
                message_number,
                payload,
            } => v(message_number).saturating_add(payload.len()),
            Message::DataFragment {
                message_number,
                total_length,
                offset,
                bytes,
            } => sum(&[v(message_number), v(total_length), v(offset), bytes.len()]),
            Message::Ack(ack) => ack.body_len(),
            Message::Window {
                max_message,
                max_bytes,
            } => v(max_message).saturating_add(v(max_bytes)),
            Message::PmtuProbe { len } => len,
            _ => match self.kind().framing() {
                Some(Framing::Fixed(n)) => n,
                _ => 0,
            },
        }
    }

    /// The number of bytes [`Message::emit`] writes.
    pub fn encoded_len(&self) -> usize {
        Self::framed_len(self.kind(), self.body_len())
    }

    /// The encoded length of a message of `kind` whose body is `body` bytes long.
    fn framed_len(kind: MessageType, body: usize) -> usize {
        let length_field = match kind.framing() {
            Some(Framing::Var) => varint::encoded_len(body as u64),
            _ => 0,
        };
        // A hand-built PMTU_PROBE may claim any length; saturating, it simply does not fit.
        varint::encoded_len(kind.code())
            .saturating_add(length_field)
            .saturating_add(body)
    }

    /// Writes this message at the start of `buf`; returns its length.
    ///
    /// Checks the message's own fields as parsing does, so that what is written parses back
    /// to the same message; errors point at offset 0 (the message's start).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        // The body's length once: it sizes the message and is its length field (every data
        // packet's fragment is emitted here).
        let kind = self.kind();
        let body = self.body_len();
        let len = Self::framed_len(kind, body);
        let Some(buf) = buf.get_mut(..len) else {
            return Err(WireError::new(ErrorKind::BufferTooSmall, 0));
        };
        let mut w = Writer::new(buf);
        w.varint(kind.code())?;
        if kind.framing() == Some(Framing::Var) {
            w.varint(body as u64)?;
        }
        match *self {
            Message::StartEncryption { ciphertext } => w.put(ciphertext)?,
            Message::HandshakeInit {
                kind,
                sender_index,
                handshake,
                mac1,
                cookie,
            } => {
                w.u8(kind)?;
                w.u32(sender_index)?;
                w.varint(handshake.len() as u64)?;
                w.put(handshake)?;
                w.put(mac1)?;
                match cookie {
                    Some(cookie) => {
                        w.u8(16)?;
                        w.put(cookie)?;
                    }
                    None => w.u8(0)?,
                }
            }
            Message::HandshakeResponse {
                sender_index,
                receiver_index,
                handshake,
            }
            | Message::HandshakeFinal {
                sender_index,
                receiver_index,
                handshake,
            } => {
                w.u32(sender_index)?;
                w.u32(receiver_index)?;
                w.put(handshake)?;
            }
            Message::HandshakeCookie {
                receiver_index,
                cookie,
                echo,
            } => {
                w.u32(receiver_index)?;
                w.put(cookie)?;
                w.put(echo)?;
            }
            Message::ChannelNew { c1, cookie1 } => {
                w.u16(c1)?;
                w.put(cookie1)?;
            }
            Message::ChannelAcknowledge {
                channel,
                cookie1,
                cookie2,
            } => {
                w.u32(channel.0)?;
                w.put(cookie1)?;
                w.put(cookie2)?;
            }
            Message::ChannelFinalize {
                channel,
                cookie2,
                capabilities,
            } => {
                w.u32(channel.0)?;
                w.put(cookie2)?;
                w.u8(capabilities.bits())?;
            }
            Message::ChannelCookie {
                cookie2,
                capabilities,
            } => {
                w.put(cookie2)?;
                w.u8(capabilities.bits())?;
            }
            Message::ChannelClose { channel, reason } => {
                w.u32(channel.0)?;
                w.u8(reason.into())?;
            }
            Message::Data {
                message_number,
                payload,
            } => {
                w.varint(message_number)?;
                w.put(payload)?;
            }
            Message::DataFragment {
                message_number,
                total_length,
                offset,
                bytes,
            } => {
                w.varint(message_number)?;
                w.varint(total_length)?;
                w.varint(offset)?;
                w.put(bytes)?;
            }
            Message::Ack(ack) => ack.emit_body(&mut w)?,
            Message::Window {
                max_message,
                max_bytes,
            } => {
                w.varint(max_message)?;
                w.varint(max_bytes)?;
            }
            Message::Ping { token } | Message::Pong { token } => w.put(token)?,
            Message::PmtuProbe { len } => w.zeros(len)?,
            Message::Reset { reason } => w.u8(reason)?,
        }
        Ok(w.written())
    }

    /// The field rules that [`decode`] enforces, for messages built by hand.
    fn check(&self) -> Result<(), WireError> {
        let fail = |kind| Err(WireError::new(kind, 0));
        match *self {
            Message::StartEncryption { ciphertext } if ciphertext.len() < TAG_LEN => {
                fail(ErrorKind::EncryptedTooShort)
            }
            Message::HandshakeInit { kind, .. } if !(1..=3).contains(&kind) => {
                fail(ErrorKind::BadHandshakeKind)
            }
            Message::ChannelNew { c1: 0, .. } => fail(ErrorKind::ZeroChannelHalf),
            Message::ChannelAcknowledge { channel, .. }
            | Message::ChannelFinalize { channel, .. }
            | Message::ChannelClose { channel, .. }
                if channel.c1() == 0 || channel.c2() == 0 =>
            {
                fail(ErrorKind::ZeroChannelHalf)
            }
            Message::DataFragment {
                total_length,
                offset,
                bytes,
                ..
            } if !fragment_fits(total_length, offset, bytes.len()) => fail(ErrorKind::BadFragment),
            Message::Ack(ack) => ack.check(),
            _ => Ok(()),
        }
    }
}

/// PROTOCOL.md §7.5: a fragment lies within a message of known, non-zero size.
fn fragment_fits(total_length: u64, offset: u64, len: usize) -> bool {
    total_length != 0
        && offset
            .checked_add(len as u64)
            .is_some_and(|end| end <= total_length)
}

/// Decodes the message at the start of `buf`, whose first byte is at `base` in the packet.
pub(super) fn decode(buf: &[u8], base: usize) -> Result<(Message<'_>, usize), WireError> {
    // A message that runs past the payload is truncated at its start.
    let truncated = WireError::new(ErrorKind::Truncated, base);
    let mut r = Reader::new(buf, base, ErrorKind::Truncated);
    let code = r.varint().map_err(|e| match e.kind {
        ErrorKind::Truncated => truncated,
        _ => e,
    })?;
    let kind = MessageType::from(code);
    let body_start = |r: &Reader<'_>| r.offset();
    let (body, at) = match kind.framing() {
        None => return Err(WireError::new(ErrorKind::UnknownMessageType, base)),
        Some(Framing::Rest) if kind == MessageType::Padding => {
            return Err(WireError::new(ErrorKind::NoMessage, base));
        }
        Some(Framing::Rest) => {
            let at = body_start(&r);
            (r.rest(), at)
        }
        Some(Framing::Fixed(n)) => {
            let at = body_start(&r);
            (r.bytes(n).map_err(|_| truncated)?, at)
        }
        Some(Framing::Var) => {
            let n = r.len_varint().map_err(|e| match e.kind {
                ErrorKind::Truncated => truncated,
                _ => e,
            })?;
            let at = body_start(&r);
            (r.bytes(n).map_err(|_| truncated)?, at)
        }
    };
    let len = r.consumed();
    let msg = decode_body(kind, body, at)?;
    Ok((msg, len))
}

/// Decodes a body that starts at `base` in the packet; fields past its end are length overruns.
fn decode_body(kind: MessageType, body: &[u8], base: usize) -> Result<Message<'_>, WireError> {
    let mut r = Reader::new(body, base, ErrorKind::LengthOverrun);
    let msg = match kind {
        MessageType::StartEncryption => {
            // PROTOCOL.md §4/§5: ciphertext ‖ tag, so at least a tag.
            if body.len() < TAG_LEN {
                return Err(r.err(ErrorKind::EncryptedTooShort));
            }
            // The ciphertext is the whole body: consume it, or the trailing-bytes check below
            // refuses every START_ENCRYPTION.
            Message::StartEncryption {
                ciphertext: r.rest(),
            }
        }
        MessageType::HandshakeInit => {
            let at = r.offset();
            let hs_kind = r.u8()?;
            // PROTOCOL.md §4: kind u8 (1–3).
            if !(1..=3).contains(&hs_kind) {
                return Err(WireError::new(ErrorKind::BadHandshakeKind, at));
            }
            let sender_index = r.u32()?;
            let at = r.offset();
            let hs_len = r.len_varint()?;
            let handshake = r
                .bytes(hs_len)
                .map_err(|_| WireError::new(ErrorKind::LengthOverrun, at))?;
            let mac1 = r.array()?;
            let at = r.offset();
            // PROTOCOL.md §4: cookie length u8 (0 or 16).
            let cookie = match r.u8()? {
                0 => None,
                16 => Some(r.array()?),
                _ => return Err(WireError::new(ErrorKind::BadCookieLength, at)),
            };
            Message::HandshakeInit {
                kind: hs_kind,
                sender_index,
                handshake,
                mac1,
                cookie,
            }
        }
        MessageType::HandshakeResponse => Message::HandshakeResponse {
            sender_index: r.u32()?,
            receiver_index: r.u32()?,
            handshake: r.rest(),
        },
        MessageType::HandshakeCookie => Message::HandshakeCookie {
            receiver_index: r.u32()?,
            cookie: r.array()?,
            echo: r.array()?,
        },
        MessageType::HandshakeFinal => Message::HandshakeFinal {
            sender_index: r.u32()?,
            receiver_index: r.u32()?,
            handshake: r.rest(),
        },
        MessageType::ChannelNew => {
            let at = r.offset();
            let c1 = r.u16()?;
            // PROTOCOL.md §6: the initiator picks c1 ≠ 0.
            if c1 == 0 {
                return Err(WireError::new(ErrorKind::ZeroChannelHalf, at));
            }
            Message::ChannelNew {
                c1,
                cookie1: r.array()?,
            }
        }
        MessageType::ChannelAcknowledge => Message::ChannelAcknowledge {
            channel: channel_field(&mut r)?,
            cookie1: r.array()?,
            cookie2: r.array()?,
        },
        MessageType::ChannelFinalize => Message::ChannelFinalize {
            channel: channel_field(&mut r)?,
            cookie2: r.array()?,
            capabilities: capabilities_field(&mut r)?,
        },
        MessageType::ChannelCookie => Message::ChannelCookie {
            cookie2: r.array()?,
            capabilities: capabilities_field(&mut r)?,
        },
        MessageType::ChannelClose => Message::ChannelClose {
            channel: channel_field(&mut r)?,
            reason: CloseReason::from(r.u8()?),
        },
        MessageType::Data => Message::Data {
            message_number: r.varint()?,
            payload: r.rest(),
        },
        MessageType::DataFragment => {
            let message_number = r.varint()?;
            let at = r.offset();
            let total_length = r.varint()?;
            let offset = r.varint()?;
            let bytes = r.rest();
            if !fragment_fits(total_length, offset, bytes.len()) {
                return Err(WireError::new(ErrorKind::BadFragment, at));
            }
            Message::DataFragment {
                message_number,
                total_length,
                offset,
                bytes,
            }
        }
        MessageType::Ack => Message::Ack(ack::decode_body(&mut r)?),
        MessageType::Window => Message::Window {
            max_message: r.varint()?,
            max_bytes: r.varint()?,
        },
        MessageType::Ping => Message::Ping { token: r.array()? },
        MessageType::Pong => Message::Pong { token: r.array()? },
        MessageType::PmtuProbe => {
            // docs/WIRE.md: probe bytes must be zero, as padding (never uninitialised memory).
            if let Some(i) = body.iter().position(|&b| b != 0) {
                return Err(WireError::new(
                    ErrorKind::NonzeroProbe,
                    base.saturating_add(i),
                ));
            }
            r.rest();
            Message::PmtuProbe { len: body.len() }
        }
        MessageType::Reset => Message::Reset { reason: r.u8()? },
        MessageType::Padding | MessageType::Unknown(_) => {
            return Err(WireError::new(ErrorKind::UnknownMessageType, base));
        }
    };
    if !r.is_empty() {
        return Err(r.err(ErrorKind::TrailingBytes));
    }
    Ok(msg)
}

/// A channel id naming an established channel: both halves non-zero (PROTOCOL.md §6).
fn channel_field(r: &mut Reader<'_>) -> Result<ChannelId, WireError> {
    let at = r.offset();
    let channel = ChannelId(r.u32()?);
    if channel.c1() == 0 || channel.c2() == 0 {
        return Err(WireError::new(ErrorKind::ZeroChannelHalf, at));
    }
    Ok(channel)
}

/// PROTOCOL.md §7: bits 0..=2, other bits 0.
fn capabilities_field(r: &mut Reader<'_>) -> Result<Capabilities, WireError> {
    let at = r.offset();
    Capabilities::from_bits(r.u8()?).ok_or(WireError::new(ErrorKind::BadCapabilities, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_probe_length_does_not_fit() {
        let probe = Message::PmtuProbe { len: usize::MAX };
        assert_eq!(probe.encoded_len(), usize::MAX);
        let mut buf = [0u8; 64];
        assert_eq!(
            probe.emit(&mut buf).unwrap_err().kind,
            ErrorKind::BufferTooSmall
        );
    }

    #[test]
    fn fixed_lengths_match_the_table() {
        let token = [7u8; 8];
        let c = [1u8; 16];
        let cases = [
            (Message::Ping { token: &token }, 9),
            (Message::Reset { reason: 3 }, 2),
            (Message::ChannelNew { c1: 1, cookie1: &c }, 19),
            (
                Message::ChannelClose {
                    channel: ChannelId::new(1, 2),
                    reason: CloseReason::Idle,
                },
                6,
            ),
        ];
        for (msg, len) in cases {
            let mut buf = [0u8; 64];
            assert_eq!(msg.encoded_len(), len);
            assert_eq!(msg.emit(&mut buf), Ok(len));
            assert_eq!(Message::parse(&buf[..len]), Ok((msg, len)));
            assert_eq!(
                msg.emit(&mut buf[..len - 1]).unwrap_err().kind,
                ErrorKind::BufferTooSmall
            );
        }
    }
}
