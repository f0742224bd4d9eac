//! A single-threaded mio loop that drives one [`Endpoint`] over one UDP socket (PROTOCOL.md §12:
//! enough until the sharded engine lands).
//!
//! Each turn: wait for the socket, the shutdown pipe, the endpoint's next deadline or the next
//! metrics publication; drain the socket into [`Endpoint::handle`]; run
//! [`Endpoint::handle_timeout`] when due; send what [`Endpoint::poll_transmit`] yields; log
//! events. Buffers are allocated once, in [`Driver::bind`].

use crate::channel::{Endpoint, Event, Stats, Transmit};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use signal_hook::SigId;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const SOCKET: Token = Token(0);
const SHUTDOWN: Token = Token(1);

/// Largest UDP payload; a receive buffer this size never truncates a datagram, so the endpoint
/// sees (and counts) oversized packets as they are.
const RECV_BUFFER: usize = 65_535;

/// Datagrams received per loop turn before the loop sends and checks timers; a flood of input
/// must not starve output.
const RECV_BATCH: usize = 256;

/// Send buffer size: what the endpoint may fill per datagram. It writes at most the path MTU
/// (1200 bytes unless probed higher, PROTOCOL.md §3), and never more than a UDP payload.
const SEND_BUFFER: usize = 65_535;

/// How often the loop hands its statistics to the metrics layer (PROTOCOL.md §12: about once a
/// second, never per packet).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Asks a running [`Driver`] to stop from another thread; writing a byte to the driver's
/// shutdown pipe wakes its poll.
#[derive(Debug)]
pub struct ShutdownHandle {
    pipe: UnixStream,
}

impl ShutdownHandle {
    /// Asks the driver to return from [`Driver::run`] at its next turn.
    pub fn shutdown(&self) {
        // A full pipe already holds a wake-up, so a failed write loses nothing.
        let _ = (&self.pipe).write(&[1]);
    }
}

/// The loop: one endpoint, one socket, one thread.
pub struct Driver {
    poll: Poll,
    events: Events,
    socket: UdpSocket,
    local_addr: SocketAddr,
    endpoint: Endpoint,
    shutdown_rx: mio::net::UnixStream,
    shutdown_tx: UnixStream,
    signals: Vec<SigId>,
    recv_buf: Box<[u8]>,
    send_buf: Box<[u8]>,
    /// A datagram in `send_buf` that met a full socket buffer, waiting for writability.
    pending: Option<Transmit>,
    stats: Stats,
}

