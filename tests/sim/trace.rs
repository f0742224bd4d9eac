//! The record of every datagram's fate ([`super::Network::record_trace`]), compared across runs
//! to show a scenario is reproducible.

use std::net::SocketAddr;
use std::time::Duration;

/// What happened to a datagram, as recorded by [`Network::record_trace`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum TraceKind {
    /// Handed to the receiving node.
    Delivered,
    /// Lost by the loss draw.
    Lost,
    /// Larger than the link's MTU.
    DroppedMtu,
    /// Tail-dropped by a full queue.
    DroppedQueue,
    /// Refused by the `on_deliver` hook.
    DroppedByHook,
    /// Sent to an address no node holds.
    Unroutable,
    /// Put straight into a node by [`Network::inject`].
    Injected,
}

/// One line of the trace. `at` is virtual time since the network started, so traces of two runs
/// compare equal exactly when the runs behaved alike.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceEvent {
    /// Virtual time of the event (send time for drops, arrival time otherwise).
    pub(crate) at: Duration,
    /// Source address as the receiver sees it.
    pub(crate) from: SocketAddr,
    /// Destination address the sender used.
    pub(crate) to: SocketAddr,
    /// Datagram length.
    pub(crate) len: usize,
    /// FNV-1a of the bytes, so traces compare contents without keeping them.
    pub(crate) digest: u64,
    /// What happened.
    pub(crate) kind: TraceKind,
}

/// FNV-1a 64: a cheap content fingerprint for traces.
pub(crate) fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
