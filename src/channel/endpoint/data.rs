//! The per-channel data path of the endpoint (PROTOCOL.md §7): every open channel runs a
//! [`ChannelReliability`] in its mode, a peer's channels share one [`PathState`] (congestion
//! window, pacer, RTT, path MTU) and take turns packet by packet, so no channel blocks another.
//!
//! Packets are built eagerly, as far as the congestion window and the pacer allow, at the end
//! of every `handle`, `handle_timeout` and `send`; the reliability timers (loss detection,
//! PTO, ACK delay, hold timeout, reassembly, pacing) and the keep-alive share one endpoint timer
//! per channel.

use super::control::Control;
use super::{ChannelHandle, Connection, Endpoint, SendError};
use crate::channel::connection::{ChannelAt, ChannelPacket, Delivered, Handover, mode_label};
use crate::channel::reliability::{
    self, ChannelReliability, ChannelStats, PathState, ReassemblyBudget,
};
use crate::channel::state::{ChannelData, Reported};
use crate::handle::Handle;
use crate::wire::{Capabilities, ChannelId, Message, PeerId, SEQUENCED_HEADER_LEN, TAG_LEN};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

impl Endpoint {
    /// Creates the channel's data state on first use.
    pub(super) fn ensure_data(&mut self, now: Instant, channel: ChannelAt) -> bool {
        let keep_alive = self.config.keep_alive;
        let secure = self
            .peers
            .get(channel.peer)
            .is_some_and(|peer| self.has_session(peer.id));
        // Names the peer in the node's reassembly ledger, for eviction (`evict_reassembly`).
        let budget_key = self
            .peers
            .hashcode(channel.peer)
            .map_or(u64::MAX, |c| u64::from(c.0));
        let Some(peer) = self.peers.get_mut(channel.peer) else {
            return false;
        };
        let Some(state) = peer.lanes.get_mut(channel.lane) else {
            return false;
        };
        if state.data.is_some() {
            return true;
        }
        let config = &self.config.reliability;
        if peer.path.is_none() {
            let mut path = PathState::new(config, now);
            // A kind-0 packet has a sequenced header and no AEAD tag (§3); a sealed one adds
            // the 16-byte tag (§5).
            path.set_packet_overhead(if secure {
                SEQUENCED_HEADER_LEN + TAG_LEN
            } else {
                SEQUENCED_HEADER_LEN
            });
            peer.path = Some(path);
            peer.budget = Some(
                self.budget
                    .for_peer_keyed(self.config.reassembly_peer_bytes, budget_key),
            );
        }
        let order_at = peer.order.len();
        peer.order.push(channel.lane);
        state.touched = true;
        peer.touched.push(channel.lane);
        if state.capabilities.contains(Capabilities::RESEND) {
            // PROTOCOL.md §12: reliable channels share the workers' room (`service.rs`).
            self.delivery.reliable = self.delivery.reliable.saturating_add(1);
        }
        state.data = Some(Box::new(ChannelData {
            reliability: ChannelReliability::shared(
                state.capabilities,
                self.reliability.clone(),
                now,
            ),
            // PROTOCOL.md §3: under a session a channel's numbers start at 0; plaintext channels
            // start at a random value, which makes blind injection harder.
            next_pn: if secure {
                0
            } else {
                u64::from(state.next_sequence)
            },
            armed: None,
            last_sent: now,
            paused: false,
            waiting: false,
            keep_alive,
            reported: Reported::default(),
            last_rtt: Duration::ZERO,
            order_at,
        }));
        let label = mode_label(state.capabilities);
        let count = self
            .stats
            .get("weft_channels_by_mode", Some(("mode", label)));
        self.stats.set(
            "weft_channels_by_mode",
            Some(("mode", label)),
            count.saturating_add(1),
        );
        self.mark_dirty(channel.peer);
        true
    }

    /// Notes that a channel changed (a packet, a send, a timer): the next flush visits it.
    pub(super) fn touch(&mut self, channel: ChannelAt) {
        let Some(owner) = self.peers.get_mut(channel.peer) else {
            return;
        };
        if owner.lanes.get(channel.lane).is_none() {
            return;
        }
        owner.touch(channel.lane);
        self.mark_dirty(channel.peer);
    }

    /// The next packet number of a channel, as the wire carries it.
    pub(super) fn take_sequence(&mut self, now: Instant, channel: ChannelAt) -> Option<u32> {
        self.ensure_data(now, channel);
        let state = self.channel_mut(channel)?;
        let data = state.data.as_mut()?;
        let pn = data.next_pn;
        data.next_pn = data.next_pn.saturating_add(1);
        data.last_sent = now;
        // PROTOCOL.md §3: the wire carries the low 32 bits; the receiver rebuilds the rest.
        Some(pn as u32)
    }

