//! Simulated weft peers: ONE [`Endpoint`] per client thread holding its share of the peers,
//! each a connection under a local identity of its own ([`Endpoint::add_identity`]), as a real
//! client with many peers holds them. The node sees one peer id per simulated peer; replies
//! are routed to the right connection by the endpoint itself (by the header's recipient id),
//! not by the harness.

use super::{Flows, LoadConfig, LoadError, Out};
use crate::channel::{ChannelHandle, Endpoint, EndpointConfig, Event, LocalIdentity};
use crate::session::Identity;
use crate::wire::{Capabilities, PeerId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Channel opens one client keeps under way at once. The node holds at most 64 XX handshakes
/// per /24 (PROTOCOL.md §5), and each client has its own /24, so waves of this size neither
/// meet that limit nor overflow socket buffers with handshake bursts.
const OPEN_WINDOW: usize = 32;

/// How many times a peer tries to open its channel.
const OPEN_TRIES: u8 = 3;

/// One simulated peer: a local identity of the client's endpoint and its one channel.
struct SimPeer {
    local: LocalIdentity,
    channel: Option<ChannelHandle>,
    tries: u8,
    opening: bool,
}

pub(super) struct WeftFlows {
    endpoint: Endpoint,
    peers: Vec<SimPeer>,
    /// Channel → its peer, for the events the endpoint reports by channel.
    by_channel: HashMap<ChannelHandle, u32>,
    target: SocketAddr,
    /// The node's peer id: given, or learnt from the first peer's channel (the other
    /// identities open only to a named peer).
    target_peer: Option<PeerId>,
    capabilities: Capabilities,
    payload: Vec<u8>,
    next_open: usize,
    retry: Vec<usize>,
    opening: usize,
    opened: u64,
    failed: u64,
}

/// The client's endpoint holds `peers` identities, connections and channels, one each per
/// simulated peer, and every other limit as small as that allows.
fn client_endpoint_config(peers: usize) -> EndpointConfig {
    let peers = peers.max(1);
    EndpointConfig {
        max_identities: peers,
        max_peers: peers,
        max_channels: peers,
        max_channels_per_peer: 2,
        max_sessions: peers,
        max_queued_datagrams: 4 * OPEN_WINDOW,
        max_pending_handshakes: 2 * OPEN_WINDOW,
        max_pending_xx: 1,
        max_pending_xx_per_prefix: 1,
        max_queued_pings: 1,
        max_early_bytes: 4096,
        reassembly_node_bytes: 64 * 1024 * 1024,
        reassembly_peer_bytes: 64 * 1024,
        // Held idle for a while at 100,000 peers: keep the node from resetting the channels.
        keep_alive: true,
        keep_alive_interval: Duration::from_secs(10),
        ..EndpointConfig::default()
    }
}

impl WeftFlows {
    pub(super) fn new(
        config: &LoadConfig,
        count: usize,
        client: usize,
    ) -> Result<WeftFlows, LoadError> {
        let mut rng = rand::rngs::OsRng;
        let now = Instant::now();
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(client as u64).to_le_bytes());
        seed[16..].copy_from_slice(&rand::random::<[u8; 16]>());
        let first = Identity::generate(&mut rng);
        let mut endpoint = Endpoint::new(client_endpoint_config(count), first, seed, now);
        let mut peers = Vec::with_capacity(count);
        for i in 0..count {
            let local = if i == 0 {
                LocalIdentity::FIRST
            } else {
                endpoint
                    .add_identity(&Identity::generate(&mut rng))
                    .map_err(LoadError::Open)?
            };
            peers.push(SimPeer {
                local,
                channel: None,
                tries: 0,
                opening: false,
            });
        }
        Ok(WeftFlows {
            endpoint,
            peers,
            by_channel: HashMap::with_capacity(count),
            target: config.target,
            target_peer: config.target_peer,
            capabilities: config.capabilities,
            payload: vec![0u8; config.size.max(8)],
            next_open: 0,
            retry: Vec::new(),
            opening: 0,
            opened: 0,
            failed: 0,
        })
    }

    /// Moves what the endpoint queued into the send batch and its events into `answers`.
    fn drain(&mut self, out: &mut Out, answers: &mut Vec<(usize, u64)>) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::ChannelOpened { channel, peer, .. } => {
                    let Some(&p) = self.by_channel.get(&channel) else {
                        continue;
                    };
                    let Some(sim) = self.peers.get_mut(p as usize) else {
                        continue;
                    };
                    if sim.opening {
                        sim.channel = Some(channel);
                        sim.opening = false;
                        self.opening -= 1;
                        self.opened += 1;
                        if sim.local == LocalIdentity::FIRST {
                            self.target_peer = self.target_peer.or(Some(peer));
                        }
                    }
                }
                Event::OpenFailed { channel, .. } => {
                    let Some(p) = self.by_channel.remove(&channel) else {
                        continue;
                    };
                    let Some(sim) = self.peers.get_mut(p as usize) else {
                        continue;
                    };
                    if sim.opening {
                        sim.opening = false;
                        self.opening -= 1;
                        if sim.tries < OPEN_TRIES {
                            self.retry.push(p as usize);
                        } else {
                            self.failed += 1;
                        }
                    }
                }
                Event::Message { channel, data, .. } => {
                    if let (Some(&p), Some(stamp)) = (self.by_channel.get(&channel), data.get(..8))
                    {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(stamp);
                        answers.push((p as usize, u64::from_be_bytes(b)));
                    }
                    // The buffer came from the endpoint's pool: handing it back keeps the
                    // harness side allocation-free, like a real application's receive loop.
                    self.endpoint.recycle(data);
                }
                _ => {}
            }
        }
        self.transmit(out);
    }

    fn transmit(&mut self, out: &mut Out) {
        loop {
            let slot = out.slot();
            match self.endpoint.poll_transmit(slot) {
                Some(t) => out.push(t.destination, t.len),
                None => break,
            }
        }
    }

    /// Opens peer `p`'s channel: the first identity may open to a bare address; the others
    /// need the node's id, known or learnt from the first.
    fn open_peer(&mut self, now: Instant, p: usize) -> Result<(), LoadError> {
        let local = self.peers[p].local;
        let channel = match self.target_peer {
            Some(node) => self.endpoint.open_channel_as(
                now,
                local,
                self.target,
                node,
                None,
                self.capabilities,
            ),
            None => self
                .endpoint
                .open_channel(now, self.target, None, None, self.capabilities),
        }
        .map_err(LoadError::Open)?;
        self.by_channel.insert(channel, p as u32);
        let peer = &mut self.peers[p];
        peer.tries += 1;
        peer.opening = true;
        self.opening += 1;
        Ok(())
    }
}

