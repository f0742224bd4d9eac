//! The control messages of a channel packet (PROTOCOL.md §4, §6, §7.7): what the connection's
//! one walk over its messages ([`Connection::walk`](super::Connection::walk)) sets aside to act
//! on once it is done.

use crate::channel::events::Event;
use crate::stats::Stats;
use crate::wire::{ChannelId, CloseReason, Message, PeerId};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// The counter of dropped datagrams and answers, by reason.
const DROPPED: &str = "weft_packets_dropped_total";

/// Most PINGs of one packet on a channel that are answered: no more can be owed at once.
pub(crate) const MAX_CHANNEL_PONGS: usize = crate::channel::owed::OWED_PONGS;

use crate::channel::owed::KEEP_ALIVE_TOKEN;

/// What one walk over a channel packet's messages leaves for after it: the PINGs to answer
/// (those past `MAX_CHANNEL_PONGS` are dropped and counted here, and those past what the
/// channel may owe at once when it is owed), a repeated CHANNEL_COOKIE to confirm once, a
/// CHANNEL_CLOSE, and whether the packet elicits an ACK.
pub(crate) struct Control {
    pub(crate) pongs: [[u8; 8]; MAX_CHANNEL_PONGS],
    pub(crate) pong_count: usize,
    pub(crate) confirm: bool,
    pub(crate) close: Option<CloseReason>,
    pub(crate) eliciting: bool,
}

impl Control {
    pub(crate) fn new(eliciting: bool) -> Control {
        Control {
            pongs: [[0; 8]; MAX_CHANNEL_PONGS],
            pong_count: 0,
            confirm: false,
            close: None,
            eliciting,
        }
    }

    /// Takes one message that is not the data path's; false when the walk must stop (the
    /// channel closes). `route` is the sender, its address and the packet's channel.
    pub(crate) fn take(
        &mut self,
        message: Message<'_>,
        (sender, from, id): (PeerId, SocketAddr, ChannelId),
        events: &mut VecDeque<Event>,
        stats: &mut Stats,
    ) -> bool {
        self.eliciting |= !matches!(message, Message::Ack(_));
        match message {
            // docs/RELIABILITY.md: PING token 0 is the reliability layer's probe (PTO); the
            // ACK it elicits is the answer.
            Message::Ping { token } if *token == [0; 8] => {}
            Message::Ping { token } if self.pong_count < MAX_CHANNEL_PONGS => {
                self.pongs[self.pong_count] = *token;
                self.pong_count = self.pong_count.saturating_add(1);
            }
            Message::Ping { .. } => stats.add(DROPPED, Some(("reason", "answer_limit")), 1),
            Message::Pong { token } if *token == KEEP_ALIVE_TOKEN => {}
            Message::Pong { token } => events.push_back(Event::Pong {
                peer: sender,
                from,
                token: *token,
            }),
            Message::ChannelClose { channel, reason } if channel == id => {
                self.close = Some(reason);
                return false;
            }
            Message::ChannelClose { .. } => {
                stats.add(DROPPED, Some(("reason", "close_for_other_channel")), 1)
            }
            // A duplicate CHANNEL_COOKIE: the responder's confirmation was lost, resend it.
            Message::ChannelCookie { .. } => self.confirm = true,
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> (PeerId, SocketAddr, ChannelId) {
        (
            PeerId([7; 16]),
            SocketAddr::from(([10, 0, 0, 7], 7000)),
            ChannelId(0x0001_0002),
        )
    }

    #[test]
    fn pings_past_the_answer_limit_are_dropped_and_counted() {
        let (mut events, mut stats) = (VecDeque::new(), Stats::new());
        let mut control = Control::new(false);
        for i in 0..MAX_CHANNEL_PONGS + 3 {
            let token = [(i % 200) as u8 + 1; 8];
            let ping = Message::Ping { token: &token };
            assert!(control.take(ping, route(), &mut events, &mut stats));
        }
        assert_eq!(control.pong_count, MAX_CHANNEL_PONGS);
        assert_eq!(stats.get(DROPPED, Some(("reason", "answer_limit"))), 3);
        assert!(control.eliciting);
    }

    #[test]
    fn probes_and_keep_alives_are_no_requests() {
        let (mut events, mut stats) = (VecDeque::new(), Stats::new());
        let mut control = Control::new(false);
        let probe = Message::Ping { token: &[0; 8] };
        let keep_alive = Message::Pong {
            token: &KEEP_ALIVE_TOKEN,
        };
        assert!(control.take(probe, route(), &mut events, &mut stats));
        assert!(control.take(keep_alive, route(), &mut events, &mut stats));
        assert_eq!(control.pong_count, 0);
        assert!(events.is_empty());
        // Both still elicit an ACK: the probe exists for it (PROTOCOL.md §7.1).
        assert!(control.eliciting);
    }

    #[test]
    fn a_close_for_this_channel_stops_the_walk_and_another_is_counted() {
        let (mut events, mut stats) = (VecDeque::new(), Stats::new());
        let (_, _, id) = route();
        let mut control = Control::new(false);
        let other = Message::ChannelClose {
            channel: ChannelId(0x0009_0009),
            reason: CloseReason::Normal,
        };
        assert!(control.take(other, route(), &mut events, &mut stats));
        assert_eq!(control.close, None);
        assert_eq!(
            stats.get(DROPPED, Some(("reason", "close_for_other_channel"))),
            1
        );
        let close = Message::ChannelClose {
            channel: id,
            reason: CloseReason::Idle,
        };
        assert!(!control.take(close, route(), &mut events, &mut stats));
        assert_eq!(control.close, Some(CloseReason::Idle));
    }

    #[test]
    fn a_pong_becomes_an_event_naming_its_sender() {
        let (mut events, mut stats) = (VecDeque::new(), Stats::new());
        let (peer, from, _) = route();
        let mut control = Control::new(false);
        let pong = Message::Pong { token: &[5; 8] };
        assert!(control.take(pong, route(), &mut events, &mut stats));
        assert_eq!(
            events.pop_front(),
            Some(Event::Pong {
                peer,
                from,
                token: [5; 8]
            })
        );
    }
}
