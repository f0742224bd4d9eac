//! A connection walking one received channel packet (PROTOCOL.md §4, §6, §7), lent the router's
//! shared pieces ([`Shared`]) and never the router (issue 11 point 1): the channel the packet
//! names is found in the connection's own lanes, its data state made on first use
//! ([`Connection::ensure_data`]), the messages walked once — DATA, fragments, ACK and WINDOW on
//! the connection's path and reassembly budget, PING, PONG, CHANNEL_CLOSE and a repeated
//! CHANNEL_COOKIE set aside ([`Control`]) — what the channel received handed to the
//! application, and the confirmation and PONGs owed on the channel ([`Connection::owe`],
//! `owed.rs`: written into its next packet in the driver's buffer, under the number taken
//! then; nothing queued, nothing copied). What only the router can do comes back as a
//! [`Walked`]: a channel to close (the node's handle table and fairness index are the
//! router's), one to list as waiting for the workers' room, the peer to list for a flush when
//! its channel owes an answer, a key at its limit for the rekey policy.

#![deny(clippy::arithmetic_side_effects)]

use super::control::Control;
use super::transmit::{Context, Sealed};
use super::{
    ChannelAt, ChannelPacket, Connection, Delivered, DeliveryGate, Handover, Lane, TallySlots,
    mode_label,
};
use crate::channel::cookie::{CookieCheck, CookieSecrets};
use crate::channel::events::{ChannelHandle, Event};
use crate::channel::outgoing::Outgoing;
use crate::channel::owed::Owed;
use crate::channel::pool::BufferPool;
use crate::channel::reliability::{
    ChannelReliability, PathState, ReassemblyBudget, ReliabilityConfig,
};
use crate::channel::seal::{seal_messages, secure_header};
use crate::channel::state::{ChannelData, Phase, Reported};
use crate::handle::{Handle, Slab};
use crate::stats::{HistogramSlots, StatSlot, Stats};
use crate::wire::{
    Capabilities, ChannelId, CloseReason, DEFAULT_MTU, Flags, Header, Message, PeerId,
    SEQUENCED_HEADER_LEN, TAG_LEN,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The counter of dropped datagrams, by reason (the endpoint's drops use the same).
const DROPPED: &str = "weft_packets_dropped_total";
const CHANNELS_BY_MODE: &str = "weft_channels_by_mode";

/// The slots of the counters a received packet adds to (PROTOCOL.md §12: an index per count,
/// no search by name).
pub(crate) struct ReceiveSlots {
    pub(crate) messages_received: StatSlot,
    pub(crate) messages_sent: StatSlot,
    pub(crate) rtt: HistogramSlots,
    pub(crate) congestion_window: HistogramSlots,
    /// What the reliability layer tallies.
    pub(crate) tally: TallySlots,
}

/// What the router lends a connection to take one datagram, or to send on one of its channels:
/// the router's shared pieces, never the router itself.
pub(crate) struct Shared<'a> {
    /// The node's id and settings.
    pub(crate) ctx: Context,
    /// The node's statistics: drops are counted here by reason.
    pub(crate) stats: &'a mut Stats,
    /// The application's events (messages, PONGs).
    pub(crate) events: &'a mut VecDeque<Event>,
    /// Message buffers for delivery and reassembly.
    pub(crate) pool: &'a mut BufferPool,
    /// The control queue: a closing channel's CHANNEL_CLOSE waits here for the driver (what a
    /// channel owes in steady state rides in its packets instead, `owed.rs`).
    pub(crate) outgoing: &'a mut Outgoing,
    /// The workers' room, which reliable channels' delivery and credit follow (§12).
    pub(crate) room: &'a mut DeliveryGate,
    /// The node's reassembly ledger: a connection's first data channel takes its share.
    pub(crate) budget: &'a ReassemblyBudget,
    /// Shared by every channel's reliability state.
    pub(crate) reliability: &'a Arc<ReliabilityConfig>,
    pub(crate) slots: &'a ReceiveSlots,
    /// The application's channel handles: a channel's events name its entry's hashcode.
    pub(crate) handles: &'a Slab<ChannelAt>,
    /// The cookie secrets, to verify a new channel's CHANNEL_COOKIE statelessly (§6).
    pub(crate) cookies: &'a CookieSecrets,
    /// The endpoint's first identity, which its cookies are made under (`ctx.local_id` is the
    /// connection's own identity on the wire, `identities.rs`).
    pub(crate) node_id: PeerId,
    /// Where a ciphertext is kept for a second try (see [`Inbound`](super::Inbound)).
    pub(crate) scratch: &'a mut Vec<u8>,
    /// Names the connection in the node's reassembly ledger, for eviction.
    pub(crate) budget_key: u64,
}

impl Shared<'_> {
    pub(crate) fn drop_packet(&mut self, reason: &'static str) {
        self.stats.add(DROPPED, Some(("reason", reason)), 1);
    }
}

