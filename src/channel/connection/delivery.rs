//! A connection handing what its channels received to the application (PROTOCOL.md §7, §12)
//! and counting what they did, on what its endpoint lends it ([`Handover`]): the event queue,
//! the buffer pool, the statistics and the workers' room. What only the router can do — list a
//! channel waiting for room, close a failed one — comes back as a [`Delivered`].

use super::{Connection, Lane};
use crate::channel::events::{ChannelHandle, Event};
use crate::channel::pool::BufferPool;
use crate::channel::reliability::{Delivery, fair_share};
use crate::handle::Handle;
use crate::stats::{StatSlot, Stats};
use crate::wire::{Capabilities, CloseReason};
use std::collections::VecDeque;
use std::time::Instant;

/// Messages and fragments dropped from accepted packets, by `reason`.
const MESSAGES_DROPPED: &str = "weft_messages_dropped_total";

/// The `mode` label of a capability set (§7's table).
pub(crate) fn mode_label(capabilities: Capabilities) -> &'static str {
    match capabilities.bits() {
        0 => "udp",
        4 => "x",
        2 => "streaming1",
        6 => "y",
        1 => "z",
        5 => "sctp",
        3 => "streaming2",
        _ => "tcp",
    }
}

/// The workers' room as the endpoint keeps it, lent to a connection when it delivers: reliable channels deliver only while there is
/// room, and those that met none wait in `waiting` until the engine reports more.
#[derive(Debug, Default)]
pub(crate) struct DeliveryGate {
    /// Messages of reliable channels the workers take before the next report; `None`: no bound.
    pub(crate) free: Option<u64>,
    /// Reliable channels with data state, among which the room is shared.
    pub(crate) reliable: u64,
    /// Reliable channels that met a full room (flagged in their `ChannelData`), by their
    /// entry in the channel table: they have messages to deliver, or a peer waiting for credit
    /// that only room can give.
    pub(crate) waiting: VecDeque<Handle>,
    /// The list being resumed, kept to reuse its memory.
    pub(crate) resuming: Vec<Handle>,
    /// The round-robin turns of one resume, kept to reuse its memory.
    pub(crate) turns: Vec<Handle>,
}

impl DeliveryGate {
    /// True when the workers take no more reliable messages now.
    pub(crate) fn is_full(&self) -> bool {
        self.free == Some(0)
    }

    /// Notes one reliable message handed to the application.
    pub(crate) fn took_one(&mut self) {
        self.free = self.free.map(|free| free.saturating_sub(1));
    }

    /// A reliable channel's cap on new credit now.
    pub(crate) fn credit_cap(&self) -> Option<u64> {
        fair_share(self.free, self.reliable)
    }
}

/// What a connection is lent to deliver one channel's messages.
pub(crate) struct Handover<'a> {
    /// The application's handle of the channel, for its events.
    pub(crate) channel: ChannelHandle,
    pub(crate) events: &'a mut VecDeque<Event>,
    pub(crate) pool: &'a mut BufferPool,
    pub(crate) stats: &'a mut Stats,
    /// `weft_messages_received_total` and `weft_messages_sent_total`.
    pub(crate) counted: [StatSlot; 2],
    pub(crate) room: &'a mut DeliveryGate,
    /// Send every message back on its channel instead (the echo service, §6).
    pub(crate) echo: bool,
}

/// How a delivery ended, and what it leaves the router to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Nothing more to hand over now (all given, paused, or no data state).
    Done,
    /// Stopped at the limit with more to give.
    More,
    /// A reliable channel met the workers' room full and was just flagged as waiting: the
    /// router lists its entry (`Endpoint::wait_for_room`).
    Wait(Handle),
    /// The channel failed (§7: a loss it may not repair, a peer past its limits): the router
    /// counts and closes it.
    Failed(CloseReason),
}

