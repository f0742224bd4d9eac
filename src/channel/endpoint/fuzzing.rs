//! What the endpoint fuzzer (`fuzz/fuzz_targets/endpoint.rs`) needs to reach past AEAD: sealing
//! a payload exactly as this endpoint would send it to a peer. Compiled only under
//! `cfg(fuzzing)`, which `cargo fuzz` sets; a normal build has none of it.

use super::*;
use crate::wire::TAG_LEN;

impl Endpoint {
    /// Seals `plaintext` on `channel` as this endpoint sends to `peer`: under the session it
    /// sends under, with that session's KEY_PHASE and the channel's next sequence number, which
    /// is taken (the endpoint's own later packets on that key never reuse it: the channel's data
    /// path skips past the numbers taken here, as the peer saw them). The plaintext is
    /// not checked: it may be any bytes. `None` without a session or past the sequence space.
    ///
    /// The endpoint keeps the keys of a channel it seals on for the first time (forgetting them
    /// would retire the id): a fuzzer that makes up channel ids grows the sender, so it measures
    /// the receiver's heap apart (`crate::heap` accounts).
    pub fn fuzz_seal(
        &mut self,
        peer: PeerId,
        channel: ChannelId,
        plaintext: &[u8],
    ) -> Option<Vec<u8>> {
        let local = self.local_id;
        let entry = self.session_of_mut(&peer)?;
        let phase = entry.slot.sending_phase();
        let session = entry.slot.current()?;
        let crypto = session.keys.channel(channel);
        u32::try_from(crypto.next_sequence())
            .ok()
            .and_then(|sequence| {
                let header = secure::secure_header(phase, local, peer, channel, sequence);
                let mut out = vec![0u8; header.len() + plaintext.len() + TAG_LEN];
                let header_len = header.emit(&mut out).ok()?;
                let (head, rest) = out.split_at_mut(header_len);
                let (payload, tag) = rest.split_at_mut(plaintext.len());
                payload.copy_from_slice(plaintext);
                let mut sealed_tag = [0u8; TAG_LEN];
                crypto.seal(head, payload, &mut sealed_tag);
                tag.copy_from_slice(&sealed_tag);
                Some(out)
            })
    }
}
