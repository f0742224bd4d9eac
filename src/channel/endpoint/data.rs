//! The per-channel data path of the endpoint (PROTOCOL.md §7): every open channel runs a
//! [`ChannelReliability`] in its mode, a peer's channels share one [`PathState`] (congestion
//! window, pacer, RTT, path MTU) and take turns packet by packet, so no channel blocks another.
//!
//! Packets are built eagerly, as far as the congestion window and the pacer allow, at the end
//! of every `handle`, `handle_timeout` and `send`; the reliability timers (loss detection,
//! PTO, ACK delay, hold timeout, reassembly, pacing) and the keep-alive share one endpoint timer
//! per channel.

use super::{ChannelHandle, Endpoint, SendError};
use crate::channel::connection::{ChannelAt, Closing, Delivered, Sent, Walked};
use crate::channel::reliability::{self, ChannelStats, ReassemblyBudget};
use crate::channel::state::ChannelData;
use crate::handle::Handle;
use crate::wire::{Header, Message, PeerId};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

impl Endpoint {
    /// Makes the channel's data state on first use ([`Connection::ensure_data`]); lists its
    /// peer to flush when it was made.
    pub(super) fn ensure_data(&mut self, now: Instant, channel: ChannelAt) -> bool {
        let made = self.with_connection(channel.peer, |connection, shared| {
            let had_data = connection.has_data(channel.lane);
            let ready = connection.ensure_data(now, channel.lane, shared);
            (ready, ready && !had_data)
        });
        let Some((ready, made)) = made else {
            return false;
        };
        if made {
            self.mark_dirty(channel.peer);
        }
        ready
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

    /// The next packet number of a channel, as the wire carries it
    /// ([`Connection::take_sequence`]).
    pub(super) fn take_sequence(&mut self, now: Instant, channel: ChannelAt) -> Option<u32> {
        let had_data = self.channel(channel)?.data.is_some();
        let sequence = self.with_connection(channel.peer, |connection, shared| {
            connection.take_sequence(now, channel.lane, shared)
        })?;
        if !had_data {
            self.mark_dirty(channel.peer);
        }
        sequence
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
        self.stats.add_at(self.hot.receive.messages_sent, 1);
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

    /// Has the connection walk one received packet's `messages` on `channel`
    /// ([`Connection::walk`]): the path for a channel the router just established, whose
    /// opening CHANNEL_COOKIE was taken off the messages (so the packet elicits).
    pub(super) fn walk_on<'d>(
        &mut self,
        now: Instant,
        (from, header): (SocketAddr, &Header),
        channel: ChannelAt,
        messages: impl Iterator<Item = Message<'d>>,
    ) {
        let walked = self.with_connection(channel.peer, |connection, shared| {
            connection.walk(now, (from, header), channel.lane, messages, true, shared)
        });
        if let Some(walked) = walked {
            self.after_walk(channel, header.sender, walked);
        }
    }

    /// What a connection's walk over a packet left the router: a channel to list as waiting
    /// for the workers' room, the rekey policy's look at the key that sealed its answers, a
    /// channel to close, and the node's reassembly debt to settle.
    pub(super) fn after_walk(&mut self, channel: ChannelAt, sender: PeerId, walked: Walked) {
        if let Some(entry) = walked.wait {
            self.wait_for_room(entry);
        }
        if walked.sent == Sent::Owed {
            // What the channel owes leaves in its next packet, built when the driver asks.
            self.mark_dirty(channel.peer);
        }
        self.after_send(sender, walked.sent);
        if let Some(Closing { reason, by_peer }) = walked.close {
            // Failed: the peer is told; closed by the peer: it is not told again.
            self.close(channel, reason, by_peer, !by_peer);
        }
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

    /// Hands what the channel delivered to the application, unless it is paused.
    pub(super) fn deliver(&mut self, now: Instant, channel: ChannelAt) {
        self.deliver_some(now, channel, usize::MAX);
    }

    /// Hands at most `limit` messages the channel delivered to the application
    /// ([`Connection::deliver`]); returns true when it stopped at `limit` with more to give. A
    /// reliable channel that met the workers' room full is listed to wait for room, and a
    /// failed one is counted and closed.
    pub(super) fn deliver_some(&mut self, now: Instant, channel: ChannelAt, limit: usize) -> bool {
        let delivered = self.with_connection(channel.peer, |connection, shared| {
            connection.deliver_lent(now, channel.lane, limit, shared)
        });
        let Some(delivered) = delivered else {
            return false;
        };
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

/// A fresh node-wide reassembly budget.
pub(super) fn node_budget(node: usize, peer: usize) -> ReassemblyBudget {
    ReassemblyBudget::new(node, peer)
}