/// How a channel is to close once the walk is done: the router's work, since the node's handle
/// table and fairness index hold it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Closing {
    pub(crate) reason: CloseReason,
    /// The peer closed it (CHANNEL_CLOSE): it is not told again. Otherwise the channel failed
    /// (its counters are already counted) and the peer is told.
    pub(crate) by_peer: bool,
}

/// What a packet the connection queued on a channel came to.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Nothing was asked to leave.
    #[default]
    Nothing,
    /// Queued in plaintext.
    Queued,
    /// Sealed and queued: the key's count, for the router's rekey policy (§5).
    Sealed(Sealed),
    /// Owed on the channel (`owed.rs`): written into its next packet when the driver asks,
    /// so the router lists the peer for a flush.
    Owed,
    /// The session's key reached its hard limit: nothing leaves until a rekey (counted).
    Exhausted,
    /// Refused (no session where one is needed, a full queue; counted) or nothing to send on.
    Failed,
}

/// What one walk over a channel packet leaves the router to do.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Walked {
    pub(crate) close: Option<Closing>,
    /// A reliable channel met the workers' room full: the router lists its handle entry.
    pub(crate) wait: Option<Handle>,
    /// What the confirmation or the PONGs came to: owed (the router lists the peer for a
    /// flush), or refused (a key at its limit matters for a rekey).
    pub(crate) sent: Sent,
}

impl Walked {
    fn note(&mut self, sent: Sent) {
        let rank = |sent: Sent| match sent {
            Sent::Exhausted => 3,
            Sent::Sealed(_) => 2,
            Sent::Owed => 1,
            _ => 0,
        };
        if rank(sent) > rank(self.sent) {
            self.sent = sent;
        }
    }
}

/// PROTOCOL.md §6 steps 3 and 4: whether a cookie2 (FINALIZE or CHANNEL_COOKIE) from
/// `initiator` at `from` verifies, keeping no state; the failure's reason label when it does
/// not. `local` is this node's id: the responder picked c2 by the bit-15 rule.
pub(crate) fn check_cookie2(
    cookies: &CookieSecrets,
    local: PeerId,
    (initiator, id, from): (PeerId, ChannelId, SocketAddr),
    cookie2: &[u8; 16],
) -> Result<(), &'static str> {
    let high = local > initiator;
    let ours = id.c2() != 0 && ((id.c2() & 0x8000 != 0) == high);
    if initiator.is_zero() || id.c1() == 0 || !ours {
        return Err("mismatch");
    }
    match cookies.check_cookie2(initiator, local, id, from, cookie2) {
        CookieCheck::Valid => Ok(()),
        check => Err(check.reason()),
    }
}

