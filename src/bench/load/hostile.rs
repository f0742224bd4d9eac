//! Hostile traffic for soak runs: a paced mix of what an off-path attacker sends a node for free
//! — spoofed CHANNEL_NEW (PROTOCOL.md §6), datagrams of random bytes, and XX handshake INITs
//! without a cookie (§5) — each from one of many loopback source addresses.

use super::flood::{Random, channel_new, sources};
use crate::channel::{Endpoint, EndpointConfig};
use crate::session::Identity;
use crate::wire::PeerId;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Distinct handshake INITs made up front (each needs a fresh identity, which costs a key
/// generation) and then sent round-robin from random sources.
const INIT_POOL: usize = 32;

/// Largest garbage datagram: a little over a common MTU.
const MAX_GARBAGE: usize = 1400;

/// What to send.
#[derive(Clone, Debug)]
pub struct HostileConfig {
    /// The node.
    pub target: SocketAddr,
    /// Its peer id, used as the CHANNEL_NEW recipient; all zero when unknown.
    pub target_peer: Option<PeerId>,
    /// Datagrams per second over all kinds.
    pub rate: u64,
    /// Source sockets, each on its own random 127.x.y.z address towards an IPv4 loopback target.
    pub sources: usize,
}

/// Datagrams sent and answered so far, by kind; updated while the traffic runs.
#[derive(Debug, Default)]
pub struct HostileCounters {
    /// Spoofed CHANNEL_NEW sent.
    pub channel_new: AtomicU64,
    /// Random-byte datagrams sent.
    pub garbage: AtomicU64,
    /// Cookie-less handshake INITs sent.
    pub init: AtomicU64,
    /// Datagrams the node sent back to the hostile sources.
    pub answers: AtomicU64,
}

impl HostileCounters {
    /// Every datagram sent, of all kinds.
    pub fn sent(&self) -> u64 {
        self.channel_new.load(Ordering::Relaxed)
            + self.garbage.load(Ordering::Relaxed)
            + self.init.load(Ordering::Relaxed)
    }
}

/// Handshake INITs from fresh identities, as a peer's endpoint sends them to a bare address.
fn init_pool(target: SocketAddr) -> Vec<Vec<u8>> {
    let now = Instant::now();
    let mut buf = vec![0u8; 2048];
    (0..INIT_POOL)
        .filter_map(|i| {
            let identity = Identity::generate(&mut rand::rngs::OsRng);
            let mut endpoint =
                Endpoint::new(EndpointConfig::default(), identity, rand::random(), now);
            endpoint
                .ping(now, target, None, (i as u64).to_be_bytes())
                .ok()?;
            let sent = endpoint.poll_transmit(&mut buf)?;
            Some(buf[..sent.len].to_vec())
        })
        .collect()
}

/// Sends the hostile mix to `config.target` at `config.rate` until `stop` is set, counting into
/// `counters`.
pub fn run_hostile(
    config: &HostileConfig,
    stop: &AtomicBool,
    counters: &Arc<HostileCounters>,
) -> io::Result<()> {
    let mut random = Random(rand::random());
    let sockets = sources(config.target, config.sources, &mut random)?;
    let inits = init_pool(config.target);
    let recipient = config.target_peer.unwrap_or(PeerId::ZERO);
    let mut buf = vec![0u8; 2048];
    let mut answers = vec![0u8; 2048];
    let started = Instant::now();
    let mut sent = 0u64;
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // Paced: as many as the rate allows by now, in bursts of at most a millisecond's worth.
        let due = (started.elapsed().as_secs_f64() * config.rate as f64) as u64;
        let burst = due.saturating_sub(sent).min(config.rate / 1000 + 1);
        for _ in 0..burst {
            turn = turn.wrapping_add(1);
            let socket = &sockets[(random.next() as usize) % sockets.len()];
            let (len, counter) = match turn % 3 {
                0 => (
                    channel_new(&mut buf, recipient, &mut random),
                    &counters.channel_new,
                ),
                1 => {
                    let len = 1 + (random.next() as usize) % MAX_GARBAGE;
                    for chunk in buf[..len].chunks_mut(8) {
                        let bytes = random.next().to_le_bytes();
                        chunk.copy_from_slice(&bytes[..chunk.len()]);
                    }
                    (len, &counters.garbage)
                }
                _ => match inits.get(turn / 3 % inits.len().max(1)) {
                    Some(init) => {
                        buf[..init.len()].copy_from_slice(init);
                        (init.len(), &counters.init)
                    }
                    None => (0, &counters.init),
                },
            };
            // A full socket buffer loses the datagram, as the network would.
            if len > 0 && socket.send_to(&buf[..len], config.target).is_ok() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            sent += 1;
        }
        drain(&sockets, &mut answers, counters);
        if burst == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// Reads and counts whatever the node answered, so the sources' buffers never fill.
fn drain(sockets: &[UdpSocket], buf: &mut [u8], counters: &HostileCounters) {
    for socket in sockets {
        while socket.recv_from(buf).is_ok() {
            counters.answers.fetch_add(1, Ordering::Relaxed);
        }
    }
}
