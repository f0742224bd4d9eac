//! The load harness behind `weft bench`: simulated peers that open channels to a node and send
//! it data, the raw-UDP baseline (a `recvmmsg`/`sendmmsg` echo with the same shards, batch
//! size and buffers) that weft's figures are compared with, a flood of spoofed
//! CHANNEL_NEW packets, and soak runs that mix honest peers with hostile traffic.
//!
//! Both loads run the same client loop ([`Flows`] says what differs): a few client threads, each
//! with one socket shared by its simulated peers, a window of messages in flight per peer,
//! batched sends and receives, round-trip times in an HDR histogram. A weft run first opens its
//! peers' channels in bounded waves, then holds them idle at a gate (where `weft bench` reads
//! the node's heap) before the data phase.

pub mod attacker;
mod flood;
mod hostile;
mod raw;
mod soak;
mod threads;
mod weft;

pub use flood::{FloodConfig, FloodReport, run_flood};
pub use hostile::{HostileConfig, HostileCounters, run_hostile};
pub use raw::RawEcho;
pub use soak::{Sample, SoakConfig, SoakReport, Watched, run_soak};
pub use threads::{NODE_THREADS, RAW_ECHO_THREADS, ThreadClocks};

use crate::channel::OpenError;
use crate::engine::sys::{self, BATCH, RecvBatch, SendBatch};
use crate::wire::{Capabilities, PeerId};
use hdrhistogram::Histogram;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages a peer may have unanswered before it waits, unless [`LoadConfig::window`] says
/// otherwise.
pub const DEFAULT_WINDOW: u8 = 8;

/// A peer with no answer for this long forgets what it had in flight (lost, on UDP) and sends
/// a fresh window. Answers to forgotten messages that still arrive are timed but do not open
/// the window again: otherwise a node slower than this would face more than a window per peer,
/// queue longer still, and the tail would feed on itself (the old ~200 ms p999).
const STALL: Duration = Duration::from_millis(200);

/// Largest round trip the histograms record, in microseconds; longer ones count as this.
const MAX_LATENCY_US: u64 = 60_000_000;

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
    /// Bytes of application data per message (weft) or per datagram (baseline).
    pub size: usize,
    /// Messages per second over all peers; 0 means as fast as the window allows.
    pub rate: u64,
    /// How long the data phase lasts.
    pub duration: Duration,
    /// The channel mode of the opened channels.
    pub capabilities: Capabilities,
    /// Messages a peer may have unanswered before it waits ([`DEFAULT_WINDOW`]); 1 is
    /// ping-pong, where each round trip is timed on an otherwise idle path.
    pub window: u8,
}

/// What a run is doing, for a progress display.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Sockets and simulated peers are being set up.
    Starting,
    /// Handshakes and channel opens.
    Opening,
    /// Every channel is open and idle; the node's heap is read.
    Idle,
    /// Messages flow.
    Data,
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
    phase: AtomicU8,
}

impl Progress {
    /// The phase the run is in.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Opening,
            2 => Phase::Idle,
            3 => Phase::Data,
            _ => Phase::Starting,
        }
    }

    fn set_phase(&self, phase: Phase) {
        let value = match phase {
            Phase::Starting => 0,
            Phase::Opening => 1,
            Phase::Idle => 2,
            Phase::Data => 3,
        };
        self.phase.store(value, Ordering::Relaxed);
    }
}

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// Messages (or datagrams) sent in the data phase.
    pub sent: u64,
    /// Answers received in the data phase.
    pub received: u64,
    /// Length of the data phase.
    pub elapsed: Duration,
    /// Channels opened.
    pub opened: u64,
    /// Channels that could not be opened (after retries, or by the open deadline).
    pub open_failed: u64,
    /// Time from the first open to the last channel opened.
    pub open_time: Duration,
    /// The most common datagram size sent in the data phase (the data packet), in bytes of UDP
    /// payload.
    pub packet_bytes: usize,
    /// Bytes of UDP payload sent in the data phase.
    pub bytes_out: u64,
    /// Bytes of UDP payload received in the data phase.
    pub bytes_in: u64,
    /// Times a peer gave up waiting for answers it had in flight (see the `STALL` rule).
    pub stalls: u64,
    /// Answers to messages their peer had already given up on (timed all the same).
    pub late: u64,
    /// Round-trip times in microseconds.
    pub latencies: Histogram<u64>,
    /// CPU time the process used during the data phase.
    pub cpu: Duration,
    /// CPU time the echo's own threads (the node's shards and worker, or the raw echo's
    /// threads) used during the data phase, from their thread clocks; `None` when they are not
    /// in this process.
    pub echo_cpu: Option<Duration>,
}

