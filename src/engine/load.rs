//! The load harness behind `weft bench`: simulated peers that open channels to a node and send
//! it data, and the raw-UDP baseline (a `recvmmsg`/`sendmmsg` echo with the same shards, batch
//! size and buffers) that weft's figures are compared with.
//!
//! Peers share a few client sockets; each has its own [`Endpoint`] and so its own peer id.
//! Replies are routed to the peer named in the packet's recipient field.

use super::sys::{self, BATCH, RecvBatch, SendBatch};
use crate::channel::{ChannelHandle, Endpoint, EndpointConfig, Event, OpenError};
use crate::session::Identity;
use crate::wire::{Capabilities, PeerId};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages a peer may have unanswered before it waits.
const WINDOW: u32 = 8;

/// A peer with no answer for this long forgets what it had in flight (lost, on UDP).
const STALL: Duration = Duration::from_millis(200);

/// How long channel opens may take before the data phase starts anyway.
const OPEN_DEADLINE: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The node (or baseline echo) to load.
    pub target: SocketAddr,
    /// Its peer id, when known.
    pub target_peer: Option<PeerId>,
    /// Simulated peers.
    pub peers: usize,
    /// Client sockets (and threads) the peers share.
    pub clients: usize,
    /// Bytes of application data per message (weft) or datagram (baseline).
    pub size: usize,
    /// Messages per second over all peers; 0 means as fast as the window allows.
    pub rate: u64,
    /// How long the data phase lasts.
    pub duration: Duration,
    /// The channel mode of the opened channels.
    pub capabilities: Capabilities,
}

/// Counters a load run updates while it runs, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages sent.
    pub sent: AtomicU64,
    /// Answers received.
    pub received: AtomicU64,
    /// Channels opened.
    pub opened: AtomicU64,
}

/// What a load run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Messages (or datagrams) sent in the data phase.
    pub sent: u64,
    /// Answers received in the data phase.
    pub received: u64,
    /// Length of the data phase.
    pub elapsed: Duration,
    /// Channels opened.
    pub opened: u64,
    /// Time from the first open to the last channel opened.
    pub open_time: Duration,
    /// Round-trip times in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// CPU time the process used during the data phase.
    pub cpu: Duration,
}

impl LoadReport {
    /// Answers per second.
    pub fn pps(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile of the round-trip times, in microseconds.
    pub fn latency_us(&self, q: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i.min(self.latencies_us.len() - 1)]
    }