impl Connection {
    /// Hands at most `limit` messages the channel in `lane` delivered to the application
    /// (or, under echo, sends them back), unless it is paused. A reliable channel that meets
    /// the workers' room full keeps the rest (within the credit it granted) and waits for room
    /// (§12). Echoed messages touch the channel; the router lists the connection to flush.
    pub(crate) fn deliver(
        &mut self,
        now: Instant,
        lane: Lane,
        limit: usize,
        out: &mut Handover<'_>,
    ) -> Delivered {
        let [received_slot, sent_slot] = out.counted;
        let mut delivered = 0usize;
        loop {
            let peer = self.id;
            let Some(state) = self.lanes.get_mut(lane) else {
                return Delivered::Done;
            };
            let reliable = state.capabilities.contains(Capabilities::RESEND);
            let Some(data) = state.data.as_mut() else {
                return Delivered::Done;
            };
            let failed = data.reliability.is_failed();
            if data.paused && !failed {
                return Delivered::Done;
            }
            if reliable {
                // Set before each flush writes the channel's frames (this runs first).
                data.reliability.set_credit_cap(out.room.credit_cap());
            }
            if reliable && !failed && out.room.is_full() {
                let listed = std::mem::replace(&mut data.waiting, true);
                return match listed {
                    true => Delivered::Done,
                    false => Delivered::Wait(state.handle),
                };
            }
            if delivered >= limit {
                return match data.reliability.has_event() {
                    true => Delivered::More,
                    false => Delivered::Done,
                };
            }
            let Some(delivery) = data.reliability.poll_event() else {
                return Delivered::Done;
            };
            match delivery {
                Delivery::Message {
                    number,
                    data: bytes,
                } => {
                    delivered = delivered.saturating_add(1);
                    out.stats.add_at(received_slot, 1);
                    if reliable {
                        out.room.took_one();
                    }
                    if out.echo {
                        // PROTOCOL.md §6: the echo service answers under its own numbers.
                        let echoed =
                            data.reliability
                                .send_with(now, bytes.len(), out.pool, |buf| {
                                    buf.extend_from_slice(&bytes)
                                });
                        out.pool.recycle(bytes);
                        if let Ok(number) = echoed {
                            state.next_message = number.saturating_add(1);
                            out.stats.add_at(sent_slot, 1);
                        }
                        self.touch(lane);
                    } else {
                        out.events.push_back(Event::Message {
                            channel: out.channel,
                            peer,
                            message_number: number,
                            data: bytes,
                        });
                    }
                }
                Delivery::Skipped { first, last } => out.events.push_back(Event::Skipped {
                    channel: out.channel,
                    first,
                    last,
                }),
                Delivery::Progress {
                    number,
                    received,
                    total,
                } => {
                    // One pending progress event per message here too (PROTOCOL.md §7.5), as
                    // in the channel: a driver that drains events once per receive batch gets
                    // one per message, not one per fragment.
                    if let Some(Event::Progress {
                        channel: last_channel,
                        message_number: last_number,
                        received: last_received,
                        ..
                    }) = out.events.back_mut()
                        && *last_channel == out.channel
                        && *last_number == number
                    {
                        *last_received = received;
                        continue;
                    }
                    out.events.push_back(Event::Progress {
                        channel: out.channel,
                        message_number: number,
                        received,
                        total,
                    });
                }
                Delivery::Failed(reason) => return Delivered::Failed(reason),
            }
        }
    }

