//! A view of the endpoint's peers for an operator (`weft status`, issue 13): one
//! [`PeerSnapshot`] per peer holding a session or channels. Built on request, never on the
//! packet path, so it may allocate; the per-peer traffic it shows is counted here too, beside
//! the node's totals, in fixed counters on the peer's entry.

use super::Endpoint;
use crate::channel::state::Traffic;
use crate::handle::Handle;
use crate::wire::{Capabilities, Header, PeerId};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Open channels by reliability mode (PROTOCOL.md §7).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    /// Neither resent nor ordered.
    pub udp: u32,
    /// Resent, delivered as they come.
    pub reliable: u32,
    /// Ordered, late messages dropped.
    pub ordered: u32,
    /// Resent and ordered.
    pub tcp: u32,
}

/// What the endpoint knows of one peer, at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// The peer's id (all zero for a kind-0 peer not yet named).
    pub peer: PeerId,
    /// Where its packets come from.
    pub address: SocketAddr,
    /// The kind of the session we send under (1 IK, 2 XX, 3 IKpsk2); `None` without one.
    pub session_kind: Option<u8>,
    /// Time since the node first held a session with the peer: rekeys and replacing handshakes
    /// by the same key keep it; it starts again only once the session was evicted or expired.
    pub session_age: Option<Duration>,
    /// Time since the handshake of the session we send under completed: a rekey starts it
    /// again.
    pub since_handshake: Option<Duration>,
    /// Time since a packet from the peer last authenticated (or its channel state heard it).
    pub since_heard: Option<Duration>,
    /// Datagrams this node sent to the peer: sealed ones over the session's age, plus kind-0
    /// ones while it has channel state.
    pub packets_sent: u64,
    /// Bytes of those datagrams (UDP payload, headers and tags included).
    pub bytes_sent: u64,
    /// Datagrams from the peer that authenticated under its sessions over their age, plus kind-0
    /// ones from its address while it has channel state.
    pub packets_received: u64,
    /// Bytes of those datagrams.
    pub bytes_received: u64,
    /// Channels by mode.
    pub channels: ChannelCounts,
    /// Smoothed round-trip time of the peer's path, once measured (§7.3).
    pub rtt: Option<Duration>,
    /// Congestion window of the peer's path, in bytes.
    pub congestion_window: Option<u64>,
    /// Bytes in flight on the peer's path.
    pub bytes_in_flight: Option<u64>,
    /// Loss events that cut the path's window.
    pub congestion_events: Option<u64>,
}

impl Endpoint {
    /// Appends a snapshot of every peer holding a session or channels to `out`, sessions first
    /// in table order; `out` is cleared first. Address, session kind and RTT are
    /// [`Endpoint::peer_info`]'s, what a worker learns; the rest is the operator's.
    pub fn peer_snapshots(&self, now: Instant, out: &mut Vec<PeerSnapshot>) {
        out.clear();
        for (handle, peer) in self.peers.iter() {
            let Some(session) = peer.session.as_ref() else {
                continue;
            };
            let mut snapshot = self.snapshot_of(session.peer, session.address);
            let current = session.slot.current_ref();
            snapshot.session_age = Some(now.saturating_duration_since(session.established));
            snapshot.since_handshake =
                current.map(|s| now.saturating_duration_since(s.created_at()));
            snapshot.since_heard = Some(now.saturating_duration_since(session.last_used));
            snapshot.add_traffic(&session.traffic);
            if peer.lanes.iter().next().is_some() {
                self.fill_channels(now, handle, &mut snapshot);
            }
            out.push(snapshot);
        }
        // Peers with channels but no session: kind 0 (plaintext) peers.
        for (handle, peer) in self.peers.iter() {
            if peer.session.is_some() {
                continue;
            }
            let mut snapshot = self.snapshot_of(peer.id, peer.address);
            self.fill_channels(now, handle, &mut snapshot);
            out.push(snapshot);
        }
    }

