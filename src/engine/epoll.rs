//! The epoll backend (PROTOCOL.md §12): a mio `Poll` for readiness, `recvmmsg`/`sendmmsg`
//! batches from `sys.rs` for the data, GSO on send and GRO on receive.

use super::backend::{Incoming, SOCKET, WAKER, record_receive, record_send_batches};
use super::sys::{BATCH, RecvBatch, SendBatch};
use crate::channel::{Endpoint, Lendable};
use crate::stats::Stats;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

pub(super) struct EpollIo {
    poll: Poll,
    events: Events,
    socket: UdpSocket,
    recv: RecvBatch,
    send: SendBatch,
    /// The last `recvmmsg` filled its batch (or readiness said so): read again before sleeping.
    more_to_read: bool,
    /// The socket took everything last time, or a writable edge came since.
    writable: bool,
}

impl EpollIo {
    /// Registers `socket` on the shard's `poll` (which already holds the shard's waker).
    /// `spares`: receive slabs it may lend beyond the batch's own (`slabs.rs`).
    pub(super) fn new(
        poll: Poll,
        socket: std::net::UdpSocket,
        gso: bool,
        spares: usize,
    ) -> io::Result<EpollIo> {
        let mut socket = UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE | Interest::WRITABLE)?;
        Ok(EpollIo {
            poll,
            events: Events::with_capacity(64),
            socket,
            recv: RecvBatch::lending(spares),
            send: SendBatch::new(gso),
            more_to_read: true,
            writable: true,
        })
    }

    pub(super) fn busy(&self) -> bool {
        self.more_to_read
    }

    /// The kernel's running count of drops on the socket, as the last `recvmmsg` saw it.
    pub(super) fn rxq_overflows(&self) -> u32 {
        self.recv.rxq_overflows
    }

    pub(super) fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        // Busy-polling: `recvmmsg` itself says whether anything arrived, so a turn makes one
        // system call instead of an `epoll_wait` and then the read. Wake-ups need no reading
        // (the loop looks at its queues every turn); only a blocked send waits for epoll's
        // writable edge. Readiness edges left unread make the next sleep return at once.
        if timeout.is_zero() && self.writable {
            self.more_to_read = true;
            return Ok(());
        }
        self.poll.poll(&mut self.events, Some(timeout))?;
        for event in &self.events {
            if event.token() == SOCKET {
                self.more_to_read |= event.is_readable();
                self.writable |= event.is_writable();
            }
            // WAKER needs nothing here: the loop looks at its queues every turn.
            debug_assert!(event.token() == SOCKET || event.token() == WAKER);
        }
        Ok(())
    }

    /// One `recvmmsg`. Slots the slabs' bound lets lend (`slabs.rs`) are cut into datagrams
    /// the endpoint may lend messages from; the others are handed over in place and copied out
    /// of, as before.
    pub(super) fn receive(
        &mut self,
        stats: &mut Stats,
        mut deliver: impl FnMut(&mut Stats, SocketAddr, Incoming<'_>),
    ) -> usize {
        if !self.more_to_read {
            return 0;
        }
        let count = match self.recv.recv(self.socket.as_raw_fd()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.more_to_read = false;
                return 0;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return 0,
            Err(e) => {
                // An error queued by the kernel (an ICMP report) is consumed by reading it.
                stats.add("weft_shard_socket_errors_total", Some(("op", "recv")), 1);
                tracing::debug!(error = %e, "recvmmsg failed");
                return 0;
            }
        };
        self.more_to_read = count == BATCH;
        let mut datagrams = 0usize;
        for i in 0..count {
            let received = self.recv.received(i);
            let Some(from) = received.from else { continue };
            if received.truncated {
                stats.add("weft_shard_truncated_total", None, 1);
                continue;
            }
            // A GRO train holds several datagrams of `segment` bytes, the last maybe shorter.
            let segment = received.segment.unwrap_or(received.len).max(1);
            if self.recv.slabs.may_lend() {
                let mut train = self.recv.slabs.take(i);
                while !train.is_empty() {
                    let piece = train.split_to(segment.min(train.len()));
                    let mut datagram = Lendable::new(piece);
                    datagrams = datagrams.saturating_add(1);
                    deliver(stats, from, Incoming::Lent(&mut datagram));
                }
            } else {
                let (_, bytes) = self.recv.message_mut(i);
                for datagram in bytes.chunks_mut(segment) {
                    datagrams = datagrams.saturating_add(1);
                    deliver(stats, from, Incoming::Copied(datagram));
                }
            }
        }
        record_receive(stats, datagrams, self.recv.rxq_overflows);
        datagrams
    }

    /// Fills the send batch from the endpoint and flushes it until the endpoint has nothing
    /// more or the socket buffer is full; returns datagrams sent. Queued control datagrams
    /// are lent (sent from the endpoint's own buffers, no copy) and given back once their batch
    /// is sent; the peers' packets are built straight into the batch's slots.
    pub(super) fn transmit(&mut self, endpoint: &mut Endpoint, stats: &mut Stats) -> usize {
        if !self.writable {
            return 0;
        }
        let mut sent = 0usize;
        loop {
            if !self.send.is_empty() {
                let flushed = self.send.flush(self.socket.as_raw_fd());
                for lent in self.send.returned() {
                    endpoint.recycle_datagram(lent);
                }
                sent = sent.saturating_add(flushed.datagrams);
                record_send_batches(stats, &flushed.sizes);
                stats.add(
                    "weft_shard_datagrams_sent_total",
                    None,
                    flushed.datagrams as u64,
                );
                if flushed.errors > 0 {
                    stats.add(
                        "weft_shard_socket_errors_total",
                        Some(("op", "send")),
                        flushed.errors as u64,
                    );
                }
                if flushed.blocked {
                    stats.add("weft_shard_send_blocked_total", None, 1);
                    // Only a full socket buffer leaves datagrams behind; the writable edge
                    // resumes.
                    self.writable = false;
                    return sent;
                }
            }
            let mut filled = 0usize;
            while self.send.has_room() {
                if let Some(lent) = endpoint.poll_transmit_lent() {
                    if let Err(lent) = self.send.push_lent(lent) {
                        // Not reached: there was room. Given back rather than lost.
                        endpoint.recycle_datagram(lent);
                        break;
                    }
                    filled = filled.saturating_add(1);
                    continue;
                }
                let Some(slot) = self.send.slot() else {
                    break;
                };
                match endpoint.poll_transmit(slot) {
                    Some(transmit) => {
                        self.send.push(transmit.destination, transmit.len);
                        filled = filled.saturating_add(1);
                    }
                    None => break,
                }
            }
            if filled == 0 {
                return sent;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::channel::{ChannelHandle, EndpointConfig, Event, Payload};
    use crate::session::Identity;
    use crate::wire::Capabilities;
    use std::time::Instant;

    /// A server endpoint on an epoll backend lending from `spares` slabs, and a client endpoint
    /// on a plain socket, with a sealed reliable channel between them.
    struct Pair {
        io: EpollIo,
        server: Endpoint,
        client: Endpoint,
        socket: std::net::UdpSocket,
        channel: ChannelHandle,
        stats: Stats,
        buf: Vec<u8>,
        delivered: Vec<Payload>,
        /// Sides that saw the channel open.
        opened: u8,
    }

    impl Pair {
        fn new(spares: usize) -> Pair {
            let socket = super::super::sys::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
            let address = socket.local_addr().unwrap();
            let io = EpollIo::new(Poll::new().unwrap(), socket, false, spares).unwrap();
            let now = Instant::now();
            let config = EndpointConfig::default;
            let server = Endpoint::new(
                config(),
                Identity::from_secret_bytes([1; 32], [2; 32]),
                [3; 32],
                now,
            );
            // No PMTU probes: each message leaves in one datagram of its own.
            let mut quiet = config();
            quiet.reliability.max_mtu = crate::wire::DEFAULT_MTU as u16;
            let mut client = Endpoint::new(
                quiet,
                Identity::from_secret_bytes([4; 32], [5; 32]),
                [6; 32],
                now,
            );
            let tcp = Capabilities::from_bits(7).unwrap();
            let channel = client.open_channel(now, address, None, None, tcp).unwrap();
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_nonblocking(true).unwrap();
            let mut pair = Pair {
                io,
                server,
                client,
                socket,
                channel,
                stats: Stats::new(),
                buf: vec![0; 2048],
                delivered: Vec::new(),
                opened: 0,
            };
            // Open, then settle: every delayed ACK and confirmation has gone both ways, so a
            // message sent next is the only datagram of its turn.
            let settle = Instant::now();
            while settle.elapsed() < Duration::from_millis(100) || pair.opened < 2 {
                assert!(
                    settle.elapsed() < Duration::from_secs(30),
                    "the channel opens"
                );
                pair.turn();
                std::thread::sleep(Duration::from_millis(1));
            }
            pair.delivered.clear();
            pair
        }

        /// One round each way: the client's datagrams to the server's backend, the server's
        /// answers back; messages delivered to the server are kept.
        fn turn(&mut self) {
            let now = Instant::now();
            while let Some(t) = self.client.poll_transmit(&mut self.buf) {
                self.socket
                    .send_to(&self.buf[..t.len], t.destination)
                    .unwrap();
            }
            // Loopback queues a datagram before send_to returns, so one recvmmsg finds it.
            self.io.wait(Duration::ZERO).unwrap();
            let server = &mut self.server;
            self.io.receive(&mut self.stats, |_, from, datagram| {
                datagram.handle(server, now, from)
            });
            self.io.transmit(&mut self.server, &mut self.stats);
            while let Ok((len, from)) = self.socket.recv_from(&mut self.buf) {
                self.client.handle(now, from, &mut self.buf[..len]);
            }
            for endpoint in [&mut self.server, &mut self.client] {
                if endpoint.poll_timeout().is_some_and(|t| t <= now) {
                    endpoint.handle_timeout(now);
                }
            }
            while let Some(event) = self.server.poll_event() {
                match event {
                    Event::Message { data, .. } => self.delivered.push(data),
                    Event::ChannelOpened { .. } => self.opened += 1,
                    _ => {}
                }
            }
            while let Some(event) = self.client.poll_event() {
                if let Event::ChannelOpened { .. } = event {
                    self.opened += 1;
                }
            }
        }

        /// Sends one message in one datagram; returns it as the server delivered it.
        fn send(&mut self, text: &[u8]) -> Payload {
            self.client
                .send(Instant::now(), self.channel, text)
                .unwrap();
            self.turn();
            assert_eq!(self.delivered.len(), 1, "one message delivered");
            let data = self.delivered.pop().unwrap();
            assert_eq!(data, text);
            data
        }

        fn counted(&self, how: &'static str) -> u64 {
            self.server
                .stats()
                .get("weft_message_buffers_total", Some(("how", how)))
        }
    }

    #[test]
    fn a_message_reaches_the_application_in_the_receive_slab_itself() {
        let mut pair = Pair::new(4);
        // The slabs the backend made, before any was lent: a lent message lies inside one.
        let slabs: Vec<(usize, usize)> = (0..BATCH)
            .map(|i| {
                let slab = pair.io.recv.slabs.slab(i);
                (slab.as_ptr() as usize, slab.capacity())
            })
            .collect();
        let lent = pair.send(b"no copy on the way in");
        assert!(lent.is_lent(), "lent, not copied: {lent:?}");
        let at = lent.as_ptr() as usize;
        assert!(
            slabs
                .iter()
                .any(|&(start, len)| at >= start && at + lent.len() <= start + len),
            "the message's bytes are inside a receive slab"
        );
        assert_eq!((pair.counted("lent"), pair.counted("copied")), (1, 0));
    }

    #[test]
    fn past_the_spare_slabs_messages_are_copied_and_lending_resumes_when_they_are_let_go() {
        // One spare: a held message pins its slab, the spare stands in, and the next messages
        // are copied until the first is dropped.
        let mut pair = Pair::new(1);
        let first = pair.send(b"pins a slab");
        assert!(first.is_lent());
        let second = pair.send(b"copied: no spare left");
        let third = pair.send(b"copied too");
        assert!(!second.is_lent() && !third.is_lent());
        assert_eq!((pair.counted("lent"), pair.counted("copied")), (1, 2));
        let slabs = &pair.io.recv.slabs;
        assert_eq!(
            (slabs.pinned(), slabs.made()),
            (1, 1),
            "one slab pinned, one made"
        );
        drop(first);
        let fourth = pair.send(b"lent again");
        assert!(fourth.is_lent(), "the pinned slab came back");
        assert_eq!((pair.counted("lent"), pair.counted("copied")), (2, 2));
        assert_eq!(
            pair.io.recv.slabs.made(),
            1,
            "nothing made beyond the bound"
        );
        drop((second, third, fourth));
    }

    #[test]
    fn a_batch_of_five_datagrams_lands_in_the_5_to_8_bucket() {
        let socket = super::super::sys::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = socket.local_addr().unwrap();
        let mut io = EpollIo::new(Poll::new().unwrap(), socket, false, 0).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            peer.send_to(&[i; 40], address).unwrap();
        }
        let mut stats = Stats::new();
        let mut got = Vec::new();
        // Loopback queues a datagram before send_to returns, so one recvmmsg finds all five.
        io.wait(Duration::from_secs(5)).unwrap();
        let read = io.receive(&mut stats, |_, _, datagram| got.push(datagram.bytes()[0]));
        assert_eq!(read, 5);
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(stats.get("weft_shard_recv_batches_total", None), 1);
        assert_eq!(
            stats.get("weft_shard_recv_batch_size_total", Some(("size", "5-8"))),
            1
        );
    }

    #[test]
    fn queued_control_datagrams_leave_lent_and_their_buffers_return_to_the_pool() {
        use crate::channel::{Endpoint, EndpointConfig};
        let socket = super::super::sys::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let gso = super::super::sys::gso_supported(&socket);
        let mut io = EpollIo::new(Poll::new().unwrap(), socket, gso, 0).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = peer.local_addr().unwrap();
        let identity = crate::session::Identity::from_secret_bytes([4; 32], [5; 32]);
        let now = std::time::Instant::now();
        let mut endpoint = Endpoint::new(EndpointConfig::default(), identity, [6; 32], now);
        let mut stats = Stats::new();
        let mut buf = [0u8; 2048];
        for round in 0..10u8 {
            for n in 0..3u8 {
                assert!(endpoint.queue_datagram(to, &[round * 3 + n; 50]));
            }
            assert_eq!(io.transmit(&mut endpoint, &mut stats), 3);
            for n in 0..3u8 {
                let (len, _) = peer.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..len], &[round * 3 + n; 50]);
            }
        }
        // Three buffers made in the first round; every later round reused them.
        assert_eq!(endpoint.control_buffers_made(), 3);
    }
}
