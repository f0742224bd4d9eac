//! The stateless answers (PROTOCOL.md §4–§6): PONG to PING, RESET to a packet under no session,
//! CHANNEL_ACKNOWLEDGE to CHANNEL_NEW. They hold no state for the asker: an unvalidated address
//! gets one answer datagram per request datagram and at most 3× its bytes; answers to an
//! authenticated packet share one sealed datagram.

use super::*;

/// What RESET's reason byte says: "I hold no session for this packet" (PROTOCOL.md §4).
const RESET_NO_SESSION: u8 = 0;

impl Endpoint {
    /// Room in the packet being built, or a new packet to `to`; counts against the 3× budget
    /// when `unvalidated`.
    pub(super) fn stateless_answer(
        &mut self,
        to: SocketAddr,
        recipient: PeerId,
        channel: ChannelId,
        message: &Message<'_>,
    ) -> bool {
        if self.secure_peer == Some(recipient) && self.has_session(recipient) {
            // An answer to an authenticated packet goes sealed, and its address is validated;
            // all answers to one packet share one sealed datagram.
            return self.queue_secure_answer(to, recipient, message);
        }
        let needed = message.encoded_len();
        let (sender, recipient) = self.wire_ids(recipient);
        let header = Header {
            flags: Flags::default(),
            sender,
            recipient,
            channel,
            sequence: None,
        };
        if !self.outgoing.open_matches(to, &header) || needed > self.outgoing.remaining() {
            // Point 4 of the hostile-peer rules: one answer datagram per request datagram.
            if self.answers_left == 0 {
                self.drop_packet("answer_limit");
                return false;
            }
            if crate::wire::HEADER_LEN.saturating_add(needed) > self.answer_budget {
                self.drop_packet("amplification_limit");
                return false;
            }
            if !self.outgoing.start(to, &header, DEFAULT_MTU) {
                self.drop_packet("transmit_queue_full");
                return false;
            }
            // Both were checked above: there is an answer left and budget for the header.
            self.answers_left = self.answers_left.saturating_sub(1);
            self.answer_budget = self.answer_budget.saturating_sub(crate::wire::HEADER_LEN);
        }
        if needed > self.answer_budget {
            self.drop_packet("amplification_limit");
            return false;
        }
        if self.outgoing.push(message) {
            self.answer_budget = self.answer_budget.saturating_sub(needed);
            true
        } else {
            false
        }
    }

    /// Adds an answer to the authenticated packet being handled to the one sealed datagram that
    /// carries them all; an answer that does not fit is dropped and counted.
    pub(super) fn queue_secure_answer(
        &mut self,
        to: SocketAddr,
        recipient: PeerId,
        message: &Message<'_>,
    ) -> bool {
        let room = DEFAULT_MTU - crate::wire::SEQUENCED_HEADER_LEN - crate::wire::TAG_LEN;
        let used = self.secure_answers.len();
        let needed = message.encoded_len();
        let other = self
            .secure_answer_to
            .is_some_and(|target| target != (to, recipient));
        if other || used.saturating_add(needed) > room {
            self.drop_packet("answer_limit");
            return false;
        }
        self.secure_answers.resize(used.saturating_add(needed), 0);
        match message.emit(&mut self.secure_answers[used..]) {
            Ok(written) => {
                self.secure_answers.truncate(used.saturating_add(written));
                self.secure_answer_to = Some((to, recipient));
                true
            }
            Err(_) => {
                self.secure_answers.truncate(used);
                false
            }
        }
    }

