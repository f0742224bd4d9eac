//! A connection taking one received channel packet (PROTOCOL.md §7.1–§7.5): the data-path
//! messages go to the channel's reliability state, on the connection's own path (congestion,
//! RTT) and reassembly budget; the endpoint found the connection and the channel, and hears
//! back only what it counts.

use super::{Connection, Lane};
use crate::channel::pool::BufferPool;
use crate::channel::reliability::decode_packet_number;
use crate::wire::Message;
use std::time::{Duration, Instant};

/// What one channel packet did that the endpoint counts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// A new RTT sample an ACK in the packet gave, and the path's congestion window beside it.
    pub(crate) rtt: Option<(Duration, u64)>,
}

/// One received packet on a channel, as its connection reads it.
pub(crate) struct ChannelPacket<I> {
    /// The header's sequence number (the packet number's low 32 bits, §3).
    pub(crate) sequence: u32,
    /// Whether the packet elicits an ACK whatever its messages (§7.1).
    pub(crate) eliciting: bool,
    /// Its messages, validated.
    pub(crate) messages: I,
}

impl Connection {
    /// One received `packet` on the channel in `lane`, in one walk over its
    /// messages: DATA, fragments, ACK and WINDOW here, and every other message to `other`,
    /// which returns false to stop the walk (the channel closes). Without a path or the
    /// channel's data state nothing is read, and the messages come back.
    pub(crate) fn handle_frames<'a, I>(
        &mut self,
        now: Instant,
        pool: &mut BufferPool,
        lane: Lane,
        packet: ChannelPacket<I>,
        mut other: impl FnMut(Message<'a>) -> bool,
    ) -> Result<Received, I>
    where
        I: Iterator<Item = Message<'a>>,
    {
        let ChannelPacket {
            sequence,
            mut eliciting,
            messages,
        } = packet;
        let (Some(data), Some(path), Some(budget)) = (
            self.lanes.get_mut(lane).and_then(|c| c.data.as_mut()),
            self.path.as_mut(),
            self.budget.as_mut(),
        ) else {
            return Err(messages);
        };
        let rel = &mut data.reliability;
        let pn = decode_packet_number(rel.largest_received(), sequence);
        // The packet is recorded before its first DATA (the receive side numbers messages by
        // it); DATA elicits an ACK, so whether the packet does is known by then.
        let mut recorded = false;
        let mut acked = false;
        for message in messages {
            // PROTOCOL.md §7.1: everything but ACK elicits an acknowledgement.
            eliciting |= !matches!(message, Message::Ack(_));
            match message {
                Message::Data {
                    message_number,
                    payload,
                } => {
                    if !std::mem::replace(&mut recorded, true) {
                        rel.on_packet_received(now, pn, true);
                    }
                    rel.on_data(now, message_number, payload, pool);
                }
                Message::DataFragment {
                    message_number,
                    total_length,
                    offset,
                    bytes,
                } => {
                    if !std::mem::replace(&mut recorded, true) {
                        rel.on_packet_received(now, pn, true);
                    }
                    rel.on_fragment(
                        now,
                        message_number,
                        total_length,
                        offset,
                        bytes,
                        budget,
                        pool,
                    );
                }
                Message::Ack(ack) => {
                    let delay = Duration::from_micros(ack.ack_delay_us);
                    rel.on_ack(now, ack.iter(), delay, path);
                    rel.reclaim(pool);
                    acked = true;
                }
                Message::Window {
                    max_message,
                    max_bytes,
                } => rel.on_window(max_message, max_bytes),
                other_message => {
                    if !other(other_message) {
                        break;
                    }
                }
            }
        }
        if !recorded {
            rel.on_packet_received(now, pn, eliciting);
        }
        let latest = path.rtt().latest();
        let mut received = Received::default();
        if acked && path.rtt().has_sample() && latest != data.last_rtt {
            data.last_rtt = latest;
            received.rtt = Some((latest, path.congestion_window()));
        }
        Ok(received)
    }

    /// The data deadline of the channel in `lane` came: its reliability timers
    /// run on the connection's path (loss detection, probes, gaps given up), and the buffers
    /// of what they resolved go back to `pool`. Returns whether any timer was due.
    pub(crate) fn channel_timeout(
        &mut self,
        now: Instant,
        pool: &mut BufferPool,
        lane: Lane,
    ) -> bool {
        let Some(data) = self.lanes.get_mut(lane).and_then(|c| c.data.as_mut()) else {
            return false;
        };
        let due = data
            .reliability
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now);
        if due {
            if let Some(path) = self.path.as_mut() {
                data.reliability.handle_timeout(now, path);
            }
            data.reliability.reclaim(pool);
        }
        due
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use super::*;
    use crate::channel::connection::transmit::Written;
    use crate::channel::connection::transmit::tests::{
        CHANNEL, channel, connection, data_mut, data_of, open, queue, with, write_all,
    };
    use crate::channel::reliability::Delivery;
    use crate::wire::{CloseReason, Packet};

