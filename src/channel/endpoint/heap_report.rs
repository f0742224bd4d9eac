//! Where an endpoint's heap goes, part by part (issue 12: what an idle peer costs). The report
//! takes the endpoint apart and reads the live heap after dropping each part, so every figure
//! is what the allocator really held (capacity, boxes, hash tables' control bytes), not an
//! estimate from the types.

use super::Endpoint;
use crate::channel::connection::Connection;
use crate::channel::reliability::{ChannelReliability, PathState};
use crate::channel::state::{Channel, ChannelData, PeerSession};
use crate::heap::freed;
use crate::session::{ChannelCrypto, ChannelKeys, Session, SessionSlot};
use std::mem::{size_of, take};

/// One endpoint's heap, taken apart: bytes per part, and the inline size of the types a peer
/// is made of.
#[derive(Debug, Default)]
pub struct HeapReport {
    /// Heap bytes each part freed when dropped, in the order they were dropped.
    pub parts: Vec<(&'static str, i64)>,
    /// `size_of` of each per-peer type.
    pub sizes: Vec<(&'static str, usize)>,
}

impl HeapReport {
    fn add(&mut self, part: &'static str, bytes: i64) {
        match self.parts.iter_mut().find(|(name, _)| *name == part) {
            Some((_, total)) => *total = total.saturating_add(bytes),
            None => self.parts.push((part, bytes)),
        }
    }

    fn measure(&mut self, live: &dyn Fn() -> i64, part: &'static str, drop_it: impl FnOnce()) {
        let bytes = freed(live, drop_it);
        self.add(part, bytes);
    }
}

impl Endpoint {
    /// Takes the endpoint apart and reports the heap each part held. `live` reads the calling
    /// thread's live heap (a counting allocator's count; nothing else may allocate on the
    /// thread meanwhile). For the memory tests and `docs/PERFORMANCE.md`'s table: not an
    /// operator's tool, so it consumes the endpoint.
    #[doc(hidden)]
    pub fn heap_report(mut self, live: &dyn Fn() -> i64) -> HeapReport {
        let mut report = HeapReport {
            sizes: vec![
                ("Connection", size_of::<Connection>()),
                ("PathState", size_of::<PathState>()),
                ("Channel", size_of::<Channel>()),
                ("ChannelData", size_of::<ChannelData>()),
                ("ChannelReliability", size_of::<ChannelReliability>()),
                ("PeerSession", size_of::<PeerSession>()),
                ("SessionSlot", size_of::<SessionSlot>()),
                ("Session", size_of::<Session>()),
                ("ChannelKeys", size_of::<ChannelKeys>()),
                ("ChannelCrypto", size_of::<ChannelCrypto>()),
            ],
            ..HeapReport::default()
        };
        report.sizes.extend(ChannelReliability::part_sizes());
        let live_fn = live;
        for (_, peer) in self.peers.iter_mut() {
            for channel in peer.lanes.iter_mut() {
                let Some(data) = channel.data.take() else {
                    continue;
                };
                let ChannelData { reliability, .. } = *data;
                report.add("ChannelData (box)", size_of::<ChannelData>() as i64);
                for (part, bytes) in reliability.heap_parts(live_fn) {
                    report.add(part, bytes);
                }
            }
            let lanes = take(&mut peer.lanes);
            report.measure(live, "connection lanes (channels)", || drop(lanes));
        }
        let channels = std::mem::replace(&mut self.channels, slab_of_one());
        report.measure(live, "channel handle slab slots", || drop(channels));
        for (_, peer) in self.peers.iter_mut() {
            let map = take(&mut peer.channels);
            report.measure(live, "connection channel map", || drop(map));
            let opening = take(&mut peer.opening);
            let used = take(&mut peer.used_ids);
            report.measure(live, "connection opening map, used ids", || {
                drop((opening, used))
            });
            let path = peer.path.take();
            report.measure(live, "PathState heap (controller)", || drop(path));
            let budget = peer.budget.take();
            report.measure(live, "peer reassembly budget", || drop(budget));
            let lists = (take(&mut peer.order), take(&mut peer.touched));
            report.measure(live, "connection order, touched", || drop(lists));
            let deadlines = take(&mut peer.channel_deadlines);
            report.measure(live, "connection channel deadlines", || drop(deadlines));
        }
        for (_, peer) in self.peers.iter_mut() {
            let Some(entry) = peer.session.as_mut() else {
                continue;
            };
            for session in entry.slot.take_sessions() {
                report.add("Session (box)", size_of::<Session>() as i64);
                let mut session = session;
                let keys = std::mem::replace(&mut session.keys, ChannelKeys::new([0; 32], [0; 32]));
                for (part, bytes) in keys.heap_parts(live) {
                    report.add(part, bytes);
                }
            }
        }
        let peers = std::mem::replace(&mut self.peers, slab_of_one());
        report.measure(live, "connection slab slots (sessions inline)", || {
            drop(peers)
        });
        let router = (
            take(&mut self.deadlines),
            take(&mut self.loads),
            take(&mut self.idle_peers),
            take(&mut self.unnamed),
        );
        report.measure(live, "router deadlines, loads, idle list", || drop(router));
        let ids = take(&mut self.ids);
        report.measure(live, "peer index (id → connection)", || drop(ids));
        let table = std::mem::replace(&mut self.session_table, crate::session::SessionTable::new());
        report.measure(live, "session table (per source, LRU)", || drop(table));
        let timers = take(&mut self.timers);
        report.measure(live, "handshake timers", || drop(timers));
        let bare = take(&mut self.bare_peers);
        report.measure(live, "bare peers", || drop(bare));
        let queues = (
            take(&mut self.events),
            take(&mut self.pool),
            std::mem::replace(
                &mut self.outgoing,
                crate::channel::outgoing::Outgoing::new(1),
            ),
        );
        report.measure(live, "events, buffer pool, outgoing queue", || drop(queues));
        let handshakes = (
            take(&mut self.pending_by_peer),
            take(&mut self.pending_by_addr),
            take(&mut self.pending_per_prefix),
            take(&mut self.timestamps),
            take(&mut self.records),
        );
        report.measure(live, "handshake tables", || drop(handshakes));
        let identities = take(&mut self.identities);
        report.measure(live, "local identities beyond the first", || {
            drop(identities)
        });
        let stats = take(&mut self.stats);
        report.measure(live, "stats", || drop(stats));
        report.measure(live, "rest of the endpoint", || drop(self));
        report
    }
}

fn slab_of_one<T>() -> crate::handle::Slab<T> {
    crate::handle::Slab::new(1).unwrap_or_else(|_| unreachable!("a slab of one is allowed"))
}