    /// Gives the channel's in-flight bytes back to the path before the channel goes away.
    pub(super) fn detach_data(&mut self, channel: ChannelAt) {
        let Some(peer) = self.peers.get_mut(channel.peer) else {
            return;
        };
        let Some(state) = peer.lanes.get_mut(channel.lane) else {
            return;
        };
        let Some(mut data) = state.data.take() else {
            return;
        };
        if state.capabilities.contains(Capabilities::RESEND) {
            self.delivery.reliable = self.delivery.reliable.saturating_sub(1);
        }
        let label = mode_label(state.capabilities);
        if let Some(path) = peer.path.as_mut() {
            data.reliability.abandon(path);
        }
        // The last channel takes the closed one's place: turns stay fair, and a close costs
        // the same however many channels the peer holds.
        let at = data.order_at;
        if peer.order.get(at) == Some(&channel.lane) {
            peer.order.swap_remove(at);
            peer.channel_removed(at);
            if let Some(&moved) = peer.order.get(at)
                && let Some(data) = peer.lanes.get_mut(moved).and_then(|c| c.data.as_mut())
            {
                data.order_at = at;
            }
        } else {
            peer.order.retain(|&lane| lane != channel.lane);
            renumber(peer);
        }
        self.deadlines.set(channel.peer.0, peer.poll_timeout());
        let count = self
            .stats
            .get("weft_channels_by_mode", Some(("mode", label)));
        self.stats.set(
            "weft_channels_by_mode",
            Some(("mode", label)),
            count.saturating_sub(1),
        );
    }

    /// Queues an application message on a channel (open or still opening).
    pub(super) fn send_message(
        &mut self,
        now: Instant,
        channel: ChannelAt,
        payload: &[u8],
    ) -> Result<u64, SendError> {
        self.send_message_with(now, channel, payload.len(), |buf| {
            buf.extend_from_slice(payload)
        })
    }