impl Default for LoadReport {
    fn default() -> LoadReport {
        LoadReport {
            sent: 0,
            received: 0,
            elapsed: Duration::ZERO,
            opened: 0,
            open_failed: 0,
            open_time: Duration::ZERO,
            packet_bytes: 0,
            bytes_out: 0,
            bytes_in: 0,
            stalls: 0,
            late: 0,
            latencies: new_histogram(),
            cpu: Duration::ZERO,
            echo_cpu: None,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Three significant digits from 1 µs to a minute; the bounds are valid constants.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are allowed"))
    })
}

impl LoadReport {
    /// Answers per second.
    pub fn pps(&self) -> f64 {
        self.received as f64 / self.secs()
    }

    /// Messages sent per second.
    pub fn pps_out(&self) -> f64 {
        self.sent as f64 / self.secs()
    }

    /// Gbit/s of UDP payload received.
    pub fn gbps_in(&self) -> f64 {
        self.bytes_in as f64 * 8.0 / 1e9 / self.secs()
    }

    /// Gbit/s of UDP payload sent.
    pub fn gbps_out(&self) -> f64 {
        self.bytes_out as f64 * 8.0 / 1e9 / self.secs()
    }

    /// Channels opened per second of the open phase (each behind a handshake).
    pub fn handshakes_per_s(&self) -> f64 {
        self.opened as f64 / self.open_time.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile of the round-trip times, in microseconds (0 without samples).
    pub fn latency_us(&self, q: f64) -> u64 {
        if self.latencies.is_empty() {
            return 0;
        }
        self.latencies.value_at_quantile(q)
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: &LoadReport) {
        self.sent += other.sent;
        self.received += other.received;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.opened += other.opened;
        self.open_failed += other.open_failed;
        self.open_time = self.open_time.max(other.open_time);
        self.packet_bytes = self.packet_bytes.max(other.packet_bytes);
        self.bytes_out += other.bytes_out;
        self.bytes_in += other.bytes_in;
        self.stalls += other.stalls;
        self.late += other.late;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latencies.add(&other.latencies);
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

/// Runs simulated weft peers against `config.target`: opens one channel per peer in waves,
/// holds them all open and idle while `at_idle` runs (on this thread), then sends messages for
/// `config.duration`, each stamped with its send time for the echo to return.
pub fn run_weft_load(
    config: &LoadConfig,
    progress: &Arc<Progress>,
    at_idle: impl FnOnce(),
) -> Result<LoadReport, LoadError> {
    run_clients(
        config,
        progress,
        at_idle,
        NODE_THREADS,
        weft::WeftFlows::new,
    )
}

/// Runs the raw baseline client: `config.peers` flows of `config.size`-byte datagrams, each
/// stamped and echoed by a [`RawEcho`], under the same client loop as the weft peers.
pub fn run_raw_load(
    config: &LoadConfig,
    progress: &Arc<Progress>,
) -> Result<LoadReport, LoadError> {
    run_clients(
        config,
        progress,
        || {},
        RAW_ECHO_THREADS,
        |config, peers, _| Ok(raw::RawFlows::new(config, peers)),
    )
}

/// What differs between the weft and the raw client: how a flow sends one stamped message and
/// what a received datagram means. The loop around it is [`client_loop`].
trait Flows {
    /// How many flows (simulated peers) this client runs.
    fn count(&self) -> usize;

    /// Starts or continues opening flows; true once every flow is open or given up.
    fn open(&mut self, _now: Instant, _out: &mut Out) -> Result<bool, LoadError> {
        Ok(true)
    }

    /// Flows opened and given up so far.
    fn opened(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Whether flow `flow` can carry data.
    fn ready(&self, flow: usize) -> bool;

    /// Sends one message of flow `flow` carrying `stamp`; false when it cannot now.
    fn send(&mut self, flow: usize, now: Instant, stamp: u64, out: &mut Out) -> bool;

    /// Handles one received datagram, pushing `(flow, stamp)` for every answer it carries.
    fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
        out: &mut Out,
        answers: &mut Vec<(usize, u64)>,
    );

    /// Runs what is due at `now` (retransmits, keep-alives), pushing answers as `receive` does.
    fn timers(&mut self, _now: Instant, _out: &mut Out, _answers: &mut Vec<(usize, u64)>) {}
}

/// Datagram sizes counted one by one; larger ones share the last bucket.
const SIZE_BUCKETS: usize = 2048;

/// A client's send batch on its socket.
struct Out {
    batch: SendBatch,
    fd: RawFd,
    /// Datagrams and bytes pushed.
    datagrams: u64,
    bytes: u64,
    /// Datagrams pushed by size: the most common size is the data packet's, which neither the
    /// largest (a PMTU probe is padded to the ceiling) nor the mean (ACKs are small) gives.
    by_size: Vec<u64>,
}

impl Out {
    fn new(fd: RawFd) -> Out {
        Out {
            batch: SendBatch::new(false),
            fd,
            datagrams: 0,
            bytes: 0,
            by_size: vec![0; SIZE_BUCKETS],
        }
    }

    /// The size most datagrams had (0 before any).
    fn most_common_size(&self) -> usize {
        self.by_size
            .iter()
            .enumerate()
            .max_by_key(|&(size, &count)| (count, size))
            .filter(|&(_, &count)| count > 0)
            .map_or(0, |(size, _)| size)
    }

    /// A slot for the next datagram, sending the batch first when it is full.
    fn slot(&mut self) -> &mut [u8] {
        if self.batch.slot().is_none() {
            self.flush();
        }
        // An empty batch always has a slot.
        self.batch
            .slot()
            .unwrap_or_else(|| unreachable!("an empty batch has room"))
    }

    /// Records the datagram just written into [`Out::slot`].
    fn push(&mut self, to: SocketAddr, len: usize) {
        self.batch.push(to, len);
        self.datagrams += 1;
        self.bytes += len as u64;
        self.by_size[len.min(SIZE_BUCKETS - 1)] += 1;
    }

    fn flush(&mut self) {
        while !self.batch.is_empty() {
            if self.batch.flush(self.fd).blocked {
                std::thread::yield_now();
            }
        }
    }
}

/// Binds a client socket. Towards a loopback IPv4 target each client takes its own
/// 127.0.N.1 address, so handshake limits per /24 (PROTOCOL.md §5) apply per client.
fn client_socket(target: SocketAddr, client: usize) -> io::Result<UdpSocket> {
    let local: SocketAddr = match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let n = (client % 250 + 1) as u8;
            (Ipv4Addr::new(127, 0, n, 1), 0).into()
        }
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(ip) if ip.is_loopback() => "[::1]:0".parse().map_err(io::Error::other)?,
        IpAddr::V6(_) => "[::]:0".parse().map_err(io::Error::other)?,
    };
    let socket = UdpSocket::bind(local)?;
    socket.set_nonblocking(true)?;
    sys::grow_buffers(socket.as_raw_fd());
    Ok(socket)
}

/// Spawns the client threads, meets them at the idle gate to run `at_idle`, and merges their
/// reports; the threads named by `echo_threads` are the echo's, whose CPU is read apart.
fn run_clients<F: Flows>(
    config: &LoadConfig,
    progress: &Arc<Progress>,
    at_idle: impl FnOnce(),
    echo_threads: &[&str],
    make: impl Fn(&LoadConfig, usize, usize) -> Result<F, LoadError> + Send + Sync + 'static,
) -> Result<LoadReport, LoadError> {
    let clients = config.clients.clamp(1, config.peers.max(1));
    // Clients wait twice: once all are open (the caller reads the heap), then to start at once.
    let gate = Arc::new(Barrier::new(clients + 1));
    let make = Arc::new(make);
    let epoch = Instant::now();
    progress.set_phase(Phase::Opening);
    let threads: Vec<JoinHandle<Result<LoadReport, LoadError>>> = (0..clients)
        .map(|c| {
            let config = config.clone();
            let progress = Arc::clone(progress);
            let gate = Arc::clone(&gate);
            let make = Arc::clone(&make);
            let peers = config.peers / clients + usize::from(c < config.peers % clients);
            std::thread::spawn(move || {
                crate::heap::set_thread_account(crate::heap::Account::Harness);
                let made = make(&config, peers, c).and_then(|flows| {
                    let socket = client_socket(config.target, c)?;
                    Ok((flows, socket))
                });
                match made {
                    Ok((mut flows, socket)) => {
                        client_loop(&mut flows, &socket, &config, &progress, &gate, epoch)
                    }
                    Err(e) => {
                        // The others still meet at the gate.
                        gate.wait();
                        gate.wait();
                        Err(e)
                    }
                }
            })
        })
        .collect();
    gate.wait();
    progress.set_phase(Phase::Idle);
    at_idle();
    progress.set_phase(Phase::Data);
    let cpu_start = process_cpu_time();
    let echo_start = ThreadClocks::read(echo_threads);
    gate.wait();
    let mut report = LoadReport::default();
    let mut first_error = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(r)) => report.merge(&r),
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
    report.cpu = process_cpu_time().saturating_sub(cpu_start);
    report.echo_cpu = ThreadClocks::read(echo_threads).since(&echo_start);
    Ok(report)
}

