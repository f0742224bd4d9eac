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
    /// more or the socket buffer is full; returns datagrams sent.
    pub(super) fn transmit(&mut self, endpoint: &mut Endpoint, stats: &mut Stats) -> usize {
        if !self.writable {
            return 0;
        }
        let mut sent = 0usize;
        loop {
            if !self.send.is_empty() {
                let flushed = self.send.flush(self.socket.as_raw_fd());
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
            while let Some(slot) = self.send.slot() {
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
mod tests {
    use super::*;

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
}
