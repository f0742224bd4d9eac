//! A connection taking one sealed datagram with its own session (PROTOCOL.md §5, §12 hot path):
//! the session of the packet's KEY_PHASE, the hard limit, the channel's replay window, the tag,
//! the payload opened in place inside the datagram, the window moved, recency and traffic
//! counted, the peer followed to a newer session, and the plaintext's messages validated. The
//! router found the connection (one lookup) and checked the header (recipient, admission); what
//! only it can do, answering RESET or telling the peer a channel is closed, comes back as an
//! [`Opened`], and drops are counted here, in the statistics it lends. The datagram-level entry
//! that goes on to walk the messages is [`Connection::handle`] (`datagram.rs`).

#![deny(clippy::arithmetic_side_effects)]

use super::{Connection, Context};
use crate::channel::Datagram;
use crate::session::{KeyPhase, OpenError};
use crate::stats::Stats;
use crate::wire::{Flags, Header, Messages, parse_payload};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Instant;

/// The counter of dropped datagrams, by reason (the endpoint's drops use the same).
const DROPPED: &str = "weft_packets_dropped_total";

/// What the router lends a connection to take one sealed datagram.
pub(crate) struct Inbound<'a> {
    /// Where a ciphertext is kept for a second try when a displaced session may own it; the
    /// router's, reused, so the copy costs no allocation.
    pub(crate) scratch: &'a mut Vec<u8>,
    /// The node's statistics, where drops are counted by reason.
    pub(crate) stats: &'a mut Stats,
}

/// What a sealed datagram came to.
// `Messages` keeps the first messages its validation decoded (so the walk does not decode them
// again); the enum lives on the stack for one datagram, and boxing it would allocate per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Opened<'d> {
    /// Authenticated, opened in place and validated: its messages, read from the datagram
    /// itself. `rekey_due`: the session just opened as many packets as its policy lets it
    /// before the node replaces it.
    Messages {
        messages: Messages<'d>,
        rekey_due: bool,
        /// The opened datagram frozen, when its memory may be lent: the pool cuts whole
        /// messages from it (`channel/payload.rs`).
        lend: Option<Bytes>,
    },
    /// Dropped and counted; with `reset`, no session of the peer can open it, and the router
    /// answers RESET (PROTOCOL.md §4).
    Dropped { reset: bool },
    /// A replay on a channel this node closed, from a peer that still sends on it (our
    /// CHANNEL_CLOSE was lost): counted; the router tells it again at `to`.
    Closed { to: SocketAddr },
}

impl Connection {
    /// Opens the sealed `datagram` (a header of `header_len` bytes, parsed in `header`) under
    /// the connection's session, in place: afterwards its bytes are plaintext, or unspecified
    /// where the tag did not verify.
    pub(crate) fn open<'d>(
        &mut self,
        now: Instant,
        ctx: &Context,
        lent: Inbound<'_>,
        header: &Header,
        header_len: usize,
        datagram: impl Into<Datagram<'d>>,
    ) -> Opened<'d> {
        let mut datagram = datagram.into();
        let Inbound { scratch, stats } = lent;
        let mut dropped = |reason: &'static str, reset: bool| {
            stats.add(DROPPED, Some(("reason", reason)), 1);
            Opened::Dropped { reset }
        };
        let datagram_len = datagram.len();
        let Some(sequence) = header.sequence else {
            return dropped("unsequenced", false);
        };
        let Some((head, body)) = datagram.bytes_mut().split_at_mut_checked(header_len) else {
            return dropped("truncated", false);
        };
        let Some(entry) = self.session.as_mut() else {
            return dropped("no_session", true);
        };
        let phase = KeyPhase::from_flag(header.flags.contains(Flags::KEY_PHASE));
        entry.slot.expire_retired(now, ctx.retired_session_grace);
        // A failed open leaves the buffer unspecified: while a displaced session may still own
        // packets in flight (a few seconds after a crossing INIT), the ciphertext is kept for a
        // second try. The kept buffer is reused, so this costs a copy, never an allocation.
        let displaced = entry.slot.displaced(phase).is_some();
        if displaced {
            scratch.clear();
            scratch.extend_from_slice(body);
        }
        let Some(session) = entry.slot.phase_session(phase) else {
            return dropped("unknown_key_phase", true);
        };
        let policy = ctx.rekey;
        if session.packets_opened() >= policy.reject_after_packets {
            // The hard limit on receiving: only a new session opens packets again.
            return dropped("key_exhausted", false);
        }
        let (channel, sequence) = (header.channel, u64::from(sequence));
        let mut result = session.keys.open(channel, sequence, head, body);
        let mut primary = true;
        if result == Err(OpenError::Authentication)
            && displaced
            && let Some(session) = entry.slot.displaced(phase)
        {
            primary = false;
            body.copy_from_slice(scratch);
            result = session.keys.open(channel, sequence, head, body);
        }
        let len = match result {
            Ok(len) => len,
            Err(OpenError::Replay)
                if entry
                    .slot
                    .phase_session(phase)
                    .is_some_and(|session| session.keys.is_retired(channel)) =>
            {
                // PROTOCOL.md §6: we closed this channel but the peer still sends on it, and
                // its unacknowledged packets hold the congestion window its other channels
                // share (§7.3).
                let to = entry.address;
                dropped("closed_channel", false);
                return Opened::Closed { to };
            }
            Err(OpenError::Replay) => return dropped("replay", false),
            Err(OpenError::Authentication) => return dropped("authentication", false),
        };
        let mut rekey_due = false;
        if primary && let Some(session) = entry.slot.phase_session(phase) {
            // Either side replaces a session that carried enough (§5).
            rekey_due = session.note_opened() == policy.receive_rekey_threshold();
        }
        // The session table's recency (PROTOCOL.md §5: least recently used first out).
        entry.last_used = now;
        entry.traffic.received(datagram_len);
        if primary {
            // PROTOCOL.md §5: a packet authenticated under the newer session moves our sending
            // to it (a displaced session never does).
            entry.slot.switch_to(phase, now);
        }
        // Done writing: the messages are read from the plaintext in place.
        let (opened, lend) = datagram.share();
        let body = opened.get(header_len..).unwrap_or_default();
        match parse_payload(header, body.get(..len).unwrap_or_default()) {
            Ok(messages) => Opened::Messages {
                messages,
                rekey_due,
                lend,
            },
            Err(error) => dropped(error.kind.reason(), false),
        }
    }
}

