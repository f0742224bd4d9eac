//! What both I/O backends share, below them and below the shard that drives them: the tokens
//! of the shard's mio `Poll`, and the batch-size buckets every backend counts its batches in
//! (PROTOCOL.md §12: counted locally, published about once a second).

use crate::channel::{Endpoint, Lendable};
use crate::stats::Stats;
use mio::Token;
use std::net::SocketAddr;
use std::time::Instant;

/// One received datagram as a backend hands it to the shard: bytes in the backend's batch,
/// copied out of when a message is kept, or a piece of a receive slab the endpoint may lend
/// (`slabs.rs`).
pub(super) enum Incoming<'a> {
    Copied(&'a mut [u8]),
    Lent(&'a mut Lendable),
}

impl Incoming<'_> {
    /// The datagram's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Incoming::Copied(bytes) => bytes,
            Incoming::Lent(lendable) => lendable.bytes(),
        }
    }

    /// Hands the datagram to `endpoint`.
    pub(super) fn handle(self, endpoint: &mut Endpoint, now: Instant, from: SocketAddr) {
        match self {
            Incoming::Copied(bytes) => endpoint.handle(now, from, bytes),
            Incoming::Lent(lendable) => endpoint.handle_lent(now, from, lendable),
        }
    }
}

/// The shard's socket on its `Poll` (the epoll backend registers it; io_uring reads it itself).
pub(super) const SOCKET: Token = Token(0);
/// The shard's waker on its `Poll`: other shards and workers wake either backend through it.
pub(super) const WAKER: Token = Token(1);

/// Upper bounds of the batch-size buckets (`size` label of `weft_shard_*_batch_size_total`).
pub(super) const BATCH_BUCKETS: [(usize, &str); 7] = [
    (1, "1"),
    (4, "2-4"),
    (8, "5-8"),
    (16, "9-16"),
    (32, "17-32"),
    (64, "33-64"),
    (usize::MAX, "65+"),
];

/// The bucket a batch of `datagrams` (at least 1) falls in.
pub(super) fn batch_bucket(datagrams: usize) -> usize {
    BATCH_BUCKETS
        .iter()
        .position(|&(upper, _)| datagrams <= upper)
        .unwrap_or(BATCH_BUCKETS.len().saturating_sub(1))
}

/// Counts one receive batch of `datagrams` (PROTOCOL.md §12: counted locally, published about
/// once a second).
pub(super) fn record_recv_batch(stats: &mut Stats, datagrams: usize) {
    if datagrams == 0 {
        return;
    }
    stats.add("weft_shard_recv_batches_total", None, 1);
    let label = BATCH_BUCKETS[batch_bucket(datagrams)].1;
    stats.add("weft_shard_recv_batch_size_total", Some(("size", label)), 1);
}

/// Counts one turn's receive on either backend: its batch, the datagrams it held and the
/// kernel's running count of datagrams its receive queue dropped (SO_RXQ_OVFL).
pub(super) fn record_receive(stats: &mut Stats, datagrams: usize, rxq_overflows: u32) {
    record_recv_batch(stats, datagrams);
    stats.add(
        "weft_shard_datagrams_received_total",
        None,
        datagrams as u64,
    );
    stats.set_counter(
        "weft_shard_rxq_overflows_total",
        None,
        u64::from(rxq_overflows),
    );
}

/// Counts `batches` send batches per bucket, as [`super::sys::Flushed::sizes`] holds them.
pub(super) fn record_send_batches(stats: &mut Stats, sizes: &[u32; BATCH_BUCKETS.len()]) {
    for (bucket, &count) in sizes.iter().enumerate() {
        if count > 0 {
            stats.add("weft_shard_send_batches_total", None, u64::from(count));
            let label = BATCH_BUCKETS[bucket].1;
            stats.add(
                "weft_shard_send_batch_size_total",
                Some(("size", label)),
                u64::from(count),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_land_in_their_buckets() {
        let expect = [
            (1, "1"),
            (2, "2-4"),
            (4, "2-4"),
            (5, "5-8"),
            (8, "5-8"),
            (9, "9-16"),
            (17, "17-32"),
            (32, "17-32"),
            (33, "33-64"),
            (64, "33-64"),
            (65, "65+"),
            (1000, "65+"),
        ];
        for (n, label) in expect {
            assert_eq!(BATCH_BUCKETS[batch_bucket(n)].1, label, "{n}");
        }
        let mut stats = Stats::new();
        record_recv_batch(&mut stats, 5);
        record_recv_batch(&mut stats, 0);
        record_recv_batch(&mut stats, 7);
        assert_eq!(stats.get("weft_shard_recv_batches_total", None), 2);
        assert_eq!(
            stats.get("weft_shard_recv_batch_size_total", Some(("size", "5-8"))),
            2
        );
        assert_eq!(
            stats.get("weft_shard_recv_batch_size_total", Some(("size", "1"))),
            0
        );
    }
}
