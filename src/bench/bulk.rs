//! The bulk-transfer benchmark behind `weft bench --bulk`: one TCP-mode channel (RESEND |
//! ORDERED, PROTOCOL.md §7) over one encrypted session (§5) between two single-shard
//! processes, and the raw-UDP GSO/GRO blast it is compared with.
//!
//! The sending side is one [`Endpoint`] on one socket, driven by [`run_bulk_sender`]: it keeps
//! the channel's send queue full of large messages (fragmented by the endpoint into packets of
//! at most 1452 bytes, §7.5–§7.6) and sends what the endpoint writes in GSO trains. The
//! receiving side, [`BulkSink`], is a one-shard [`Engine`] whose worker checks every delivered
//! byte against the stream pattern ([`fill_pattern`]), so the benchmark also proves that the
//! stream arrived intact and in order.

use super::load::{LoadError, process_cpu_time};
use crate::channel::reliability::ReliabilityConfig;
use crate::channel::{ChannelHandle, Endpoint, EndpointConfig, Event, SendError};
use crate::engine::sys::{self, BATCH, RecvBatch, SendBatch};
use crate::engine::{Engine, EngineConfig, ShardStats, ShutdownHandle};
use crate::session::Identity;
use crate::wire::{Capabilities, PeerId};
use mio::net::UdpSocket as MioSocket;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes of stream per application message: large enough that per-message costs (a delivery,
/// an allocation, a queue operation) vanish beside the ~45 packets it fragments into, and small
/// enough that the receive window (64 messages) holds several of them.
pub const MESSAGE_BYTES: usize = 64 * 1024;

/// The largest UDP payload either side sends: what the QUIC stack it is compared with uses
/// (PROTOCOL.md §7.6: probed up from 1200 to this).
pub const PACKET_BYTES: usize = 1452;

/// Messages the sink's worker queue holds. The engine's queue does not follow the channel's
/// credit (PROTOCOL.md §12 asks for it), so it is sized far beyond the receive window: the
/// worker only compares bytes and keeps up with the shard.
const SINK_QUEUE: usize = 1 << 16;

/// How long the sender keeps polling after its last piece of work before it sleeps.
const BUSY_POLL: Duration = Duration::from_micros(50);

const SOCKET: Token = Token(0);

/// The capabilities of the benchmark's channel: TCP mode (PROTOCOL.md §7).
pub fn tcp_mode() -> Capabilities {
    Capabilities::RESEND.union(Capabilities::ORDERED)
}

/// Nanoseconds since the Unix epoch on the wall clock, the one clock both processes share.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The endpoint settings of both sides: the defaults, with a send queue that holds several
/// messages so the sender never waits on the application between two acknowledgements.
pub fn bulk_endpoint_config() -> EndpointConfig {
    EndpointConfig {
        reliability: ReliabilityConfig {
            max_mtu: PACKET_BYTES as u16,
            send_queue_bytes: 16 * MESSAGE_BYTES,
            ..ReliabilityConfig::default()
        },
        ..EndpointConfig::default()
    }
}

/// Writes the stream's bytes from `offset` into `buf`: the stream is the little-endian u64
/// sequence 0, 1, 2, …, so a lost, repeated or misplaced byte changes what a reader sees.
/// `offset` must be a multiple of 8 (every message starts on a word).
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    debug_assert_eq!(offset % 8, 0);
    let first = offset / 8;
    // Whole words as fixed-size stores; a per-chunk `copy_from_slice` of a variable length
    // was a `memcpy` call per 8 bytes and the sender's largest cost.
    let mut words = buf.chunks_exact_mut(8);
    let mut next = first;
    for chunk in words.by_ref() {
        if let Ok(word) = <&mut [u8; 8]>::try_from(chunk) {
            *word = next.to_le_bytes();
        }
        next += 1;
    }
    let tail = words.into_remainder();
    let len = tail.len();
    tail.copy_from_slice(&next.to_le_bytes()[..len]);
}