    /// Seals the answers gathered by [`queue_secure_answer`](Self::queue_secure_answer) into
    /// one datagram on the default channel (PROTOCOL.md §5).
    pub(super) fn send_secure_answers(&mut self) {
        let Some((to, peer)) = self.secure_answer_to.take() else {
            return;
        };
        let answers = std::mem::take(&mut self.secure_answers);
        let (local, recipient) = self.wire_ids(peer);
        let sealed = sessions::session_in(&self.ids, &mut self.peers, &peer).and_then(|entry| {
            let phase = entry.slot.sending_phase();
            let session = entry.slot.current()?;
            let created = session.created_at();
            let crypto = session.keys.channel(ChannelId::DEFAULT);
            let sequence = u32::try_from(crypto.next_sequence()).ok()?;
            let header =
                secure::secure_header(phase, local, recipient, ChannelId::DEFAULT, sequence);
            let sent = self.outgoing.with_buffer(to, |buf| {
                secure::seal_into(buf, crypto, &header, DEFAULT_MTU, |region| {
                    region.get_mut(..answers.len())?.copy_from_slice(&answers);
                    Some(answers.len())
                })
            });
            Some((sent, crypto.packets_sent(), created))
        });
        self.secure_answers = answers;
        self.secure_answers.clear();
        match sealed {
            Some((true, count, created)) => self.rekey_if_due(peer, count, created),
            Some((false, _, _)) => self.drop_packet("transmit_queue_full"),
            None => {}
        }
    }

    pub(super) fn answer_ping(
        &mut self,
        from: SocketAddr,
        sender: PeerId,
        channel: ChannelId,
        token: [u8; 8],
    ) {
        // On an open channel PONGs ride the channel's own packets (`handle_channel_packet`).
        let pong = Message::Pong { token: &token };
        if self.stateless_answer(from, sender, channel, &pong) {
            self.stats.add(STATELESS, Some(("message", "pong")), 1);
        }
    }

    /// PROTOCOL.md §4: RESET answers an ENCRYPTED packet that matches no session, and only when
    /// it is smaller than that packet.
    pub(super) fn send_reset(&mut self, to: SocketAddr, peer: PeerId, packet_len: usize) {
        let reset = Message::Reset {
            reason: RESET_NO_SESSION,
        };
        if crate::wire::HEADER_LEN.saturating_add(reset.encoded_len()) >= packet_len {
            return;
        }
        self.outgoing.finish();
        if self.stateless_answer(to, peer, ChannelId::DEFAULT, &reset) {
            self.stats.add(STATELESS, Some(("message", "reset")), 1);
        }
    }
    /// PROTOCOL.md §6 step 2: the responder keeps no state; it picks c2 and answers.
    pub(super) fn answer_channel_new(
        &mut self,
        from: SocketAddr,
        initiator: PeerId,
        c1: u16,
        cookie1: &[u8; 16],
    ) {
        let c2 = self.pick_c2(initiator, c1);
        let id = ChannelId::new(c1, c2);
        let cookie2 = self.cookies.cookie2(initiator, self.local_id, id, from);
        let ack = Message::ChannelAcknowledge {
            channel: id,
            cookie1,
            cookie2: &cookie2,
        };
        if self.stateless_answer(from, initiator, ChannelId::DEFAULT, &ack) {
            self.stats
                .add(STATELESS, Some(("message", "channel_acknowledge")), 1);
        }
    }

    /// PROTOCOL.md §6: bit 15 of c2 is 1 exactly when the responder's peer id is the greater;
    /// c2 ≠ 0; and c1 ‖ c2 was never open with this peer in this session.
    pub(super) fn pick_c2(&mut self, initiator: PeerId, c1: u16) -> u16 {
        let high = if self.local_id > initiator { 0x8000 } else { 0 };
        for _ in 0..64 {
            let c2 = high | (self.rng.r#gen::<u16>() & 0x7fff);
            if c2 == 0 {
                continue;
            }
            if !self.id_used(initiator, ChannelId::new(c1, c2)) {
                return c2;
            }
        }
        // A peer that has used up this much of the id space gets a random pick; the FINALIZE
        // check below still refuses a reused id.
        high | 1
    }

    pub(super) fn c2_is_ours(&self, initiator: PeerId, c2: u16) -> bool {
        let high = self.local_id > initiator;
        c2 != 0 && ((c2 & 0x8000 != 0) == high)
    }
}