impl Flows for WeftFlows {
    fn count(&self) -> usize {
        self.peers.len()
    }

    fn open(&mut self, now: Instant, out: &mut Out) -> Result<bool, LoadError> {
        let mut scratch = Vec::new();
        while self.opening < OPEN_WINDOW {
            if self.target_peer.is_none() && self.next_open > 0 {
                // The node's id comes with the first peer's channel: the others wait for it,
                // and give up with it.
                if self.opening == 0 && self.retry.is_empty() {
                    self.failed += (self.peers.len() - self.next_open) as u64;
                    self.next_open = self.peers.len();
                }
                break;
            }
            let p = match self.retry.pop() {
                Some(p) => p,
                None if self.next_open < self.peers.len() => {
                    self.next_open += 1;
                    self.next_open - 1
                }
                None => break,
            };
            self.open_peer(now, p)?;
        }
        self.drain(out, &mut scratch);
        Ok(self.opened + self.failed == self.peers.len() as u64)
    }

    fn opened(&self) -> (u64, u64) {
        (self.opened, self.failed)
    }

    fn ready(&self, flow: usize) -> bool {
        self.peers.get(flow).is_some_and(|p| p.channel.is_some())
    }

    fn send(&mut self, flow: usize, now: Instant, stamp: u64, out: &mut Out) -> bool {
        let Some(channel) = self.peers.get(flow).and_then(|p| p.channel) else {
            return false;
        };
        self.payload[..8].copy_from_slice(&stamp.to_be_bytes());
        if self.endpoint.send(now, channel, &self.payload).is_err() {
            return false;
        }
        self.transmit(out);
        true
    }

    fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
        out: &mut Out,
        answers: &mut Vec<(usize, u64)>,
    ) {
        // The endpoint routes the datagram to the identity its header names.
        self.endpoint.handle(now, from, datagram);
        self.drain(out, answers);
    }

    fn timers(&mut self, now: Instant, out: &mut Out, answers: &mut Vec<(usize, u64)>) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
            self.drain(out, answers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_its_share_of_the_peers_as_identities_of_one_endpoint() {
        let config = LoadConfig {
            target: "127.0.0.1:9".parse().unwrap(),
            target_peer: Some(PeerId([9; 16])),
            peers: 5,
            clients: 1,
            size: 64,
            rate: 0,
            duration: Duration::from_secs(1),
            capabilities: Capabilities::default(),
            window: 1,
        };
        let flows = WeftFlows::new(&config, 5, 0).unwrap();
        assert_eq!(flows.endpoint.identity_count(), 5);
        let ids: std::collections::BTreeSet<PeerId> = flows
            .peers
            .iter()
            .filter_map(|p| flows.endpoint.identity_peer_id(p.local))
            .collect();
        // Five peers, five peer ids for the node to see.
        assert_eq!(ids.len(), 5);
    }
}