/// Appends the stream's `len` bytes from `offset` to `buf` (the bytes of [`fill_pattern`]), so
/// a sender writes a message straight into its queued buffer without zero-filling it first.
/// `offset` must be a multiple of 8.
pub fn extend_pattern(offset: u64, len: usize, buf: &mut Vec<u8>) {
    // Whole words into a small stack block (fixed-size stores, as `fill_pattern`), then one
    // append per block: appending word by word checked the capacity per 8 bytes and cost the
    // sender ~30 % of its CPU.
    const BLOCK: usize = 4096;
    let mut block = [0u8; BLOCK];
    buf.reserve(len);
    let mut offset = offset;
    let mut left = len;
    while left > 0 {
        let n = left.min(BLOCK);
        fill_pattern(offset, &mut block[..n]);
        buf.extend_from_slice(&block[..n]);
        // `BLOCK` is a multiple of 8, so every block but the last keeps `offset` on a word.
        offset += n as u64;
        left -= n;
    }
}

/// Checks a stream against [`fill_pattern`], message by message, in order.
#[derive(Clone, Debug, Default)]
pub struct PatternCheck {
    offset: u64,
    messages: u64,
    first_bad: Option<u64>,
}

impl PatternCheck {
    /// A check at the start of the stream.
    pub fn new() -> PatternCheck {
        PatternCheck::default()
    }

    /// Takes the next message, numbered `number` by the channel; false once any byte so far was
    /// not the pattern's, or a message number was skipped or repeated.
    pub fn take(&mut self, number: u64, data: &[u8]) -> bool {
        if self.first_bad.is_none() {
            if number != self.messages || !self.offset.is_multiple_of(8) {
                self.first_bad = Some(self.offset);
            } else if let Some(at) = first_mismatch(self.offset, data) {
                self.first_bad = Some(self.offset + at as u64);
            }
        }
        self.offset += data.len() as u64;
        self.messages += 1;
        self.first_bad.is_none()
    }

    /// Bytes taken so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Messages taken so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The stream offset of the first byte (or message) that broke the pattern.
    pub fn first_bad(&self) -> Option<u64> {
        self.first_bad
    }
}

/// Words the check compares per block before it looks at the verdict: a block's comparison is
/// branch-free, so the compiler runs it in vector registers (a word at a time, with a branch per
/// word, it was a sizeable share of the sink's CPU per packet, which the gate counts).
const CHECK_BLOCK: usize = 64;

fn first_mismatch(offset: u64, data: &[u8]) -> Option<usize> {
    let first = offset / 8;
    let whole = data.len() - data.len() % 8;
    let (words, tail) = data.split_at(whole);
    for (b, block) in words.chunks(CHECK_BLOCK * 8).enumerate() {
        let base = first + (b * CHECK_BLOCK) as u64;
        let differs = block
            .chunks_exact(8)
            .enumerate()
            .fold(0u64, |acc, (i, chunk)| {
                acc | (word_at(chunk) ^ (base + i as u64))
            });
        if differs != 0 {
            // Found in this block: the word that differs, by the slow walk.
            let at = block
                .chunks_exact(8)
                .enumerate()
                .position(|(i, chunk)| word_at(chunk) != base + i as u64)?;
            return Some(b * CHECK_BLOCK * 8 + at * 8);
        }
    }
    let expected = (first + (whole / 8) as u64).to_le_bytes();
    (tail != &expected[..tail.len()]).then_some(whole)
}

