//! Control datagrams waiting for the driver: a bounded queue of pooled buffers, so sending
//! allocates nothing after warm-up (PROTOCOL.md §12). Handshakes, stateless answers, cookies and
//! channel establishment are built here when the state changes. Data packets never wait here
//! (they are built in the driver's buffer, `endpoint/flush.rs`), nor does the control a channel
//! owes its peer in steady state (PONGs, its confirmation, keep-alives: `owed.rs`, written into
//! the channel's next packet).
//!
//! How a queued datagram leaves (issue 11 point 2): a driver that can send from any memory
//! takes the pooled buffer itself ([`Outgoing::pop_lent`], `Endpoint::poll_transmit_lent`),
//! points its send at it and gives it back ([`Outgoing::recycle`]) once the kernel is done with
//! it: no copy. A driver that lends one buffer per datagram (tests, simple drivers) gets a copy
//! ([`Outgoing::pop`]); the datagrams are small and rare.
//!
//! No zero-fill per datagram: a buffer is zeroed once, when it is made (`vec![0; ..]`: safe
//! Rust cannot lend `wire`'s `&mut [u8]` writers memory that was never written), and reused
//! from the pool, unzeroed, for ever after; every byte a datagram sends is written by its
//! builder first. The pool grows, during warm-up, to the most buffers ever out at once: the
//! queue's limit plus what the driver holds lent (one send batch), and no further; steady state
//! makes none ([`Outgoing::made`]).

use crate::wire::{Header, Message};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// The largest datagram the endpoint builds; the path MTU starts at 1200 (PROTOCOL.md §3).
pub(crate) const MAX_DATAGRAM: usize = 1452;

struct Datagram {
    to: SocketAddr,
    /// The header of a packet still being built; None for one built whole (sealed packets).
    header: Option<Header>,
    len: usize,
    bytes: Box<[u8]>,
}

/// A queued control datagram lent to the driver ([`Outgoing::pop_lent`]): its pooled buffer
/// itself, which the driver's send points at, and gives back to the endpoint that lent it
/// (`Endpoint::recycle_datagram`) once the send is done. The buffer's memory is on the heap:
/// moving a `LentDatagram` does not move the bytes a pending send points at.
#[derive(Debug)]
pub struct LentDatagram {
    destination: SocketAddr,
    len: usize,
    bytes: Box<[u8]>,
}

impl LentDatagram {
    /// Where the datagram goes.
    pub fn destination(&self) -> SocketAddr {
        self.destination
    }

    /// The datagram's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// False: a lent datagram holds at least a header.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The datagram.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// Where the datagram's bytes start, for a send's iovec. Stays valid, and the bytes
    /// unchanged, while the `LentDatagram` is alive, wherever it is moved.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr()
    }
}

/// Packets queued for sending, plus the one being filled.
pub(crate) struct Outgoing {
    queue: VecDeque<Datagram>,
    pool: Vec<Box<[u8]>>,
    /// Buffers made (zeroed once) since the queue was: the warm-up's count, which steady
    /// state leaves alone.
    made: usize,
    open: Option<Datagram>,
    /// Size limit of the packet being built.
    open_limit: usize,
    limit: usize,
}

impl Outgoing {
    /// A queue that holds at most `limit` datagrams.
    pub(crate) fn new(limit: usize) -> Outgoing {
        Outgoing {
            queue: VecDeque::with_capacity(limit.min(1024)),
            pool: Vec::new(),
            made: 0,
            open: None,
            open_limit: 0,
            limit,
        }
    }

    /// A buffer for the next datagram: a pooled one, unzeroed (its builder writes every byte
    /// it sends), or during warm-up a new one, zeroed once when made.
    fn buffer(&mut self) -> Box<[u8]> {
        self.pool.pop().unwrap_or_else(|| {
            self.made = self.made.saturating_add(1);
            vec![0u8; MAX_DATAGRAM].into_boxed_slice()
        })
    }

    /// Buffers made since the queue was (the warm-up's).
    #[cfg(test)]
    pub(crate) fn made(&self) -> usize {
        self.made
    }

    /// Datagrams queued, with the one being filled.
    pub(crate) fn len(&self) -> usize {
        self.queue
            .len()
            .saturating_add(usize::from(self.open.is_some()))
    }

