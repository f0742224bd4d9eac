//! One peer's connection (STYLE.md 15): the state the node holds for a peer whose address a
//! cookie or a handshake validated (PROTOCOL.md §3, §6) — its channels, stored in its own lanes
//! and found by id, their shared path (congestion, pacing, RTT, MTU), its reassembly budget, its
//! counters and its timer table. The router finds it with one lookup per datagram; everything
//! else that datagram needs is in here.

mod close;
mod control;
mod datagram;
mod delivery;
mod lanes;
mod receive;
mod sealed;
mod tally;
mod timeout;
mod timer;
mod transmit;
mod turns;
mod walk;
#[cfg(test)]
mod walk_tests;

pub(crate) use datagram::Handled;
pub(crate) use delivery::{Delivered, DeliveryGate, Handover, mode_label};
pub(crate) use lanes::{ChannelAt, Lane, Lanes};
pub(crate) use receive::ChannelPacket;
pub(crate) use sealed::{Inbound, Opened};
pub(crate) use tally::TallySlots;
pub(crate) use timeout::Due;
pub(crate) use timer::{Timer, TimerTable, later};
pub(crate) use transmit::Context;
pub(crate) use walk::{Closing, ReceiveSlots, Sent, Shared, Walked, check_cookie2};

use crate::channel::deadlines::DeadlineHeap;
use crate::channel::reliability::{PathState, ReassemblyBudget};
use crate::channel::state::{PeerSession, Traffic};
use crate::handle::FxHashMap;
use crate::wire::PeerId;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A peer this node has channel state with: the connection a datagram from it is routed to.
pub(crate) struct Connection {
    /// ZERO until the peer's first answer names it (a kind-0 open to a bare address).
    pub(crate) id: PeerId,
    pub(crate) address: SocketAddr,
    pub(crate) last_heard: Instant,
    /// When the last channel with this peer opened.
    pub(crate) last_open: Instant,
    /// The peer's channels, open or opening: the connection owns their storage.
    pub(crate) lanes: Lanes,
    /// Established or half-established channels' lanes by full id.
    // Seeded (std RandomState): the peer picks half of every id (c1 or c2).
    pub(crate) channels: HashMap<u32, Lane>,
    /// Our own opens still waiting for CHANNEL_ACKNOWLEDGE, by c1.
    // Fx: c1 here is an id this node picked for its own open.
    pub(crate) opening: FxHashMap<u16, Lane>,
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
    /// The lanes of the peer's channels with data state, in the order they take turns.
    pub(crate) order: Vec<Lane>,
    /// Channels touched since the last flush (a packet, a send, a timer): only these are
    /// visited, so a packet costs the same whatever number of channels its sender holds.
    pub(crate) touched: Vec<Lane>,
    /// Whether the next flush must offer every channel a turn: the path's window opened (an
    /// ACK or a loss freed room), or the last flush stopped at a full transmit queue.
    pub(crate) rescan: bool,
    /// The congestion window's free room after the last flush, to notice it opening.
    pub(crate) room: u64,
    /// Kind-0 traffic with the peer (a peer with a session counts on its [`PeerSession`]).
    pub(crate) traffic: Traffic,
    /// The peer's sessions (PROTOCOL.md §5: the current one and the one it replaces or that
    /// replaces it), once a handshake completed: every peer with a session has a connection,
    /// so a sealed packet is opened with what its connection holds. Inline: a connection
    /// without one (kind 0, or an open to a bare address before its handshake) pays its
    /// inline room, one with one (nearly all of them) saves a slab slot and a lookup.
    pub(crate) session: Option<PeerSession>,
    /// The connection's deadlines, one slot per kind (STYLE.md 7); the router keeps their
    /// minimum in its [`DeadlineHeap`](crate::channel::deadlines::DeadlineHeap).
    pub(crate) timers: TimerTable,
    /// The data deadline of each channel in `order`, keyed by its place there; the earliest is
    /// the [`Timer::Data`] slot, so a due channel is found without a scan of the others.
    pub(crate) channel_deadlines: DeadlineHeap,
}

