//! What a channel's reliability state costs in memory (issue 12): the parts' sizes and heap
//! for the endpoint's memory report, and giving back the room an idle channel's queues grew.

use super::ChannelReliability;
use super::ChannelStats;
use super::ack::AckTracker;
use super::recv::RecvSide;
use super::send::SendSide;
use std::mem::size_of;

impl ChannelReliability {
    /// Drops the channel's state, returning the heap of its send side, receive side and ACK
    /// tracker, read on `live` (see [`crate::heap::freed`]).
    pub fn heap_parts(self, live: &dyn Fn() -> i64) -> [(&'static str, i64); 3] {
        let ChannelReliability {
            send, recv, ack, ..
        } = self;
        [
            (
                "reliability send side",
                crate::heap::freed(live, || drop(send)),
            ),
            (
                "reliability receive side",
                crate::heap::freed(live, || drop(recv)),
            ),
            (
                "reliability ack tracker",
                crate::heap::freed(live, || drop(ack)),
            ),
        ]
    }

    /// `size_of` of its parts, for the memory report.
    pub fn part_sizes() -> [(&'static str, usize); 4] {
        [
            ("SendSide", size_of::<SendSide>()),
            ("RecvSide", size_of::<RecvSide>()),
            ("AckTracker", size_of::<AckTracker>()),
            ("ChannelStats", size_of::<ChannelStats>()),
        ]
    }

    /// Frees the room of queues that are empty now (a channel idle for a keep-alive interval):
    /// they grow again, once, if it wakes. Nothing the channel knows changes.
    pub fn shrink_idle(&mut self) {
        self.send.shrink_idle();
        self.recv.shrink_idle();
        self.ack.shrink_idle();
    }
}