    /// Hands every packet to `to`'s channel; returns what each handling reported.
    pub(crate) fn deliver_all(
        to: &mut Connection,
        channel: Lane,
        now: Instant,
        pool: &mut BufferPool,
        packets: &[(Written, Vec<u8>)],
    ) -> Vec<Received> {
        packets
            .iter()
            .map(|(_, bytes)| {
                let packet = Packet::parse(bytes).expect("a valid packet");
                let sequence = packet.header.sequence.expect("sequenced");
                let packet = ChannelPacket {
                    sequence,
                    eliciting: false,
                    messages: packet.messages(),
                };
                to.handle_frames(now, pool, channel, packet, |_| true)
                    .unwrap_or_else(|_| panic!("the channel has data state"))
            })
            .collect()
    }

    #[test]
    fn data_reaches_the_channel_and_its_ack_frees_the_senders_window() {
        let t0 = Instant::now();
        let mut pool = BufferPool::new();
        let mut a = connection(t0);
        let a_channel = with(&mut a, channel(t0, open(), false));
        let mut b = connection(t0);
        let b_channel = with(&mut b, channel(t0, open(), false));
        queue(&mut a, a_channel, t0, &mut pool, b"hello");
        let sent = write_all(&mut a, a_channel, t0);
        let in_flight = |c: &Connection| c.path.as_ref().map(|p| p.bytes_in_flight());
        assert!(in_flight(&a) > Some(0));
        let t1 = t0 + Duration::from_millis(20);
        deliver_all(&mut b, b_channel, t1, &mut pool, &sent);
        let delivered = data_mut(&mut b, b_channel).and_then(|d| d.reliability.poll_event());
        assert!(
            matches!(&delivered, Some(Delivery::Message { number: 0, data }) if data == b"hello"),
            "{delivered:?}"
        );
        // The receiver's ACK (sent once its delay passed) frees the sender's window and gives
        // it an RTT sample, which the endpoint counts.
        let t2 = t1 + Duration::from_millis(100);
        let acks = write_all(&mut b, b_channel, t2);
        assert!(!acks.is_empty());
        let t3 = t2 + Duration::from_millis(20);
        let received = deliver_all(&mut a, a_channel, t3, &mut pool, &acks);
        assert_eq!(in_flight(&a), Some(0));
        assert!(received.iter().any(|r| r.rtt.is_some()), "{received:?}");
    }

    #[test]
    fn other_messages_go_aside_and_a_close_stops_the_walk() {
        let t0 = Instant::now();
        let mut pool = BufferPool::new();
        let mut c = connection(t0);
        let ch = with(&mut c, channel(t0, open(), false));
        let messages = [
            Message::Ping { token: &[1; 8] },
            Message::ChannelClose {
                channel: CHANNEL,
                reason: CloseReason::Normal,
            },
            Message::Data {
                message_number: 0,
                payload: b"after the close",
            },
        ];
        let mut aside = Vec::new();
        let packet = |sequence| ChannelPacket {
            sequence,
            eliciting: false,
            messages: messages.into_iter(),
        };
        let taken = c.handle_frames(t0, &mut pool, ch, packet(7), |m| {
            aside.push(format!("{m:?}"));
            !matches!(m, Message::ChannelClose { .. })
        });
        assert_eq!(taken.ok(), Some(Received::default()));
        assert_eq!(aside.len(), 2, "{aside:?}");
        let event = data_mut(&mut c, ch).and_then(|d| d.reliability.poll_event());
        assert!(event.is_none(), "{event:?}");
        // Without a path nothing is read: the messages come back whole.
        c.path = None;
        let back = c.handle_frames(t0, &mut pool, ch, packet(8), |_| {
            panic!("nothing is read without a path")
        });
        assert_eq!(back.err().map(Iterator::count), Some(3));
    }

    #[test]
    fn a_due_loss_timer_runs_and_the_channel_sends_again() {
        let t0 = Instant::now();
        let mut pool = BufferPool::new();
        let mut c = connection(t0);
        let ch = with(&mut c, channel(t0, open(), false));
        queue(&mut c, ch, t0, &mut pool, b"lost");
        assert!(!write_all(&mut c, ch, t0).is_empty());
        let deadline = data_of(&c, ch)
            .and_then(|d| d.reliability.poll_timeout())
            .expect("a loss timer for the packet in flight");
        let before = deadline - Duration::from_millis(1);
        assert!(!c.channel_timeout(before, &mut pool, ch));
        assert!(write_all(&mut c, ch, before).is_empty());
        assert!(c.channel_timeout(deadline, &mut pool, ch));
        // The probe or the retransmission leaves at once.
        assert!(!write_all(&mut c, ch, deadline).is_empty());
    }
}
