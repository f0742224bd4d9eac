//! One peer's connection (STYLE.md 15): the state the node holds for a peer whose address a
//! cookie or a handshake validated (PROTOCOL.md §3, §6) — its channels by id, their shared path
//! (congestion, pacing, RTT, MTU), its reassembly budget, its counters and its timer table. The
//! router finds it with one lookup per datagram; the endpoint then works on it by field access.

mod timer;

pub(crate) use timer::{Timer, TimerTable};

use crate::channel::reliability::{PathState, ReassemblyBudget};
use crate::channel::state::Traffic;
use crate::handle::{FxHashMap, Handle};
use crate::wire::PeerId;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

/// A peer this node has channel state with: the connection a datagram from it is routed to.
pub(crate) struct Connection {
    /// ZERO until the peer's first answer names it (a kind-0 open to a bare address).
    pub(crate) id: PeerId,
    pub(crate) address: SocketAddr,
    pub(crate) last_heard: Instant,
    /// When the last channel with this peer opened.
    pub(crate) last_open: Instant,
    /// Established or half-established channels by full id.
    // Seeded (std RandomState): the peer picks half of every id (c1 or c2).
    pub(crate) channels: HashMap<u32, Handle>,
    /// Our own opens still waiting for CHANNEL_ACKNOWLEDGE, by c1.
    // Fx: c1 here is an id this node picked for its own open.
    pub(crate) opening: FxHashMap<u16, Handle>,
    /// Channel ids a kind-0 peer opened lately: PROTOCOL.md §6 forbids reuse, so a replayed
    /// FINALIZE cannot reopen a closed channel. Under a session the session's keys remember
    /// closed ids instead (`ChannelKeys::is_retired`), for the session's whole life.
    pub(crate) used_ids: UsedIds,
    /// Whether the peer waits in the endpoint's list of peers with packets to build.
    pub(crate) dirty: bool,
    /// Whether the peer waits in the endpoint's queue of idle peers.
    pub(crate) idle_queued: bool,
    /// The channel count under which the endpoint's fairness index holds the peer (0: not
    /// indexed).
    pub(crate) load: usize,
    /// Congestion control, pacing, RTT and MTU shared by the peer's channels (§7.3); made with
    /// the first channel that carries data.
    pub(crate) path: Option<PathState>,
    /// The peer's share of the node's reassembly memory (§7.5).
    pub(crate) budget: Option<ReassemblyBudget>,
    /// The peer's channels with data state, in the order they take turns.
    pub(crate) order: Vec<Handle>,
    /// Channels touched since the last flush (a packet, a send, a timer): only these are
    /// visited, so a packet costs the same whatever number of channels its sender holds.
    pub(crate) touched: Vec<Handle>,
    /// Whether the next flush must offer every channel a turn: the path's window opened (an
    /// ACK or a loss freed room), or the last flush stopped at a full transmit queue.
    pub(crate) rescan: bool,
    /// The congestion window's free room after the last flush, to notice it opening.
    pub(crate) room: u64,
    /// Kind-0 traffic with the peer (a peer with a session counts on its [`PeerSession`]).
    pub(crate) traffic: Traffic,
    /// The connection's deadlines, one slot per kind (STYLE.md 7); the router keeps their
    /// minimum in its [`DeadlineHeap`](crate::channel::deadlines::DeadlineHeap).
    pub(crate) timers: TimerTable,
}

impl Connection {
    pub(crate) fn new(id: PeerId, address: SocketAddr, now: Instant) -> Connection {
        Connection {
            id,
            address,
            last_heard: now,
            last_open: now,
            channels: HashMap::new(),
            opening: FxHashMap::default(),
            used_ids: UsedIds::default(),
            dirty: false,
            idle_queued: false,
            load: 0,
            path: None,
            budget: None,
            order: Vec::new(),
            touched: Vec::new(),
            rescan: false,
            room: 0,
            traffic: Traffic::default(),
            timers: TimerTable::default(),
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.channels.is_empty() && self.opening.is_empty()
    }

    /// Channels open or opening with this peer: what it holds of the node's channel table.
    pub(crate) fn load(&self) -> usize {
        self.channels.len().saturating_add(self.opening.len())
    }
}

/// A kind-0 peer's used channel ids, kept by cookie rotation. A cookie2 is accepted for two
/// rotations (PROTOCOL.md §6), so an id opened before the previous rotation can no longer be
/// replayed open and is forgotten: memory follows the peer's recent opens, which the endpoint
/// caps, not its history. Boxed and made on the first insert, and freed once both rotations are
/// empty: a peer under a session never inserts, so it pays a null pointer, not two sets.
#[derive(Default)]
pub(crate) struct UsedIds(Option<Box<UsedIdSets>>);

#[derive(Default)]
struct UsedIdSets {
    // Seeded (std RandomState): the peer picked these ids.
    current: HashSet<u32>,
    // Seeded, as `current`.
    previous: HashSet<u32>,
    /// The cookie rotation `current` belongs to.
    epoch: u64,
}

impl UsedIdSets {
    fn roll(&mut self, epoch: u64) {
        if epoch == self.epoch {
            return;
        }
        if epoch == self.epoch.saturating_add(1) {
            self.previous = std::mem::take(&mut self.current);
        } else {
            self.previous = HashSet::new();
            self.current = HashSet::new();
        }
        self.epoch = epoch;
    }

    fn is_empty(&self) -> bool {
        self.current.is_empty() && self.previous.is_empty()
    }
}

impl UsedIds {
    /// The sets rolled to `epoch`, or None when no id is remembered then (freeing them).
    fn at(&mut self, epoch: u64) -> Option<&mut UsedIdSets> {
        let sets = self.0.as_mut()?;
        sets.roll(epoch);
        if sets.is_empty() {
            self.0 = None;
        }
        self.0.as_deref_mut()
    }

    /// True if `id` was opened in this rotation or the one before.
    pub(crate) fn contains(&mut self, epoch: u64, id: u32) -> bool {
        self.at(epoch)
            .is_some_and(|sets| sets.current.contains(&id) || sets.previous.contains(&id))
    }

    pub(crate) fn insert(&mut self, epoch: u64, id: u32) {
        let sets = self.0.get_or_insert_with(Box::default);
        sets.roll(epoch);
        sets.current.insert(id);
    }

    /// Ids remembered now.
    pub(crate) fn len(&mut self, epoch: u64) -> usize {
        self.at(epoch).map_or(0, |sets| {
            sets.current.len().saturating_add(sets.previous.len())
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|sets| sets.is_empty())
    }
}