/// How long opening may take before the data phase starts anyway: handshakes cost CPU on
/// both sides, so the limit grows with the peers.
fn open_deadline(peers: usize) -> Duration {
    Duration::from_secs(10).max(Duration::from_millis(4) * peers as u32)
}

/// How often every flow's timers are checked: scanning many thousands of endpoints each turn
/// would starve the node on a small machine.
fn timer_period(flows: usize) -> Duration {
    Duration::from_millis((flows as u64 / 200).clamp(5, 100))
}

/// The client loop both loads share: open, wait at the gate, then send within each flow's
/// window (and the rate, if any) and time the answers.
fn client_loop<F: Flows>(
    flows: &mut F,
    socket: &UdpSocket,
    config: &LoadConfig,
    progress: &Progress,
    gate: &Barrier,
    epoch: Instant,
) -> Result<LoadReport, LoadError> {
    let fd = socket.as_raw_fd();
    let count = flows.count();
    let mut out = Out::new(fd);
    let mut recv = RecvBatch::new();
    let mut answers = Vec::with_capacity(BATCH * 4);
    let mut report = LoadReport::default();
    let period = timer_period(count);

    // Open phase.
    let open_start = Instant::now();
    let deadline = open_start + open_deadline(config.peers);
    let mut next_timers = open_start;
    let mut reported_open = 0;
    let opened = loop {
        let now = Instant::now();
        let done = flows.open(now, &mut out)?;
        let read = exchange(
            flows,
            &mut recv,
            &mut out,
            &mut answers,
            &mut report,
            (now, &mut next_timers, period),
        );
        answers.clear();
        let (opened, _) = flows.opened();
        progress
            .opened
            .fetch_add(opened - reported_open, Ordering::Relaxed);
        reported_open = opened;
        if done || now >= deadline {
            break now;
        }
        if read == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    (report.opened, report.open_failed) = flows.opened();
    report.open_failed += (count as u64).saturating_sub(report.opened + report.open_failed);
    report.open_time = opened.duration_since(open_start);
    // Nothing of the open phase counts as data.
    report.bytes_in = 0;
    (out.datagrams, out.bytes) = (0, 0);
    out.by_size.fill(0);

    gate.wait();
    gate.wait();

    // Data phase.
    let started = Instant::now();
    let mut in_flight = vec![0u8; count];
    let mut last_answer = vec![started; count];
    // Per flow, the stamp at its last stall: answers stamped earlier were given up on.
    let mut forgotten = vec![0u64; count];
    let per_client_rate = config.rate as f64 / config.clients.max(1) as f64;
    let mut allowance = 0.0f64;
    let mut last_tick = started;
    let mut reported = (0u64, 0u64);
    let mut next_timers = started;
    let window = config.window.max(1);
    let mut first = 0usize;
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
        let stamp = now.duration_since(epoch).as_nanos() as u64;
        // Under a rate, the allowance goes to flows in turn from a rotating start: otherwise
        // the first flows would take it all and the others never send.
        first = if first + 1 >= count { 0 } else { first + 1 };
        for turn in 0..count {
            let flow = if first + turn >= count {
                first + turn - count
            } else {
                first + turn
            };
            if !flows.ready(flow) {
                continue;
            }
            if in_flight[flow] > 0 && now.duration_since(last_answer[flow]) > STALL {
                in_flight[flow] = 0;
                last_answer[flow] = now;
                forgotten[flow] = stamp;
                report.stalls += 1;
            }
            while in_flight[flow] < window {
                if per_client_rate > 0.0 {
                    if allowance < 1.0 {
                        break;
                    }
                    allowance -= 1.0;
                }
                if !flows.send(flow, now, stamp, &mut out) {
                    break;
                }
                if in_flight[flow] == 0 {
                    last_answer[flow] = now;
                }
                in_flight[flow] += 1;
                report.sent += 1;
            }
        }
        let read = exchange(
            flows,
            &mut recv,
            &mut out,
            &mut answers,
            &mut report,
            (now, &mut next_timers, period),
        );
        let at = Instant::now();
        let at_ns = at.duration_since(epoch).as_nanos() as u64;
        for (flow, sent_at) in answers.drain(..) {
            let rtt_us = at_ns.saturating_sub(sent_at) / 1000;
            report.latencies.saturating_record(rtt_us.max(1));
            report.received += 1;
            if flow >= count {
                continue;
            }
            if sent_at < forgotten[flow] {
                report.late += 1;
            } else {
                in_flight[flow] = in_flight[flow].saturating_sub(1);
                last_answer[flow] = at;
            }
        }
        progress
            .sent
            .fetch_add(report.sent - reported.0, Ordering::Relaxed);
        progress
            .received
            .fetch_add(report.received - reported.1, Ordering::Relaxed);
        reported = (report.sent, report.received);
        if read == 0 {
            // On a machine with few cores a spinning client starves the node's threads.
            std::thread::yield_now();
        }
    }
    report.bytes_out = out.bytes;
    report.packet_bytes = out.most_common_size();
    Ok(report)
}

