//! The attacker's handshakes: completing XX and IK as an honest initiator would, forging an XX
//! INIT for a peer it cannot prove to be, and answering the node's own XX INIT as a responder.

use super::{AttackError, AttackSession, Attacker, Received, RespondedXx};
use crate::session::handshake::MAX_HANDSHAKE_LEN;
use crate::session::keys::PacketKey;
use crate::session::mac::{MAC_LEN, Mac1Key};
use crate::session::{
    HandshakeKind, Initiator, KeyPhase, PeerRecord, Response, Tai64N, TimestampTable, respond,
};
use crate::wire::{ChannelId, Flags, Header, Message, PeerId, TAG_LEN};
use rand::Rng;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

impl Attacker {
    /// Completes an XX handshake (kind 2) from a bare address: INIT, the node's
    /// HANDSHAKE_COOKIE answered once, RESPONSE, then FINAL with START_ENCRYPTION carrying a PING
    /// whose PONG confirms the session.
    pub fn handshake_xx(&mut self, timeout: Duration) -> Result<(), AttackError> {
        let deadline = Instant::now() + timeout;
        let mut initiator = Initiator::unknown_responder(&self.handshake_identity, &mut self.rng)?;
        let index: u32 = self.rng.r#gen();
        let (answer, sender) =
            self.exchange_init(&initiator, PeerId::ZERO, None, index, deadline)?;
        let Some(Message::HandshakeResponse {
            sender_index: node_index,
            receiver_index,
            handshake,
        }) = answer.messages().first().copied()
        else {
            return Err(AttackError::Refused("expected HANDSHAKE_RESPONSE"));
        };
        if receiver_index != index {
            return Err(AttackError::Refused("response names another handshake"));
        }
        let mut final_bytes = [0u8; MAX_HANDSHAKE_LEN];
        let done = initiator.read_response(sender, handshake, &mut final_bytes)?;
        self.node_peer = sender;
        self.session = Some(AttackSession::new(&done.established, KeyPhase::Zero));
        // PROTOCOL.md §5: FINAL, then START_ENCRYPTION under the new keys at default-channel
        // sequence 0, its associated data every byte before the ciphertext.
        let token = self.token();
        let fin = Message::HandshakeFinal {
            sender_index: index,
            receiver_index: node_index,
            handshake: &final_bytes[..done.final_len],
        };
        let datagram = self.completing_packet(&fin, &[Message::Ping { token: &token }])?;
        self.send_raw(&datagram)?;
        self.await_pong(token, deadline)?;
        Ok(())
    }

    /// Completes an IK handshake (kind 1) with the node of `record`: INIT with mac1 and a fresh
    /// timestamp, RESPONSE with START_ENCRYPTION, then a PING whose PONG confirms the session.
    pub fn handshake_ik(
        &mut self,
        record: &PeerRecord,
        timeout: Duration,
    ) -> Result<(), AttackError> {
        let deadline = Instant::now() + timeout;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut initiator = Initiator::known_responder(
            &self.handshake_identity,
            record,
            Tai64N::from_unix(now),
            &mut self.rng,
        )?;
        let node = record.peer_id();
        let mac1 = Mac1Key::new(&record.x25519);
        let index: u32 = self.rng.r#gen();
        let (answer, sender) =
            self.exchange_init(&initiator, node, Some(&mac1), index, deadline)?;
        let Some(Message::HandshakeResponse {
            receiver_index,
            handshake,
            ..
        }) = answer.messages().first().copied()
        else {
            return Err(AttackError::Refused("expected HANDSHAKE_RESPONSE"));
        };
        if receiver_index != index {
            return Err(AttackError::Refused("response names another handshake"));
        }
        let mut unused = [0u8; MAX_HANDSHAKE_LEN];
        let done = initiator.read_response(sender, handshake, &mut unused)?;
        self.node_peer = sender;
        // Each direction counts its default-channel sequence numbers on its own: ours start
        // at 0 although the node's START_ENCRYPTION part used its own 0.
        self.session = Some(AttackSession::new(&done.established, KeyPhase::Zero));
        self.ping_until(deadline).map(|_| ())
    }

    /// Sends the INIT and answers one HANDSHAKE_COOKIE; returns the node's handshake answer
    /// and its sender.
    fn exchange_init(
        &mut self,
        initiator: &Initiator,
        recipient: PeerId,
        mac1: Option<&Mac1Key>,
        index: u32,
        deadline: Instant,
    ) -> Result<(Received, PeerId), AttackError> {
        let mut cookie: Option<[u8; MAC_LEN]> = None;
        for _ in 0..3 {
            let (datagram, echo) = Self::init_packet(
                self.peer_id(),
                recipient,
                initiator.kind(),
                index,
                initiator.init(),
                mac1,
                cookie.as_ref(),
            )?;
            self.send_raw(&datagram)?;
            let cookie_value = loop {
                let Some(received) = self.recv(deadline)? else {
                    return Err(AttackError::Timeout("handshake answer"));
                };
                let answer = match received.messages().first() {
                    Some(Message::HandshakeCookie {
                        receiver_index,
                        cookie: value,
                        echo: echoed,
                    }) if *receiver_index == index && **echoed == echo => Some(Some(**value)),
                    Some(Message::HandshakeResponse { receiver_index, .. })
                        if *receiver_index == index =>
                    {
                        Some(None)
                    }
                    _ => None,
                };
                match answer {
                    Some(Some(value)) => break value,
                    Some(None) => {
                        let sender = received.header.sender;
                        return Ok((received, sender));
                    }
                    None => continue,
                }
            };
            cookie = Some(cookie_value);
        }
        Err(AttackError::Refused("cookie after cookie"))
    }

