//! Whole packets: parsing with every rule of PROTOCOL.md §3/§4, and building them.

use super::codes::MessageType;
use super::header::field;
use super::message;
use super::{ErrorKind, Header, Message, TAG_LEN, WireError, emit_ack};

/// A checked packet: its header, and its payload validated as a message sequence unless
/// ENCRYPTED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The parsed header.
    pub header: Header,
    header_bytes: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parses `buf` as one packet.
    ///
    /// Checks the header and, unless it is ENCRYPTED, the whole message sequence: every rule
    /// of §3/§4 (channels, order, padding, the zero-recipient and SEQUENCED rules). An
    /// ENCRYPTED payload is opaque and only checked to hold at least a tag; decrypt it and
    /// call [`parse_payload`].
    pub fn parse(buf: &'a [u8]) -> Result<Packet<'a>, WireError> {
        let (header, header_len) = Header::parse(buf)?;
        let (header_bytes, payload) = buf
            .split_at_checked(header_len)
            .ok_or(WireError::new(ErrorKind::Truncated, 0))?;
        if header.is_encrypted() {
            // PROTOCOL.md §3: the payload is ciphertext followed by a 16-byte tag.
            if payload.len() < TAG_LEN {
                return Err(WireError::new(ErrorKind::EncryptedTooShort, header_len));
            }
        } else {
            validate(&header, payload, header_len)?;
        }
        Ok(Packet {
            header,
            header_bytes,
            payload,
        })
    }

    /// Everything after the header: messages, or ciphertext ‖ tag when ENCRYPTED.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The header's bytes: the AEAD associated data of an ENCRYPTED packet.
    pub fn header_bytes(&self) -> &'a [u8] {
        self.header_bytes
    }

    /// The messages of an unencrypted packet; none for an ENCRYPTED one (its payload is
    /// ciphertext).
    pub fn messages(&self) -> Messages<'a> {
        if self.header.is_encrypted() {
            Messages::default()
        } else {
            Messages::undecoded(self.payload)
        }
    }
}

/// Validates a decrypted payload under the rules of [`Packet::parse`]; error offsets count
/// from the start of the packet, as if `plaintext` stood right after the header.
///
/// For the plaintext of a START_ENCRYPTION ciphertext pass the packet's header with
/// [`super::Flags::ENCRYPTED`] added: it is sealed under the new session's keys.
///
/// The payload is decoded once: the first [`KEPT`] messages that validation decoded are handed
/// out as they are, and only a longer sequence's later messages are decoded again.
pub fn parse_payload<'a>(header: &Header, plaintext: &'a [u8]) -> Result<Messages<'a>, WireError> {
    validate(header, plaintext, header.len())
}

/// Messages of a payload that validation keeps decoded for the walk that follows: a data packet
/// carries one to three (an ACK, a WINDOW, a DATA or fragment), so its walk decodes nothing.
const KEPT: usize = 4;