impl Connection {
    /// Whether the peer has a session to seal under (PROTOCOL.md §5).
    pub(crate) fn has_session(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|entry| entry.slot.current_ref().is_some())
    }

    /// Whether the channel in `lane` has its data state.
    pub(crate) fn has_data(&self, lane: Lane) -> bool {
        self.lanes
            .get(lane)
            .is_some_and(|channel| channel.data.is_some())
    }

    /// Makes the data state of the channel in `lane` on first use, and the connection's path
    /// and its share of the node's reassembly memory with its first; false when there is no
    /// such channel.
    pub(crate) fn ensure_data(
        &mut self,
        now: Instant,
        lane: Lane,
        shared: &mut Shared<'_>,
    ) -> bool {
        let secure = self.has_session();
        let Some(state) = self.lanes.get_mut(lane) else {
            return false;
        };
        if state.data.is_some() {
            return true;
        }
        let ctx = shared.ctx;
        if self.path.is_none() {
            let mut path = PathState::new(shared.reliability, now);
            // A kind-0 packet has a sequenced header and no AEAD tag (§3); a sealed one adds
            // the 16-byte tag (§5).
            path.set_packet_overhead(if secure {
                SEQUENCED_HEADER_LEN.saturating_add(TAG_LEN)
            } else {
                SEQUENCED_HEADER_LEN
            });
            self.path = Some(path);
            self.budget = Some(
                shared
                    .budget
                    .for_peer_keyed(ctx.reassembly_peer_bytes, shared.budget_key),
            );
        }
        let order_at = self.order.len();
        self.order.push(lane);
        state.touched = true;
        self.touched.push(lane);
        if state.capabilities.contains(Capabilities::RESEND) {
            // PROTOCOL.md §12: reliable channels share the workers' room.
            shared.room.reliable = shared.room.reliable.saturating_add(1);
        }
        state.data = Some(Box::new(ChannelData {
            reliability: ChannelReliability::shared(
                state.capabilities,
                shared.reliability.clone(),
                now,
            ),
            // PROTOCOL.md §3: under a session a channel's numbers start at 0; plaintext channels
            // start at a random value, which makes blind injection harder.
            next_pn: if secure {
                0
            } else {
                u64::from(state.next_sequence)
            },
            armed: None,
            last_sent: now,
            paused: false,
            waiting: false,
            keep_alive: ctx.keep_alive,
            reported: Reported::default(),
            last_rtt: Duration::ZERO,
            order_at,
            owed_pongs: Default::default(),
            owed_flags: Default::default(),
        }));
        let label = Some(("mode", mode_label(state.capabilities)));
        let count = shared.stats.get(CHANNELS_BY_MODE, label);
        shared
            .stats
            .set(CHANNELS_BY_MODE, label, count.saturating_add(1));
        true
    }

    /// The next packet number of the channel in `lane`, as the wire carries it (its low 32
    /// bits, §3): control packets share the data path's number space, so a number is never
    /// used twice.
    pub(crate) fn take_sequence(
        &mut self,
        now: Instant,
        lane: Lane,
        shared: &mut Shared<'_>,
    ) -> Option<u32> {
        self.ensure_data(now, lane, shared);
        let data = self.lanes.get_mut(lane)?.data.as_mut()?;
        let pn = data.next_pn;
        data.next_pn = pn.saturating_add(1);
        data.last_sent = now;
        Some(pn as u32)
    }

    /// Queues one packet holding `messages` on the channel in `lane`, on the router's control
    /// queue, headed by CHANNEL_COOKIE while the initiator is unconfirmed (§6 step 4): sealed
    /// under the session's current key when the peer has one (§5), else in plaintext where
    /// the node allows it. Only for a channel that is going away (its CHANNEL_CLOSE): one that
    /// stays owes its control instead ([`Connection::owe`]), written into its next packet.
    pub(crate) fn send_on_lane(
        &mut self,
        now: Instant,
        lane: Lane,
        messages: &[Message<'_>],
        shared: &mut Shared<'_>,
    ) -> Sent {
        let secure = self.has_session();
        if !secure && !shared.ctx.allow_plaintext {
            shared.drop_packet("no_session");
            return Sent::Failed;
        }
        let Some(sequence) = self.take_sequence(now, lane, shared) else {
            return Sent::Failed;
        };
        let Some(channel) = self.lanes.get(lane) else {
            return Sent::Failed;
        };
        let id = channel.id;
        let head = match channel.phase {
            Phase::Open {
                cookie2: Some(cookie2),
            } if channel.initiator => Some((cookie2, channel.capabilities)),
            _ => None,
        };
        let ctx = shared.ctx;
        let (to, recipient, local) = (self.address, ctx.recipient(self.id), ctx.local_id);
        let cookie = head
            .as_ref()
            .map(|(cookie2, capabilities)| Message::ChannelCookie {
                cookie2,
                capabilities: *capabilities,
            });
        if secure {
            let Some(entry) = self.session.as_mut() else {
                return Sent::Failed;
            };
            let phase = entry.slot.sending_phase();
            let Some(session) = entry.slot.current() else {
                // Exhausted (the hard limit): nothing leaves until a new session exists.
                shared.drop_packet("key_exhausted");
                return Sent::Exhausted;
            };
            let created = session.created_at();
            let crypto = session.keys.channel(id);
            let header = secure_header(phase, local, recipient, id, sequence);
            let sent = shared.outgoing.with_buffer(to, |buf| {
                seal_messages(
                    buf,
                    crypto,
                    &header,
                    DEFAULT_MTU,
                    (cookie.as_ref(), messages),
                )
            });
            if !sent {
                shared.drop_packet("transmit_queue_full");
                return Sent::Failed;
            }
            let count = crypto.packets_sent();
            return Sent::Sealed(Sealed { count, created });
        }
        let header = Header {
            flags: Flags::SEQUENCED,
            sender: local,
            recipient,
            channel: id,
            sequence: Some(sequence),
        };
        let outgoing = &mut *shared.outgoing;
        if !outgoing.start(to, &header, DEFAULT_MTU) {
            shared.drop_packet("transmit_queue_full");
            return Sent::Failed;
        }
        for message in cookie.iter().chain(messages) {
            if !outgoing.push(message) {
                outgoing.abandon();
                return Sent::Failed;
            }
        }
        outgoing.finish();
        Sent::Queued
    }

    /// The responder's confirmation of the channel in `lane`: its first packet carries the
    /// credit the receive side really granted (§4 WINDOW, §7.4) and tells the initiator the
    /// channel exists. The initiator sends none. Owed, not queued: the WINDOW is written with
    /// the credit of the moment into the channel's next packet ([`Connection::owe`]).
    pub(crate) fn confirm(&mut self, now: Instant, lane: Lane, shared: &mut Shared<'_>) -> Sent {
        if self.lanes.get(lane).is_none_or(|channel| channel.initiator) {
            return Sent::Nothing;
        }
        self.owe(now, lane, shared, |owed| owed.owe_confirm())
    }

    /// Has the channel in `lane` owe its peer control (`owe` says what: a PONG, the
    /// confirmation, a keep-alive PING), written at the front of the channel's next packet
    /// when the driver asks for one ([`Connection::write_packet`]): sealed in the driver's
    /// buffer under the number taken then, riding with the channel's data when it has some.
    /// Refused and counted as [`send_on_lane`](Self::send_on_lane) would be: no session where
    /// one is needed, a key at its hard limit.
    pub(crate) fn owe(
        &mut self,
        now: Instant,
        lane: Lane,
        shared: &mut Shared<'_>,
        owe: impl FnOnce(&mut Owed<'_>),
    ) -> Sent {
        if let Some(refused) = self.refuse_to_send(shared) {
            if refused == Sent::Exhausted
                && let Some(data) = self.lanes.get_mut(lane).and_then(|c| c.data.as_mut())
            {
                // As a sent packet would: a keep-alive refused for want of a key waits another
                // interval rather than fall due at every turn until the rekey.
                data.last_sent = now;
            }
            return refused;
        }
        if !self.ensure_data(now, lane, shared) {
            return Sent::Failed;
        }
        let Some(data) = self.lanes.get_mut(lane).and_then(|c| c.data.as_mut()) else {
            return Sent::Failed;
        };
        owe(&mut data.owed());
        self.touch(lane);
        Sent::Owed
    }

    /// Why nothing may be sent to the peer now, counted: plaintext where the node refuses it,
    /// or a session whose key reached its hard limit (nothing leaves until a rekey, §5).
    fn refuse_to_send(&mut self, shared: &mut Shared<'_>) -> Option<Sent> {
        let Some(entry) = self.session.as_mut() else {
            if shared.ctx.allow_plaintext {
                return None;
            }
            shared.drop_packet("no_session");
            return Some(Sent::Failed);
        };
        if entry.slot.current_ref().is_none() {
            shared.drop_packet("no_session");
            return Some(Sent::Failed);
        }
        if entry.slot.current().is_none() {
            shared.drop_packet("key_exhausted");
            return Some(Sent::Exhausted);
        }
        None
    }

    /// Hands at most `limit` messages the channel in `lane` delivered to the application
    /// ([`Connection::deliver`]), on what the router lends.
    pub(crate) fn deliver_lent(
        &mut self,
        now: Instant,
        lane: Lane,
        limit: usize,
        shared: &mut Shared<'_>,
    ) -> Delivered {
        let code = self
            .lanes
            .get(lane)
            .and_then(|channel| shared.handles.hashcode(channel.handle));
        let Some(code) = code else {
            return Delivered::Done;
        };
        let slots = shared.slots;
        let mut out = Handover {
            channel: ChannelHandle(code),
            events: shared.events,
            pool: shared.pool,
            stats: shared.stats,
            counted: [slots.messages_received, slots.messages_sent],
            room: shared.room,
            echo: shared.ctx.echo,
        };
        self.deliver(now, lane, limit, &mut out)
    }

    /// One received packet on the channel in `lane`, from `from`, in one walk over its
    /// `messages` (PROTOCOL.md §7.1: `eliciting` when a CHANNEL_COOKIE that opened the channel
    /// was taken off them): the data path takes DATA, fragments, ACK and WINDOW, [`Control`]
    /// the rest, acted on once the walk is done.
    pub(crate) fn walk<'d>(
        &mut self,
        now: Instant,
        (from, header): (SocketAddr, &Header),
        lane: Lane,
        messages: impl Iterator<Item = Message<'d>>,
        eliciting: bool,
        shared: &mut Shared<'_>,
    ) -> Walked {
        let mut walked = Walked::default();
        self.last_heard = now;
        if header.flags.contains(Flags::ENCRYPTED) {
            // The session opened this packet without caching keys for the channel; now that
            // the channel is known open, they are kept, and this packet cannot come again.
            self.admit_keys(header);
        }
        let Some(channel) = self.lanes.get_mut(lane) else {
            return walked;
        };
        // Any packet from the responder on the channel confirms it to the initiator.
        if channel.initiator && !channel.confirmed() {
            channel.phase = Phase::Open { cookie2: None };
            channel.retry_at = None;
        }
        let mut control = Control::new(eliciting);
        let route = (header.sender, from, header.channel);
        match header.sequence {
            Some(sequence) => {
                let frames = (sequence, route, messages);
                self.walk_frames(now, lane, frames, &mut control, shared, &mut walked);
            }
            None => {
                for message in messages {
                    if !control.take(message, route, shared.events, shared.stats) {
                        break;
                    }
                }
            }
        }
        if walked.close.is_some() {
            // The channel failed while delivering: nothing more is sent on it.
            return walked;
        }
        if let Some(reason) = control.close {
            walked.close = Some(Closing {
                reason,
                by_peer: true,
            });
            return walked;
        }
        if control.confirm {
            let sent = self.confirm(now, lane, shared);
            walked.note(sent);
        }
        if let Some(tokens) = control.pongs.get(..control.pong_count)
            && !tokens.is_empty()
        {
            // Owed, a few at most: a flood of PINGs past the bound is dropped and counted.
            let mut refused: u64 = 0;
            let sent = self.owe(now, lane, shared, |owed| {
                for &token in tokens {
                    if !owed.owe_pong(token) {
                        refused = refused.saturating_add(1);
                    }
                }
            });
            if refused > 0 {
                shared
                    .stats
                    .add(DROPPED, Some(("reason", "answer_limit")), refused);
            }
            walked.note(sent);
        }
        if header.sequence.is_some() {
            self.touch(lane);
        }
        walked
    }

    /// The sequenced part of [`walk`](Self::walk): the channel's data state made on first
    /// use, the one walk ([`Connection::handle_frames`]), the RTT sample and tallies counted,
    /// and what the channel received delivered.
    fn walk_frames<'d, I: Iterator<Item = Message<'d>>>(
        &mut self,
        now: Instant,
        lane: Lane,
        (sequence, route, messages): (u32, (PeerId, SocketAddr, ChannelId), I),
        control: &mut Control,
        shared: &mut Shared<'_>,
        walked: &mut Walked,
    ) {
        let handled = if self.ensure_data(now, lane, shared) {
            let packet = ChannelPacket {
                sequence,
                eliciting: control.eliciting,
                messages,
            };
            let (events, stats) = (&mut *shared.events, &mut *shared.stats);
            self.handle_frames(now, shared.pool, lane, packet, |message| {
                control.take(message, route, events, stats)
            })
        } else {
            Err(messages)
        };
        let received = match handled {
            Ok(received) => received,
            Err(messages) => {
                // No data state (the channel is going away): the control messages still count.
                for message in messages {
                    if !control.take(message, route, shared.events, shared.stats) {
                        break;
                    }
                }
                return;
            }
        };
        if let Some((rtt, window)) = received.rtt {
            // Both histograms over every path, with no peer label (§7.3).
            let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
            shared.stats.observe(&shared.slots.rtt, us);
            shared
                .stats
                .observe(&shared.slots.congestion_window, window);
        }
        let mode = self
            .lanes
            .get(lane)
            .map_or(Capabilities::NONE, |channel| channel.capabilities);
        shared.slots.tally.take(shared.stats, mode);
        match self.deliver_lent(now, lane, usize::MAX, shared) {
            Delivered::Wait(entry) => walked.wait = Some(entry),
            Delivered::Failed(reason) => {
                self.account(lane, shared.stats);
                walked.close = Some(Closing {
                    reason,
                    by_peer: false,
                });
            }
            Delivered::Done | Delivered::More => {}
        }
    }
}
