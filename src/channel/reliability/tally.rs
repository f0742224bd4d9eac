//! What the send side counts for the metrics layer beyond [`super::ChannelStats`]: packets
//! retransmitted, congestion events, ACKs written and message delivery latencies. They are tallied on the
//! calling thread and taken by the endpoint right after the call that produced them, which
//! knows the channel's mode — as `session::dh::count_on_this_thread` does for X25519 — so a
//! channel carries no byte more for them (the per-peer and per-channel heap bounds hold).

use crate::stats::catalog::{MESSAGE_DELIVERY, MESSAGE_DELIVERY_BUCKETS};
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// Counts since the last [`take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Packets that carried message data sent before.
    pub packets_retransmitted: u64,
    /// Losses that signalled congestion to the path's controller (RFC 9002 §7.3).
    pub congestion_events: u64,
    /// Messages fully acknowledged, per bucket of [`MESSAGE_DELIVERY`] (time since their first
    /// transmission).
    pub delivered: [u64; MESSAGE_DELIVERY_BUCKETS],
    /// The sum of those times, microseconds.
    pub delivery_us: u64,
    /// ACKs written alone in their packet (no ack-eliciting frame beside them).
    pub acks_alone: u64,
    /// ACKs written beside ack-eliciting frames (data, WINDOW, a probe).
    pub acks_piggybacked: u64,
}

impl Tally {
    const ZERO: Tally = Tally {
        packets_retransmitted: 0,
        congestion_events: 0,
        delivered: [0; MESSAGE_DELIVERY_BUCKETS],
        delivery_us: 0,
        acks_alone: 0,
        acks_piggybacked: 0,
    };
}

thread_local! {
    static TALLY: RefCell<Tally> = const { RefCell::new(Tally::ZERO) };
    /// Whether anything was counted since the last take: taking nothing costs one load.
    static DIRTY: Cell<bool> = const { Cell::new(false) };
}

fn count(f: impl FnOnce(&mut Tally)) {
    TALLY.with(|t| f(&mut t.borrow_mut()));
    DIRTY.with(|d| d.set(true));
}

/// A packet carried data sent before.
pub(crate) fn retransmitted_packet() {
    count(|t| t.packets_retransmitted = t.packets_retransmitted.saturating_add(1));
}

/// A loss signalled congestion.
pub(crate) fn congestion_event() {
    count(|t| t.congestion_events = t.congestion_events.saturating_add(1));
}

/// An ACK was written into a packet, beside ack-eliciting frames or alone.
pub(crate) fn ack_sent(piggybacked: bool) {
    count(|t| {
        let n = match piggybacked {
            true => &mut t.acks_piggybacked,
            false => &mut t.acks_alone,
        };
        *n = n.saturating_add(1);
    });
}

/// A message was fully acknowledged `took` after its first transmission.
pub(crate) fn delivered(took: Duration) {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    let bucket = MESSAGE_DELIVERY
        .bounds
        .iter()
        .position(|&(bound, _)| us <= bound);
    count(|t| {
        if let Some(n) = bucket.and_then(|b| t.delivered.get_mut(b)) {
            *n = n.saturating_add(1);
        }
        t.delivery_us = t.delivery_us.saturating_add(us);
    });
}

/// What was counted on this thread since the last take, if anything.
pub fn take() -> Option<Tally> {
    if !DIRTY.with(|d| d.replace(false)) {
        return None;
    }
    Some(TALLY.with(|t| t.replace(Tally::ZERO)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_taken_once() {
        let _ = take();
        assert_eq!(take(), None);
        retransmitted_packet();
        congestion_event();
        delivered(Duration::from_millis(3));
        ack_sent(false);
        ack_sent(true);
        ack_sent(true);
        let t = take().unwrap();
        assert_eq!((t.packets_retransmitted, t.congestion_events), (1, 1));
        assert_eq!((t.acks_alone, t.acks_piggybacked), (1, 2));
        assert_eq!(t.delivery_us, 3_000);
        assert_eq!(t.delivered.iter().sum::<u64>(), 1);
        assert_eq!(take(), None);
    }
}
