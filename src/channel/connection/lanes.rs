//! A connection's own channel storage (issue 11 point 1): its channels live here, numbered by
//! lane, so once the router has found the connection nothing else is looked up for a datagram.
//! The application's [`ChannelHandle`](crate::channel::ChannelHandle) names a thin entry in the
//! endpoint's table ([`ChannelAt`]: the connection's slot and the lane), which carries the
//! generation that makes a stale handle fail (PROTOCOL.md §8).

use crate::channel::state::Channel;
use crate::handle::Handle;

/// A channel's number within its connection.
pub(crate) type Lane = u32;

/// Where a channel lives: its connection's slot in the router's table and its lane there. What
/// the endpoint's channel table holds for each application handle.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ChannelAt {
    pub(crate) peer: Handle,
    pub(crate) lane: Lane,
}

/// The channels of one connection, by lane. A freed lane is reused lowest first, so the
/// storage stays as long as the most channels the peer held at once (bounded by
/// `max_channels_per_peer`); it grows one lane at a time and is freed once empty, so an idle
/// peer pays for no channel and a peer with one channel for exactly one.
#[derive(Default)]
pub(crate) struct Lanes(Vec<Option<Channel>>);

impl Lanes {
    /// Stores `channel` in the lowest free lane and returns it; None only past 2^32 lanes.
    pub(crate) fn insert(&mut self, channel: Channel) -> Option<Lane> {
        // A scan of at most `max_channels_per_peer` lanes, once per open, never per packet.
        if let Some(at) = self.0.iter().position(Option::is_none) {
            let lane = Lane::try_from(at).ok()?;
            if let Some(slot) = self.0.get_mut(at) {
                *slot = Some(channel);
            }
            return Some(lane);
        }
        let lane = Lane::try_from(self.0.len()).ok()?;
        // One lane more, not a doubling: most peers hold one or two channels.
        self.0.reserve_exact(1);
        self.0.push(Some(channel));
        Some(lane)
    }

    pub(crate) fn get(&self, lane: Lane) -> Option<&Channel> {
        self.0.get(usize::try_from(lane).ok()?)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, lane: Lane) -> Option<&mut Channel> {
        self.0.get_mut(usize::try_from(lane).ok()?)?.as_mut()
    }

    /// Takes the channel out of `lane`; trailing free lanes are given back, and all the memory
    /// once the last channel leaves.
    pub(crate) fn remove(&mut self, lane: Lane) -> Option<Channel> {
        let channel = self.0.get_mut(usize::try_from(lane).ok()?)?.take();
        while self.0.last().is_some_and(Option::is_none) {
            self.0.pop();
        }
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        channel
    }

    /// The channels held, by lane, to change in place.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Channel> {
        self.0.iter_mut().flatten()
    }

    /// The channels held, by lane.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Lane, &Channel)> {
        (0..)
            .zip(self.0.iter())
            .filter_map(|(lane, slot)| Some((lane, slot.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::state::Phase;
    use crate::wire::{Capabilities, ChannelId};
    use std::time::Instant;

    fn channel(id: u32) -> Channel {
        Channel {
            handle: Handle(id),
            id: ChannelId(id),
            capabilities: Capabilities::NONE,
            initiator: false,
            phase: Phase::Open { cookie2: None },
            tries: 0,
            retry_at: None,
            give_up_at: Instant::now(),
            next_sequence: 0,
            next_message: 0,
            data: None,
            touched: false,
        }
    }

    #[test]
    fn freed_lanes_are_reused_lowest_first_and_an_empty_connection_holds_no_memory() {
        let mut lanes = Lanes::default();
        assert_eq!(lanes.insert(channel(10)), Some(0));
        assert_eq!(lanes.insert(channel(11)), Some(1));
        assert_eq!(lanes.insert(channel(12)), Some(2));
        assert_eq!(lanes.remove(1).map(|c| c.id), Some(ChannelId(11)));
        assert!(lanes.get(1).is_none());
        assert_eq!(lanes.insert(channel(13)), Some(1));
        assert_eq!(lanes.get(1).map(|c| c.id), Some(ChannelId(13)));
        assert_eq!(lanes.iter().count(), 3);
        // A removed lane is gone for good: removing it again finds nothing.
        assert!(lanes.remove(2).is_some());
        assert!(lanes.remove(2).is_none());
        assert!(lanes.remove(0).is_some());
        assert!(lanes.remove(1).is_some());
        assert_eq!(lanes.iter().count(), 0);
        assert_eq!(lanes.0.capacity(), 0);
        assert!(lanes.get(u32::MAX).is_none());
    }
}