impl Driver {
    /// Binds the UDP socket and sets up the poll; nothing runs until [`Driver::run`].
    pub fn bind(listen: SocketAddr, endpoint: Endpoint) -> io::Result<Driver> {
        let poll = Poll::new()?;
        let mut socket = UdpSocket::bind(listen)?;
        let local_addr = socket.local_addr()?;
        // Both directions, edge-triggered: reads drain until WouldBlock, and a writable edge
        // arrives after a send met WouldBlock.
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE | Interest::WRITABLE)?;
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        let mut shutdown_rx = mio::net::UnixStream::from_std(rx);
        poll.registry()
            .register(&mut shutdown_rx, SHUTDOWN, Interest::READABLE)?;
        Ok(Driver {
            poll,
            events: Events::with_capacity(64),
            socket,
            local_addr,
            endpoint,
            shutdown_rx,
            shutdown_tx: tx,
            signals: Vec::new(),
            recv_buf: vec![0; RECV_BUFFER].into_boxed_slice(),
            send_buf: vec![0; SEND_BUFFER].into_boxed_slice(),
            pending: None,
            stats: Stats::new(),
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint it drives.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The endpoint it drives, for queueing work before or between runs.
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// The loop's own counters (send failures and the like), published beside the endpoint's.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A handle that stops [`Driver::run`] from another thread.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        Ok(ShutdownHandle {
            pipe: self.shutdown_tx.try_clone()?,
        })
    }

    /// Makes SIGINT and SIGTERM stop [`Driver::run`] cleanly: the signal handler writes to the
    /// shutdown pipe (the only thing a handler may safely do) and the loop returns.
    pub fn stop_on_signals(&mut self) -> io::Result<()> {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let pipe = self.shutdown_tx.try_clone()?;
            self.signals
                .push(signal_hook::low_level::pipe::register(signal, pipe)?);
        }
        Ok(())
    }

    /// Runs until a shutdown is asked for, calling `publish` with the endpoint's and the loop's
    /// statistics about once a second and once more before returning.
    pub fn run(&mut self, mut publish: impl FnMut(&Stats)) -> io::Result<()> {
        let mut next_publish = Instant::now();
        // True when the last turn stopped receiving at RECV_BATCH with data maybe left: the
        // edge-triggered poll will not report it again.
        let mut more_to_read = true;
        loop {
            let now = Instant::now();
            let mut wait = next_publish.saturating_duration_since(now);
            if let Some(deadline) = self.endpoint.poll_timeout() {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            if more_to_read {
                wait = Duration::ZERO;
            }
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut stop = false;
            let mut writable = false;
            for event in &self.events {
                match event.token() {
                    SOCKET => {
                        more_to_read |= event.is_readable();
                        writable |= event.is_writable();
                    }
                    SHUTDOWN => stop = true,
                    _ => {}
                }
            }
            if stop {
                self.drain_shutdown_pipe();
                tracing::info!("shutting down");
                self.publish_all(&mut publish);
                return Ok(());
            }
            let now = Instant::now();
            if more_to_read {
                more_to_read = self.receive(now);
            }
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            if writable || self.pending.is_none() {
                self.transmit();
            }
            while let Some(event) = self.endpoint.poll_event() {
                log_event(&event);
            }
            if now >= next_publish {
                self.publish_all(&mut publish);
                next_publish = now + PUBLISH_INTERVAL;
            }
        }
    }

    /// Feeds up to [`RECV_BATCH`] datagrams to the endpoint; true when the socket may hold more.
    fn receive(&mut self, now: Instant) -> bool {
        for _ in 0..RECV_BATCH {
            match self.socket.recv_from(&mut self.recv_buf) {
                Ok((len, from)) => self.endpoint.handle(now, from, &self.recv_buf[..len]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // An error queued by the kernel (an ICMP report, say) is consumed by
                    // reading it; the datagrams behind it are still there.
                    self.stats
                        .add("weft_socket_errors_total", Some(("op", "recv")), 1);
                    tracing::debug!(error = %e, "recv_from failed");
                }
            }
        }
        true
    }

    /// Sends the pending datagram, then whatever the endpoint has queued, until the endpoint has
    /// nothing or the socket buffer is full.
    fn transmit(&mut self) {
        loop {
            let transmit = match self.pending.take() {
                Some(transmit) => transmit,
                None => match self.endpoint.poll_transmit(&mut self.send_buf) {
                    Some(transmit) => transmit,
                    None => return,
                },
            };
            let datagram = &self.send_buf[..transmit.len.min(self.send_buf.len())];
            match self.socket.send_to(datagram, transmit.destination) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Keep it and wait for the writable edge rather than drop it silently.
                    self.pending = Some(transmit);
                    self.stats.add("weft_send_blocked_total", None, 1);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.pending = Some(transmit);
                }
                Err(e) => {
                    // No route, a refused destination and the like: retrying the same datagram
                    // would fail the same way, so it is dropped and counted.
                    self.stats
                        .add("weft_socket_errors_total", Some(("op", "send")), 1);
                    tracing::debug!(error = %e, to = %transmit.destination, "send_to failed");
                }
            }
        }
    }

    fn drain_shutdown_pipe(&mut self) {
        let mut sink = [0u8; 64];
        while matches!(self.shutdown_rx.read(&mut sink), Ok(n) if n > 0) {}
    }

    fn publish_all(&mut self, publish: &mut impl FnMut(&Stats)) {
        publish(self.endpoint.stats());
        publish(&self.stats);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        for id in self.signals.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Pong { peer, from, token } => {
            tracing::debug!(%peer, %from, token = ?token, "pong");
        }
        Event::ChannelOpened {
            peer,
            id,
            initiator,
            ..
        } => tracing::debug!(%peer, %id, initiator, "channel opened"),
        Event::OpenFailed { reason, .. } => tracing::debug!(?reason, "channel open failed"),
        Event::ChannelClosed {
            reason, by_peer, ..
        } => tracing::debug!(?reason, by_peer, "channel closed"),
        // A node without an application has nobody to hand messages to; the echo service
        // answers inside the endpoint.
        Event::Message { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::EndpointConfig;
    use crate::session::Identity;

    fn driver() -> Driver {
        let identity = Identity::from_secret_bytes([1; 32], [2; 32]);
        let endpoint = Endpoint::new(EndpointConfig::default(), identity, [3; 32], Instant::now());
        Driver::bind("127.0.0.1:0".parse().unwrap(), endpoint).unwrap()
    }

    #[test]
    fn received_datagrams_reach_the_endpoint_and_shutdown_stops_the_loop() {
        let mut driver = driver();
        let address = driver.local_addr();
        assert_ne!(address.port(), 0);
        let stop = driver.shutdown_handle().unwrap();
        let (published_tx, published_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            driver
                .run(|stats| {
                    let received = stats.get("weft_packets_received_total", None);
                    let _ = published_tx.send(received);
                })
                .unwrap();
            driver
        });
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"hello", address).unwrap();
        client.send_to(b"world!", address).unwrap();
        // The endpoint's stats are published each second; wait for both datagrams to show.
        let deadline = Duration::from_secs(10);
        while published_rx
            .recv_timeout(deadline)
            .expect("driver stopped publishing")
            < 2
        {}
        stop.shutdown();
        let driver = thread.join().unwrap();
        let stats = driver.endpoint().stats();
        assert_eq!(stats.get("weft_packets_received_total", None), 2);
        assert_eq!(stats.get("weft_received_bytes_total", None), 11);
    }

    #[test]
    fn shutdown_before_run_returns_at_once() {
        let mut driver = driver();
        driver.shutdown_handle().unwrap().shutdown();
        let mut publications = 0;
        driver.run(|_| publications += 1).unwrap();
        // One final publication of each table on the way out.
        assert_eq!(publications, 2);
    }
}