/// Reads every waiting datagram and hands each to `flows`; returns how many were read.
/// One turn's I/O in either phase: sends what is queued, reads what arrived, runs the flows'
/// timers when due and sends what those produced; returns the datagrams read.
fn exchange<F: Flows>(
    flows: &mut F,
    recv: &mut RecvBatch,
    out: &mut Out,
    answers: &mut Vec<(usize, u64)>,
    report: &mut LoadReport,
    (now, next_timers, period): (Instant, &mut Instant, Duration),
) -> usize {
    out.flush();
    let read = receive(flows, recv, out, answers, report);
    if now >= *next_timers {
        flows.timers(now, out, answers);
        *next_timers = now + period;
    }
    out.flush();
    read
}

fn receive<F: Flows>(
    flows: &mut F,
    recv: &mut RecvBatch,
    out: &mut Out,
    answers: &mut Vec<(usize, u64)>,
    report: &mut LoadReport,
) -> usize {
    let mut read = 0;
    while let Ok(n) = recv.recv(out.fd) {
        let now = Instant::now();
        for i in 0..n {
            let (received, bytes) = recv.message_mut(i);
            let Some(from) = received.from else { continue };
            report.bytes_in += bytes.len() as u64;
            let segment = received.segment.unwrap_or(bytes.len()).max(1);
            for datagram in bytes.chunks_mut(segment) {
                flows.receive(now, from, datagram, out, answers);
            }
        }
        read += n;
        if n < BATCH {
            break;
        }
    }
    read
}
