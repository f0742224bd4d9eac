//! At most one ACK alone per channel per receive batch (issue 12, in the spirit of
//! draft-ietf-quic-ack-frequency). A driver hands the endpoint a whole batch of datagrams before
//! it transmits anything, so an ACK written after every second packet of a batch leaves no
//! sooner than one written after the batch: it only costs a packet, to build, seal, send and
//! for the peer to open. While `handle` flushes, a channel whose packet would be an ACK and
//! nothing else keeps it; the flush after the batch (`poll_transmit`, or `handle_timeout`:
//! the channel's timer is armed at the ACK's deadline, which has passed) writes one ACK with
//! every range. Out-of-order arrival still makes the ACK due at once, so it leaves with that
//! flush too. An ACK beside data or WINDOW is never held: it costs nothing extra.

use super::Endpoint;
use crate::handle::Handle;

/// Most peers whose ACKs one batch holds back: a driver's batch is far smaller (the engine reads
/// 64 datagrams at a time); beyond it an ACK simply leaves at once, as before.
const MAX_HELD: usize = 1024;

/// The peers whose ACKs wait for the end of the receive batch.
#[derive(Debug, Default)]
pub(super) struct AckBatch {
    /// `handle` is flushing: an ACK alone waits.
    receiving: bool,
    /// Kept, so holding allocates nothing once it has grown.
    peers: Vec<Handle>,
}

impl AckBatch {
    /// Whether a packet of `peer` that would be an ACK alone may wait now; if so the peer is
    /// remembered for the flush after the batch.
    pub(super) fn hold(&mut self, peer: Handle) -> bool {
        if !self.receiving {
            return false;
        }
        // A batch is mostly one peer's packets in a row: one entry for them all.
        if self.peers.last() != Some(&peer) {
            if self.peers.len() >= MAX_HELD {
                return false;
            }
            self.peers.push(peer);
        }
        true
    }

    /// Whether `handle` is flushing (only then is an ACK held).
    pub(super) fn receiving(&self) -> bool {
        self.receiving
    }
}

impl Endpoint {
    /// `handle`'s flush: an ACK alone waits for the end of the batch.
    pub(super) fn flush_received(&mut self, now: std::time::Instant) {
        self.ack_batch.receiving = true;
        self.flush(now);
        self.ack_batch.receiving = false;
    }

    /// The batch is over: the peers whose ACKs waited are flushed by the next flush.
    pub(super) fn release_acks(&mut self) {
        let mut peers = std::mem::take(&mut self.ack_batch.peers);
        for &peer in &peers {
            self.mark_dirty(peer);
        }
        peers.clear();
        self.ack_batch.peers = peers;
    }
}