impl Connection {
    pub(crate) fn new(id: PeerId, address: SocketAddr, now: Instant) -> Connection {
        Connection {
            id,
            address,
            last_heard: now,
            last_open: now,
            lanes: Lanes::default(),
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
            session: None,
            timers: TimerTable::default(),
            channel_deadlines: DeadlineHeap::default(),
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.channels.is_empty() && self.opening.is_empty()
    }

    /// Channels open or opening with this peer: what it holds of the node's channel table.
    pub(crate) fn load(&self) -> usize {
        self.channels.len().saturating_add(self.opening.len())
    }

    /// Sets the data deadline of the channel at `order_at` in the turn order (None: it has
    /// none), and the data timer to the earliest of the connection's.
    pub(crate) fn set_channel_deadline(&mut self, order_at: usize, at: Option<Instant>) {
        if let Ok(slot) = u32::try_from(order_at) {
            self.channel_deadlines.set(slot, at);
        }
        self.sync_data_timer();
    }

    /// Takes the next channel whose data deadline is due at `now` out of the deadlines, and
    /// returns its place in the turn order.
    pub(crate) fn take_due_channel(&mut self, now: Instant) -> Option<usize> {
        let (at, slot) = self.channel_deadlines.peek()?;
        if at > now {
            return None;
        }
        self.channel_deadlines.set(slot, None);
        usize::try_from(slot).ok()
    }

    /// A channel left the turn order at `order_at` and the last one took its place
    /// (`swap_remove`): the deadlines follow.
    pub(crate) fn channel_removed(&mut self, order_at: usize) {
        let (Ok(at), Ok(last)) = (u32::try_from(order_at), u32::try_from(self.order.len())) else {
            return;
        };
        let moved = self.channel_deadlines.get(last);
        self.channel_deadlines.set(last, None);
        self.channel_deadlines
            .set(at, if at < last { moved } else { None });
        self.sync_data_timer();
    }

    /// The data timer is the earliest channel deadline.
    pub(crate) fn sync_data_timer(&mut self) {
        let earliest = self.channel_deadlines.peek().map(|(at, _)| at);
        self.timers.set(Timer::Data, earliest);
    }

    /// The connection's next deadline: the earliest slot of its timer table.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Disarms and returns the connection's earliest timer due at `now`.
    pub(crate) fn expired(&mut self, now: Instant) -> Option<Timer> {
        self.timers.take_expired(now).map(|(timer, _)| timer)
    }

    /// What the idle timer finds at `now` (PROTOCOL.md §7.7, §12), from when the peer was last
    /// heard: nothing yet, a silence long enough to shed its expanded keys, or the connection
    /// reset timeout.
    pub(crate) fn silence(&self, now: Instant, keep_alive: Duration, reset: Duration) -> Silence {
        let deadline = later(self.last_heard, reset);
        if deadline <= now {
            return Silence::Reset;
        }
        let idle_at = later(self.last_heard, keep_alive);
        if idle_at <= now {
            Silence::ShedKeys { until: deadline }
        } else {
            Silence::Wait {
                until: idle_at.min(deadline),
            }
        }
    }

    /// Until when a reset connection's used ids must be kept: a cookie2 stays valid for two
    /// rotations after it was made (PROTOCOL.md §6), so an id must outlive every cookie2 that
    /// could still reopen it.
    pub(crate) fn keep_used_ids_until(&self, cookie_rotation: Duration) -> Instant {
        later(self.last_open, cookie_rotation.saturating_mul(2))
    }
}

/// What a connection's idle timer found (see [`Connection::silence`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Silence {
    /// Heard lately: look again at `until`.
    Wait { until: Instant },
    /// Silent for a keep-alive interval: its expanded channel keys go (re-expanded by its next
    /// packet); the reset comes at `until`.
    ShedKeys { until: Instant },
    /// Silent for the connection reset timeout: its channels close.
    Reset,
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

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn connection(now: Instant) -> Connection {
        Connection::new(
            PeerId([1; 16]),
            "10.0.0.1:1000".parse().expect("address"),
            now,
        )
    }

    #[test]
    fn silence_sheds_keys_after_a_keep_alive_interval_and_resets_after_the_timeout() {
        let t0 = Instant::now();
        let (keep_alive, reset) = (Duration::from_secs(15), Duration::from_secs(60));
        let mut c = connection(t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            c.silence(at(1), keep_alive, reset),
            Silence::Wait { until: at(15) }
        );
        assert_eq!(
            c.silence(at(15), keep_alive, reset),
            Silence::ShedKeys { until: at(60) }
        );
        assert_eq!(c.silence(at(60), keep_alive, reset), Silence::Reset);
        // A packet heard moves every deadline.
        c.last_heard = at(50);
        assert_eq!(
            c.silence(at(60), keep_alive, reset),
            Silence::Wait { until: at(65) }
        );
        // A keep-alive interval longer than the reset timeout never sheds before it.
        let long = Duration::from_secs(90);
        assert_eq!(
            c.silence(at(60), long, reset),
            Silence::Wait { until: at(110) }
        );
    }

    #[test]
    fn a_due_channel_is_found_by_its_place_and_a_leaving_one_hands_its_place_over() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = connection(t0);
        c.order = vec![10, 11, 12];
        c.set_channel_deadline(0, Some(ms(30)));
        c.set_channel_deadline(1, Some(ms(10)));
        c.set_channel_deadline(2, Some(ms(20)));
        assert_eq!(c.timers.get(Timer::Data), Some(ms(10)));
        // The channel in the middle closes; the last one takes its place, deadline and all.
        c.order.swap_remove(1);
        c.channel_removed(1);
        assert_eq!(c.order, [10, 12]);
        assert_eq!(c.channel_deadlines.get(1), Some(ms(20)));
        assert_eq!(c.channel_deadlines.get(2), None);
        assert_eq!(c.timers.get(Timer::Data), Some(ms(20)));
        // At 25 ms only that one is due, found without looking at the other.
        assert_eq!(c.take_due_channel(ms(25)), Some(1));
        assert_eq!(c.take_due_channel(ms(25)), None);
        c.sync_data_timer();
        assert_eq!(c.timers.get(Timer::Data), Some(ms(30)));
        // The last channel leaving takes its own deadline with it.
        c.order.pop();
        c.channel_removed(1);
        c.order.pop();
        c.channel_removed(0);
        assert_eq!(c.timers.get(Timer::Data), None);
    }

    #[test]
    fn used_ids_outlive_two_cookie_rotations_after_the_last_open() {
        let t0 = Instant::now();
        let mut c = connection(t0);
        c.last_open = t0 + Duration::from_secs(5);
        let rotation = Duration::from_secs(120);
        assert_eq!(
            c.keep_used_ids_until(rotation),
            t0 + Duration::from_secs(245)
        );
    }

    #[test]
    fn the_connection_reports_its_earliest_timer_and_disarms_what_fired() {
        let t0 = Instant::now();
        let mut c = connection(t0);
        assert_eq!(c.poll_timeout(), None);
        c.timers
            .arm_earliest(Timer::Idle, t0 + Duration::from_secs(60));
        c.timers
            .arm_earliest(Timer::Data, t0 + Duration::from_millis(25));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(25)));
        assert_eq!(c.expired(t0), None);
        assert_eq!(c.expired(t0 + Duration::from_millis(30)), Some(Timer::Data));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    }
}
