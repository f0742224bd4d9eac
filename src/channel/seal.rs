//! Writing one sealed packet in place (PROTOCOL.md §3, §5): the header of a packet under a
//! session, and the sealing of a payload written straight into the caller's buffer. Shared by
//! the connections' data packets and the endpoint's control and stateless answers.

use crate::session::{ChannelCrypto, KeyPhase};
use crate::wire::{ChannelId, Flags, Header, Message, PeerId, TAG_LEN};

/// Length of the CHANNEL_COOKIE that heads an unconfirmed initiator's packets (§6 step 4).
pub(crate) const COOKIE_HEAD: usize = 18;

/// The header of a packet sealed under a session (PROTOCOL.md §3, §5): ENCRYPTED|SEQUENCED, and
/// KEY_PHASE naming which of the peer's two sessions keyed it.
pub(crate) fn secure_header(
    phase: KeyPhase,
    local: PeerId,
    peer: PeerId,
    channel: ChannelId,
    sequence: u32,
) -> Header {
    let mut flags = Flags::ENCRYPTED | Flags::SEQUENCED;
    if phase.flag() {
        flags = flags | Flags::KEY_PHASE;
    }
    Header {
        flags,
        sender: local,
        recipient: peer,
        channel,
        sequence: Some(sequence),
    }
}

/// Builds one packet into `buf` and seals it there: `fill` writes the plaintext messages into
/// the region between the header and the tag (returning how many bytes), then the payload is
/// encrypted in place with the header as associated data and the nonce from the header's
/// sequence number (PROTOCOL.md §5). `limit` caps the whole datagram. Returns the datagram's
/// length; None when nothing was written or the key refuses the number. `buf` is not cleared
/// first: every byte of the datagram is written before it is read.
pub(crate) fn seal_into(
    buf: &mut [u8],
    crypto: &mut ChannelCrypto,
    header: &Header,
    limit: usize,
    fill: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> Option<usize> {
    let sequence = header.sequence?;
    // Checked before `fill` runs, so a refused number costs no frames.
    if !crypto.may_seal_at(u64::from(sequence)) {
        return None;
    }
    let header_len = header.emit(buf).ok()?;
    let end = limit.min(buf.len()).checked_sub(TAG_LEN)?;
    let written = fill(buf.get_mut(header_len..end)?)?;
    if written == 0 {
        return None;
    }
    let (head_bytes, rest) = buf.split_at_mut(header_len);
    let (payload, tag) = rest
        .get_mut(..written.checked_add(TAG_LEN)?)?
        .split_at_mut(written);
    let mut sealed_tag = [0u8; TAG_LEN];
    if !crypto.seal_at(u64::from(sequence), head_bytes, payload, &mut sealed_tag) {
        return None;
    }
    tag.copy_from_slice(&sealed_tag);
    Some(header_len.saturating_add(written).saturating_add(TAG_LEN))
}

/// Seals `head` (when there is one) and `messages` into one datagram in `buf` ([`seal_into`]):
/// the small control packets a state change sends (a PONG, a WINDOW, a CLOSE). None when they
/// do not fit within `limit` or the key refuses the number.
pub(crate) fn seal_messages(
    buf: &mut [u8],
    crypto: &mut ChannelCrypto,
    header: &Header,
    limit: usize,
    (head, messages): (Option<&Message<'_>>, &[Message<'_>]),
) -> Option<usize> {
    seal_into(buf, crypto, header, limit, |region| {
        let mut written = 0usize;
        for message in head.into_iter().chain(messages) {
            let n = message.emit(region.get_mut(written..)?).ok()?;
            written = written.saturating_add(n);
        }
        Some(written)
    })
}
