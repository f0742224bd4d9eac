//! The sealed path (PROTOCOL.md §5): ENCRYPTED|SEQUENCED packets under per-channel keys, the
//! START_ENCRYPTION packet that completes a handshake, opening with the replay window checked
//! before and moved after the tag, and RESET for packets that match no session.

use super::*;
use crate::channel::Datagram;
pub(super) use crate::channel::seal::{seal_into, seal_messages, secure_header};
use crate::session::{KeyPhase, OpenError as CryptoError};
use crate::wire::{PacketWriter, TAG_LEN, parse_payload};

impl Endpoint {
    /// Sends `messages` (headed by `head`) on `channel` to `peer`, sealed under the session we
    /// send under (PROTOCOL.md §5): ENCRYPTED|SEQUENCED, the nonce from the sequence number.
    pub(super) fn send_secure(
        &mut self,
        to: SocketAddr,
        peer: PeerId,
        channel: ChannelId,
        head: Option<&Message<'_>>,
        messages: &[Message<'_>],
    ) -> bool {
        // PROTOCOL.md §3: a channel's packets share one number space with its data path, so
        // acknowledgements and nonces never meet a number twice; the default channel counts
        // on its own.
        let numbered = if channel.is_default() {
            None
        } else {
            let last_now = self.last_now;
            self.channel_of(peer, channel)
                .and_then(|handle| self.take_sequence(last_now, handle))
        };
        let (local, recipient) = self.wire_ids(peer);
        let Some(entry) = sessions::session_in(&self.ids, &mut self.peers, &peer) else {
            return false;
        };
        let phase = entry.slot.sending_phase();
        let Some(session) = entry.slot.current() else {
            if entry.slot.current_ref().is_some() {
                // Exhausted (the hard limit): nothing leaves until a new session exists.
                self.drop_packet("key_exhausted");
                let now = self.last_now;
                self.maybe_rekey(now, peer);
            }
            return false;
        };
        let created = session.created_at();
        let crypto = session.keys.channel(channel);
        let sequence = numbered.map_or_else(|| crypto.next_sequence(), u64::from);
        let Ok(wire_sequence) = u32::try_from(sequence) else {
            return false;
        };
        let header = secure_header(phase, local, recipient, channel, wire_sequence);
        // Control packets are small and built when the state changes, so they wait in the
        // transmit queue (one copy into the driver's buffer); data packets do not (`flush.rs`).
        let sent = self.outgoing.with_buffer(to, |buf| {
            seal_messages(buf, crypto, &header, DEFAULT_MTU, (head, messages))
        });
        if !sent {
            self.drop_packet("transmit_queue_full");
            return false;
        }
        let sealed_count = crypto.packets_sent();
        self.rekey_if_due(peer, sealed_count, created);
        true
    }

    /// Only the channel just used can have crossed the threshold: no scan per packet. A channel
    /// at the hard limit exhausts the session: nothing more is sealed under it (a nonce is
    /// never reused, whatever happened to the rekeys).
    pub(super) fn rekey_if_due(&mut self, peer: PeerId, sealed_count: u64, created: Instant) {
        let now = self.last_now;
        let policy = self.config.rekey;
        if sealed_count >= policy.reject_after_packets
            && let Some(session) = self
                .session_of_mut(&peer)
                .and_then(|entry| entry.slot.current())
        {
            session.exhaust();
        }
        if sealed_count >= policy.after_packets
            || now.saturating_duration_since(created) >= policy.after
        {
            self.maybe_rekey(now, peer);
        }
    }

    /// The packet that completes a handshake: `first` (RESPONSE or FINAL), START_ENCRYPTION, and
    /// `riders` sealed under the new session's default-channel key with every byte before the
    /// ciphertext as associated data (PROTOCOL.md §5).
    pub(super) fn send_completing(
        &mut self,
        to: SocketAddr,
        peer: PeerId,
        phase: KeyPhase,
        first: &Message<'_>,
        riders: &[Message<'_>],
    ) {
        let (local, recipient) = self.wire_ids(peer);
        let Some(session) = sessions::session_in(&self.ids, &mut self.peers, &peer)
            .and_then(|e| e.slot.phase_session(phase))
        else {
            return;
        };
        let crypto = session.keys.channel(ChannelId::DEFAULT);
        // A payload needs a message (§3); with nothing to carry, an empty PMTU_PROBE stands in.
        let filler = [Message::PmtuProbe { len: 0 }];
        let riders = if riders.is_empty() {
            &filler[..]
        } else {
            riders
        };
        let sent = self.outgoing.with_buffer(to, |buf| {
            let sequence = crypto.next_sequence();
            let mut flags = Flags::SEQUENCED;
            if phase.flag() {
                flags = flags | Flags::KEY_PHASE;
            }
            let header = Header {
                flags,
                sender: local,
                recipient,
                channel: ChannelId::DEFAULT,
                sequence: Some(u32::try_from(sequence).ok()?),
            };
            let limit = DEFAULT_MTU;
            let mut writer = PacketWriter::new(&mut buf[..limit], &header).ok()?;
            writer.push(first).ok()?;
            let (ad, rest) = writer.begin_encryption().ok()?;
            let room = rest.len().checked_sub(TAG_LEN)?;
            let mut plain = 0usize;
            for rider in riders {
                let n = rider.encoded_len();
                let end = plain.saturating_add(n);
                if end > room {
                    break;
                }
                let emitted = rider.emit(rest.get_mut(plain..end)?).ok()?;
                plain = plain.saturating_add(emitted);
            }
            let (payload, tail) = rest.split_at_mut(plain);
            let mut tag = [0u8; TAG_LEN];
            crypto.seal(ad, payload, &mut tag);
            tail.get_mut(..TAG_LEN)?.copy_from_slice(&tag);
            Some(ad.len().saturating_add(plain).saturating_add(TAG_LEN))
        });
        if !sent {
            self.drop_packet("transmit_queue_full");
        }
    }

    /// Opens the START_ENCRYPTION part of a completing packet and handles its messages.
    pub(super) fn open_start_encryption(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        header: &Header,
        phase: KeyPhase,
        sealed: &[u8],
    ) {
        let Some(sequence) = header.sequence else {
            return self.drop_packet("start_encryption_unsequenced");
        };
        // PROTOCOL.md §5: the associated data is every byte before the ciphertext.
        let Some(ad) = datagram
            .len()
            .checked_sub(sealed.len())
            .and_then(|at| datagram.get(..at))
        else {
            return;
        };
        // The ciphertext is a view into the handshake packet that the handshake still reads, so
        // it is opened in the kept scratch buffer: a copy once per handshake, off the data path.
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(sealed);
        let opened = self
            .session_of_mut(&header.sender)
            .and_then(|e| e.slot.phase_session(phase))
            .map(|s| {
                s.keys
                    .open(ChannelId::DEFAULT, u64::from(sequence), ad, &mut buf)
            });
        match opened {
            Some(Ok(len)) => {
                let inner = Header {
                    flags: header.flags | Flags::ENCRYPTED,
                    ..*header
                };
                match parse_payload(&inner, &buf[..len]) {
                    Ok(messages) => {
                        self.dispatch_secure(now, from, &inner, messages);
                    }
                    Err(error) => self.drop_packet(error.kind.reason()),
                }
            }
            Some(Err(error)) => self.drop_packet(crypto_label(error)),
            None => self.drop_packet("no_session"),
        }
        self.scratch = buf;
    }

    /// An ENCRYPTED packet: the routed sender's connection takes it, once
    /// ([`Connection::handle`]: opened in place inside `datagram` under its session, then its
    /// messages walked on the channel it names), and the router acts on what it came to
    /// (PROTOCOL.md §5, §12 hot path). Answers to it go sealed.
    pub(super) fn handle_encrypted(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: PeerId,
        datagram: Datagram<'_>,
    ) {
        let datagram_len = datagram.len();
        let routed = self
            .ids
            .peer(&sender)
            .copied()
            .filter(|&slot| self.peers.get(slot).is_some());
        let Some(slot) = routed else {
            self.drop_packet("no_session");
            return self.send_reset(from, sender, datagram_len);
        };
        let handled = self.with_connection(slot, |connection, shared| {
            connection.handle(now, from, datagram, shared)
        });
        let Some(handled) = handled else {
            return;
        };
        let previous = self.secure_peer.replace(sender);
        self.after_handle(now, from, (slot, sender), handled, datagram_len);
        self.outgoing.finish();
        self.secure_peer = previous;
    }

    /// What a datagram came to in its connection (`peer`: its slot and id), and what the
    /// router does about it: the default channel's messages, a new channel to establish (then
    /// walked by the connection), the walk's leftovers, a RESET, a CHANNEL_CLOSE again, a
    /// rekey the receive side asks for.
    pub(super) fn after_handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        (slot, sender): (Handle, PeerId),
        handled: Handled<'_>,
        datagram_len: usize,
    ) {
        let rekey_due = match handled {
            Handled::Default {
                header,
                messages,
                rekey_due,
            } => {
                self.dispatch_secure(now, from, &header, messages);
                rekey_due
            }
            Handled::Establish {
                header,
                capabilities,
                rest,
                rekey_due,
            } => {
                if let Some(channel) =
                    self.establish(now, from, sender, header.channel, capabilities)
                {
                    self.walk_on(now, (from, &header), channel, rest);
                }
                rekey_due
            }
            Handled::Walked {
                lane,
                walked,
                rekey_due,
            } => {
                self.after_walk(ChannelAt { peer: slot, lane }, sender, walked);
                rekey_due
            }
            Handled::Dropped { reset } => {
                if reset {
                    self.send_reset(from, sender, datagram_len);
                }
                false
            }
            Handled::Closed { to, channel } => {
                // One small packet to the session's address per datagram, changing nothing
                // here, so it needs no tag.
                let reason = CloseReason::Normal;
                self.queue_default(to, sender, &Message::ChannelClose { channel, reason });
                false
            }
        };
        if rekey_due {
            self.maybe_rekey(now, sender);
        }
    }

    pub(super) fn dispatch_secure(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &Header,
        messages: Messages<'_>,
    ) {
        let previous = self.secure_peer.replace(header.sender);
        if header.channel.is_default() {
            self.handle_default(now, from, header, messages, true);
        } else {
            self.handle_channel_packet(now, from, header, messages);
        }
        self.outgoing.finish();
        self.secure_peer = previous;
    }
}

fn crypto_label(error: CryptoError) -> &'static str {
    match error {
        CryptoError::Replay => "replay",
        CryptoError::Authentication => "authentication",
    }
}
