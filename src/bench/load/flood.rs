//! A flood of spoofed CHANNEL_NEW packets (PROTOCOL.md §6): random sender peer ids, random
//! c1 and cookie1, from many loopback source addresses, as fast as the harness can send. A node
//! answers each from a stateless cookie computation and must keep no state for any of them.

use super::Out;
use crate::engine::sys::{BATCH, RecvBatch};
use crate::wire::{ChannelId, Flags, Header, Message, PacketWriter, PeerId};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the flood keeps reading answers after its last packet.
const DRAIN: Duration = Duration::from_millis(100);

/// What to flood.
#[derive(Clone, Debug)]
pub struct FloodConfig {
    /// The node.
    pub target: SocketAddr,
    /// Its peer id, used as the recipient; all zero when unknown (allowed for kind 0, §3).
    pub target_peer: Option<PeerId>,
    /// Sending threads.
    pub clients: usize,
    /// Source sockets per thread, each on its own random 127.x.y.z address (IPv4 loopback
    /// targets only; otherwise one unspecified-address socket).
    pub sources: usize,
    /// How long to flood.
    pub duration: Duration,
    /// Stop after this many packets in all, when given.
    pub count: Option<u64>,
}

/// What a flood measured.
#[derive(Clone, Debug, Default)]
pub struct FloodReport {
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent (UDP payload).
    pub bytes_sent: u64,
    /// Datagrams that came back.
    pub answers: u64,
    /// Bytes that came back (UDP payload).
    pub bytes_answered: u64,
    /// How long the sending lasted.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Datagrams sent per second.
    pub fn sent_per_s(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Answers received per second.
    pub fn answers_per_s(&self) -> f64 {
        self.answers as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Bytes answered per byte sent: the amplification (PROTOCOL.md §5: at most 3).
    pub fn amplification(&self) -> f64 {
        self.bytes_answered as f64 / self.bytes_sent.max(1) as f64
    }

    fn merge(&mut self, other: &FloodReport) {
        self.sent += other.sent;
        self.bytes_sent += other.bytes_sent;
        self.answers += other.answers;
        self.bytes_answered += other.bytes_answered;
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

/// Floods `config.target` and returns what was sent and answered.
pub fn run_flood(config: &FloodConfig) -> io::Result<FloodReport> {
    let clients = config.clients.max(1);
    let threads: Vec<JoinHandle<io::Result<FloodReport>>> = (0..clients)
        .map(|c| {
            let config = config.clone();
            let count = config
                .count
                .map(|n| n / clients as u64 + u64::from((c as u64) < n % clients as u64));
            std::thread::spawn(move || {
                crate::heap::set_thread_account(crate::heap::Account::Harness);
                flood_client(&config, count)
            })
        })
        .collect();
    let mut report = FloodReport::default();
    for thread in threads {
        let r = thread
            .join()
            .map_err(|_| io::Error::other("a flood thread panicked"))??;
        report.merge(&r);
    }
    Ok(report)
}

/// splitmix64: fast, and good enough to make ids nobody can predict from the node's side.
pub(super) struct Random(pub(super) u64);

impl Random {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `count` non-blocking sockets to send to `target` from, each on its own random 127.x.y.z
/// address towards an IPv4 loopback target; otherwise one unspecified-address socket.
pub(super) fn sources(
    target: SocketAddr,
    count: usize,
    random: &mut Random,
) -> io::Result<Vec<UdpSocket>> {
    let spread = matches!(target, SocketAddr::V4(a) if a.ip().is_loopback());
    let wanted = if spread { count.max(1) } else { 1 };
    let mut sockets = Vec::with_capacity(wanted);
    while sockets.len() < wanted {
        let local: SocketAddr = if spread {
            let r = random.next().to_be_bytes();
            // 127.0.0.0/8 is all loopback on Linux; skip x.y.z = 0 and broadcast-like 255s.
            (Ipv4Addr::new(127, r[0].max(1), r[1], r[2].clamp(1, 254)), 0).into()
        } else if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            "[::]:0".parse().map_err(io::Error::other)?
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Writes one spoofed CHANNEL_NEW into `buf`; returns its length.
pub(super) fn channel_new(buf: &mut [u8], recipient: PeerId, random: &mut Random) -> usize {
    let mut sender = [0u8; 16];
    sender[..8].copy_from_slice(&random.next().to_le_bytes());
    sender[8..].copy_from_slice(&(random.next() | 1).to_le_bytes());
    let mut cookie1 = [0u8; 16];
    cookie1[..8].copy_from_slice(&random.next().to_le_bytes());
    cookie1[8..].copy_from_slice(&random.next().to_le_bytes());
    let c1 = (random.next() as u16).max(1);
    let header = Header {
        flags: Flags::EMPTY,
        sender: PeerId(sender),
        recipient,
        channel: ChannelId::DEFAULT,
        sequence: None,
    };
    let Ok(mut writer) = PacketWriter::new(buf, &header) else {
        return 0;
    };
    if writer
        .push(&Message::ChannelNew {
            c1,
            cookie1: &cookie1,
        })
        .is_err()
    {
        return 0;
    }
    writer.finish()
}

fn flood_client(config: &FloodConfig, count: Option<u64>) -> io::Result<FloodReport> {
    let mut random = Random(rand::random());
    let sockets = sources(config.target, config.sources, &mut random)?;
    let recipient = config.target_peer.unwrap_or(PeerId::ZERO);
    let mut recv = RecvBatch::new();
    let mut outs: Vec<Out> = sockets.iter().map(|s| Out::new(s.as_raw_fd())).collect();
    let mut report = FloodReport::default();
    let limit = count.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut turn = 0usize;
    while report.sent < limit && started.elapsed() < config.duration {
        let out = &mut outs[turn % sockets.len()];
        turn += 1;
        let batch = (limit - report.sent).min(BATCH as u64);
        for _ in 0..batch {
            let len = channel_new(out.slot(), recipient, &mut random);
            if len > 0 {
                out.push(config.target, len);
                report.sent += 1;
                report.bytes_sent += len as u64;
            }
        }
        out.flush();
        for socket in &sockets {
            read_answers(&mut recv, socket, &mut report);
        }
    }
    report.elapsed = started.elapsed();
    let drain_until = Instant::now() + DRAIN;
    while Instant::now() < drain_until {
        for socket in &sockets {
            read_answers(&mut recv, socket, &mut report);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(report)
}

fn read_answers(recv: &mut RecvBatch, socket: &UdpSocket, report: &mut FloodReport) {
    while let Ok(n) = recv.recv(socket.as_raw_fd()) {
        for i in 0..n {
            let (received, bytes) = recv.message(i);
            let segment = received.segment.unwrap_or(bytes.len()).max(1);
            report.answers += bytes.len().div_ceil(segment) as u64;
            report.bytes_answered += bytes.len() as u64;
        }
        if n < BATCH {
            break;
        }
    }
}