/// The little-endian word in an 8-byte chunk.
fn word_at(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// What [`run_bulk_sender`] does.
#[derive(Clone, Debug)]
pub struct BulkConfig {
    /// The sink's address.
    pub target: SocketAddr,
    /// The sink's peer id.
    pub target_peer: PeerId,
    /// Stream bytes to send.
    pub bytes: u64,
    /// Bytes per message.
    pub message: usize,
    /// When to give up, counted from the start.
    pub timeout: Duration,
}

/// What the sender measured.
#[derive(Clone, Debug, Default)]
pub struct BulkReport {
    /// Stream bytes handed to the endpoint.
    pub bytes_queued: u64,
    /// Wall-clock time ([`unix_nanos`]) of the first message sent, after the channel opened.
    pub first_send_unix_ns: u64,
    /// Time from the first open to the channel's opening (handshake and channel setup).
    pub open_time: Duration,
    /// Time from the first message to the sender's stop.
    pub elapsed: Duration,
    /// Datagrams sent in the data phase.
    pub datagrams: u64,
    /// `sendmmsg` calls in the data phase.
    pub send_calls: u64,
    /// Datagrams received (acknowledgements) in the data phase.
    pub datagrams_received: u64,
    /// Packets the channel declared lost (each one's data is resent, TCP mode).
    pub packets_lost: u64,
    /// Message bytes sent again.
    pub retransmitted_bytes: u64,
    /// Probe timeouts that fired.
    pub probe_timeouts: u64,
    /// CPU time of this process in the data phase.
    pub cpu: Duration,
    /// Congestion window, smoothed RTT and path MTU at the end.
    pub path: (u64, Duration, u16),
    /// Every queued byte was acknowledged.
    pub all_acknowledged: bool,
    /// `done` was set (the sink reported the whole stream).
    pub confirmed: bool,
    /// The largest datagram sent: whether path MTU discovery (§7.6) reached 1452 bytes.
    pub largest_datagram: usize,
    /// The handshake kind of the session (PROTOCOL.md §5: 1 IK, 2 XX, 3 IKpsk2).
    pub session_kind: u8,
}

/// Opens a TCP-mode channel to `config.target` and sends `config.bytes` of the stream on it
/// until `done` is set (the caller's sink reported the last byte) or the timeout passes.
pub fn run_bulk_sender(config: &BulkConfig, done: &AtomicBool) -> Result<BulkReport, LoadError> {
    let socket = sending_socket(config.target)?;
    let fd = socket.as_raw_fd();
    let gso = sys::gso_supported(&socket);
    let _ = sys::enable_gro(&socket);
    let mut poll = Poll::new()?;
    let mut mio_socket = MioSocket::from_std(socket.try_clone()?);
    poll.registry().register(
        &mut mio_socket,
        SOCKET,
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let mut events = Events::with_capacity(8);

    let start = Instant::now();
    let deadline = start + config.timeout;
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let mut endpoint = Endpoint::new(bulk_endpoint_config(), identity, rand::random(), start);
    crate::engine::tell_wall_clock(&mut endpoint);
    endpoint
        .open_channel(
            start,
            config.target,
            Some(config.target_peer),
            None,
            tcp_mode(),
        )
        .map_err(LoadError::Open)?;

    let mut recv = RecvBatch::new();
    let mut send = SendBatch::new(gso);
    let mut report = BulkReport::default();
    let mut channel = None::<ChannelHandle>;
    let message_len = config.message.max(8) & !7;
    let mut data_start = None::<(Instant, Duration)>;
    let mut more_to_read = true;
    let mut writable = true;
    let mut last_work = start;
    let mut closed = false;
    let queue_limit = bulk_endpoint_config().reliability.send_queue_bytes;
    loop {
        let now = Instant::now();
        if done.load(Ordering::Acquire) {
            report.confirmed = true;
            break;
        }
        if now >= deadline {
            break;
        }
        let mut worked = false;
        // Acknowledgements first: they open the window the sends below use.
        for _ in 0..4 {
            if !more_to_read {
                break;
            }
            match recv.recv(fd) {
                Ok(n) => {
                    let now = Instant::now();
                    for i in 0..n {
                        let (received, bytes) = recv.message_mut(i);
                        let Some(from) = received.from else { continue };
                        let segment = received.segment.unwrap_or(bytes.len()).max(1);
                        for datagram in bytes.chunks_mut(segment) {
                            report.datagrams_received += 1;
                            endpoint.handle(now, from, datagram);
                        }
                    }
                    worked |= n > 0;
                    more_to_read = n == BATCH;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => more_to_read = false,
            }
        }
        let now = Instant::now();
        if endpoint.poll_timeout().is_some_and(|t| t <= now) {
            endpoint.handle_timeout(now);
        }
        while let Some(event) = endpoint.poll_event() {
            match event {
                Event::ChannelOpened { channel: c, .. } => {
                    channel = Some(c);
                    report.open_time = now.duration_since(start);
                }
                Event::SessionEstablished { kind, .. } => report.session_kind = kind,
                // The sink closes the channel when it stops, which it does once the stream is
                // complete; whether it was is the sink's report to give, not the sender's.
                Event::ChannelClosed { .. } => closed = true,
                Event::OpenFailed { reason, .. } => {
                    return Err(LoadError::Io(io::Error::other(format!(
                        "the channel did not open: {reason:?}"
                    ))));
                }
                _ => {}
            }
        }
        if closed {
            break;
        }
        if let Some(c) = channel {
            // The channel's state is gone once the sink closes it: keep the latest figures.
            if let Some(stats) = endpoint.channel_stats(c) {
                report.packets_lost = stats.packets_lost;
                report.retransmitted_bytes = stats.retransmitted_bytes;
                report.probe_timeouts = stats.probe_timeouts;
            }
            report.path = endpoint.path_info(c).unwrap_or(report.path);
            if data_start.is_none() {
                data_start = Some((now, process_cpu_time()));
                report.first_send_unix_ns = unix_nanos();
            }
            // Keep the send queue full: the endpoint takes a message whenever its queue has
            // room and sends from it as congestion control and the peer's credit allow.
            while report.bytes_queued < config.bytes {
                let queued = endpoint.send_queued(c).unwrap_or(0);
                let left = config.bytes - report.bytes_queued;
                let len = (message_len as u64).min(left) as usize;
                if queued + len > queue_limit {
                    break;
                }
                // The pattern goes straight into the queued buffer: no staging copy.
                let offset = report.bytes_queued;
                match endpoint.send_with(now, c, len, |buf| extend_pattern(offset, len, buf)) {
                    Ok(_) => {
                        report.bytes_queued += len as u64;
                        worked = true;
                    }
                    Err(SendError::QueueFull) => break,
                    Err(e) => return Err(LoadError::Io(io::Error::other(e.to_string()))),
                }
            }
        }
        if writable {
            loop {
                if !send.is_empty() {
                    let flushed = send.flush(fd);
                    report.datagrams += flushed.datagrams as u64;
                    report.send_calls += flushed.calls as u64;
                    worked |= flushed.datagrams > 0;
                    if flushed.blocked {
                        writable = false;
                        break;
                    }
                }
                let mut any = false;
                while let Some(slot) = send.slot() {
                    match endpoint.poll_transmit(slot) {
                        Some(t) => {
                            report.largest_datagram = report.largest_datagram.max(t.len);
                            send.push(t.destination, t.len);
                            any = true;
                        }
                        None => break,
                    }
                }
                if !any && send.is_empty() {
                    break;
                }
            }
        }
        if worked {
            last_work = now;
            continue;
        }
        // Nothing to do: sleep until the socket or the endpoint's next timer wants us.
        let mut wait = deadline.saturating_duration_since(now);
        if let Some(t) = endpoint.poll_timeout() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        // `done` is set by another thread without a wake-up: look at it every millisecond.
        wait = wait.min(Duration::from_millis(1));
        if now.duration_since(last_work) < BUSY_POLL {
            wait = Duration::ZERO;
        }
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LoadError::Io(e)),
        }
        for event in &events {
            more_to_read |= event.is_readable();
            writable |= event.is_writable();
        }
    }
    if let Some((started, cpu)) = data_start {
        report.elapsed = started.elapsed();
        report.cpu = process_cpu_time().saturating_sub(cpu);
    }
    if let Some(c) = channel {
        report.all_acknowledged =
            report.bytes_queued == config.bytes && endpoint.send_queued(c) == Some(0);
    }
    Ok(report)
}

/// What the sink saw.
#[derive(Clone, Debug, Default)]
pub struct SinkReport {
    /// Stream bytes delivered.
    pub bytes: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Stream offset of the first byte that was not the pattern's, if any.
    pub first_bad: Option<u64>,
    /// Wall-clock time ([`unix_nanos`]) of the first delivery.
    pub first_unix_ns: u64,
    /// Wall-clock time of the delivery that completed the stream (or the last one).
    pub last_unix_ns: u64,
    /// CPU time of the sink's process from its first delivery to its last.
    pub cpu: Duration,
    /// Datagrams the shard received.
    pub datagrams: u64,
    /// Messages the shard could not hand to the worker (a full queue).
    pub worker_drops: u64,
    /// The whole stream arrived before the timeout.
    pub complete: bool,
    /// The node's non-zero drop, error and loss counters, as `name{label} = value`.
    pub notes: Vec<String>,
}

/// The receiving process's node: a one-shard [`Engine`] whose worker checks the stream.
pub struct BulkSink {
    local_addr: SocketAddr,
    peer: PeerId,
    stop: ShutdownHandle,
    engine: JoinHandle<io::Result<Vec<ShardStats>>>,
    deliveries: crate::service::Deliveries,
}

impl BulkSink {
    /// Starts the node on `listen` with one shard (pinned when `pin`).
    pub fn start(listen: SocketAddr, pin: bool) -> io::Result<BulkSink> {
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        let config = EngineConfig {
            shards: 1,
            pin,
            ..EngineConfig::new(listen, bulk_endpoint_config())
        };
        let (engine, link) =
            Engine::start_with_worker(&config, &identity, rand::random(), SINK_QUEUE)?;
        // The sink never answers, and a live replier would hold the shard's exit for its grace.
        let crate::service::WorkerLink {
            deliveries,
            replier,
        } = link;
        drop(replier);
        let local_addr = engine.local_addr();
        let stop = engine.shutdown_handle()?;
        let engine = std::thread::spawn(move || engine.run(|_| {}));
        Ok(BulkSink {
            local_addr,
            peer: identity.peer_id(),
            stop,
            engine,
            deliveries,
        })
    }

    /// The node's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// Checks deliveries until `bytes` have arrived or `timeout` passes, then stops the node.
    pub fn wait(self, bytes: u64, timeout: Duration) -> SinkReport {
        let deadline = Instant::now() + timeout;
        let mut check = PatternCheck::new();
        let mut report = SinkReport::default();
        let mut cpu_start = Duration::ZERO;
        while check.bytes() < bytes {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(mut batch) = self.deliveries.recv_timeout(left) else {
                break;
            };
            if check.messages() == 0 {
                report.first_unix_ns = unix_nanos();
                cpu_start = process_cpu_time();
            }
            for input in batch.drain(..) {
                if let crate::service::Input::Message(delivery) = input {
                    check.take(delivery.message_number, &delivery.data);
                }
            }
            report.last_unix_ns = unix_nanos();
            self.deliveries.recycle(batch);
        }
        report.cpu = process_cpu_time().saturating_sub(cpu_start);
        report.complete = check.bytes() >= bytes;
        report.bytes = check.bytes();
        report.messages = check.messages();
        report.first_bad = check.first_bad();
        self.stop.shutdown();
        drop(self.deliveries);
        if let Ok(Ok(shards)) = self.engine.join() {
            for shard in &shards {
                report.datagrams += shard
                    .engine
                    .get("weft_shard_datagrams_received_total", None);
                report.worker_drops += shard.engine.get("weft_shard_worker_drops_total", None);
            }
            let merged = crate::engine::merged_endpoint_stats(&shards);
            for entry in merged.iter() {
                let counted = ["drop", "error", "lost", "probe", "overflow"]
                    .iter()
                    .any(|word| entry.name.contains(word));
                if counted && entry.value > 0 {
                    report.notes.push(format!(
                        "{}{} = {}",
                        entry.name,
                        entry
                            .label
                            .map_or(String::new(), |(k, v)| format!("{{{k}={v}}}")),
                        entry.value
                    ));
                }
            }
        }
        report
    }
}

/// What one side of the raw-UDP baseline measured.
#[derive(Clone, Debug, Default)]
pub struct RawReport {
    /// Payload bytes sent or received.
    pub bytes: u64,
    /// Datagrams sent or received.
    pub datagrams: u64,
    /// `sendmmsg` or `recvmmsg` calls.
    pub calls: u64,
    /// Wall-clock time ([`unix_nanos`]) of the first datagram.
    pub first_unix_ns: u64,
    /// Wall-clock time of the last datagram.
    pub last_unix_ns: u64,
    /// CPU time of the process while it ran.
    pub cpu: Duration,
}

/// The raw baseline's receiver: one socket with GRO, counting what `recvmmsg` brings.
pub struct RawSink {
    socket: UdpSocket,
}

impl RawSink {
    /// Binds the socket and turns on GRO.
    pub fn bind(listen: SocketAddr) -> io::Result<RawSink> {
        let socket = UdpSocket::bind(listen)?;
        socket.set_nonblocking(true)?;
        sys::grow_buffers(socket.as_raw_fd());
        let _ = sys::enable_gro(&socket);
        Ok(RawSink { socket })
    }

    /// The socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Counts datagrams until `stop` is set.
    pub fn run(&self, stop: &AtomicBool) -> RawReport {
        let fd = self.socket.as_raw_fd();
        let mut recv = RecvBatch::new();
        let mut report = RawReport::default();
        let cpu_start = process_cpu_time();
        while !stop.load(Ordering::Acquire) {
            let n = match recv.recv(fd) {
                Ok(n) => n,
                Err(_) => {
                    // The same wait as the load harness's raw echo: no poll, a short sleep.
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
            };
            report.calls += 1;
            for i in 0..n {
                let (received, bytes) = recv.message(i);
                let segment = received.segment.unwrap_or(bytes.len()).max(1);
                report.datagrams += bytes.len().div_ceil(segment) as u64;
                report.bytes += bytes.len() as u64;
            }
            let at = unix_nanos();
            if report.first_unix_ns == 0 {
                report.first_unix_ns = at;
            }
            report.last_unix_ns = at;
        }
        report.cpu = process_cpu_time().saturating_sub(cpu_start);
        report
    }
}

/// A non-blocking loopback socket of `target`'s family with large kernel buffers: what both
/// senders (weft's and the raw baseline's) send from.
fn sending_socket(target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(if target.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })?;
    socket.set_nonblocking(true)?;
    sys::grow_buffers(socket.as_raw_fd());
    Ok(socket)
}

/// Sends `PACKET_BYTES`-byte datagrams to `target` in GSO trains for `duration`, as fast as
/// the socket takes them: the raw-UDP baseline's sender.
pub fn raw_blast(target: SocketAddr, duration: Duration) -> io::Result<RawReport> {
    let socket = sending_socket(target)?;
    let fd = socket.as_raw_fd();
    let mut send = SendBatch::new(sys::gso_supported(&socket));
    let mut report = RawReport::default();
    let cpu_start = process_cpu_time();
    let start = Instant::now();
    report.first_unix_ns = unix_nanos();
    let payload = [0xA5u8; PACKET_BYTES];
    while start.elapsed() < duration {
        while let Some(slot) = send.slot() {
            slot[..PACKET_BYTES].copy_from_slice(&payload[..]);
            send.push(target, PACKET_BYTES);
        }
        let flushed = send.flush(fd);
        report.calls += flushed.calls as u64;
        report.datagrams += flushed.datagrams as u64;
        if flushed.blocked {
            std::thread::yield_now();
        }
    }
    // What a full socket buffer left behind is not sent.
    report.bytes = report.datagrams * PACKET_BYTES as u64;
    report.last_unix_ns = unix_nanos();
    report.cpu = process_cpu_time().saturating_sub(cpu_start);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        fill_pattern(offset, &mut v);
        v
    }

    #[test]
    fn pattern_is_the_word_sequence() {
        let v = stream(16, 20);
        assert_eq!(&v[..8], &2u64.to_le_bytes());
        assert_eq!(&v[8..16], &3u64.to_le_bytes());
        assert_eq!(&v[16..], &4u64.to_le_bytes()[..4]);
    }

    #[test]
    fn appending_the_pattern_writes_the_same_bytes() {
        for (offset, len) in [(0, 0), (16, 20), (64, 8), (8, 65_536), (800, 13)] {
            let mut v = vec![0xaa];
            extend_pattern(offset, len, &mut v);
            assert_eq!(v[1..], stream(offset, len)[..], "{offset} {len}");
        }
    }

    #[test]
    fn an_intact_stream_passes() {
        let mut check = PatternCheck::new();
        assert!(check.take(0, &stream(0, 64)));
        assert!(check.take(1, &stream(64, 1000)));
        assert!(check.take(2, &stream(1064, 13)));
        assert_eq!(check.bytes(), 1077);
        assert_eq!(check.first_bad(), None);
    }

    #[test]
    fn a_changed_byte_is_found_where_it_is() {
        let mut check = PatternCheck::new();
        let mut v = stream(0, 104);
        v[77] ^= 1;
        assert!(!check.take(0, &v));
        assert_eq!(check.first_bad(), Some(72));
        // Once broken, the stream stays broken.
        assert!(!check.take(1, &stream(104, 8)));
        assert_eq!(check.first_bad(), Some(72));
        let mut tail = stream(0, 13);
        tail[12] ^= 0x80;
        let mut check = PatternCheck::new();
        assert!(!check.take(0, &tail));
        assert_eq!(check.first_bad(), Some(8));
    }

    #[test]
    fn a_changed_byte_is_found_in_any_block_of_the_check() {
        let offset = 8 * 1000;
        assert_eq!(first_mismatch(offset, &stream(offset, 65_536)), None);
        for at in [0, 7, 511, 512, 513, 4095, 4096, 40_000, 65_535] {
            let mut v = stream(offset, 65_536);
            v[at] ^= 0x10;
            assert_eq!(first_mismatch(offset, &v), Some(at / 8 * 8), "{at}");
        }
        // A tail shorter than a word is compared too.
        let mut v = stream(offset, 65_533);
        assert_eq!(first_mismatch(offset, &v), None);
        v[65_530] ^= 1;
        assert_eq!(first_mismatch(offset, &v), Some(65_528));
    }

    #[test]
    fn lost_repeated_or_swapped_messages_are_found() {
        // A message missing (its successor's bytes come at its offset).
        let mut check = PatternCheck::new();
        assert!(check.take(0, &stream(0, 64)));
        assert!(!check.take(1, &stream(128, 64)));
        assert_eq!(check.first_bad(), Some(64));
        // A message repeated, with its own number again.
        let mut check = PatternCheck::new();
        assert!(check.take(0, &stream(0, 64)));
        assert!(!check.take(0, &stream(0, 64)));
        // The right bytes under a skipped message number.
        let mut check = PatternCheck::new();
        assert!(!check.take(1, &stream(0, 64)));
    }
}
