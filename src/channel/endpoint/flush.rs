//! Building packets (PROTOCOL.md §7.3): the dirty peers' channels take turns, one packet each,
//! as far as the shared congestion window and pacer allow; sealed under the session when there
//! is one. Each flushed channel's timer is rearmed here.

use super::*;
use crate::channel::outgoing::MAX_DATAGRAM;
use control::KEEP_ALIVE_TOKEN;
use data::COOKIE_HEAD;

impl Endpoint {
    /// Builds every packet the dirty peers' channels may send now, taking turns.
    pub(super) fn flush(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        // Delivery may queue more (the echo service): a few rounds settle it; a peer left
        // over stays dirty for the next call.
        for _ in 0..4 {
            if self.dirty.is_empty() || self.outgoing.is_full() {
                return;
            }
            // Swapped with a kept list, so flushing allocates nothing once both have grown.
            std::mem::swap(&mut self.dirty, &mut self.flushing);
            for index in 0..self.flushing.len() {
                let peer = self.flushing[index];
                if let Some(state) = self.peers.get_mut(peer) {
                    state.dirty = false;
                }
                self.flush_peer(now, peer);
            }
            self.flushing.clear();
        }
    }

    pub(super) fn flush_peer(&mut self, now: Instant, peer: Handle) {
        // The channels to visit: those touched since the last flush, or all of them when the
        // path's window opened (a channel that was held back by it may send now). A packet
        // that touches one channel thus costs one channel's work, however many its sender
        // holds. The list is a kept buffer: flushing allocates nothing once it has grown.
        let mut visit = std::mem::take(&mut self.visiting);
        visit.clear();
        let Some(state) = self.peers.get_mut(peer) else {
            self.visiting = visit;
            return;
        };
        std::mem::swap(&mut state.touched, &mut visit);
        let room = state.path.as_ref().map_or(0, |path| {
            path.congestion_window()
                .saturating_sub(path.bytes_in_flight())
        });
        let rescan = std::mem::take(&mut state.rescan) || room > state.room;
        // A channel listed twice, closed, or whose slot another peer's channel took since, is
        // visited once or not at all.
        visit.retain(|&channel| match self.channels.get_mut(channel) {
            Some(state) if state.peer == peer && state.touched => {
                state.touched = false;
                true
            }
            _ => false,
        });
        if rescan {
            if let Some(state) = self.peers.get(peer) {
                visit.clear();
                visit.extend_from_slice(&state.order);
            }
        }
        for &channel in &visit {
            self.deliver(now, channel);
        }
        // PROTOCOL.md §7.3: the peer's channels share one window and pacer; each turn writes at
        // most one packet, so a bulk channel cannot hold back another.
        let count = visit.len();
        'packets: while !self.outgoing.is_full() {
            for _ in 0..count {
                let Some(path) = self.peers.get_mut(peer).and_then(|p| p.path.as_mut()) else {
                    break 'packets;
                };
                let turn = path.next_turn(count);
                let Some(&channel) = visit.get(turn) else {
                    break 'packets;
                };
                let wrote = self.write_packet(now, channel);
                self.take_tally(channel);
                if wrote {
                    continue 'packets;
                }
            }
            break;
        }
        let full = self.outgoing.is_full();
        if full {
            self.mark_dirty(peer);
        }
        for &channel in &visit {
            self.keep_alive(now, channel);
            self.account(channel);
            self.rearm(now, channel);
            // Unreliable modes resolve a message once it is sent, not when acknowledged.
            if let Some(data) = self.channels.get_mut(channel).and_then(|c| c.data.as_mut()) {
                data.reliability.reclaim(&mut self.pool);
            }
            self.keep_waiting(peer, channel, now);
        }
        if let Some(state) = self.peers.get_mut(peer) {
            // A flush cut short by a full queue offers every channel a turn next time.
            state.rescan |= full;
            state.room = state.path.as_ref().map_or(0, |path| {
                path.congestion_window()
                    .saturating_sub(path.bytes_in_flight())
            });
        }
        self.visiting = visit;
    }

    /// The peer's `index`-th channel in turn order.
    pub(super) fn channel_at(&self, peer: Handle, index: usize) -> Option<Handle> {
        self.peers.get(peer)?.order.get(index).copied()
    }

    /// Writes one packet of `channel` if it has something to send; true if it did.
    pub(super) fn write_packet(&mut self, now: Instant, channel: Handle) -> bool {
        let Some(state) = self.channels.get_mut(channel) else {
            return false;
        };
        let head = match state.phase {
            Phase::Open {
                cookie2: Some(cookie2),
            } if state.initiator => Some((cookie2, state.capabilities)),
            Phase::Open { .. } => None,
            Phase::Opening { .. } => return false,
        };
        let Some(data) = state.data.as_mut() else {
            return false;
        };
        let Some(peer) = self.peers.get_mut(state.peer) else {
            return false;
        };
        let Some(path) = peer.path.as_mut() else {
            return false;
        };
        if !data.reliability.wants_to_send(now, path) {
            return false;
        }
        // An ACK alone waits for the end of the receive batch (`ack_batch.rs`).
        if self.ack_batch.receiving()
            && data.reliability.only_ack_due(now, path)
            && self.ack_batch.hold(state.peer)
        {
            return false;
        }
        // Under a session the packet is sealed with the channel's key (PROTOCOL.md §5).
        let session = self
            .ids
            .session(&peer.id)
            .and_then(|&handle| self.sessions.get_mut(handle));
        if let Some(entry) = session {
            let phase = entry.slot.sending_phase();
            let Some(current) = entry.slot.current() else {
                return false;
            };
            let created = current.created_at();
            let crypto = current.keys.channel(state.id);
            // PROTOCOL.md §3: numbers under one key only go up, and the key refuses one it has
            // sealed past. A channel whose count fell behind its key's skips ahead to it (the
            // peer sees a gap, like loss) instead of having every packet refused for ever,
            // which would also leave its bytes in flight holding the peer's shared window shut.
            data.next_pn = data.next_pn.max(crypto.next_sequence());
            let Ok(wire_sequence) = u32::try_from(data.next_pn) else {
                return false;
            };
            let header =
                secure::secure_header(phase, self.local_id, peer.id, state.id, wire_sequence);
            let pn = data.next_pn;
            // An unconfirmed packet carries the cookie on top of an ordinary one and is no
            // probe; any other gets the whole datagram, so that `write_frames` can pad a
            // PMTU probe above the current size (PROTOCOL.md §7.6).
            let room = match head {
                Some(_) => path.max_payload().saturating_sub(COOKIE_HEAD),
                None => usize::MAX,
            };
            let reliability = &mut data.reliability;
            let sent = secure::seal_packet(
                &mut self.outgoing,
                crypto,
                peer.address,
                &header,
                MAX_DATAGRAM,
                |region| {
                    let mut at = 0;
                    if let Some((cookie2, capabilities)) = head {
                        at = Message::ChannelCookie {
                            cookie2: &cookie2,
                            capabilities,
                        }
                        .emit(region)
                        .ok()?;
                    }
                    let end = at.saturating_add(room).min(region.len());
                    let written = reliability.write_frames(now, pn, path, region.get_mut(at..end)?);
                    (written > 0).then_some(at.saturating_add(written))
                },
            );
            if !sent {
                return false;
            }
            let sealed_count = crypto.packets_sent();
            data.next_pn = data.next_pn.saturating_add(1);
            data.last_sent = now;
            let peer_id = peer.id;
            self.rekey_if_due(peer_id, sealed_count, created);
            return true;
        }
        let header = Header {
            flags: Flags::SEQUENCED,
            sender: self.local_id,
            recipient: peer.id,
            channel: state.id,
            sequence: Some(data.next_pn as u32),
        };
        if !self.outgoing.start(peer.address, &header, MAX_DATAGRAM) {
            return false;
        }
        let mut room = self.outgoing.remaining();
        if let Some((cookie2, capabilities)) = head {
            self.outgoing.push(&Message::ChannelCookie {
                cookie2: &cookie2,
                capabilities,
            });
            // An unconfirmed packet carries the cookie on top of an ordinary one: it must still
            // fit the path MTU, and it is no probe.
            room = path.max_payload().saturating_sub(COOKIE_HEAD);
        }
        let buf = self.outgoing.writable();
        let room = room.min(buf.len());
        let written = data
            .reliability
            .write_frames(now, data.next_pn, path, &mut buf[..room]);
        if written == 0 {
            self.outgoing.abandon();
            return false;
        }
        self.outgoing.advance(written);
        self.outgoing.finish();
        data.next_pn = data.next_pn.saturating_add(1);
        data.last_sent = now;
        true
    }

    /// PROTOCOL.md §7.7: a channel that asked for it sends a PING after 15 s without sending,
    /// which keeps NAT bindings and the peer's reset timer alive.
    pub(super) fn keep_alive(&mut self, now: Instant, channel: Handle) {
        let interval = self.config.keep_alive_interval;
        let due = self
            .channels
            .get(channel)
            .filter(|c| c.confirmed() || !c.initiator)
            .and_then(|c| c.data.as_ref())
            .is_some_and(|d| d.keep_alive && now >= later(d.last_sent, interval));
        if due {
            let ping = Message::Ping {
                token: &KEEP_ALIVE_TOKEN,
            };
            self.send_on_channel(channel, &[ping]);
        }
    }

    /// Puts the channel's next deadline in the endpoint's timer heap.
    pub(super) fn rearm(&mut self, now: Instant, channel: Handle) {
        let interval = self.config.keep_alive_interval;
        let Some(code) = self.channels.hashcode(channel) else {
            return;
        };
        let Some(data) = self.channels.get_mut(channel).and_then(|c| c.data.as_mut()) else {
            return;
        };
        let keep_alive = data.keep_alive.then(|| later(data.last_sent, interval));
        let Some(at) = [data.reliability.poll_timeout(), keep_alive]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        // A deadline in the past is due now; the heap keeps at most one live entry per
        // channel and a later one only when it is earlier than the armed one.
        let at = at.max(now);
        if data.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        data.armed = Some(at);
        self.arm(at, TimerKey::Data(code));
    }
}
