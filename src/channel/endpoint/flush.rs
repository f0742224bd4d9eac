//! Building data packets (PROTOCOL.md §7.3) when the driver asks for one, straight into the
//! buffer it lends (the GSO batch slot): the dirty peers' channels take turns, one packet each,
//! as far as the shared congestion window and pacer allow; sealed in place under the session
//! when there is one. Each flushed channel's timer is rearmed here.

use super::*;

/// Most packets one peer sends in a row before the next dirty peer's turn: the longest GSO
/// train the kernel takes.
const TRAIN: usize = 64;

impl Endpoint {
    /// Keeps `now` for the next packets. Data packets are not built here: the driver's
    /// [`poll_transmit`](Endpoint::poll_transmit) builds and seals each one straight into the
    /// buffer it lends (the GSO batch slot), so the bulk path copies no datagram
    /// (`next_data_packet`). The peers that may have packets stay in the dirty list until then.
    pub(super) fn flush(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    /// Builds the next data packet of the dirty peers into `buf` and returns where it goes and
    /// how long it is; None when no peer has one to send now. A peer keeps the turn for up to
    /// [`TRAIN`] packets, so its packets leave back to back (one GSO train), then goes to the
    /// back of the line, so a peer with a wide window cannot hold the others up; each dirty
    /// peer is visited once per round, and a call runs a few rounds at most (delivery may send
    /// more: the echo service), so one call is bounded.
    pub(super) fn next_data_packet(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let now = self.last_now;
        let mut rounds: u8 = 0;
        loop {
            let Some(&peer) = self.flushing.get(self.flush_at) else {
                self.flushing.clear();
                self.flush_at = 0;
                if self.dirty.is_empty() || rounds == 4 {
                    return None;
                }
                rounds = rounds.saturating_add(1);
                // Swapped with a kept list, so flushing allocates nothing once both have grown.
                std::mem::swap(&mut self.dirty, &mut self.flushing);
                for index in 0..self.flushing.len() {
                    let peer = self.flushing[index];
                    if let Some(state) = self.peers.get_mut(peer) {
                        state.dirty = false;
                    }
                }
                continue;
            };
            if let Some(sent) = self.flush_peer(now, peer, buf) {
                self.flush_run = self.flush_run.saturating_add(1);
                if self.flush_run >= TRAIN {
                    self.flush_run = 0;
                    self.flush_at = self.flush_at.saturating_add(1);
                    self.mark_dirty(peer);
                }
                return Some(sent);
            }
            self.flush_run = 0;
            self.flush_at = self.flush_at.saturating_add(1);
        }
    }

    /// Lets the peer's channels take a turn and writes at most one packet into `buf`; returns
    /// its destination and length, or None when no channel may send now.
    pub(super) fn flush_peer(
        &mut self,
        now: Instant,
        peer: Handle,
        buf: &mut [u8],
    ) -> Option<(SocketAddr, usize)> {
        // The channels to visit: those touched since the last flush, or all of them when the
        // window opened (`Connection::channels_to_visit`).
        let mut visit = std::mem::take(&mut self.visiting);
        let Some(connection) = self.peers.get_mut(peer) else {
            self.visiting = visit;
            return None;
        };
        connection.channels_to_visit(&mut visit);
        let at = |lane| ChannelAt { peer, lane };
        for &lane in &visit {
            self.deliver(now, at(lane));
        }
        // A channel that still wants to send after this call is listed again, and its peer
        // keeps the turn for the next call (`Connection::flush_done`).
        let mut ctx = self.connection_context();
        if let Some(connection) = self.peers.get(peer) {
            // The connection's own identity heads its packets (`identities.rs`).
            (ctx.local_id, ctx.peer_mask) = self.wire_mask(&connection.id);
        }
        let sent = self.peers.get_mut(peer).and_then(|connection| {
            let lent = (&mut self.stats, &self.hot.receive.tally);
            connection.poll_transmit(now, &ctx, &visit, buf, lent)
        });
        if let Some((sealed, id)) = sent
            .and_then(|written| written.sealed)
            .zip(self.peers.get(peer).map(|c| c.id))
        {
            self.rekey_if_due(id, sealed.count, sealed.created);
        }
        for &lane in &visit {
            self.keep_alive(now, at(lane));
        }
        if let Some(connection) = self.peers.get_mut(peer)
            && connection.flush_done(now, &ctx, &visit, &mut self.pool, &mut self.stats)
        {
            self.deadlines.set(peer.0, connection.poll_timeout());
        }
        self.visiting = visit;
        sent.map(|written| (written.to, written.len))
    }

    /// The peer's `index`-th channel in turn order.
    pub(super) fn channel_at(&self, peer: Handle, index: usize) -> Option<ChannelAt> {
        let lane = *self.peers.get(peer)?.order.get(index)?;
        Some(ChannelAt { peer, lane })
    }

    /// PROTOCOL.md §7.7: a channel that asked for it sends a PING after 15 s without sending,
    /// which keeps NAT bindings and the peer's reset timer alive. The PING is owed on the
    /// channel and written into its next packet (`owed.rs`); the peer is listed for it.
    pub(super) fn keep_alive(&mut self, now: Instant, channel: ChannelAt) {
        let ctx = self.connection_context();
        let due = self
            .peers
            .get(channel.peer)
            .is_some_and(|c| c.keep_alive_due(now, &ctx, channel.lane));
        if !due {
            return;
        }
        let sent = self.with_connection(channel.peer, |connection, shared| {
            let sent = connection.owe(now, channel.lane, shared, |owed| owed.owe_keep_alive());
            (connection.id, sent)
        });
        if let Some((peer, sent)) = sent {
            if sent == Sent::Owed {
                self.mark_dirty(channel.peer);
            }
            self.after_send(peer, sent);
        }
    }
}
