//! The receive path: a datagram is parsed, checked against its header's rules (PROTOCOL.md §3),
//! opened when sealed (`secure.rs`), and its messages handed to the default channel's handlers
//! or to the channel it names.

use super::*;
use control::Control;

impl Endpoint {
    /// Feeds one received datagram. It is taken mutably because a sealed packet is opened in
    /// place, inside the driver's receive buffer (STYLE.md 17): afterwards its bytes are
    /// plaintext, or unspecified where the tag did not verify, never the datagram received.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        self.last_now = now;
        self.stats.add_at(self.hot.packets_received, 1);
        self.stats
            .add_at(self.hot.received_bytes, datagram.len() as u64);
        self.cookies.advance(now);
        self.last_now = self.last_now.max(now);
        // PROTOCOL.md §5: an unvalidated address gets at most 3× what it sent.
        self.answer_budget = datagram.len().saturating_mul(3);
        self.answers_left = 1;
        // Nothing this node sends is larger than its largest MTU (§7.6), so nothing larger
        // is a packet of ours to parse: it would only pack more work into one datagram.
        let largest = usize::from(self.config.reliability.max_mtu).max(DEFAULT_MTU);
        if datagram.len() > largest {
            return self.drop_packet("oversize");
        }
        // Before any parsing or crypto: a prefix past its share of an overloaded shard.
        if !self.admission.admit(from.ip()) {
            return self.drop_packet("shard_busy");
        }
        let packet = match Packet::parse(&*datagram) {
            Ok(packet) => packet,
            Err(error) => return self.drop_packet(error.kind.reason()),
        };
        let header = packet.header;
        if header.sender == self.local_id {
            return self.drop_packet("own_peer_id");
        }
        // PROTOCOL.md §3: drop packets not addressed to us; the wire layer already limited an
        // all-zero recipient to the shapes where it is allowed.
        let Some(local) = self.recipient_identity(header.recipient) else {
            return self.drop_packet("wrong_recipient");
        };
        // Another local identity's datagram is named by its connection's key from here on
        // (`identities.rs`), and only a peer that identity opened to has one.
        let header = match self.connection_key(header.sender, local) {
            Some(_) if local == LocalIdentity::FIRST => header,
            Some(key) if self.is_other_key(&key) => Header {
                sender: key,
                ..header
            },
            _ => return self.drop_packet("wrong_recipient"),
        };
        // The datagram's one lookup by the sender's id: its session and channel state, asked for
        // again below, are answered from it.
        self.ids.route(header.sender);
        if header.flags.contains(Flags::ENCRYPTED) {
            let header_len = packet.header_bytes().len();
            self.handle_encrypted(now, from, &header, header_len, datagram);
        } else if packet
            .messages()
            .next()
            .is_some_and(|m| m.kind().is_handshake() || matches!(m, Message::Reset { .. }))
        {
            self.handle_handshake(now, from, datagram, &packet, &header);
        } else if self.has_session(header.sender) {
            // PROTOCOL.md §3: once a peer is encrypted, its plaintext is dropped (no downgrade).
            self.drop_packet("plaintext_after_session");
        } else if !self.config.allow_plaintext {
            // PROTOCOL.md §3: a node that refuses plaintext drops kind-0 packets silently.
            self.drop_packet("plaintext_refused");
        } else {
            if header.channel.is_default() {
                self.handle_default(now, from, &header, packet.messages(), false);
            } else {
                self.handle_channel_packet(now, from, &header, packet.messages(), false);
            }
            self.count_plaintext_received(from, header.sender, datagram.len());
        }
        self.send_secure_answers();
        if let Some(&peer) = self.ids.peer(&header.sender) {
            self.mark_dirty(peer);
        }
        self.flush(now);
        self.outgoing.finish();
        self.publish_gauges();
    }

    pub(super) fn handle_default(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &Header,
        messages: Messages<'_>,
        secure: bool,
    ) {
        let sender = header.sender;
        let known = self.ids.peer(&sender).copied();
        if let Some(peer) = known
            && let Some(state) = self.peers.get_mut(peer)
            && state.address == from
        {
            state.last_heard = now;
        }
        for message in messages {
            match message {
                Message::Ping { token } => {
                    self.answer_ping(from, sender, ChannelId::DEFAULT, *token)
                }
                Message::Pong { token } => self.events.push_back(Event::Pong {
                    peer: sender,
                    from,
                    token: *token,
                }),
                Message::ChannelNew { c1, cookie1 } => {
                    self.answer_channel_new(from, sender, c1, cookie1)
                }
                Message::ChannelAcknowledge {
                    channel,
                    cookie1,
                    cookie2,
                } => self.on_acknowledge(now, from, sender, channel, cookie1, cookie2),
                Message::ChannelFinalize {
                    channel,
                    cookie2,
                    capabilities,
                } => {
                    self.on_cookie2(now, from, sender, channel, cookie2, capabilities);
                }
                Message::ChannelClose { channel, reason } => {
                    self.on_peer_close(from, sender, channel, reason)
                }
                Message::Reset { .. } => self.drop_packet("reset_without_session"),
                Message::PmtuProbe { .. } => {}
                Message::HandshakeInit { .. }
                | Message::HandshakeResponse { .. }
                | Message::HandshakeCookie { .. }
                | Message::HandshakeFinal { .. }
                | Message::StartEncryption { .. } => {
                    // Handshake messages travel in plaintext and first in their packet; inside
                    // a ciphertext, or behind channel messages, they are out of place.
                    let reason = if secure {
                        "handshake_in_ciphertext"
                    } else {
                        "handshake_misplaced"
                    };
                    self.drop_packet(reason);
                    return;
                }
                // The wire layer already rejected everything else on the default channel.
                _ => {}
            }
        }
    }

    pub(super) fn handle_channel_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &Header,
        messages: Messages<'_>,
        secure: bool,
    ) {
        let header = *header;
        // PROTOCOL.md §7.1: everything but ACK elicits an acknowledgement; a CHANNEL_COOKIE
        // that opens the channel is taken off the walk below, and it elicits.
        let mut eliciting = false;
        let all = messages.clone();
        let mut messages = messages.peekable();
        let existing = self
            .ids
            .peer(&header.sender)
            .and_then(|&peer| self.peers.get(peer).map(|p| (peer, p)))
            .and_then(|(peer, p)| {
                p.channels
                    .get(&header.channel.0)
                    .map(|&lane| (ChannelAt { peer, lane }, p.address))
            });
        let channel = match existing {
            Some((_, address)) if address != from => {
                // Path validation needs an authenticated session (PROTOCOL.md §5); a kind-0
                // peer cannot move.
                return self.drop_packet("address_mismatch");
            }
            Some((channel, _)) => {
                if let Some(state) = self.peers.get_mut(channel.peer) {
                    state.last_heard = now;
                }
                channel
            }
            None => {
                // PROTOCOL.md §6: a packet on an unknown channel must begin with a verifying
                // CHANNEL_COOKIE; it is dropped, not buffered.
                let Some(Message::ChannelCookie {
                    cookie2,
                    capabilities,
                }) = messages.peek().cloned()
                else {
                    // An authenticated peer sending data on a channel we do not hold missed our
                    // CHANNEL_CLOSE in an earlier session (this one did not retire the id, see
                    // `handle_encrypted`): tell it, or its resends fill the window its channels
                    // share. Made-up ids without data get nothing (finding 4). A second walk,
                    // but only on this refusal path.
                    let data = |m: Message<'_>| {
                        matches!(m, Message::Data { .. } | Message::DataFragment { .. })
                    };
                    let session = self.session_of(&header.sender);
                    if let Some(to) = session
                        .map(|entry| entry.address)
                        .filter(|_| secure && all.clone().any(data))
                    {
                        let (channel, reason) = (header.channel, CloseReason::Normal);
                        self.queue_default(
                            to,
                            header.sender,
                            &Message::ChannelClose { channel, reason },
                        );
                    }
                    return self.drop_packet("unknown_channel");
                };
                messages.next();
                eliciting = true;
                match self.on_cookie2(
                    now,
                    from,
                    header.sender,
                    header.channel,
                    cookie2,
                    capabilities,
                ) {
                    Some(channel) => channel,
                    None => return,
                }
            }
        };
        if secure {
            // The session opened this packet without caching keys for the channel; now that
            // the channel is known open, they are kept, and this packet cannot come again.
            self.admit_keys(&header);
        }
        // Any packet from the responder on the channel confirms it to the initiator.
        if let Some(state) = self.channel_mut(channel)
            && state.initiator
            && !state.confirmed()
        {
            state.phase = Phase::Open { cookie2: None };
            state.retry_at = None;
        }
        // One walk over the messages: the data path takes DATA, fragments, ACK and WINDOW, and
        // `Control` the rest, to act on once the walk is done.
        let mut control = Control::new(eliciting);
        let route = (header.sender, from, header.channel);
        match header.sequence {
            Some(sequence) => {
                self.on_channel_packet(now, channel, sequence, route, messages, &mut control)
            }
            None => {
                for message in messages {
                    if !control.take(message, route, &mut self.events, &mut self.stats) {
                        break;
                    }
                }
            }
        }
        if let Some(reason) = control.close {
            self.close(channel, reason, true, false);
            return;
        }
        if control.confirm {
            self.confirm_channel(channel);
        }
        if control.pong_count > 0 {
            let pongs: [Message<'_>; MAX_CHANNEL_PONGS] =
                std::array::from_fn(|index| Message::Pong {
                    token: &control.pongs[index],
                });
            self.send_on_channel(channel, &pongs[..control.pong_count]);
        }
        if header.sequence.is_some() {
            self.touch(channel);
        }
    }

    pub(super) fn on_peer_close(
        &mut self,
        from: SocketAddr,
        sender: PeerId,
        id: ChannelId,
        reason: CloseReason,
    ) {
        let Some(&peer) = self.ids.peer(&sender) else {
            return self.drop_packet("unknown_channel");
        };
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        if state.address != from {
            return self.drop_packet("address_mismatch");
        }
        if let Some(&lane) = state.channels.get(&id.0) {
            self.close(ChannelAt { peer, lane }, reason, true, false);
        } else if let Some(&lane) = state.opening.get(&id.c1()) {
            // The responder refused our open (e.g. `unsupported`).
            self.close(ChannelAt { peer, lane }, reason, true, false);
        } else {
            self.drop_packet("unknown_channel");
        }
    }

    pub(super) fn channel_of(&self, peer: PeerId, channel: ChannelId) -> Option<ChannelAt> {
        let peer = *self.ids.peer(&peer)?;
        let lane = *self.peers.get(peer)?.channels.get(&channel.0)?;
        Some(ChannelAt { peer, lane })
    }
}
