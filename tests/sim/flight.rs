//! Datagrams in flight: what a send does (route, link fate, trace) and the queue of arrivals,
//! apart from the network so `mod.rs` stays one idea.

use super::link::LinkConfig;
use super::link::{DropReason, Fate, Link};
use super::rng::{SimRng, mix64};
use super::trace::{TraceEvent, TraceKind, digest};
use super::{DropHook, NodeId};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::Instant;

/// A datagram in flight; ordered by arrival time, then by the order it was scheduled in, so
/// simultaneous arrivals are delivered in a reproducible order.
pub(super) struct InFlight {
    pub(super) at: Instant,
    pub(super) seq: u64,
    pub(super) link: (NodeId, NodeId),
    pub(super) from: SocketAddr,
    pub(super) to: SocketAddr,
    pub(super) bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub(super) fn new_link(seed: u64, from: NodeId, to: NodeId) -> Link {
    // Each directed pair draws from its own stream: changing one link's traffic or settings
    // leaves every other link's fate unchanged.
    let stream = ((from.0 as u64) << 32) | (to.0 as u64 & 0xFFFF_FFFF);
    // A path's own latency (`LinkConfig::jitter_per_link`) is one draw per unordered pair, so
    // both directions of a path are equally long.
    let (lo, hi) = (from.0.min(to.0) as u64, from.0.max(to.0) as u64);
    let path = mix64(seed ^ mix64((lo << 32 | (hi & 0xFFFF_FFFF)) ^ 0x9a7e_1a7e));
    Link::new(SimRng::derive(seed, stream), path)
}

/// The parts of the network a send touches, borrowed apart from the sending node.
pub(super) struct SendCtx<'a> {
    pub(super) now: Instant,
    pub(super) epoch: Instant,
    pub(super) seed: u64,
    pub(super) routes: &'a BTreeMap<SocketAddr, NodeId>,
    pub(super) default_link: &'a LinkConfig,
    pub(super) links: &'a mut BTreeMap<(NodeId, NodeId), Link>,
    pub(super) in_flight: &'a mut BinaryHeap<Reverse<InFlight>>,
    pub(super) next_seq: &'a mut u64,
    pub(super) unroutable: &'a mut u64,
    pub(super) trace: &'a mut Option<Vec<TraceEvent>>,
    pub(super) drop_hook: &'a mut Option<DropHook>,
}

pub(super) fn send(
    ctx: SendCtx<'_>,
    from: NodeId,
    from_addr: SocketAddr,
    to_addr: SocketAddr,
    bytes: &[u8],
) {
    let mut record = |kind: TraceKind, at: Instant| {
        if let Some(trace) = ctx.trace.as_mut() {
            trace.push(TraceEvent {
                at: at - ctx.epoch,
                from: from_addr,
                to: to_addr,
                len: bytes.len(),
                digest: digest(bytes),
                kind,
            });
        }
    };
    let Some(&to) = ctx.routes.get(&to_addr) else {
        *ctx.unroutable += 1;
        record(TraceKind::Unroutable, ctx.now);
        return;
    };
    let link = ctx
        .links
        .entry((from, to))
        .or_insert_with(|| new_link(ctx.seed, from, to));
    let config = link.config.unwrap_or(*ctx.default_link);
    match link.transmit(ctx.now, bytes.len(), &config) {
        Fate::Dropped(reason) => {
            let kind = match reason {
                DropReason::Mtu => TraceKind::DroppedMtu,
                DropReason::Queue => TraceKind::DroppedQueue,
                DropReason::Lost => TraceKind::Lost,
            };
            record(kind, ctx.now);
            if let Some(hook) = ctx.drop_hook.as_mut() {
                hook(&from_addr, &to_addr, bytes);
            }
        }
        Fate::Arrives { first, second } => {
            for at in std::iter::once(first).chain(second) {
                ctx.in_flight.push(Reverse(InFlight {
                    at,
                    seq: *ctx.next_seq,
                    link: (from, to),
                    from: from_addr,
                    to: to_addr,
                    bytes: bytes.to_vec(),
                }));
                *ctx.next_seq += 1;
            }
        }
    }
}