    fn merge(&mut self, other: LoadReport) {
        self.sent += other.sent;
        self.received += other.received;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.opened += other.opened;
        self.open_time = self.open_time.max(other.open_time);
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A socket could not be opened.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The endpoint refused to open a channel in the chosen mode.
    #[error("cannot open a channel: {0}")]
    Open(OpenError),
}

/// CPU time used by this process so far.
pub fn process_cpu_time() -> Duration {
    sys::process_cpu_time()
}

/// Resident memory of this process in bytes (from /proc/self/statm; 0 where unavailable).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

struct Peer {
    endpoint: Endpoint,
    channel: Option<ChannelHandle>,
    in_flight: u32,
    last_answer: Instant,
}

/// Runs simulated weft peers against `config.target`: opens one channel per peer, then sends
/// messages for `config.duration`, each stamped with its send time for the echo to return.
pub fn run_weft_load(
    config: &LoadConfig,
    progress: &Arc<Progress>,
) -> Result<LoadReport, LoadError> {
    let clients = config.clients.clamp(1, config.peers.max(1));
    let start = Instant::now();
    let cpu_start = process_cpu_time();
    let threads: Vec<JoinHandle<Result<LoadReport, LoadError>>> = (0..clients)
        .map(|c| {
            let config = config.clone();
            let progress = Arc::clone(progress);
            let peers = config.peers / clients + usize::from(c < config.peers % clients);
            std::thread::spawn(move || weft_client(&config, peers, c as u64, &progress))
        })
        .collect();
    let mut report = LoadReport::default();
    let mut first_error = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(r)) => report.merge(r),
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(_) => {
                first_error = first_error.or(Some(LoadError::Io(io::Error::other(
                    "a client thread panicked",
                ))))
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let _ = start;
    report.cpu = process_cpu_time().saturating_sub(cpu_start);
    report.latencies_us.sort_unstable();
    Ok(report)
}

fn client_endpoint_config() -> EndpointConfig {
    EndpointConfig {
        max_peers: 4,
        max_channels: 4,
        max_channels_per_peer: 2,
        max_queued_datagrams: 64,
        ..EndpointConfig::default()
    }
}

fn weft_client(
    config: &LoadConfig,
    count: usize,
    client: u64,
    progress: &Progress,
) -> Result<LoadReport, LoadError> {
    let socket = UdpSocket::bind(if config.target.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    sys::grow_buffers(fd);
    let mut rng = rand::rngs::OsRng;
    let now = Instant::now();
    let mut peers = Vec::with_capacity(count);
    let mut index = HashMap::with_capacity(count);
    for i in 0..count {
        let identity = Identity::generate(&mut rng);
        index.insert(identity.peer_id(), i);
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&client.to_le_bytes());
        seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        peers.push(Peer {
            endpoint: Endpoint::new(client_endpoint_config(), identity, seed, now),
            channel: None,
            in_flight: 0,
            last_answer: now,
        });
    }
    let mut recv = RecvBatch::new();
    let mut send = SendBatch::new(false);
    let mut report = LoadReport::default();
    // What this thread already added to the shared progress counters.
    let mut reported = (0u64, 0u64);

    let open_start = Instant::now();
    for peer in &mut peers {
        peer.endpoint
            .open_channel(
                open_start,
                config.target,
                config.target_peer,
                None,
                config.capabilities,
            )
            .map_err(LoadError::Open)?;
    }
    let mut opened = 0;
    let mut payload = vec![0u8; config.size.max(8)];
    let mut data_start = None::<Instant>;
    let mut next_timers = Instant::now();
    let per_client_rate = config.rate as f64 / config.clients.max(1) as f64;
    let mut allowance = 0.0f64;
    let mut last_tick = Instant::now();
    loop {
        let now = Instant::now();
        if data_start.is_none()
            && (opened == count || now.duration_since(open_start) > OPEN_DEADLINE)
        {
            report.opened = opened as u64;
            report.open_time = now.duration_since(open_start);
            data_start = Some(now);
        }
        if let Some(started) = data_start {
            if now.duration_since(started) >= config.duration {
                report.elapsed = now.duration_since(started);
                break;
            }
            if per_client_rate > 0.0 {
                allowance += now.duration_since(last_tick).as_secs_f64() * per_client_rate;
                allowance = allowance.min(per_client_rate.max(1.0));
            }
            last_tick = now;
            let stamp = now.duration_since(started).as_nanos() as u64;
            payload[..8].copy_from_slice(&stamp.to_be_bytes());
            for peer in &mut peers {
                let Some(channel) = peer.channel else {
                    continue;
                };
                if peer.in_flight > 0 && now.duration_since(peer.last_answer) > STALL {
                    peer.in_flight = 0;
                    peer.last_answer = now;
                }
                while peer.in_flight < WINDOW {
                    if per_client_rate > 0.0 {
                        if allowance < 1.0 {
                            break;
                        }
                        allowance -= 1.0;
                    }
                    if peer.endpoint.send(now, channel, &payload).is_err() {
                        break;
                    }
                    if peer.in_flight == 0 {
                        peer.last_answer = now;
                    }
                    peer.in_flight += 1;
                    report.sent += 1;
                }
            }
            progress
                .sent
                .fetch_add(report.sent - reported.0, Ordering::Relaxed);
            reported.0 = report.sent;
        }
        // Send what every endpoint queued, in batches.
        for peer in &mut peers {
            loop {
                let Some(slot) = send.slot() else {
                    flush(&mut send, fd);
                    continue;
                };
                match peer.endpoint.poll_transmit(slot) {
                    Some(t) => send.push(t.destination, t.len),
                    None => break,
                }
            }
        }
        flush(&mut send, fd);
        // Receive and route by recipient peer id (bytes 17..33, PROTOCOL.md §3).
        let mut idle = true;
        while let Ok(n) = recv.recv(fd) {
            idle = false;
            let now = Instant::now();
            for i in 0..n {
                let (received, bytes) = recv.message(i);
                let Some(from) = received.from else { continue };
                let Some(recipient) = bytes.get(17..33) else {
                    continue;
                };
                let mut id = [0u8; 16];
                id.copy_from_slice(recipient);
                if let Some(&p) = index.get(&PeerId(id)) {
                    peers[p].endpoint.handle(now, from, bytes);
                }
            }
            if n < BATCH {
                break;
            }
        }
        let now = Instant::now();
        let timers_due = now >= next_timers;
        if timers_due {
            next_timers = now + Duration::from_millis(5);
        }
        for peer in &mut peers {
            if timers_due && peer.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                peer.endpoint.handle_timeout(now);
            }
            while let Some(event) = peer.endpoint.poll_event() {
                match event {
                    Event::ChannelOpened { channel, .. } => {
                        peer.channel = Some(channel);
                        opened += 1;
                        progress.opened.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Message { data, .. } => {
                        let Some(started) = data_start else { continue };
                        let Some(stamp) = data.get(..8) else { continue };
                        let mut b = [0u8; 8];
                        b.copy_from_slice(stamp);
                        let sent_at = u64::from_be_bytes(b);
                        let rtt =
                            (now.duration_since(started).as_nanos() as u64).saturating_sub(sent_at);
                        report
                            .latencies_us
                            .push((rtt / 1000).min(u64::from(u32::MAX)) as u32);
                        report.received += 1;
                        peer.in_flight = peer.in_flight.saturating_sub(1);
                        peer.last_answer = now;
                    }
                    _ => {}
                }
            }
        }
        progress
            .received
            .fetch_add(report.received - reported.1, Ordering::Relaxed);
        reported.1 = report.received;
        if idle {
            if data_start.is_none() {
                std::thread::sleep(Duration::from_micros(200));
            } else {
                // On a machine with few cores a spinning client starves the node's threads.
                std::thread::yield_now();
            }
        }
    }
    Ok(report)
}

fn flush(send: &mut SendBatch, fd: i32) {
    while !send.is_empty() {
        if send.flush(fd).blocked {
            std::thread::yield_now();
        }
    }
}

/// A raw-UDP echo: `shards` threads, each a SO_REUSEPORT socket on one port that sends back
/// every datagram with `recvmmsg`/`sendmmsg`, the same batches and buffers the engine uses.
pub struct RawEcho {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RawEcho {
    /// Binds and starts the echo threads.
    pub fn start(listen: SocketAddr, shards: usize) -> io::Result<RawEcho> {
        let first = sys::bind_reuseport(listen)?;
        let local_addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..shards.max(1) {
            sockets.push(sys::bind_reuseport(local_addr)?);
        }
        let gso = sys::gso_supported(&sockets[0]);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = sockets
            .into_iter()
            .map(|socket| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || raw_echo(&socket, gso, &stop))
            })
            .collect();
        Ok(RawEcho {
            local_addr,
            stop,
            threads,
        })
    }

