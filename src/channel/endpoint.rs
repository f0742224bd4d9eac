//! The sans-IO endpoint: one node's protocol state, fed datagrams and polled for output.
//!
//! A driver calls, in a loop: [`Endpoint::handle`] for each datagram received, then
//! [`Endpoint::handle_timeout`] when the deadline from [`Endpoint::poll_timeout`] has passed,
//! then [`Endpoint::poll_transmit`] until it returns `None` (sending each datagram), and
//! [`Endpoint::poll_event`] until it returns `None`. No socket, clock or thread lives here
//! (STYLE.md 1): `now` is always an argument and randomness comes from a seed the caller owns.

use crate::channel::stats::Stats;
use crate::session::Identity;
use crate::wire::PeerId;
use std::net::SocketAddr;
use std::time::Instant;

/// Settings of an endpoint.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Accept kind-0 (plaintext) peers (PROTOCOL.md §5).
    pub allow_plaintext: bool,
    /// Send every DATA message back on its channel (PROTOCOL.md §6, echo service).
    pub echo: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            allow_plaintext: true,
            echo: false,
        }
    }
}

/// A datagram the driver must send: its bytes are the first `len` bytes of the buffer passed to
/// [`Endpoint::poll_transmit`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the caller's buffer it fills.
    pub len: usize,
}

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A PONG answered one of our PINGs.
    Pong {
        /// The peer that answered.
        peer: PeerId,
        /// Where the answer came from.
        from: SocketAddr,
        /// The token of the PING it answers.
        token: [u8; 8],
    },
}

/// One node's protocol state.
pub struct Endpoint {
    config: EndpointConfig,
    identity: Identity,
    stats: Stats,
}

impl Endpoint {
    /// Creates an endpoint; `seed` keys its cookie secrets and random choices.
    pub fn new(config: EndpointConfig, identity: Identity, _seed: [u8; 32], _now: Instant) -> Self {
        Endpoint {
            config,
            identity,
            stats: Stats::new(),
        }
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// The endpoint's settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Feeds one received datagram.
    pub fn handle(&mut self, _now: Instant, _from: SocketAddr, datagram: &[u8]) {
        self.stats.add("weft_packets_received_total", None, 1);
        self.stats
            .add("weft_received_bytes_total", None, datagram.len() as u64);
    }

    /// Queues a PING to `to`; its PONG arrives as [`Event::Pong`] with the same token. `peer` is
    /// the target's peer id when known, else the packet names the all-zero recipient (§3).
    pub fn ping(&mut self, _now: Instant, _to: SocketAddr, _peer: Option<PeerId>, _token: [u8; 8]) {
    }

    /// Runs timers whose deadline has passed.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// Writes the next datagram to send into `buf` (at least [`crate::wire::DEFAULT_MTU`] bytes).
    #[must_use]
    pub fn poll_transmit(&mut self, _buf: &mut [u8]) -> Option<Transmit> {
        None
    }

    /// The earliest deadline at which [`Endpoint::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }

    /// Counters for the metrics exporter.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}