    /// True when no more datagrams fit.
    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.limit
    }

    /// Starts a packet to `to` with `header`, closing the packet in progress. Returns false (and
    /// starts nothing) when the queue is full.
    pub(crate) fn start(&mut self, to: SocketAddr, header: &Header, size_limit: usize) -> bool {
        self.finish();
        if self.is_full() {
            return false;
        }
        let mut bytes = self.buffer();
        let Ok(len) = header.emit(&mut bytes) else {
            self.pool.push(bytes);
            return false;
        };
        self.open_limit = size_limit.min(MAX_DATAGRAM);
        self.open = Some(Datagram {
            to,
            header: Some(*header),
            len,
            bytes,
        });
        true
    }

    /// True when the packet being built goes to `to` under exactly `header`, so a further
    /// message can join it (parallel opens and grouped answers share one packet, §6).
    pub(crate) fn open_matches(&self, to: SocketAddr, header: &Header) -> bool {
        self.open
            .as_ref()
            .is_some_and(|d| d.to == to && d.header.as_ref() == Some(header))
    }

    /// Bytes still free in the packet being built.
    pub(crate) fn remaining(&self) -> usize {
        self.open
            .as_ref()
            .map_or(0, |d| self.open_limit.saturating_sub(d.len))
    }

    /// Appends a message to the open packet; false if it does not fit (nothing is written).
    pub(crate) fn push(&mut self, message: &Message<'_>) -> bool {
        let limit = self.open_limit;
        let Some(open) = self.open.as_mut() else {
            return false;
        };
        if message.encoded_len() > limit.saturating_sub(open.len) {
            return false;
        }
        match message.emit(&mut open.bytes[open.len..limit]) {
            Ok(written) => {
                open.len = open.len.saturating_add(written);
                true
            }
            Err(_) => false,
        }
    }

    /// Queues a datagram that `build` writes whole into a pooled buffer (it returns the length,
    /// or None to abandon it). Sealed packets are built this way: nothing may join them later.
    /// Returns false when the queue is full or `build` gave up.
    pub(crate) fn with_buffer(
        &mut self,
        to: SocketAddr,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        self.finish();
        if self.is_full() {
            return false;
        }
        let mut bytes = self.buffer();
        match build(&mut bytes) {
            Some(len) if len <= bytes.len() => {
                self.queue.push_back(Datagram {
                    to,
                    header: None,
                    len,
                    bytes,
                });
                true
            }
            _ => {
                self.pool.push(bytes);
                false
            }
        }
    }

    /// Queues the open packet.
    pub(crate) fn finish(&mut self) {
        if let Some(open) = self.open.take() {
            self.queue.push_back(open);
        }
    }

    /// Drops the open packet without sending it.
    pub(crate) fn abandon(&mut self) {
        if let Some(open) = self.open.take() {
            self.pool.push(open.bytes);
        }
    }

    /// Lends the next datagram's pooled buffer itself, for the driver to send from; it comes
    /// back by [`recycle`](Self::recycle).
    pub(crate) fn pop_lent(&mut self) -> Option<LentDatagram> {
        self.finish();
        let datagram = self.queue.pop_front()?;
        Some(LentDatagram {
            destination: datagram.to,
            len: datagram.len,
            bytes: datagram.bytes,
        })
    }

    /// Takes back a lent buffer once its send is done: into the pool, unzeroed.
    pub(crate) fn recycle(&mut self, lent: LentDatagram) {
        // Only buffers this queue made are lent; the length check keeps a stray one out.
        if lent.bytes.len() == MAX_DATAGRAM && self.pool.len() < self.made {
            self.pool.push(lent.bytes);
        }
    }

    /// Copies the next datagram into `buf`; returns its destination and length.
    pub(crate) fn pop(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        self.finish();
        loop {
            let datagram = self.queue.pop_front()?;
            let fits = datagram.len <= buf.len();
            if fits {
                buf[..datagram.len].copy_from_slice(&datagram.bytes[..datagram.len]);
            }
            let result = (datagram.to, datagram.len);
            self.pool.push(datagram.bytes);
            if fits {
                return Some(result);
            }
            // A caller buffer too small for a datagram we built is a driver bug; skip it rather
            // than send a truncated packet.
        }
    }
}