    /// Builds the packet that completes a handshake: `first`, START_ENCRYPTION, and `riders`
    /// sealed under the new session's default-channel key (PROTOCOL.md §5).
    fn completing_packet(
        &mut self,
        first: &Message<'_>,
        riders: &[Message<'_>],
    ) -> Result<Vec<u8>, AttackError> {
        let sequence = self.take_sequence(ChannelId::DEFAULT)?;
        let session = self.session.as_ref().ok_or(AttackError::NoSession)?;
        let mut flags = Flags::SEQUENCED;
        if session.phase.flag() {
            flags = flags | Flags::KEY_PHASE;
        }
        let header = Header {
            flags,
            sender: self.peer_id(),
            recipient: self.node_peer,
            channel: ChannelId::DEFAULT,
            sequence: Some(sequence),
        };
        let plaintext = Self::encode(riders)?;
        let mut out = vec![0u8; header.len() + first.encoded_len() + 1 + plaintext.len() + TAG_LEN];
        let mut at = header.emit(&mut out)?;
        at += first.emit(&mut out[at..])?;
        out[at] = 0x01; // START_ENCRYPTION
        at += 1;
        let (ad, rest) = out.split_at_mut(at);
        let (payload, tag) = rest.split_at_mut(plaintext.len());
        payload.copy_from_slice(&plaintext);
        let key = PacketKey::for_channel(&session.send_secret, ChannelId::DEFAULT);
        let mut sealed_tag = [0u8; TAG_LEN];
        key.seal_in_place(u64::from(sequence), ad, payload, &mut sealed_tag);
        tag.copy_from_slice(&sealed_tag);
        Ok(out)
    }

    /// Sends a forged XX INIT whose header claims `claimed` as its sender (a peer the attacker
    /// cannot prove to be), answering the node's HANDSHAKE_COOKIE once, as an off-path host
    /// that receives at its own address would. Returns whether the node answered the INIT with
    /// a HANDSHAKE_RESPONSE (it acted on it).
    pub fn forge_xx_init(
        &mut self,
        claimed: PeerId,
        timeout: Duration,
    ) -> Result<bool, AttackError> {
        let deadline = Instant::now() + timeout;
        let initiator = Initiator::unknown_responder(&self.handshake_identity, &mut self.rng)?;
        let index: u32 = self.rng.r#gen();
        let mut cookie: Option<[u8; MAC_LEN]> = None;
        for _ in 0..2 {
            let (datagram, echo) = Self::init_packet(
                claimed,
                self.node_peer,
                HandshakeKind::UnknownResponder,
                index,
                initiator.init(),
                None,
                cookie.as_ref(),
            )?;
            self.send_raw(&datagram)?;
            let mut next_cookie = None;
            while let Some(received) = self.recv(deadline)? {
                match received.messages().first() {
                    Some(Message::HandshakeCookie {
                        receiver_index,
                        cookie: value,
                        echo: echoed,
                    }) if *receiver_index == index && **echoed == echo => {
                        next_cookie = Some(**value);
                        break;
                    }
                    Some(Message::HandshakeResponse { receiver_index, .. })
                        if *receiver_index == index =>
                    {
                        return Ok(true);
                    }
                    _ => {}
                }
            }
            match next_cookie {
                Some(value) => cookie = Some(value),
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Answers an XX INIT the node sent us (it rekeys, or answers our RESET) with a
    /// HANDSHAKE_RESPONSE, as an honest responder does.
    pub fn answer_xx_init(&mut self, init: &Received) -> Result<RespondedXx, AttackError> {
        let Some(Message::HandshakeInit {
            kind,
            sender_index,
            handshake,
            ..
        }) = init.messages().first().copied()
        else {
            return Err(AttackError::Refused("not a HANDSHAKE_INIT"));
        };
        if HandshakeKind::from_code(kind) != Some(HandshakeKind::UnknownResponder) {
            return Err(AttackError::Refused("not an XX INIT"));
        }
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let mut timestamps = TimestampTable::new();
        let response = respond(
            &self.handshake_identity,
            HandshakeKind::UnknownResponder,
            init.header.sender,
            handshake,
            &mut timestamps,
            |_| None,
            &mut self.rng,
            &mut out,
        )?;
        let Response::Pending { len, pending } = response else {
            return Err(AttackError::Refused("XX completes in three messages"));
        };
        let our_index: u32 = self.rng.r#gen();
        let answer = Message::HandshakeResponse {
            sender_index: our_index,
            receiver_index: sender_index,
            handshake: &out[..len],
        };
        let datagram = self.plain_packet(
            None,
            init.header.sender,
            ChannelId::DEFAULT,
            None,
            &[answer],
        )?;
        self.send_raw(&datagram)?;
        Ok(RespondedXx {
            pending,
            node_index: sender_index,
            our_index,
        })
    }

    /// Waits for the node's HANDSHAKE_FINAL to `responded` and installs the new session (the
    /// other KEY_PHASE). Returns [`AttackError::Timeout`] if the node never finishes.
    pub fn finish_xx_responder(
        &mut self,
        mut responded: RespondedXx,
        deadline: Instant,
    ) -> Result<(), AttackError> {
        while let Some(received) = self.recv(deadline)? {
            if received.sealed {
                continue;
            }
            let Some(Message::HandshakeFinal {
                receiver_index,
                handshake,
                ..
            }) = received.messages().first().copied()
            else {
                continue;
            };
            if receiver_index != responded.our_index {
                continue;
            }
            let established = responded
                .pending
                .read_final(received.header.sender, handshake)?;
            let phase = self
                .session
                .as_ref()
                .map_or(KeyPhase::Zero, |s| s.phase.flipped());
            self.session = Some(AttackSession::new(&established, phase));
            return Ok(());
        }
        Err(AttackError::Timeout("HANDSHAKE_FINAL"))
    }
}
