//! A connection closing one of its channels (PROTOCOL.md §6, §7.3): the peer told on the
//! channel itself where it knows it, the channel's in-flight bytes given back to the shared
//! path, its place in the turn order handed to the last channel, its keys dropped and its id
//! retired in every session. What the node's tables hold of it (the application's handle, the
//! fairness index, the event) the router settles with what comes back.

#![deny(clippy::arithmetic_side_effects)]

use super::walk::{Sent, Shared};
use super::{Connection, Lane, mode_label};
use crate::channel::state::Phase;
use crate::handle::Handle;
use crate::session::KeyPhase;
use crate::wire::{Capabilities, ChannelId, CloseReason, Message};
use std::time::Instant;

const CHANNELS_BY_MODE: &str = "weft_channels_by_mode";

/// A channel the connection let go of.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Removed {
    /// Its entry in the router's handle table.
    pub(crate) handle: Handle,
    /// Whether it was open (else our own open, still waiting for its ACKNOWLEDGE).
    pub(crate) opened: bool,
    /// What the CHANNEL_CLOSE sent on it came to.
    pub(crate) sent: Sent,
}

impl Connection {
    /// Closes the channel in `lane`. With `notify`, a confirmed channel tells the peer on the
    /// channel itself (an unconfirmed one may not exist at the responder: the router tells it on
    /// the default channel instead). None when there is no such channel.
    pub(crate) fn close_lane(
        &mut self,
        now: Instant,
        lane: Lane,
        (reason, notify): (CloseReason, bool),
        shared: &mut Shared<'_>,
    ) -> Option<Removed> {
        let channel = self.lanes.get(lane)?;
        let mut sent = Sent::Nothing;
        if notify && matches!(channel.phase, Phase::Open { cookie2: None }) {
            let close = Message::ChannelClose {
                channel: channel.id,
                reason,
            };
            sent = self.send_on_lane(now, lane, &[close], shared);
        }
        self.detach_data(lane, shared);
        let state = self.lanes.remove(lane)?;
        let opened = matches!(state.phase, Phase::Open { .. });
        if opened {
            self.channels.remove(&state.id.0);
            self.retire_keys(state.id);
        } else {
            self.opening.remove(&state.id.c1());
        }
        Some(Removed {
            handle: state.handle,
            opened,
            sent,
        })
    }

    /// Gives the channel's in-flight bytes back to the path before the channel goes away, and
    /// its place in the turn order to the last channel.
    pub(crate) fn detach_data(&mut self, lane: Lane, shared: &mut Shared<'_>) {
        let Some(state) = self.lanes.get_mut(lane) else {
            return;
        };
        let Some(mut data) = state.data.take() else {
            return;
        };
        if state.capabilities.contains(Capabilities::RESEND) {
            shared.room.reliable = shared.room.reliable.saturating_sub(1);
        }
        let label = Some(("mode", mode_label(state.capabilities)));
        if let Some(path) = self.path.as_mut() {
            data.reliability.abandon(path);
        }
        // The last channel takes the closed one's place: turns stay fair, and a close costs
        // the same however many channels the peer holds.
        let at = data.order_at;
        if self.order.get(at) == Some(&lane) {
            self.order.swap_remove(at);
            self.channel_removed(at);
            if let Some(&moved) = self.order.get(at)
                && let Some(data) = self.lanes.get_mut(moved).and_then(|c| c.data.as_mut())
            {
                data.order_at = at;
            }
        } else {
            self.order.retain(|&other| other != lane);
            self.renumber();
        }
        let count = shared.stats.get(CHANNELS_BY_MODE, label);
        shared
            .stats
            .set(CHANNELS_BY_MODE, label, count.saturating_sub(1));
    }

    /// Numbers the channels by their place in the turn order again, and files their data
    /// deadlines under the new numbers: the way back when a channel was not where its
    /// `order_at` said.
    fn renumber(&mut self) {
        self.channel_deadlines.clear();
        for (at, &lane) in self.order.iter().enumerate() {
            let Some(data) = self.lanes.get_mut(lane).and_then(|c| c.data.as_mut()) else {
                continue;
            };
            data.order_at = at;
            if let Ok(slot) = u32::try_from(at) {
                self.channel_deadlines.set(slot, data.armed);
            }
        }
        self.sync_data_timer();
    }

    /// Drops a closed channel's keys from every session the peer holds and retires its id there
    /// (PROTOCOL.md §6: never used twice in a session), so closed channels cost no keys.
    pub(crate) fn retire_keys(&mut self, id: ChannelId) {
        let Some(entry) = self.session.as_mut() else {
            return;
        };
        for phase in [KeyPhase::Zero, KeyPhase::One] {
            if let Some(session) = entry.slot.phase_session(phase) {
                session.keys.remove(id);
            }
            if let Some(session) = entry.slot.displaced(phase) {
                session.keys.remove(id);
            }
        }
    }
}