    /// A snapshot with what [`Endpoint::peer_info`] says of `peer` (`address` where it knows
    /// nothing, as for a kind-0 peer not yet named) and nothing else yet.
    fn snapshot_of(&self, peer: PeerId, address: SocketAddr) -> PeerSnapshot {
        let info = self.peer_info(peer);
        PeerSnapshot {
            peer,
            address: info.map_or(address, |info| info.address),
            session_kind: info.and_then(|info| info.session_kind),
            session_age: None,
            since_handshake: None,
            since_heard: None,
            packets_sent: 0,
            bytes_sent: 0,
            packets_received: 0,
            bytes_received: 0,
            channels: ChannelCounts::default(),
            rtt: info.and_then(|info| info.rtt),
            congestion_window: None,
            bytes_in_flight: None,
            congestion_events: None,
        }
    }

    fn fill_channels(&self, now: Instant, handle: Handle, out: &mut PeerSnapshot) {
        let Some(peer) = self.peers.get(handle) else {
            return;
        };
        let heard = now.saturating_duration_since(peer.last_heard);
        out.since_heard = Some(out.since_heard.map_or(heard, |d| d.min(heard)));
        out.add_traffic(&peer.traffic);
        for &lane in peer.channels.values() {
            let Some(channel) = peer.lanes.get(lane) else {
                continue;
            };
            let resend = channel.capabilities.contains(Capabilities::RESEND);
            let ordered = channel.capabilities.contains(Capabilities::ORDERED);
            let count = match (resend, ordered) {
                (false, false) => &mut out.channels.udp,
                (true, false) => &mut out.channels.reliable,
                (false, true) => &mut out.channels.ordered,
                (true, true) => &mut out.channels.tcp,
            };
            *count = count.saturating_add(1);
        }
        if let Some(path) = &peer.path {
            out.congestion_window = Some(path.congestion_window());
            out.bytes_in_flight = Some(path.bytes_in_flight());
            out.congestion_events = Some(path.congestion_events());
        }
    }
}

impl PeerSnapshot {
    fn add_traffic(&mut self, traffic: &Traffic) {
        self.packets_sent = self.packets_sent.saturating_add(traffic.packets_sent);
        self.bytes_sent = self.bytes_sent.saturating_add(traffic.bytes_sent);
        self.packets_received = self
            .packets_received
            .saturating_add(traffic.packets_received);
        self.bytes_received = self.bytes_received.saturating_add(traffic.bytes_received);
    }
}

impl Endpoint {
    /// Counts a datagram leaving for the driver on its recipient's entry: a sealed one on the
    /// peer's sessions, a plaintext one on a kind-0 peer's channel state. Handshake packets
    /// (plaintext to a peer with a session, or before it has one) count on neither, as on the
    /// receiving side. The recipient is usually the sender just routed, so this is a comparison
    /// of ids, not a lookup.
    pub(super) fn count_sent(&mut self, packet: &[u8]) {
        let Some((recipient, sealed)) = Header::peek_recipient(packet) else {
            return;
        };
        if sealed {
            if let Some(entry) = self.session_of_mut(&recipient) {
                entry.traffic.sent(packet.len());
            }
        } else if self.config.allow_plaintext
            && let Some(peer) = self
                .ids
                .peer(&recipient)
                .copied()
                .and_then(|handle| self.peers.get_mut(handle))
            && peer.session.is_none()
        {
            peer.traffic.sent(packet.len());
        }
    }

    /// Counts a kind-0 datagram handled from `from` on the sender's channel state, when the
    /// sender has one at that address (one made by this very datagram included).
    pub(super) fn count_plaintext_received(
        &mut self,
        from: SocketAddr,
        sender: PeerId,
        len: usize,
    ) {
        if let Some(peer) = self
            .ids
            .peer(&sender)
            .copied()
            .and_then(|handle| self.peers.get_mut(handle))
            && peer.address == from
        {
            peer.traffic.received(len);
        }
    }
}