    /// The echo's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn raw_echo(socket: &UdpSocket, gso: bool, stop: &AtomicBool) {
    let fd = socket.as_raw_fd();
    let mut recv = RecvBatch::new();
    let mut send = SendBatch::new(gso);
    let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
    while !stop.load(Ordering::Acquire) {
        let n = match recv.recv(fd) {
            Ok(n) => n,
            Err(_) => {
                // The same busy-poll then sleep as a shard, without a poll to wake it.
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
        };
        for i in 0..n {
            let (received, bytes) = recv.message(i);
            let Some(from) = received.from else { continue };
            let Some(slot) = send.slot() else { break };
            let len = bytes.len().min(slot.len());
            slot[..len].copy_from_slice(&bytes[..len]);
            send.push(from, len);
        }
        flush(&mut send, fd);
    }
}

/// Runs the raw baseline client: `peers` flows of `size`-byte datagrams, each stamped, echoed
/// by a [`RawEcho`], with the same window and stall rules as the weft peers.
pub fn run_raw_load(config: &LoadConfig, progress: &Arc<Progress>) -> io::Result<LoadReport> {
    let clients = config.clients.clamp(1, config.peers.max(1));
    let cpu_start = process_cpu_time();
    let results = Arc::new(Mutex::new(LoadReport::default()));
    let threads: Vec<JoinHandle<io::Result<()>>> = (0..clients)
        .map(|c| {
            let config = config.clone();
            let progress = Arc::clone(progress);
            let results = Arc::clone(&results);
            let peers = config.peers / clients + usize::from(c < config.peers % clients);
            std::thread::spawn(move || {
                let report = raw_client(&config, peers, &progress)?;
                if let Ok(mut r) = results.lock() {
                    r.merge(report);
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| io::Error::other("a client thread panicked"))??;
    }
    let mut report = results.lock().map(|r| r.clone()).unwrap_or_default();
    report.cpu = process_cpu_time().saturating_sub(cpu_start);
    report.latencies_us.sort_unstable();
    Ok(report)
}

fn raw_client(config: &LoadConfig, count: usize, progress: &Progress) -> io::Result<LoadReport> {
    let socket = UdpSocket::bind(if config.target.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    sys::grow_buffers(fd);
    let mut recv = RecvBatch::new();
    let mut send = SendBatch::new(false);
    let mut report = LoadReport::default();
    // What this thread already added to the shared progress counters.
    let mut reported = (0u64, 0u64);
    let started = Instant::now();
    let mut in_flight = vec![0u32; count];
    let mut last_answer = vec![started; count];
    let size = config.size.max(12);
    let per_client_rate = config.rate as f64 / config.clients.max(1) as f64;
    let mut allowance = 0.0f64;
    let mut last_tick = started;
    loop {
        let now = Instant::now();
        if now.duration_since(started) >= config.duration {
            report.elapsed = now.duration_since(started);
            break;
        }
        if per_client_rate > 0.0 {
            allowance += now.duration_since(last_tick).as_secs_f64() * per_client_rate;
            allowance = allowance.min(per_client_rate.max(1.0));
        }
        last_tick = now;
        let stamp = now.duration_since(started).as_nanos() as u64;
        for p in 0..count {
            if in_flight[p] > 0 && now.duration_since(last_answer[p]) > STALL {
                in_flight[p] = 0;
                last_answer[p] = now;
            }
            while in_flight[p] < WINDOW {
                if per_client_rate > 0.0 {
                    if allowance < 1.0 {
                        break;
                    }
                    allowance -= 1.0;
                }
                let Some(slot) = send.slot() else {
                    flush(&mut send, fd);
                    continue;
                };
                slot[..8].copy_from_slice(&stamp.to_be_bytes());
                slot[8..12].copy_from_slice(&(p as u32).to_be_bytes());
                send.push(config.target, size);
                if in_flight[p] == 0 {
                    last_answer[p] = now;
                }
                in_flight[p] += 1;
                report.sent += 1;
            }
        }
        flush(&mut send, fd);
        progress
            .sent
            .fetch_add(report.sent - reported.0, Ordering::Relaxed);
        reported.0 = report.sent;
        while let Ok(n) = recv.recv(fd) {
            let now = Instant::now();
            let at = now.duration_since(started).as_nanos() as u64;
            for i in 0..n {
                let (received, bytes) = recv.message(i);
                let segment = received.segment.unwrap_or(bytes.len()).max(1);
                for datagram in bytes.chunks(segment) {
                    let (Some(stamp), Some(peer)) = (datagram.get(..8), datagram.get(8..12)) else {
                        continue;
                    };
                    let mut s = [0u8; 8];
                    s.copy_from_slice(stamp);
                    let mut q = [0u8; 4];
                    q.copy_from_slice(peer);
                    let p = u32::from_be_bytes(q) as usize;
                    if p < count {
                        in_flight[p] = in_flight[p].saturating_sub(1);
                        last_answer[p] = now;
                    }
                    let rtt = at.saturating_sub(u64::from_be_bytes(s));
                    report
                        .latencies_us
                        .push((rtt / 1000).min(u64::from(u32::MAX)) as u32);
                    report.received += 1;
                }
            }
            if n < BATCH {
                break;
            }
        }
        progress
            .received
            .fetch_add(report.received - reported.1, Ordering::Relaxed);
        reported.1 = report.received;
    }
    Ok(report)
}