    /// Sends one application message of `len` bytes that `fill` appends straight to its
    /// empty, pooled buffer in the channel's send queue (room for `len` bytes is reserved; it
    /// is called only when the message is accepted); returns its message number. Saves
    /// [`Endpoint::send`]'s copy for a producer that generates its data, and the buffer is never
    /// zero-filled first; a fill that appends more or fewer bytes is cut or zero-padded to
    /// `len`. The errors are `send`'s.
    pub fn send_with(
        &mut self,
        now: Instant,
        channel: ChannelHandle,
        len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64, SendError> {
        let handle = self
            .resolve_channel(channel)
            .ok_or(SendError::UnknownChannel)?;
        self.last_now = self.last_now.max(now);
        let number = self.send_message_with(now, handle, len, fill)?;
        self.flush(now);
        self.outgoing.finish();
        Ok(number)
    }

    pub(super) fn send_message_with(
        &mut self,
        now: Instant,
        channel: ChannelAt,
        len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64, SendError> {
        if !self.ensure_data(now, channel) {
            return Err(SendError::UnknownChannel);
        }
        let state = self
            .peers
            .get_mut(channel.peer)
            .and_then(|peer| peer.lanes.get_mut(channel.lane))
            .ok_or(SendError::UnknownChannel)?;
        let data = state.data.as_mut().ok_or(SendError::UnknownChannel)?;
        let number = data
            .reliability
            .send_with(now, len, &mut self.pool, fill)
            .map_err(|error| match error {
                reliability::SendError::TooLarge { len, max } => SendError::TooLarge { len, max },
                reliability::SendError::QueueFull => SendError::QueueFull,
                reliability::SendError::Closed => SendError::UnknownChannel,
            })?;
        state.next_message = number.saturating_add(1);
        self.stats.add_at(self.hot.messages_sent, 1);
        self.touch(channel);
        Ok(number)
    }

    /// Notes that a peer may have something to send.
    pub(super) fn mark_dirty(&mut self, peer: Handle) {
        // A flag on the peer, not a search of the list: the list is as long as the peers that
        // sent lately, and a search would make every packet cost that much.
        if let Some(state) = self.peers.get_mut(peer)
            && !state.dirty
        {
            state.dirty = true;
            self.dirty.push(peer);
        }
    }

    /// One received packet on an open channel, in one walk over its messages: the channel's
    /// connection takes the data-path ones (DATA, fragments, ACK, WINDOW;
    /// [`Connection::handle_frames`]), and `control` the others (PING, PONG, CHANNEL_CLOSE,
    /// CHANNEL_COOKIE), which the caller acts on after the walk.
    pub(super) fn on_channel_packet<'a>(
        &mut self,
        now: Instant,
        channel: ChannelAt,
        sequence: u32,
        route: (PeerId, SocketAddr, ChannelId),
        messages: impl Iterator<Item = Message<'a>>,
        control: &mut Control,
    ) {
        let ready = self.ensure_data(now, channel);
        let connection = self.peers.get_mut(channel.peer).filter(|_| ready);
        let (events, stats) = (&mut self.events, &mut self.stats);
        let handled = match connection {
            Some(connection) => {
                let packet = ChannelPacket {
                    sequence,
                    eliciting: control.eliciting,
                    messages,
                };
                connection.handle_frames(now, &mut self.pool, channel.lane, packet, |m| {
                    control.take(m, route, events, stats)
                })
            }
            None => Err(messages),
        };
        let received = match handled {
            Ok(received) => received,
            Err(messages) => {
                // No data state (the channel is going away): the control messages still count.
                for message in messages {
                    if !control.take(message, route, &mut self.events, &mut self.stats) {
                        break;
                    }
                }
                return;
            }
        };
        if let Some((rtt, window)) = received.rtt {
            self.observe_rtt(rtt, window);
        }
        self.take_tally(channel);
        self.deliver(now, channel);
        self.mark_dirty(channel.peer);
        self.evict_reassembly();
    }

    /// Settles the node's reassembly debt, if this packet made one: a lighter peer was let
    /// past the full node budget, and the heaviest peer's incomplete messages make room
    /// (PROTOCOL.md §7.5; the fair share rule is `ReassemblyBudget`'s). Bounded by the
    /// victim's channels and their incomplete messages.
    pub(super) fn evict_reassembly(&mut self) {
        let Some((key, owed)) = self.budget.take_eviction() else {
            return;
        };
        let victim = u32::try_from(key)
            .ok()
            .and_then(|code| self.peers.resolve(crate::handle::Hashcode(code)).ok());
        let mut freed: usize = 0;
        if let Some(victim) = victim {
            let mut index: usize = 0;
            while freed < owed {
                let Some(channel) = self.channel_at(victim, index) else {
                    break;
                };
                let mut evicted = 0;
                if let Some(data) = self.channel_mut(channel).and_then(|c| c.data.as_mut()) {
                    let want = owed.saturating_sub(freed);
                    evicted = data.reliability.evict_reassembly(want);
                    freed = freed.saturating_add(evicted);
                }
                if evicted > 0 {
                    // Its counters, and the channel if that failed it, are settled when its
                    // peer flushes.
                    self.touch(channel);
                }
                index = index.saturating_add(1);
            }
        }
        if freed < owed {
            // Nothing more to take from it (it freed what it held since): the node is over
            // its budget by at most what is left, until releases bring it back.
            self.budget.forgive_eviction();
        }
    }

    /// Adds what the reliability layer tallied in the call just made for `channel`, by the
    /// channel's mode ([`TallySlots::take`](crate::channel::connection::TallySlots::take)).
    pub(super) fn take_tally(&mut self, channel: ChannelAt) {
        let mode = self
            .channel(channel)
            .map_or(Capabilities::NONE, |c| c.capabilities);
        self.hot.tally.take(&mut self.stats, mode);
    }

    /// Counts an RTT sample and the path's congestion window beside it: both histograms over
    /// every path (one controller per peer path, PROTOCOL.md §7.3), with no peer label.
    fn observe_rtt(&mut self, rtt: Duration, window: u64) {
        let us = rtt.as_micros().min(u128::from(u64::MAX)) as u64;
        self.stats.observe(&self.hot.rtt, us);
        self.stats.observe(&self.hot.congestion_window, window);
    }

    /// Hands what the channel delivered to the application, unless it is paused.
    pub(super) fn deliver(&mut self, now: Instant, channel: ChannelAt) {
        self.deliver_some(now, channel, usize::MAX);
    }

    /// Hands at most `limit` messages the channel delivered to the application
    /// ([`Connection::deliver`]); returns true when it stopped at `limit` with more to give. A
    /// reliable channel that met the workers' room full is listed to wait for room, and a
    /// failed one is counted and closed.
    pub(super) fn deliver_some(&mut self, now: Instant, channel: ChannelAt, limit: usize) -> bool {
        let Some(handle) = self.channel_handle(channel) else {
            return false;
        };
        let Some(connection) = self.peers.get_mut(channel.peer) else {
            return false;
        };
        let mut out = Handover {
            channel: handle,
            events: &mut self.events,
            pool: &mut self.pool,
            stats: &mut self.stats,
            counted: [self.hot.messages_received, self.hot.messages_sent],
            room: &mut self.delivery,
            echo: self.config.echo,
        };
        let delivered = connection.deliver(now, channel.lane, limit, &mut out);
        if self.config.echo {
            // What the echo service sent back waits for the next flush.
            self.mark_dirty(channel.peer);
        }
        match delivered {
            Delivered::Done => false,
            Delivered::More => true,
            Delivered::Wait(entry) => {
                self.wait_for_room(entry);
                false
            }
            Delivered::Failed(reason) => {
                self.account(channel);
                self.close(channel, reason, false, true);
                false
            }
        }
    }

    /// Adds a channel's new counters to the endpoint's statistics
    /// ([`Connection::account`]).
    pub(super) fn account(&mut self, channel: ChannelAt) {
        if let Some(connection) = self.peers.get_mut(channel.peer) {
            connection.account(channel.lane, &mut self.stats);
        }
    }

    /// Stops (or resumes) handing a channel's messages to the application: a slow reader. While
    /// paused, received messages stay buffered and the peer gets no new credit (§7.4).
    pub fn set_receive_paused(&mut self, now: Instant, channel: ChannelHandle, paused: bool) {
        self.change_data(now, channel, |data| data.paused = paused);
    }

    /// Turns the 15 s keep-alive PING (§7.7) on or off for one channel; new channels take
    /// [`EndpointConfig::keep_alive`](super::EndpointConfig::keep_alive).
    pub fn set_keep_alive(&mut self, now: Instant, channel: ChannelHandle, on: bool) {
        self.change_data(now, channel, |data| data.keep_alive = on);
    }

    /// Applies an application's setting to a live channel's data state, then lets the peer's
    /// packets be rebuilt under it.
    pub(super) fn change_data(
        &mut self,
        now: Instant,
        channel: ChannelHandle,
        change: impl FnOnce(&mut ChannelData),
    ) {
        let Some(handle) = self.resolve_channel(channel) else {
            return;
        };
        if !self.ensure_data(now, handle) {
            return;
        }
        if let Some(state) = self.channel_mut(handle)
            && let Some(data) = state.data.as_mut()
        {
            change(data);
        }
        // A resumed reader gets what waited for it at once.
        self.deliver(now, handle);
        self.touch(handle);
        self.flush(now);
    }

    /// Messages and bytes a channel holds for the application (received, not yet taken).
    pub fn receive_buffered(&self, channel: ChannelHandle) -> Option<(u64, u64)> {
        let state = self.channel(self.resolve_channel(channel)?)?;
        Some(state.data.as_ref()?.reliability.buffered())
    }

    /// The credit this side advertised to the peer on a channel (max message, max bytes).
    pub fn advertised_window(&self, channel: ChannelHandle) -> Option<(u64, u64)> {
        let state = self.channel(self.resolve_channel(channel)?)?;
        Some(state.data.as_ref()?.reliability.advertised_window())
    }

    /// Bytes queued for sending on a channel.
    pub fn send_queued(&self, channel: ChannelHandle) -> Option<usize> {
        let state = self.channel(self.resolve_channel(channel)?)?;
        Some(state.data.as_ref()?.reliability.queued_bytes())
    }

    /// The reliability counters of a channel.
    pub fn channel_stats(&self, channel: ChannelHandle) -> Option<ChannelStats> {
        let state = self.channel(self.resolve_channel(channel)?)?;
        Some(state.data.as_ref()?.reliability.stats())
    }

    /// Congestion window, smoothed RTT and path MTU of the path to the peer of a channel.
    pub fn path_info(&self, channel: ChannelHandle) -> Option<(u64, Duration, u16)> {
        let at = self.resolve_channel(channel)?;
        let path = self.peers.get(at.peer)?.path.as_ref()?;
        Some((
            path.congestion_window(),
            path.rtt().smoothed(),
            path.current_mtu(),
        ))
    }

    /// Reassembly memory in use: this node's total.
    pub fn reassembly_used(&self) -> usize {
        self.budget.node_used()
    }
}

/// Numbers the connection's channels by their place in its turn order again, and files their
/// data deadlines under the new numbers: the way back when a channel was not where its
/// `order_at` said.
fn renumber(connection: &mut Connection) {
    connection.channel_deadlines.clear();
    for (at, &lane) in connection.order.iter().enumerate() {
        let Some(data) = connection.lanes.get_mut(lane).and_then(|c| c.data.as_mut()) else {
            continue;
        };
        data.order_at = at;
        if let Ok(slot) = u32::try_from(at) {
            connection.channel_deadlines.set(slot, data.armed);
        }
    }
    connection.sync_data_timer();
}

/// A fresh node-wide reassembly budget.
pub(super) fn node_budget(node: usize, peer: usize) -> ReassemblyBudget {
    ReassemblyBudget::new(node, peer)
}