/// The messages of a validated payload, in order; padding ends them.
#[derive(Clone, Debug, Default)]
pub struct Messages<'a> {
    /// Messages validation decoded, handed out first (`kept_len` of them, from `kept_at`).
    kept: [Option<Message<'a>>; KEPT],
    kept_at: u8,
    kept_len: u8,
    /// The validated bytes after the kept messages, decoded as they are walked.
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    /// The messages of a validated `payload`, none of them decoded yet.
    fn undecoded(payload: &'a [u8]) -> Messages<'a> {
        Messages {
            rest: payload,
            ..Messages::default()
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        if self.kept_at < self.kept_len {
            let kept = self.kept.get(usize::from(self.kept_at)).copied().flatten();
            self.kept_at = self.kept_at.saturating_add(1);
            return kept;
        }
        match self.rest.first() {
            None | Some(0) => return None,
            Some(_) => {}
        }
        // Only validated payloads get here, so decoding succeeds; on the impossible failure
        // the iteration ends rather than panicking.
        match message::decode(self.rest, 0) {
            Ok((msg, len)) => {
                self.rest = self.rest.get(len..).unwrap_or_default();
                Some(msg)
            }
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

/// Where the message sequence stands; enforces the placement rules one message at a time.
#[derive(Clone, Copy, Debug, Default)]
struct Sequence {
    count: usize,
    previous: Option<MessageType>,
    first_is_kind2_init: bool,
    start_encryption: bool,
}

impl Sequence {
    /// Admits a message of `kind` starting at packet offset `at`; `kind2_init` marks a
    /// HANDSHAKE_INIT of kind 2.
    fn admit(
        &mut self,
        header: &Header,
        kind: MessageType,
        kind2_init: bool,
        at: usize,
    ) -> Result<(), WireError> {
        let fail = |kind| Err(WireError::new(kind, at));
        // PROTOCOL.md §4: START_ENCRYPTION's ciphertext is the rest of the payload.
        if self.start_encryption {
            return fail(ErrorKind::StartEncryptionMisplaced);
        }
        // PROTOCOL.md §4: a message where it is not allowed makes the whole packet invalid.
        if !kind.allowed_on(header.channel, header.is_encrypted()) {
            return fail(ErrorKind::WrongChannel);
        }
        match kind {
            MessageType::HandshakeInit if self.count > 0 => {
                return fail(ErrorKind::HandshakeInitNotFirst);
            }
            MessageType::ChannelCookie if self.count > 0 => {
                return fail(ErrorKind::ChannelCookieNotFirst);
            }
            MessageType::StartEncryption => {
                // PROTOCOL.md §5: only directly after the message that completes a handshake.
                if !matches!(
                    self.previous,
                    Some(MessageType::HandshakeResponse | MessageType::HandshakeFinal)
                ) {
                    return fail(ErrorKind::StartEncryptionMisplaced);
                }
                // PROTOCOL.md §3/§5: that packet is SEQUENCED.
                if header.sequence.is_none() {
                    return fail(ErrorKind::SequencedWithoutStartEncryption);
                }
            }
            _ => {}
        }
        let first_is_kind2_init = self.first_is_kind2_init || (self.count == 0 && kind2_init);
        // PROTOCOL.md §3: an all-zero recipient only on a kind-2 INIT or a kind-0 first packet
        // (no handshake message at all).
        if header.recipient.is_zero() && kind.is_handshake() && !first_is_kind2_init {
            return Err(WireError::new(ErrorKind::ZeroRecipient, field::RECIPIENT));
        }
        *self = Sequence {
            count: self.count.saturating_add(1),
            previous: Some(kind),
            first_is_kind2_init,
            start_encryption: kind == MessageType::StartEncryption,
        };
        Ok(())
    }

    /// The rules that need the whole sequence; `base` is where the payload starts.
    fn finish(&self, header: &Header, base: usize) -> Result<(), WireError> {
        if self.count == 0 {
            return Err(WireError::new(ErrorKind::NoMessage, base));
        }
        // PROTOCOL.md §3: an unencrypted default-channel packet is SEQUENCED only when it
        // carries START_ENCRYPTION (the converse is checked in `admit`).
        if !header.is_encrypted()
            && header.channel.is_default()
            && header.sequence.is_some()
            && !self.start_encryption
        {
            return Err(WireError::new(
                ErrorKind::SequencedWithoutStartEncryption,
                field::VERSION_FLAGS,
            ));
        }
        Ok(())
    }
}

fn is_kind2_init(msg: &Message<'_>) -> bool {
    matches!(msg, Message::HandshakeInit { kind: 2, .. })
}

/// Checks `payload` as the message sequence of a packet with `header`; the payload starts at
/// packet offset `base`. Returns its messages, the first [`KEPT`] of them as decoded here.
fn validate<'a>(
    header: &Header,
    payload: &'a [u8],
    base: usize,
) -> Result<Messages<'a>, WireError> {
    // PROTOCOL.md §3: a packet with no message is discarded.
    if matches!(payload.first(), None | Some(0)) {
        return Err(WireError::new(ErrorKind::NoMessage, base));
    }
    let mut seq = Sequence::default();
    let mut messages = Messages::default();
    // Where the messages past the kept ones start; none when all of them were kept.
    let mut undecoded_from: Option<usize> = None;
    let mut pos: usize = 0;
    // Every message takes at least one byte, so the loop is bounded by the datagram's length,
    // which the node bounds before parsing.
    while let Some(rest) = payload.get(pos..).filter(|rest| !rest.is_empty()) {
        let at = base.saturating_add(pos);
        if rest.first() == Some(&0) {
            // PROTOCOL.md §4: every byte from the padding type to the end is 0x00.
            if let Some(i) = rest.iter().position(|&b| b != 0) {
                return Err(WireError::new(
                    ErrorKind::NonzeroPadding,
                    at.saturating_add(i),
                ));
            }
            break;
        }
        let (msg, len) = message::decode(rest, at)?;
        seq.admit(header, msg.kind(), is_kind2_init(&msg), at)?;
        match messages.kept.get_mut(usize::from(messages.kept_len)) {
            Some(slot) if undecoded_from.is_none() => {
                *slot = Some(msg);
                messages.kept_len = messages.kept_len.saturating_add(1);
            }
            _ => {
                undecoded_from.get_or_insert(pos);
            }
        }
        pos = pos.saturating_add(len.max(1));
    }
    seq.finish(header, base)?;
    messages.rest = undecoded_from
        .and_then(|from| payload.get(from..))
        .unwrap_or_default();
    Ok(messages)
}

/// Builds a packet in a caller's buffer: the header, then messages pushed one by one, each
/// checked against the rules that [`Packet::parse`] enforces.
///
/// For an ENCRYPTED header the messages are the plaintext, and the writer keeps [`TAG_LEN`]
/// bytes free at the end: [`PacketWriter::finish`] counts them (zeroed) in the packet length,
/// so the caller seals `buf[header.len() .. len - TAG_LEN]` in place and writes the tag after.
#[derive(Debug)]
pub struct PacketWriter<'b> {
    buf: &'b mut [u8],
    header: Header,
    header_len: usize,
    pos: usize,
    /// The end of the room for messages (the tag's room excluded).
    cap: usize,
    /// Padding was written: nothing may follow it.
    padded: bool,
    seq: Sequence,
}

impl<'b> PacketWriter<'b> {
    /// Checks `header` ([`Header::validate`]) and writes it at the start of `buf`.
    pub fn new(buf: &'b mut [u8], header: &Header) -> Result<PacketWriter<'b>, WireError> {
        header.validate()?;
        let cap = if header.is_encrypted() {
            buf.len().checked_sub(TAG_LEN)
        } else {
            Some(buf.len())
        };
        let cap = cap.ok_or(WireError::new(ErrorKind::BufferTooSmall, 0))?;
        let header_len = header.emit(buf.get_mut(..cap).unwrap_or_default())?;
        Ok(PacketWriter {
            buf,
            header: *header,
            header_len,
            pos: header_len,
            cap,
            padded: false,
            seq: Sequence::default(),
        })
    }

    /// Appends a message; refuses one that the packet's channel or the message order does
    /// not allow, or that does not fit ([`ErrorKind::BufferTooSmall`]). A refused message
    /// leaves the writer as it was.
    pub fn push(&mut self, msg: &Message<'_>) -> Result<(), WireError> {
        let seq = self.admit(msg.kind(), is_kind2_init(msg))?;
        let room = self.buf.get_mut(self.pos..self.cap).unwrap_or_default();
        let len = msg.emit(room).map_err(|e| e.shifted(self.pos))?;
        self.pos = self.pos.saturating_add(len);
        self.seq = seq;
        Ok(())
    }

    /// Appends an ACK for inclusive `(low, high)` ranges, sorted descending (see
    /// [`emit_ack`]).
    pub fn push_ack(&mut self, ranges: &[(u64, u64)], ack_delay_us: u64) -> Result<(), WireError> {
        let seq = self.admit(MessageType::Ack, false)?;
        let room = self.buf.get_mut(self.pos..self.cap).unwrap_or_default();
        let len = emit_ack(ranges, ack_delay_us, room).map_err(|e| e.shifted(self.pos))?;
        self.pos = self.pos.saturating_add(len);
        self.seq = seq;
        Ok(())
    }

    /// Writes the START_ENCRYPTION type byte and hands back the packet split where its
    /// ciphertext starts: the associated data (every byte before the ciphertext, §5) and the
    /// room for ciphertext ‖ tag. The packet's length is `ad.len()` plus what the caller
    /// writes there.
    pub fn begin_encryption(self) -> Result<(&'b [u8], &'b mut [u8]), WireError> {
        self.admit(MessageType::StartEncryption, false)?;
        let at = self.pos;
        let type_byte = self
            .buf
            .get_mut(at..self.cap)
            .and_then(|room| room.first_mut())
            .ok_or(WireError::new(ErrorKind::BufferTooSmall, at))?;
        *type_byte = MessageType::StartEncryption.code() as u8;
        let (ad, rest) = self
            .buf
            .split_at_mut_checked(at.saturating_add(1))
            .ok_or(WireError::new(ErrorKind::BufferTooSmall, at))?;
        Ok((ad, rest))
    }

    /// The sequence state after admitting a message at the current position.
    fn admit(&self, kind: MessageType, kind2_init: bool) -> Result<Sequence, WireError> {
        if self.padded {
            return Err(WireError::new(ErrorKind::BufferTooSmall, self.pos));
        }
        let mut seq = self.seq;
        seq.admit(&self.header, kind, kind2_init, self.pos)?;
        Ok(seq)
    }

    /// Bytes left for messages (the tag's room excluded).
    pub fn remaining(&self) -> usize {
        if self.padded || self.seq.start_encryption {
            0
        } else {
            self.cap.saturating_sub(self.pos)
        }
    }

    /// Pads with 0x00 bytes until the packet (tag included) is `total_len` long, or the
    /// buffer is full; after padding no message can be pushed. Does nothing if the packet is
    /// already that long or ends in START_ENCRYPTION.
    pub fn pad_to(&mut self, total_len: usize) {
        if self.seq.start_encryption {
            return;
        }
        let tag = if self.header.is_encrypted() {
            TAG_LEN
        } else {
            0
        };
        let end = total_len.saturating_sub(tag).min(self.cap);
        if let Some(padding) = self.buf.get_mut(self.pos..end).filter(|p| !p.is_empty()) {
            // PROTOCOL.md §4: padding is never uninitialised memory.
            padding.fill(0);
            self.pos = end;
            self.padded = true;
        }
    }

    /// Ends the packet and returns its total length (with the zeroed room for the tag when
    /// ENCRYPTED). Does not check the whole-packet rules; [`PacketWriter::try_finish`] does.
    pub fn finish(self) -> usize {
        if !self.header.is_encrypted() {
            return self.pos;
        }
        let end = self.pos.saturating_add(TAG_LEN);
        if let Some(tag) = self.buf.get_mut(self.pos..end) {
            tag.fill(0);
        }
        end
    }

    /// Like [`PacketWriter::finish`], but refuses a packet with no message, or an unencrypted
    /// SEQUENCED default-channel packet without START_ENCRYPTION.
    pub fn try_finish(self) -> Result<usize, WireError> {
        self.seq.finish(&self.header, self.header_len)?;
        Ok(self.finish())
    }
}