impl Connection {
    /// Keeps the keys of an open channel whose packet the session opened without an entry
    /// (`ChannelKeys::open` caches only channels the node holds open): from now on its replay
    /// window refuses that packet again.
    pub(crate) fn admit_keys(&mut self, header: &Header) {
        let (Some(sequence), false) = (header.sequence, header.channel.is_default()) else {
            return;
        };
        let phase = KeyPhase::from_flag(header.flags.contains(Flags::KEY_PHASE));
        if let Some(session) = self
            .session
            .as_mut()
            .and_then(|entry| entry.slot.phase_session(phase))
        {
            session.keys.admit(header.channel, u64::from(sequence));
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use super::*;
    use crate::channel::connection::ChannelPacket;
    use crate::channel::connection::transmit::tests::{
        channel, connection, ctx, data_mut, established, open, queue, with, write_all,
    };
    use crate::channel::pool::BufferPool;
    use crate::channel::reliability::Delivery;
    use crate::channel::state::{PeerSession, Traffic};
    use crate::session::{Role, SessionSlot};
    use crate::wire::{Message, Packet};
    use std::time::Duration;

    /// Gives the connection a session installed at `now` on the test handshake's `role` side.
    pub(crate) fn with_session(c: &mut Connection, role: Role, now: Instant) {
        let mut entry = PeerSession {
            peer: c.id,
            address: c.address,
            slot: SessionSlot::new(),
            last_reset_handshake: None,
            bare: None,
            last_used: now,
            established: now,
            traffic: Traffic::default(),
        };
        entry
            .slot
            .install(&established(role), now)
            .expect("installed");
        c.session = Some(entry);
    }

    /// The sealed packet that carries "hello" on a channel of an initiator's connection.
    fn sealed_hello(t0: Instant) -> Vec<u8> {
        let packets = sealed_packets(t0);
        let mut stats = Stats::new();
        packets
            .into_iter()
            .find(|bytes| {
                let mut b = connection(t0);
                with_session(&mut b, Role::Responder, t0);
                take(&mut b, t0, &mut stats, bytes).1 == [b"hello".to_vec()]
            })
            .expect("a packet carries the message")
    }

    /// The sealed packets of "hello" on a channel of an initiator's connection.
    pub(crate) fn sealed_packets(t0: Instant) -> Vec<Vec<u8>> {
        let mut pool = BufferPool::new();
        let mut a = connection(t0);
        with_session(&mut a, Role::Initiator, t0);
        let ch = with(&mut a, channel(t0, open(), false));
        if let Some(data) = data_mut(&mut a, ch) {
            data.next_pn = 0;
        }
        queue(&mut a, ch, t0, &mut pool, b"hello");
        let packets: Vec<Vec<u8>> = write_all(&mut a, ch, t0)
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        assert!(!packets.is_empty());
        packets
    }

    fn dropped(stats: &Stats, reason: &'static str) -> u64 {
        stats.get(DROPPED, Some(("reason", reason)))
    }

    /// `c` takes one datagram (a copy of `bytes`); returns the outcome without its messages,
    /// and the messages' DATA payloads.
    fn take(
        c: &mut Connection,
        now: Instant,
        stats: &mut Stats,
        bytes: &[u8],
    ) -> (Option<Header>, Vec<Vec<u8>>, &'static str) {
        let mut datagram = bytes.to_vec();
        let packet = Packet::parse(bytes).expect("a valid packet");
        let (header, header_len) = (packet.header, packet.header_bytes().len());
        let mut scratch = Vec::new();
        let lent = Inbound {
            scratch: &mut scratch,
            stats,
        };
        match c.open(now, &ctx(), lent, &header, header_len, &mut datagram) {
            Opened::Messages { messages, .. } => {
                let data = messages
                    .filter_map(|m| match m {
                        Message::Data { payload, .. } => Some(payload.to_vec()),
                        _ => None,
                    })
                    .collect();
                (Some(header), data, "opened")
            }
            Opened::Dropped { reset: true } => (None, Vec::new(), "dropped, reset"),
            Opened::Dropped { reset: false } => (None, Vec::new(), "dropped"),
            Opened::Closed { .. } => (None, Vec::new(), "closed"),
        }
    }

    #[test]
    fn a_sealed_packet_is_opened_in_place_and_its_message_delivered() {
        let t0 = Instant::now();
        let packets = sealed_packets(t0);
        let (mut pool, mut stats) = (BufferPool::new(), Stats::new());
        let mut b = connection(t0);
        with_session(&mut b, Role::Responder, t0);
        let lane = with(&mut b, channel(t0, open(), false));
        let t1 = t0 + Duration::from_millis(20);
        let mut sent = Vec::new();
        for bytes in &packets {
            let mut datagram = bytes.clone();
            let packet = Packet::parse(bytes).expect("a valid packet");
            let (header, header_len) = (packet.header, packet.header_bytes().len());
            let sequence = header.sequence.expect("sequenced");
            let mut scratch = Vec::new();
            let lent = Inbound {
                scratch: &mut scratch,
                stats: &mut stats,
            };
            let handled = b.open(t1, &ctx(), lent, &header, header_len, &mut datagram);
            let Opened::Messages {
                messages,
                rekey_due,
                ..
            } = handled
            else {
                panic!("not opened: {handled:?}");
            };
            assert!(!rekey_due);
            sent.extend(messages.clone().filter_map(|m| match m {
                Message::Data { payload, .. } => Some(payload.to_vec()),
                _ => None,
            }));
            let packet = ChannelPacket {
                sequence,
                eliciting: false,
                messages,
            };
            b.handle_frames(t1, &mut pool, lane, packet, |_| true)
                .unwrap_or_else(|_| panic!("the channel has data state"));
        }
        // Read from the datagram itself, opened where it lay.
        assert_eq!(sent, [b"hello".to_vec()]);
        let delivered = data_mut(&mut b, lane).and_then(|d| d.reliability.poll_event());
        assert!(
            matches!(&delivered, Some(Delivery::Message { number: 0, data }) if data == b"hello"),
            "{delivered:?}"
        );
        let traffic = b.session.as_ref().map(|s| s.traffic);
        assert_eq!(
            traffic.map(|t| t.packets_received),
            Some(packets.len() as u64)
        );
        assert_eq!(b.session.as_ref().map(|s| s.last_used), Some(t1));
        assert_eq!(dropped(&stats, "authentication"), 0);
    }

    #[test]
    fn a_replayed_packet_is_refused_and_counted() {
        let t0 = Instant::now();
        let hello = sealed_hello(t0);
        let mut stats = Stats::new();
        let mut b = connection(t0);
        with_session(&mut b, Role::Responder, t0);
        let (header, data, outcome) = take(&mut b, t0, &mut stats, &hello);
        assert_eq!((outcome, data), ("opened", vec![b"hello".to_vec()]));
        // The channel is open here, so its keys (and its replay window) are kept.
        b.admit_keys(&header.expect("a header"));
        let (_, data, outcome) = take(&mut b, t0, &mut stats, &hello);
        assert_eq!((outcome, data.len()), ("dropped", 0));
        assert_eq!(dropped(&stats, "replay"), 1);
    }

    #[test]
    fn a_bad_tag_is_counted_and_moves_no_window() {
        let t0 = Instant::now();
        let hello = sealed_hello(t0);
        let mut stats = Stats::new();
        let mut b = connection(t0);
        with_session(&mut b, Role::Responder, t0);
        let mut forged = hello.clone();
        *forged.last_mut().expect("a tag") ^= 1;
        let (_, _, outcome) = take(&mut b, t0, &mut stats, &forged);
        assert_eq!(outcome, "dropped");
        assert_eq!(dropped(&stats, "authentication"), 1);
        assert_eq!(
            b.session.as_ref().map(|s| s.traffic.packets_received),
            Some(0)
        );
        // The genuine packet under the same number still opens.
        let (_, data, outcome) = take(&mut b, t0, &mut stats, &hello);
        assert_eq!((outcome, data), ("opened", vec![b"hello".to_vec()]));
        // A connection without a session opens nothing and has the router answer RESET.
        let mut bare = connection(t0);
        let (_, _, outcome) = take(&mut bare, t0, &mut stats, &hello);
        assert_eq!(outcome, "dropped, reset");
        assert_eq!(dropped(&stats, "no_session"), 1);
    }
}
