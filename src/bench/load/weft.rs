//! Simulated weft peers: each its own [`Endpoint`] (so its own peer id and session), all
//! sharing one client socket. Replies are routed to the peer named in the packet's recipient
//! field.

use super::{Flows, LoadConfig, LoadError, Out};
use crate::channel::{ChannelHandle, Endpoint, EndpointConfig, Event};
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

struct SimPeer {
    endpoint: Endpoint,
    channel: Option<ChannelHandle>,
    tries: u8,
    opening: bool,
}

pub(super) struct WeftFlows {
    peers: Vec<SimPeer>,
    index: HashMap<PeerId, u32>,
    target: SocketAddr,
    target_peer: Option<PeerId>,
    capabilities: Capabilities,
    payload: Vec<u8>,
    next_open: usize,
    retry: Vec<usize>,
    opening: usize,
    opened: u64,
    failed: u64,
}

/// A simulated peer's endpoint holds one peer, one channel: every limit as small as that
/// allows, to keep the harness's memory per peer low.
fn client_endpoint_config() -> EndpointConfig {
    EndpointConfig {
        max_peers: 2,
        max_channels: 2,
        max_channels_per_peer: 2,
        max_queued_datagrams: 32,
        max_sessions: 2,
        max_pending_handshakes: 2,
        max_pending_xx: 1,
        max_pending_xx_per_prefix: 1,
        max_queued_pings: 1,
        max_early_bytes: 4096,
        reassembly_node_bytes: 64 * 1024,
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
        let mut peers = Vec::with_capacity(count);
        let mut index = HashMap::with_capacity(count);
        let endpoint_config = client_endpoint_config();
        for i in 0..count {
            let identity = Identity::generate(&mut rng);
            index.insert(identity.peer_id(), i as u32);
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(client as u64).to_le_bytes());
            seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            seed[16..].copy_from_slice(&rand::random::<[u8; 16]>());
            peers.push(SimPeer {
                endpoint: Endpoint::new(endpoint_config.clone(), identity, seed, now),
                channel: None,
                tries: 0,
                opening: false,
            });
        }
        Ok(WeftFlows {
            peers,
            index,
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

    /// Moves what peer `p` queued into the send batch and its events into `answers`.
    fn drain(&mut self, p: usize, out: &mut Out, answers: &mut Vec<(usize, u64)>) {
        let Some(peer) = self.peers.get_mut(p) else {
            return;
        };
        while let Some(event) = peer.endpoint.poll_event() {
            match event {
                Event::ChannelOpened { channel, .. } if peer.opening => {
                    peer.channel = Some(channel);
                    peer.opening = false;
                    self.opening -= 1;
                    self.opened += 1;
                }
                Event::OpenFailed { .. } if peer.opening => {
                    peer.opening = false;
                    self.opening -= 1;
                    if peer.tries < OPEN_TRIES {
                        self.retry.push(p);
                    } else {
                        self.failed += 1;
                    }
                }
                Event::Message { data, .. } => {
                    if let Some(stamp) = data.get(..8) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(stamp);
                        answers.push((p, u64::from_be_bytes(b)));
                    }
                    // The buffer came from the endpoint's pool: handing it back keeps the
                    // harness side allocation-free, like a real application's receive loop.
                    peer.endpoint.recycle(data);
                }
                _ => {}
            }
        }
        loop {
            let slot = out.slot();
            match peer.endpoint.poll_transmit(slot) {
                Some(t) => out.push(t.destination, t.len),
                None => break,
            }
        }
    }
}

impl Flows for WeftFlows {
    fn count(&self) -> usize {
        self.peers.len()
    }

    fn open(&mut self, now: Instant, out: &mut Out) -> Result<bool, LoadError> {
        let mut scratch = Vec::new();
        while self.opening < OPEN_WINDOW {
            let p = match self.retry.pop() {
                Some(p) => p,
                None if self.next_open < self.peers.len() => {
                    self.next_open += 1;
                    self.next_open - 1
                }
                None => break,
            };
            let peer = &mut self.peers[p];
            peer.tries += 1;
            peer.opening = true;
            self.opening += 1;
            peer.endpoint
                .open_channel(now, self.target, self.target_peer, None, self.capabilities)
                .map_err(LoadError::Open)?;
            self.drain(p, out, &mut scratch);
        }
        Ok(self.opened + self.failed == self.peers.len() as u64)
    }

    fn opened(&self) -> (u64, u64) {
        (self.opened, self.failed)
    }

    fn ready(&self, flow: usize) -> bool {
        self.peers.get(flow).is_some_and(|p| p.channel.is_some())
    }

    fn send(&mut self, flow: usize, now: Instant, stamp: u64, out: &mut Out) -> bool {
        let Some(peer) = self.peers.get_mut(flow) else {
            return false;
        };
        let Some(channel) = peer.channel else {
            return false;
        };
        self.payload[..8].copy_from_slice(&stamp.to_be_bytes());
        if peer.endpoint.send(now, channel, &self.payload).is_err() {
            return false;
        }
        loop {
            let slot = out.slot();
            match peer.endpoint.poll_transmit(slot) {
                Some(t) => out.push(t.destination, t.len),
                None => break,
            }
        }
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
        // PROTOCOL.md §3: the recipient peer id is bytes 17..33 of every packet.
        let Some(recipient) = datagram.get(17..33) else {
            return;
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(recipient);
        let Some(&p) = self.index.get(&PeerId(id)) else {
            return;
        };
        let p = p as usize;
        self.peers[p].endpoint.handle(now, from, datagram);
        self.drain(p, out, answers);
    }

    fn timers(&mut self, now: Instant, out: &mut Out, answers: &mut Vec<(usize, u64)>) {
        for p in 0..self.peers.len() {
            let endpoint = &mut self.peers[p].endpoint;
            if endpoint.poll_timeout().is_some_and(|t| t <= now) {
                endpoint.handle_timeout(now);
                self.drain(p, out, answers);
            }
        }
    }
}
