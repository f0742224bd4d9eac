//! The per-channel data path of the endpoint (PROTOCOL.md §7): every open channel runs a
//! [`ChannelReliability`] in its mode, a peer's channels share one [`PathState`] (congestion
//! window, pacer, RTT, path MTU) and take turns packet by packet, so no channel blocks another.
//!
//! Packets are built eagerly, as far as the congestion window and the pacer allow, at the end
//! of every `handle`, `handle_timeout` and `send`; the reliability timers (loss detection,
//! PTO, ACK delay, hold timeout, reassembly, pacing) and the keep-alive share one endpoint timer
//! per channel.

use super::control::Control;
use super::{ChannelHandle, Endpoint, Event, SendError};
use crate::channel::connection::ChannelPacket;
use crate::channel::reliability::{
    self, ChannelReliability, ChannelStats, Delivery, PathState, ReassemblyBudget, tally,
};
use crate::channel::state::ChannelData;
use crate::handle::Handle;
use crate::wire::{Capabilities, ChannelId, Message, PeerId, SEQUENCED_HEADER_LEN, TAG_LEN};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Messages and fragments dropped from accepted packets, by `reason`.
const MESSAGES_DROPPED: &str = "weft_messages_dropped_total";

/// The `mode` label of a capability set (§7's table).
pub(super) fn mode_label(capabilities: Capabilities) -> &'static str {
    match capabilities.bits() {
        0 => "udp",
        4 => "x",
        2 => "streaming1",
        6 => "y",
        1 => "z",
        5 => "sctp",
        3 => "streaming2",
        _ => "tcp",
    }
}

