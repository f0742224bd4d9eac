//! What leaves the endpoint, as its driver asks (PROTOCOL.md §12, issue 11 point 2): the
//! datagrams queued when the state changed (handshakes, cookies, stateless answers: `Outgoing`),
//! lent to a driver that sends from any memory or copied for one that does not, then the
//! peers' packets, each built and sealed straight into the driver's buffer (`flush.rs`), with
//! the control their channels owe riding in them (`owed.rs`).

use super::*;
use crate::channel::outgoing::LentDatagram;

impl Endpoint {
    /// Writes the next datagram to send into `buf` (at least 1452 bytes). Control datagrams
    /// queued when the state changed go first, copied from the queue (they are small and
    /// rare; tests and simple drivers use this, a batching driver takes them without a copy
    /// by [`poll_transmit_lent`](Self::poll_transmit_lent) first); then the peers' packets,
    /// each built and sealed straight into `buf`, in place, when it is asked for, with what
    /// their channels owe (PONGs, confirmations, keep-alives) inside: neither copies a datagram,
    /// and `buf` is never cleared first.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (destination, len) = match self.outgoing.pop(buf) {
            Some(queued) => queued,
            None => self.next_data_packet(buf)?,
        };
        self.count_transmit(buf.get(..len).unwrap_or_default());
        Some(Transmit { destination, len })
    }

    /// Lends the next queued control datagram (a handshake, a cookie, a stateless answer) to
    /// the driver without copying it: its pooled buffer itself, which the driver's send points
    /// at. The driver keeps the [`LentDatagram`] alive until the kernel is done with the bytes (for an
    /// asynchronous send, until its completion) and then gives it back by
    /// [`recycle_datagram`](Self::recycle_datagram), so the pool stays warm and sending
    /// allocates nothing. None when no control datagram waits: the peers' packets are then
    /// built into the driver's buffer by [`poll_transmit`](Self::poll_transmit).
    #[must_use]
    pub fn poll_transmit_lent(&mut self) -> Option<LentDatagram> {
        let lent = self.outgoing.pop_lent()?;
        self.count_transmit(lent.bytes());
        Some(lent)
    }

    /// Takes back a datagram lent by [`poll_transmit_lent`](Self::poll_transmit_lent) once its
    /// send is done (sent or refused): its buffer goes back to the pool, unzeroed.
    pub fn recycle_datagram(&mut self, lent: LentDatagram) {
        self.outgoing.recycle(lent);
    }

    /// Control buffers made since the endpoint was (the warm-up's): steady state makes none.
    #[cfg(test)]
    pub(crate) fn control_buffers_made(&self) -> usize {
        self.outgoing.made()
    }

    /// Counts one datagram leaving: the node's packets and bytes, and the peer's traffic.
    fn count_transmit(&mut self, datagram: &[u8]) {
        self.stats.add_at(self.hot.packets_sent, 1);
        self.stats
            .add_at(self.hot.sent_bytes, datagram.len() as u64);
        self.count_sent(datagram);
    }

    /// Queues a datagram its driver built whole, sent in turn with the endpoint's own: the
    /// engine's stateless probe of a bare address (`engine/bare.rs`), which leaves no state
    /// here. False when the queue is full or the datagram larger than any the endpoint sends.
    pub fn queue_datagram(&mut self, to: SocketAddr, datagram: &[u8]) -> bool {
        let queued = self.outgoing.with_buffer(to, |buf| {
            buf.get_mut(..datagram.len())?.copy_from_slice(datagram);
            Some(datagram.len())
        });
        if !queued {
            self.drop_packet("transmit_queue_full");
        }
        queued
    }
}