    /// Adds the new counters of the channel in `lane` to the node's statistics.
    pub(crate) fn account(&mut self, lane: Lane, stats: &mut Stats) {
        let Some(state) = self.lanes.get_mut(lane) else {
            return;
        };
        let mode = mode_label(state.capabilities);
        let Some(data) = state.data.as_mut() else {
            return;
        };
        let now = data.reliability.stats();
        let Some(before) = data.reported.replace(now) else {
            // Nothing counted changed since the last packet: nothing to add.
            return;
        };
        let deltas = [
            (
                "weft_retransmitted_bytes_total",
                now.retransmitted_bytes
                    .saturating_sub(before.retransmitted_bytes),
            ),
            (
                "weft_packets_lost_total",
                now.packets_lost.saturating_sub(before.packets_lost),
            ),
            (
                "weft_messages_given_up_total",
                now.messages_given_up
                    .saturating_sub(before.messages_given_up),
            ),
            (
                "weft_messages_skipped_total",
                now.skipped.saturating_sub(before.skipped),
            ),
            (
                "weft_probe_timeouts_total",
                now.probe_timeouts.saturating_sub(before.probe_timeouts),
            ),
            (
                "weft_reassembly_timeouts_total",
                now.reassembly_timeouts
                    .saturating_sub(before.reassembly_timeouts),
            ),
        ];
        for (name, delta) in deltas {
            if delta > 0 {
                // Loss and retransmission by channel mode: what each mode costs on a lossy path.
                let label = matches!(
                    name,
                    "weft_retransmitted_bytes_total" | "weft_packets_lost_total"
                )
                .then_some(("mode", mode));
                stats.add(name, label, delta);
            }
        }
        // Bad input inside an accepted packet: the message or fragment is dropped, the packet's
        // other messages are not.
        let dropped = [
            (
                "past_credit",
                now.past_credit.saturating_sub(before.past_credit),
            ),
            (
                "credit",
                now.credit_drops.saturating_sub(before.credit_drops),
            ),
            (
                "reassembly_budget",
                now.budget_drops.saturating_sub(before.budget_drops),
            ),
            (
                "fragment_ranges",
                now.range_drops.saturating_sub(before.range_drops),
            ),
            ("malformed", now.malformed.saturating_sub(before.malformed)),
        ];
        for (reason, delta) in dropped {
            if delta > 0 {
                stats.add(MESSAGES_DROPPED, Some(("reason", reason)), delta);
            }
        }
        let evicted = now
            .reassembly_evictions
            .saturating_sub(before.reassembly_evictions);
        if evicted > 0 {
            stats.add("weft_reassembly_evictions_total", None, evicted);
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::channel::connection::receive::tests::deliver_all;
    use crate::channel::connection::transmit::tests::{
        REMOTE, channel, connection, open, payloads, queue, with, write_all,
    };
    use crate::handle::Hashcode;
    use crate::stats::StatKind;
    use crate::wire::Packet;

    /// A connection whose reliable channel received `messages` from another's, not yet
    /// delivered.
    fn received(messages: &[&[u8]]) -> (Connection, Lane, BufferPool, Instant) {
        let t0 = Instant::now();
        let mut pool = BufferPool::new();
        let mut a = connection(t0);
        let from = with(&mut a, channel(t0, open(), false));
        for message in messages {
            queue(&mut a, from, t0, &mut pool, message);
        }
        let sent = write_all(&mut a, from, t0);
        let mut b = connection(t0);
        let lane = with(&mut b, channel(t0, open(), false));
        deliver_all(&mut b, lane, t0, &mut pool, &sent);
        (b, lane, pool, t0)
    }

    const HANDLE: ChannelHandle = ChannelHandle(Hashcode(5));

    /// What an endpoint lends a connection to deliver, held by the test.
    struct Lent {
        events: VecDeque<Event>,
        pool: BufferPool,
        stats: Stats,
        counted: [StatSlot; 2],
        room: DeliveryGate,
    }

    impl Lent {
        fn new(pool: BufferPool) -> Lent {
            let mut stats = Stats::new();
            let counted = ["weft_messages_received_total", "weft_messages_sent_total"]
                .map(|name| stats.register(name, None, StatKind::Counter));
            Lent {
                events: VecDeque::new(),
                pool,
                stats,
                counted,
                room: DeliveryGate::default(),
            }
        }

        fn out(&mut self, echo: bool) -> Handover<'_> {
            Handover {
                channel: HANDLE,
                events: &mut self.events,
                pool: &mut self.pool,
                stats: &mut self.stats,
                counted: self.counted,
                room: &mut self.room,
                echo,
            }
        }
    }

    #[test]
    fn messages_reach_the_application_with_their_peer_up_to_the_limit_and_wait_for_room() {
        let (mut c, lane, pool, now) = received(&[b"one", b"two", b"three"]);
        let mut lent = Lent::new(pool);
        lent.room.reliable = 1;
        let mut out = lent.out(false);
        assert_eq!(c.deliver(now, lane, 1, &mut out), Delivered::More);
        // The workers' room is full: the channel is flagged, and the router told, once.
        out.room.free = Some(0);
        let entry = c.lanes.get(lane).map(|ch| ch.handle).expect("a channel");
        assert_eq!(
            c.deliver(now, lane, usize::MAX, &mut out),
            Delivered::Wait(entry)
        );
        assert_eq!(c.deliver(now, lane, usize::MAX, &mut out), Delivered::Done);
        // Room again: the rest is handed over.
        out.room.free = None;
        assert_eq!(c.deliver(now, lane, usize::MAX, &mut out), Delivered::Done);
        // A channel that is gone delivers nothing.
        assert_eq!(c.deliver(now, 9, usize::MAX, &mut out), Delivered::Done);
        let given: Vec<Vec<u8>> = std::mem::take(&mut lent.events)
            .into_iter()
            .map(|event| match event {
                Event::Message {
                    channel,
                    peer,
                    data,
                    ..
                } if channel == HANDLE && peer == REMOTE => data.into_vec(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(given, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert_eq!(lent.stats.get("weft_messages_received_total", None), 3);
    }

    #[test]
    fn under_echo_a_message_goes_back_on_its_channel_in_the_next_packet() {
        let (mut c, lane, pool, now) = received(&[b"ping"]);
        let mut lent = Lent::new(pool);
        assert_eq!(
            c.deliver(now, lane, usize::MAX, &mut lent.out(true)),
            Delivered::Done
        );
        assert!(lent.events.is_empty());
        assert_eq!(lent.stats.get("weft_messages_sent_total", None), 1);
        assert_eq!(c.lanes.get(lane).map(|ch| ch.next_message), Some(1));
        assert_eq!(c.touched, [lane]);
        let back: Vec<Vec<u8>> = write_all(&mut c, lane, now)
            .iter()
            .flat_map(|(_, bytes)| payloads(Packet::parse(bytes).expect("a packet").messages()))
            .collect();
        assert_eq!(back, [b"ping".to_vec()]);
    }
}