impl Endpoint {
    /// Creates the channel's data state on first use.
    pub(super) fn ensure_data(&mut self, now: Instant, channel: Handle) -> bool {
        let keep_alive = self.config.keep_alive;
        let secure = self
            .channels
            .get(channel)
            .and_then(|state| self.peers.get(state.peer))
            .is_some_and(|peer| self.has_session(peer.id));
        let Some(state) = self.channels.get_mut(channel) else {
            return false;
        };
        if state.data.is_some() {
            return true;
        }
        // Names the peer in the node's reassembly ledger, for eviction (`evict_reassembly`).
        let budget_key = self
            .peers
            .hashcode(state.peer)
            .map_or(u64::MAX, |c| u64::from(c.0));
        let Some(peer) = self.peers.get_mut(state.peer) else {
            return false;
        };
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
        peer.order.push(channel);
        state.touched = true;
        peer.touched.push(channel);
        let peer_handle = state.peer;
        if state.capabilities.contains(Capabilities::RESEND) {
            // PROTOCOL.md §12: reliable channels share the workers' room (`service.rs`).
            self.delivery.reliable = self.delivery.reliable.saturating_add(1);
        }
        state.data = Some(Box::new(ChannelData {
            reliability: ChannelReliability::new(state.capabilities, config, now),
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
            reported: ChannelStats::default(),
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
        self.mark_dirty(peer_handle);
        true
    }

    /// A channel that still wants to send (held back by the pacer) keeps its place in the
    /// next flush's turns, whichever channel's timer wakes the peer
    /// ([`Connection::keep_waiting`](crate::channel::connection::Connection::keep_waiting)).
    pub(super) fn keep_waiting(&mut self, peer: Handle, channel: Handle, now: Instant) {
        let Some(state) = self.channels.get_mut(channel).filter(|s| s.peer == peer) else {
            return;
        };
        if let Some(owner) = self.peers.get_mut(peer) {
            owner.keep_waiting(now, channel, state);
        }
    }

    /// Notes that a channel changed (a packet, a send, a timer): the next flush visits it.
    pub(super) fn touch(&mut self, channel: Handle) {
        let Some(state) = self.channels.get_mut(channel) else {
            return;
        };
        let peer = state.peer;
        if let Some(owner) = self.peers.get_mut(peer) {
            owner.touch(channel, state);
        }
        self.mark_dirty(peer);
    }

    /// The next packet number of a channel, as the wire carries it.
    pub(super) fn take_sequence(&mut self, now: Instant, channel: Handle) -> Option<u32> {
        self.ensure_data(now, channel);
        let state = self.channels.get_mut(channel)?;
        let data = state.data.as_mut()?;
        let pn = data.next_pn;
        data.next_pn = data.next_pn.saturating_add(1);
        data.last_sent = now;
        // PROTOCOL.md §3: the wire carries the low 32 bits; the receiver rebuilds the rest.
        Some(pn as u32)
    }

    /// Gives the channel's in-flight bytes back to the path before the channel goes away.
    pub(super) fn detach_data(&mut self, channel: Handle) {
        let Some(state) = self.channels.get_mut(channel) else {
            return;
        };
        let Some(mut data) = state.data.take() else {
            return;
        };
        if state.capabilities.contains(Capabilities::RESEND) {
            self.delivery.reliable = self.delivery.reliable.saturating_sub(1);
        }
        let label = mode_label(state.capabilities);
        let mut moved = None;
        let mut renumber = false;
        if let Some(peer) = self.peers.get_mut(state.peer) {
            if let Some(path) = peer.path.as_mut() {
                data.reliability.abandon(path);
            }
            // The last channel takes the closed one's place: turns stay fair, and a close
            // costs the same however many channels the peer holds.
            let at = data.order_at;
            if peer.order.get(at) == Some(&channel) {
                peer.order.swap_remove(at);
                peer.channel_removed(at);
                moved = peer.order.get(at).map(|&other| (other, at));
            } else {
                peer.order.retain(|&c| c != channel);
                renumber = true;
            }
        }
        let owner = state.peer;
        if renumber {
            self.renumber(owner);
        }
        if let Some(peer) = self.peers.get(owner) {
            self.deadlines.set(owner.0, peer.poll_timeout());
        }
        if let Some((other, at)) = moved {
            if let Some(data) = self.channels.get_mut(other).and_then(|c| c.data.as_mut()) {
                data.order_at = at;
            }
        }
        let count = self
            .stats
            .get("weft_channels_by_mode", Some(("mode", label)));
        self.stats.set(
            "weft_channels_by_mode",
            Some(("mode", label)),
            count.saturating_sub(1),
        );
    }

    /// Numbers the connection's channels by their place in its turn order again, and files
    /// their data deadlines under the new numbers: the way back when a channel was not where
    /// its `order_at` said.
    fn renumber(&mut self, peer: Handle) {
        let Some(connection) = self.peers.get_mut(peer) else {
            return;
        };
        connection.channel_deadlines.clear();
        for (at, &channel) in connection.order.iter().enumerate() {
            let Some(data) = self.channels.get_mut(channel).and_then(|c| c.data.as_mut()) else {
                continue;
            };
            data.order_at = at;
            if let Ok(slot) = u32::try_from(at) {
                connection.channel_deadlines.set(slot, data.armed);
            }
        }
        connection.sync_data_timer();
    }

    /// Queues an application message on a channel (open or still opening).
    pub(super) fn send_message(
        &mut self,
        now: Instant,
        channel: Handle,
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
            .channels
            .resolve(channel.0)
            .map_err(|_| SendError::UnknownChannel)?;
        self.last_now = self.last_now.max(now);
        let number = self.send_message_with(now, handle, len, fill)?;
        self.flush(now);
        self.outgoing.finish();
        Ok(number)
    }

    pub(super) fn send_message_with(
        &mut self,
        now: Instant,
        channel: Handle,
        len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64, SendError> {
        if !self.ensure_data(now, channel) {
            return Err(SendError::UnknownChannel);
        }
        let state = self
            .channels
            .get_mut(channel)
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
        if let Some(state) = self.peers.get_mut(peer) {
            if !state.dirty {
                state.dirty = true;
                self.dirty.push(peer);
            }
        }
    }

    /// One received packet on an open channel, in one walk over its messages: the channel's
    /// connection takes the data-path ones (DATA, fragments, ACK, WINDOW;
    /// [`Connection::handle_frames`]), and `control` the others (PING, PONG, CHANNEL_CLOSE,
    /// CHANNEL_COOKIE), which the caller acts on after the walk.
    pub(super) fn on_channel_packet<'a>(
        &mut self,
        now: Instant,
        channel: Handle,
        sequence: u32,
        route: (PeerId, SocketAddr, ChannelId),
        messages: impl Iterator<Item = Message<'a>>,
        control: &mut Control,
    ) {
        let ready = self.ensure_data(now, channel);
        let state = self.channels.get_mut(channel).filter(|_| ready);
        let parts =
            state.and_then(|state| Some((state.peer, self.peers.get_mut(state.peer)?, state)));
        let (events, stats) = (&mut self.events, &mut self.stats);
        let handled = match parts {
            Some((peer, connection, state)) => {
                let packet = ChannelPacket {
                    sequence,
                    eliciting: control.eliciting,
                    messages,
                };
                let taken = connection.handle_frames(now, &mut self.pool, state, packet, |m| {
                    control.take(m, route, events, stats)
                });
                taken.map(|received| (peer, received))
            }
            None => Err(messages),
        };
        let (peer, received) = match handled {
            Ok(handled) => handled,
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
        self.mark_dirty(peer);
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
                if let Some(data) = self.channels.get_mut(channel).and_then(|c| c.data.as_mut()) {
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

    /// Adds what the reliability layer tallied in the call just made for `channel`
    /// (retransmitted packets, congestion events, delivery latencies), by the channel's mode.
    pub(super) fn take_tally(&mut self, channel: Handle) {
        let Some(tally) = tally::take() else {
            return;
        };
        let mode = self
            .channels
            .get(channel)
            .map_or(0, |c| usize::from(c.capabilities.bits()));
        if let Some(&slot) = self.hot.packets_retransmitted.get(mode) {
            self.stats.add_at(slot, tally.packets_retransmitted);
        }
        if let Some(&slot) = self.hot.congestion_events.get(mode) {
            self.stats.add_at(slot, tally.congestion_events);
        }
        let [alone, piggybacked] = self.hot.acks_sent;
        self.stats.add_at(alone, tally.acks_alone);
        self.stats.add_at(piggybacked, tally.acks_piggybacked);
        self.stats.add_to_histogram(
            &self.hot.message_delivery,
            &tally.delivered,
            tally.delivery_us,
        );
    }

    /// Counts an RTT sample and the path's congestion window beside it: both histograms over
    /// every path (one controller per peer path, PROTOCOL.md §7.3), with no peer label.
    fn observe_rtt(&mut self, rtt: Duration, window: u64) {
        let us = rtt.as_micros().min(u128::from(u64::MAX)) as u64;
        self.stats.observe(&self.hot.rtt, us);
        self.stats.observe(&self.hot.congestion_window, window);
    }

    /// Hands what the channel delivered to the application, unless it is paused.
    pub(super) fn deliver(&mut self, now: Instant, channel: Handle) {
        self.deliver_some(now, channel, usize::MAX);
    }

    /// Hands at most `limit` messages the channel delivered to the application; returns true
    /// when it stopped at `limit` with more to give. A reliable channel that meets the
    /// workers' room full keeps the rest (within the credit it granted) and waits for room
    /// (PROTOCOL.md §12, `service.rs`).
    pub(super) fn deliver_some(&mut self, now: Instant, channel: Handle, limit: usize) -> bool {
        let Some(code) = self.channels.hashcode(channel) else {
            return false;
        };
        let handle = ChannelHandle(code);
        let mut delivered = 0usize;
        loop {
            let Some(state) = self.channels.get_mut(channel) else {
                return false;
            };
            let owner = state.peer;
            let reliable = state.capabilities.contains(Capabilities::RESEND);
            let Some(data) = state.data.as_mut() else {
                return false;
            };
            let failed = data.reliability.is_failed();
            if data.paused && !failed {
                return false;
            }
            if reliable {
                // Set before each flush writes the channel's frames (this runs first).
                data.reliability.set_credit_cap(self.delivery.credit_cap());
            }
            if reliable && !failed && self.delivery.is_full() {
                let listed = std::mem::replace(&mut data.waiting, true);
                if !listed {
                    self.wait_for_room(channel);
                }
                return false;
            }
            if delivered >= limit {
                return data.reliability.has_event();
            }
            let Some(delivery) = data.reliability.poll_event() else {
                return false;
            };
            match delivery {
                Delivery::Message { number, data } => {
                    delivered = delivered.saturating_add(1);
                    self.stats.add_at(self.hot.messages_received, 1);
                    if reliable {
                        self.delivery.took_one();
                    }
                    if self.config.echo {
                        // PROTOCOL.md §6: the echo service answers under its own numbers.
                        let _ = self.send_message(now, channel, &data);
                        self.pool.give(data);
                    } else {
                        let peer = self.peers.get(owner).map_or(PeerId::ZERO, |p| p.id);
                        self.events.push_back(Event::Message {
                            channel: handle,
                            peer,
                            message_number: number,
                            data,
                        });
                    }
                }
                Delivery::Skipped { first, last } => self.events.push_back(Event::Skipped {
                    channel: handle,
                    first,
                    last,
                }),
                Delivery::Progress {
                    number,
                    received,
                    total,
                } => {
                    // One pending progress event per message here too (PROTOCOL.md §7.5), as
                    // in the channel: a driver that drains events once per receive batch gets
                    // one per message, not one per fragment.
                    if let Some(Event::Progress {
                        channel: last_channel,
                        message_number: last_number,
                        received: last_received,
                        ..
                    }) = self.events.back_mut()
                    {
                        if *last_channel == handle && *last_number == number {
                            *last_received = received;
                            continue;
                        }
                    }
                    self.events.push_back(Event::Progress {
                        channel: handle,
                        message_number: number,
                        received,
                        total,
                    });
                }
                Delivery::Failed(reason) => {
                    self.account(channel);
                    self.close(channel, reason, false, true);
                    return false;
                }
            }
        }
    }

    /// Adds a channel's new counters to the endpoint's statistics.
    pub(super) fn account(&mut self, channel: Handle) {
        let Some(state) = self.channels.get_mut(channel) else {
            return;
        };
        let mode = mode_label(state.capabilities);
        let Some(data) = state.data.as_mut() else {
            return;
        };
        let now = data.reliability.stats();
        if now == data.reported {
            // The usual packet: nothing counted changed, so nothing to add.
            return;
        }
        let before = std::mem::replace(&mut data.reported, now);
        let deltas = [
            (
                "weft_retransmitted_bytes_total",
                now.retransmitted_bytes
                    .saturating_sub(before.retransmitted_bytes),
            ),
            (
                "weft_packets_lost_total",
                now.packets_lost.saturating_sub(before.packets_lost),
            ),
            (
                "weft_messages_given_up_total",
                now.messages_given_up
                    .saturating_sub(before.messages_given_up),
            ),
            (
                "weft_messages_skipped_total",
                now.skipped.saturating_sub(before.skipped),
            ),
            (
                "weft_probe_timeouts_total",
                now.probe_timeouts.saturating_sub(before.probe_timeouts),
            ),
            (
                "weft_reassembly_timeouts_total",
                now.reassembly_timeouts
                    .saturating_sub(before.reassembly_timeouts),
            ),
        ];
        for (name, delta) in deltas {
            if delta > 0 {
                // Loss and retransmission by channel mode: what each mode costs on a lossy path.
                let label = matches!(
                    name,
                    "weft_retransmitted_bytes_total" | "weft_packets_lost_total"
                )
                .then_some(("mode", mode));
                self.stats.add(name, label, delta);
            }
        }
        // Bad input inside an accepted packet: the message or fragment is dropped, the packet's
        // other messages are not.
        let dropped = [
            (
                "past_credit",
                now.past_credit.saturating_sub(before.past_credit),
            ),
            (
                "credit",
                now.credit_drops.saturating_sub(before.credit_drops),
            ),
            (
                "reassembly_budget",
                now.budget_drops.saturating_sub(before.budget_drops),
            ),
            (
                "fragment_ranges",
                now.range_drops.saturating_sub(before.range_drops),
            ),
            ("malformed", now.malformed.saturating_sub(before.malformed)),
        ];
        for (reason, delta) in dropped {
            if delta > 0 {
                self.stats
                    .add(MESSAGES_DROPPED, Some(("reason", reason)), delta);
            }
        }
        let evicted = now
            .reassembly_evictions
            .saturating_sub(before.reassembly_evictions);
        if evicted > 0 {
            self.stats
                .add("weft_reassembly_evictions_total", None, evicted);
        }
    }

    /// The channel's data timer fired: its connection runs the channel's reliability timers
    /// ([`Connection::channel_timeout`]); what they released is counted and delivered here.
    pub(super) fn data_timer(&mut self, now: Instant, channel: Handle) {
        let Some(state) = self.channels.get_mut(channel).filter(|s| s.data.is_some()) else {
            return;
        };
        let ran = self
            .peers
            .get_mut(state.peer)
            .is_some_and(|connection| connection.channel_timeout(now, &mut self.pool, state));
        if ran {
            self.take_tally(channel);
        }
        // What the timer released (a gap given up on) reaches the application now, not when
        // the driver next asks for packets.
        self.deliver(now, channel);
        self.touch(channel);
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
        let Ok(handle) = self.channels.resolve(channel.0) else {
            return;
        };
        if !self.ensure_data(now, handle) {
            return;
        }
        if let Some(state) = self.channels.get_mut(handle) {
            if let Some(data) = state.data.as_mut() {
                change(data);
            }
        }
        // A resumed reader gets what waited for it at once.
        self.deliver(now, handle);
        self.touch(handle);
        self.flush(now);
    }

    /// Messages and bytes a channel holds for the application (received, not yet taken).
    pub fn receive_buffered(&self, channel: ChannelHandle) -> Option<(u64, u64)> {
        let state = self.channels.get_by_code(channel.0).ok()?;
        Some(state.data.as_ref()?.reliability.buffered())
    }

    /// The credit this side advertised to the peer on a channel (max message, max bytes).
    pub fn advertised_window(&self, channel: ChannelHandle) -> Option<(u64, u64)> {
        let state = self.channels.get_by_code(channel.0).ok()?;
        Some(state.data.as_ref()?.reliability.advertised_window())
    }

    /// Bytes queued for sending on a channel.
    pub fn send_queued(&self, channel: ChannelHandle) -> Option<usize> {
        let state = self.channels.get_by_code(channel.0).ok()?;
        Some(state.data.as_ref()?.reliability.queued_bytes())
    }

    /// The reliability counters of a channel.
    pub fn channel_stats(&self, channel: ChannelHandle) -> Option<ChannelStats> {
        let state = self.channels.get_by_code(channel.0).ok()?;
        Some(state.data.as_ref()?.reliability.stats())
    }

    /// Congestion window, smoothed RTT and path MTU of the path to the peer of a channel.
    pub fn path_info(&self, channel: ChannelHandle) -> Option<(u64, Duration, u16)> {
        let state = self.channels.get_by_code(channel.0).ok()?;
        let path = self.peers.get(state.peer)?.path.as_ref()?;
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

/// A fresh node-wide reassembly budget.
pub(super) fn node_budget(node: usize, peer: usize) -> ReassemblyBudget {
    ReassemblyBudget::new(node, peer)
}
