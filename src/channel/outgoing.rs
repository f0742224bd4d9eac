//! Control datagrams waiting for the driver: a bounded queue of pooled buffers, so sending
//! allocates nothing after warm-up (PROTOCOL.md §12). Handshakes, stateless answers and
//! channel establishment are built here when the state changes and copied into the driver's
//! buffer when it asks; data packets never wait here (they are built in the driver's buffer,
//! `endpoint/flush.rs`).

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

/// Packets queued for sending, plus the one being filled.
pub(crate) struct Outgoing {
    queue: VecDeque<Datagram>,
    pool: Vec<Box<[u8]>>,
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
            open: None,
            open_limit: 0,
            limit,
        }
    }

    /// True when no more datagrams fit.
    pub(crate) fn is_full(&self) -> bool {
        self.queue
            .len()
            .saturating_add(usize::from(self.open.is_some()))
            >= self.limit
    }

    /// Starts a packet to `to` with `header`, closing the packet in progress. Returns false (and
    /// starts nothing) when the queue is full.
    pub(crate) fn start(&mut self, to: SocketAddr, header: &Header, size_limit: usize) -> bool {
        self.finish();
        if self.is_full() {
            return false;
        }
        let mut bytes = self
            .pool
            .pop()
            .unwrap_or_else(|| vec![0u8; MAX_DATAGRAM].into_boxed_slice());
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
        let mut bytes = self
            .pool
            .pop()
            .unwrap_or_else(|| vec![0u8; MAX_DATAGRAM].into_boxed_slice());
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
