//! A connection running its channels' due data timers (PROTOCOL.md §7: loss detection, probes,
//! pacing, delayed ACKs, gaps given up) and counting what the reliability layer tallied while
//! they ran, by each channel's mode, in the slots its endpoint lends ([`TallySlots`]).

use super::{Connection, Lane};
use crate::channel::pool::BufferPool;
use crate::channel::reliability::tally;
use crate::stats::{HistogramSlots, StatSlot, Stats};
use crate::wire::Capabilities;
use std::time::Instant;

/// Where the reliability layer's tallies are counted (PROTOCOL.md §12: an index per count).
pub(crate) struct TallySlots {
    /// By capability bits (the channel's mode).
    pub(crate) packets_retransmitted: [StatSlot; 8],
    pub(crate) congestion_events: [StatSlot; 8],
    /// ACKs written alone, and beside ack-eliciting frames.
    pub(crate) acks_sent: [StatSlot; 2],
    pub(crate) message_delivery: HistogramSlots,
}

impl TallySlots {
    /// Adds what the reliability layer tallied in the call just made for a channel of
    /// `capabilities` (retransmitted packets, congestion events, ACKs, delivery latencies).
    pub(crate) fn take(&self, stats: &mut Stats, capabilities: Capabilities) {
        let Some(tally) = tally::take() else {
            return;
        };
        let mode = usize::from(capabilities.bits());
        if let Some(&slot) = self.packets_retransmitted.get(mode) {
            stats.add_at(slot, tally.packets_retransmitted);
        }
        if let Some(&slot) = self.congestion_events.get(mode) {
            stats.add_at(slot, tally.congestion_events);
        }
        let [alone, piggybacked] = self.acks_sent;
        stats.add_at(alone, tally.acks_alone);
        stats.add_at(piggybacked, tally.acks_piggybacked);
        stats.add_to_histogram(&self.message_delivery, &tally.delivered, tally.delivery_us);
    }
}

impl Connection {
    /// The connection's data timer fired: takes each channel whose data deadline is due from
    /// the heap of channel deadlines (no scan of the others), runs its reliability timers on
    /// the connection's path and counts their tallies, and lists its lane in `due` (a kept
    /// buffer, cleared first) for the router to deliver what they released and to flush it.
    /// The data timer then follows the earliest deadline left.
    pub(crate) fn data_timeout(
        &mut self,
        now: Instant,
        pool: &mut BufferPool,
        stats: &mut Stats,
        tallies: &TallySlots,
        due: &mut Vec<Lane>,
    ) {
        due.clear();
        while let Some(order_at) = self.take_due_channel(now) {
            let Some(&lane) = self.order.get(order_at) else {
                continue;
            };
            if let Some(data) = self.lanes.get_mut(lane).and_then(|c| c.data.as_mut()) {
                data.armed = None;
                due.push(lane);
            }
        }
        self.sync_data_timer();
        for &lane in due.iter() {
            if self.channel_timeout(now, pool, lane) {
                let mode = self
                    .lanes
                    .get(lane)
                    .map_or(Capabilities::NONE, |c| c.capabilities);
                tallies.take(stats, mode);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use super::*;
    use crate::channel::connection::Timer;
    use crate::channel::connection::transmit::tests::{
        channel, connection, ctx, data_mut, data_of, open, queue, with, write_all,
    };
    use crate::stats::{StatKind, catalog};
    use std::time::Duration;

    pub(crate) fn slots(stats: &mut Stats) -> TallySlots {
        let slot = stats.register("weft_packets_retransmitted_total", None, StatKind::Counter);
        TallySlots {
            packets_retransmitted: [slot; 8],
            congestion_events: [slot; 8],
            acks_sent: [slot; 2],
            message_delivery: stats.register_histogram(&catalog::MESSAGE_DELIVERY),
        }
    }

    #[test]
    fn only_the_due_channels_run_and_the_data_timer_moves_to_the_next_deadline() {
        let t0 = Instant::now();
        let (mut pool, mut stats) = (BufferPool::new(), Stats::new());
        let tallies = slots(&mut stats);
        let mut c = connection(t0);
        let busy = with(&mut c, channel(t0, open(), false));
        let idle = with(&mut c, channel(t0, open(), false));
        c.order = vec![busy, idle];
        for (at, lane) in [busy, idle].into_iter().enumerate() {
            data_mut(&mut c, lane).expect("data state").order_at = at;
        }
        queue(&mut c, busy, t0, &mut pool, b"lost");
        assert!(!write_all(&mut c, busy, t0).is_empty());
        assert!(c.rearm_channel(t0, &ctx(), busy));
        c.rearm_channel(t0, &ctx(), idle);
        let armed = |c: &Connection, lane| data_of(c, lane).and_then(|d| d.armed);
        let loss = armed(&c, busy).expect("a loss deadline");
        let keep_alive = armed(&c, idle).expect("a keep-alive deadline");
        assert!(loss < keep_alive);
        // Before the deadline nothing runs (and the kept buffer is cleared).
        let mut due = vec![99];
        let early = loss - Duration::from_millis(1);
        c.data_timeout(early, &mut pool, &mut stats, &tallies, &mut due);
        assert!(due.is_empty());
        // At it, only the channel whose deadline came, found without a scan of the other.
        c.data_timeout(loss, &mut pool, &mut stats, &tallies, &mut due);
        assert_eq!(due, [busy]);
        assert_eq!(armed(&c, busy), None);
        assert_eq!(c.timers.get(Timer::Data), Some(keep_alive));
        // What the loss timer decided leaves at once.
        assert!(!write_all(&mut c, busy, loss).is_empty());
    }
}
