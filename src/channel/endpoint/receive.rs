//! The receive path: a datagram is parsed, checked against its header's rules (PROTOCOL.md §3),
//! opened when sealed (`secure.rs`), and its messages handed to the default channel's handlers
//! or to the channel it names.

use super::*;
use crate::channel::{Datagram, Lendable};

impl Endpoint {
    /// Feeds one received datagram. It is taken mutably because a sealed packet is opened in
    /// place, inside the driver's receive buffer (STYLE.md 17): afterwards its bytes are
    /// plaintext, or unspecified where the tag did not verify, never the datagram received.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        self.take_datagram(now, from, Datagram::Copied(datagram));
    }

    /// [`handle`](Self::handle) for a datagram in receive memory the backend lends (issue 11
    /// point 2): a message that is the whole of one DATA in it (sealed; plaintext datagrams are
    /// copied as before) reaches the application as a piece of that memory
    /// ([`Payload::Lent`](crate::channel::Payload)), with no copy. Afterwards the datagram's
    /// bytes are frozen; the backend drops it and takes its slab back once every piece lent
    /// from it is dropped.
    pub fn handle_lent(&mut self, now: Instant, from: SocketAddr, datagram: &mut Lendable) {
        self.take_datagram(now, from, Datagram::Lent(datagram));
    }

    fn take_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Datagram<'_>) {
        self.receive_datagram(now, from, datagram);
        // The pool lends from one datagram only while it is walked.
        self.pool.stop_lending();
        let (lent, copied) = self.pool.take_counts();
        self.stats.add_at(self.hot.messages_lent, lent);
        self.stats.add_at(self.hot.messages_copied, copied);
    }

    fn receive_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Datagram<'_>) {
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
        let packet = match Packet::parse(datagram.bytes()) {
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
            self.handle_encrypted(now, from, header.sender, datagram);
        } else if packet
            .messages()
            .next()
            .is_some_and(|m| m.kind().is_handshake() || matches!(m, Message::Reset { .. }))
        {
            self.handle_handshake(now, from, datagram.bytes(), &packet, &header);
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
                self.handle_channel_packet(now, from, &header, packet.messages());
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

    /// A packet on a channel whose messages are already validated: a kind-0 one (its datagram
    /// was parsed whole by the router) or a START_ENCRYPTION's. The routed connection takes it
    /// ([`Connection::on_channel`]); without one, only a verifying CHANNEL_COOKIE that heads it
    /// opens a channel (PROTOCOL.md §6), the connection made with it.
    pub(super) fn handle_channel_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &Header,
        messages: Messages<'_>,
    ) {
        let header = *header;
        let routed = self
            .ids
            .peer(&header.sender)
            .copied()
            .filter(|&slot| self.peers.get(slot).is_some());
        if let Some(slot) = routed {
            let handled = self.with_connection(slot, |connection, shared| {
                connection.on_channel(now, from, header, messages, false, shared)
            });
            if let Some(handled) = handled {
                self.after_handle(now, from, (slot, header.sender), handled, 0);
            }
            return;
        }
        let mut rest = messages;
        let Some(Message::ChannelCookie {
            cookie2,
            capabilities,
        }) = rest.next()
        else {
            return self.drop_packet("unknown_channel");
        };
        let (sender, id) = (header.sender, header.channel);
        if let Some(channel) = self.on_cookie2(now, from, sender, id, cookie2, capabilities) {
            self.walk_on(now, (from, &header), channel, rest);
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
