//! What a channel's reliability state costs in memory (issue 12): the parts' sizes and heap
//! for the endpoint's memory report, and giving back the room an idle channel's queues grew.

use super::ack::AckTracker;
use super::idle::Idle;
use super::recv::RecvSide;
use super::send::SendSide;
use super::{Busy, ChannelReliability, ChannelStats};
use std::mem::size_of;

impl ChannelReliability {
    /// Drops the channel's state, returning the heap of its busy state's box, send side,
    /// receive side and ACK tracker (an idle channel's: what its kept values hold), read on
    /// `live` (see [`crate::heap::freed`]).
    pub fn heap_parts(self, live: &dyn Fn() -> i64) -> [(&'static str, i64); 4] {
        let (boxed, idle) = self.into_parts();
        let (box_bytes, send, recv, ack) = match boxed {
            Some(busy) => {
                let Busy {
                    send, recv, ack, ..
                } = *busy;
                let send = crate::heap::freed(live, || drop(send));
                let recv = crate::heap::freed(live, || drop(recv));
                let ack = crate::heap::freed(live, || drop(ack));
                (size_of::<Busy>() as i64, send, recv, ack)
            }
            None => {
                let Idle { recv, ack, .. } = idle;
                let recv = crate::heap::freed(live, || drop(recv));
                let ack = crate::heap::freed(live, || drop(ack));
                (0, 0, recv, ack)
            }
        };
        [
            ("reliability busy state (box)", box_bytes),
            ("reliability send side", send),
            ("reliability receive side", recv),
            ("reliability ack tracker", ack),
        ]
    }

    /// `size_of` of its parts, for the memory report.
    pub fn part_sizes() -> [(&'static str, usize); 6] {
        [
            ("busy state (boxed)", size_of::<Busy>()),
            ("idle state (inline)", size_of::<Idle>()),
            ("SendSide", size_of::<SendSide>()),
            ("RecvSide", size_of::<RecvSide>()),
            ("AckTracker", size_of::<AckTracker>()),
            ("ChannelStats", size_of::<ChannelStats>()),
        ]
    }
}

impl Busy {
    /// Frees the room of queues that are empty now (a channel idle for a keep-alive interval):
    /// they grow again, once, if it wakes. Nothing the channel knows changes.
    pub(super) fn shrink_idle(&mut self) {
        self.send.shrink_idle();
        self.recv.shrink_idle();
        self.ack.shrink_idle();
    }
}
